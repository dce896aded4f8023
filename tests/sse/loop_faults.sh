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
lighttpd_pid=${_web_pids[${#_web_pids[@]}-1]}
sse_pid=
for _ in $(seq 1 50); do
    sse_pid=$(pgrep -P "$lighttpd_pid" -f "$PGCAST_BIN/pgcast-sse.fcgi" | head -1)
    [ -n "$sse_pid" ] && break
    sleep 0.1
done
LF_SSE_PID="$sse_pid" /usr/bin/python3 "$PGCAST_ROOT/tests/sse/loop_faults.py" "$LIGHTTPD_URL" loopfaults
rc=$?
if grep -q "AddressSanitizer\|runtime error" "$WEB_DIR"/log/* 2>/dev/null; then
    echo "not ok - a sanitizer report in the handlers' logs"
    grep -h -A5 "AddressSanitizer\|runtime error" "$WEB_DIR"/log/* | head -20 | sed 's/^/# /'
    rc=1
fi
[ $rc = 0 ] || web_logs
exit $rc
