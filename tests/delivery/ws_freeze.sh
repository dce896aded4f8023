#!/bin/bash
# The same for the WebSocket sidecar: a connection that stops reading in the middle of
# its catch-up over 12 KB events (36 MB), then drops without a close frame, must not stop
# the deliveries to the sidecar's other connections; nor must connections that drop
# without a close frame 0.3 s and 1 s into that catch-up.
source "$PGCAST_ROOT/tests/lib/tap.sh"
source "$PGCAST_ROOT/tests/lib/webserver.sh"
web_init
pgcast_config_add "retention_max_events = 10000000"
[ -n "${DELIVERY_DEBUG:-}" ] && pgcast_config_add "log_level = debug"
ws_start || { web_logs; exit 1; }
export WS_PORT WEB_DIR
/usr/bin/python3 "$PGCAST_ROOT/tests/delivery/freeze.py" ws
rc=$?
[ $rc = 0 ] || web_logs
exit $rc
