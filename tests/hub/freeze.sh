#!/bin/bash
# One SSE client that never reads, resuming behind on a channel of 12 KB events (more
# than its queue holds in bytes), must not freeze the handler's hub: another stream of
# the same process gets its live events, also after that client left. Through real
# lighttpd with the shipped configuration (one pgcast-sse.fcgi process). The same for
# the WebSocket sidecar's hub, with a client that drops mid catch-up.
source "$PGCAST_ROOT/tests/lib/tap.sh"
source "$PGCAST_ROOT/tests/lib/webserver.sh"
web_init
# a queue that fills by bytes long before it fills by events
pgcast_config_add "queue_bytes = 1MiB"
lighttpd_start || { web_logs; exit 1; }
WS_PORT=$WS_PORT /usr/bin/python3 "$PGCAST_ROOT/tests/hub/hub_checks.py" "$LIGHTTPD_URL" freeze
rc=$?
[ $rc = 0 ] || web_logs
exit $rc
