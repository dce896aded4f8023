#!/bin/bash
# An SSE client that stopped reading (longer than queue_stall_ms, 8 s here, while its
# queue was full) is ended with an overflow error; it resumes with
# Last-Event-ID and reads at its pace while events go on: its catch-up (more than a
# queue's worth) must not overflow it again, and it gets every event once, in order.
source "$PGCAST_ROOT/tests/lib/tap.sh"
source "$PGCAST_ROOT/tests/lib/webserver.sh"
web_init
pgcast_config_add "sse_retry_ms = 500"
pgcast_config_add "queue_stall_ms = 8000"
pgcast_config_add "retention_max_events = 10000000"
lighttpd_start || { web_logs; exit 1; }
export LIGHTTPD_URL WS_PORT WEB_DIR
/usr/bin/python3 "$PGCAST_ROOT/tests/delivery/sse_overflow_resume.py"
rc=$?
[ $rc = 0 ] || web_logs
exit $rc
