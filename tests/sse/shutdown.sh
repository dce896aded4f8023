#!/bin/bash
# SIGTERM to the SSE handler behind real lighttpd: every open stream gets a shutdown
# error and ends, and the process exits.
source "$PGCAST_ROOT/tests/lib/tap.sh"
source "$PGCAST_ROOT/tests/lib/webserver.sh"
web_init
lighttpd_start || { web_logs; exit 1; }
# the handler starts with its first request
curl -s -o /dev/null "$LIGHTTPD_URL/realtime/sse"
pid=$(lighttpd_handler_pid pgcast-sse.fcgi)
[ -n "$pid" ] || { echo "not ok 1 - pgcast-sse.fcgi is running"; web_logs; exit 1; }
SSE_SHUTDOWN_PID=$pid /usr/bin/python3 "$PGCAST_ROOT/tests/sse/sse_checks.py" "$LIGHTTPD_URL" lighttpd
rc=$?
[ $rc = 0 ] || web_logs
exit $rc
