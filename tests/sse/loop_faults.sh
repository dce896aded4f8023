#!/bin/bash
# SSE stream-loop faults through real lighttpd: clients resuming far behind (megabytes of
# catch-up) and reading at their pace each get every event of the log once, in order, while
# heartbeat ticks keep flushing their output; streams reset in rounds while events flow,
# then SIGTERM, with no sanitizer report in the handlers' logs (tests/sse/loop_faults.py).
source "$PGCAST_ROOT/tests/lib/tap.sh"
source "$PGCAST_ROOT/tests/lib/webserver.sh"
web_init
lighttpd_start || { web_logs; exit 1; }
# the SSE handler this lighttpd spawned (only it is sent SIGTERM)
sse_pid=$(lighttpd_handler_pid pgcast-sse.fcgi)
LF_SSE_PID="$sse_pid" /usr/bin/python3 "$PGCAST_ROOT/tests/sse/loop_faults.py" "$LIGHTTPD_URL" loopfaults
rc=$?
if grep -q "AddressSanitizer\|runtime error" "$WEB_DIR"/log/* 2>/dev/null; then
    echo "not ok - a sanitizer report in the handlers' logs"
    grep -h -A5 "AddressSanitizer\|runtime error" "$WEB_DIR"/log/* | head -20 | sed 's/^/# /'
    rc=1
fi
[ $rc = 0 ] || web_logs
exit $rc
