#!/bin/bash
# One LISTEN per host (pgcast-relay): lighttpd's two handlers, the sidecar and three more
# FastCGI processes take their wake-ups from the relay, so the database sees ONE listening
# connection for the host; kill -9 of the relay mid-burst: every process LISTENs on its
# own at once, resuming SSE, long-poll and WebSocket clients get exactly the logged events
# in order; the relay started again: the processes move back to it (one LISTEN again). A
# process that stops reading is dropped by the relay at relay_client_buffer. Under the
# sanitizer build; no server log may hold a sanitizer report.
source "$PGCAST_ROOT/tests/lib/tap.sh"
source "$PGCAST_ROOT/tests/lib/webserver.sh"
web_init
relay_config
pgcast_config_add "relay_client_buffer = 64KiB"
pgcast_config_add "sse_retry_ms = 300"
pgcast_config_add "retention_max_events = 10000000"
relay_start || { echo "not ok 1 - pgcast-relay serves its socket"; web_logs; exit 1; }
lighttpd_start || { web_logs; exit 1; }
# three more hub processes on the host (as lighttpd's max-procs or more mod_fcgid children would be)
for i in 1 2 3; do
    port=$("$PGCAST_ROOT/scripts/free-port.sh")
    PGCAST_CONFIG="$PGCAST_TEST_CONFIG" "$PGCAST_BIN/pgcast-sse.fcgi" --listen "127.0.0.1:$port" \
        >>"$WEB_DIR/log/pgcast-sse-extra$i.log" 2>&1 &
    _web_pids+=($!)
done
export LIGHTTPD_URL WS_PORT WEB_DIR RELAY_SOCKET RELAY_PID
export HUB_PROCESSES=6
/usr/bin/python3 "$PGCAST_ROOT/tests/relay/failover.py"
rc=$?
[ $rc = 0 ] || web_logs
exit $rc
