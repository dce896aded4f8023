# units_start UNITS_DIR LOG_DIR SSE_PORT POLL_PORT WS_PORT: the SSE and poll handlers and
# the sidecar started as their installed systemd units start them (unit_exec.py: CI has no
# systemd as PID 1), logs in LOG_DIR; their pids are appended to the array pids, and
# units_up is 1 once all three listen (0 when one does not within 10 s).
units_start() {
    local units=$1 log=$2 sse_port=$3 poll_port=$4 ws_port=$5 p
    /usr/bin/python3 "$PGCAST_ROOT/tests/package/unit_exec.py" "$units" pgcast-sse.service "127.0.0.1:$sse_port" \
        >>"$log/pgcast-sse.log" 2>&1 &
    pids+=($!)
    /usr/bin/python3 "$PGCAST_ROOT/tests/package/unit_exec.py" "$units" pgcast-poll.service "127.0.0.1:$poll_port" \
        >>"$log/pgcast-poll.log" 2>&1 &
    pids+=($!)
    /usr/bin/python3 "$PGCAST_ROOT/tests/package/unit_exec.py" "$units" pgcast-ws.service >>"$log/pgcast-ws.log" 2>&1 &
    pids+=($!)
    units_up=1
    for p in "$sse_port" "$poll_port" "$ws_port"; do wait_port "$p" || units_up=0; done
}
