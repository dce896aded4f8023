#!/bin/bash
# SSE through real lighttpd with the shipped lighttpd-conf/pgcast.conf (FastCGI, bin-path):
# headers, no buffering, errors, resume, tenants, heartbeats and config changes, and
# a burst larger than the queue (readers get everything on their stream; one that stops
# reading is ended after queue_stall_ms), 1,000 concurrent streams whose count returns to
# zero.
source "$PGCAST_ROOT/tests/lib/tap.sh"
source "$PGCAST_ROOT/tests/lib/webserver.sh"
web_init
# a queue the slow-client check's burst overflows many times, and a short stall bound
pgcast_config_add "queue_bytes = 2MiB"
pgcast_config_add "queue_stall_ms = 4000"
lighttpd_start || { web_logs; exit 1; }
SSE_HEARTBEATS=1 SSE_SLOW=1 SSE_STALL_MS=4000 /usr/bin/python3 "$PGCAST_ROOT/tests/sse/sse_checks.py" "$LIGHTTPD_URL" lighttpd "${SSE_STREAMS:-1000}"
rc=$?
[ $rc = 0 ] || web_logs
exit $rc
