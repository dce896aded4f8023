#!/bin/bash
# An SSE client more than 64 KiB behind (a burst of large events) that reads at its own
# pace gets every event once, in order, on the one stream it opened: a stream whose
# output drained must go on taking what waits in its hub queue.
source "$PGCAST_ROOT/tests/lib/tap.sh"
source "$PGCAST_ROOT/tests/lib/webserver.sh"
web_init
pgcast_config_add "sse_retry_ms = 500"
# room for the whole burst in the hub queue: no overflow is expected
pgcast_config_add "queue_bytes = 64MiB"
pgcast_config_add "queue_events = 8192"
lighttpd_start || { web_logs; exit 1; }
export LIGHTTPD_URL WS_PORT WEB_DIR
/usr/bin/python3 "$PGCAST_ROOT/tests/delivery/sse_catchup.py"
rc=$?
[ $rc = 0 ] || web_logs
exit $rc
