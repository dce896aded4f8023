#!/bin/bash
# A WebSocket resuming over a large backlog (20,000 x 1 KB, more than its outbound
# queue) while it reads normally gets every event once, in order, on one connection:
# catch-up is paced by queue room, never closed with 1008 "outbound queue overflow".
source "$PGCAST_ROOT/tests/lib/tap.sh"
source "$PGCAST_ROOT/tests/lib/webserver.sh"
web_init
# no pruning during the test
pgcast_config_add "retention_max_events = 10000000"
ws_start || { web_logs; exit 1; }
export WS_PORT WEB_DIR
/usr/bin/python3 "$PGCAST_ROOT/tests/delivery/ws_backlog.py"
rc=$?
[ $rc = 0 ] || web_logs
exit $rc
