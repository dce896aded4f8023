#!/bin/bash
# One SSE client that does not read, behind on a channel of 12 KB events, must not
# freeze the handler process: a reading client on another channel of the same process
# (lighttpd-conf/pgcast.conf runs one, max-procs 1) keeps getting live events, also
# after the non-reader leaves.
source "$PGCAST_ROOT/tests/lib/tap.sh"
source "$PGCAST_ROOT/tests/lib/webserver.sh"
web_init
pgcast_config_add "sse_retry_ms = 500"
pgcast_config_add "retention_max_events = 10000000"
lighttpd_start || { web_logs; exit 1; }
grep -q '"max-procs" *=> *1,' "$PGCAST_ROOT/lighttpd-conf/pgcast.conf" || echo "# note: the SSE handler may run in several processes"
export LIGHTTPD_URL WS_PORT WEB_DIR
/usr/bin/python3 "$PGCAST_ROOT/tests/delivery/freeze.py" sse
rc=$?
[ $rc = 0 ] || web_logs
exit $rc
