#!/bin/bash
# WebSocket connection churn under the sanitizer build: rounds of 200 connections at
# once, each subscribing to two busy channels (half 50 events back, half from now), half of them dropped without a close frame, while events flow. The sidecar stays
# up with no sanitizer report, and the connections that stay get every event.
source "$PGCAST_ROOT/tests/lib/tap.sh"
source "$PGCAST_ROOT/tests/lib/webserver.sh"
web_init
pgcast_config_add "retention_max_events = 10000000"
ws_start || { web_logs; exit 1; }
export WS_PORT WEB_DIR WS_PID
/usr/bin/python3 "$PGCAST_ROOT/tests/delivery/ws_churn.py"
rc=$?
[ $rc = 0 ] || web_logs
exit $rc
