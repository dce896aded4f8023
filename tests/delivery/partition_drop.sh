#!/bin/bash
# Retention by dropping a time partition (migration 013), through the real servers: SSE,
# long-poll and WebSocket clients reading live while a partition is dropped under a
# steady publisher lose nothing; clients resuming afterwards from positions inside the
# dropped partition get the gap exactly, then every remaining event once, in order.
source "$PGCAST_ROOT/tests/lib/tap.sh"
source "$PGCAST_ROOT/tests/lib/webserver.sh"
# The test places events in yesterday's and today's daily partitions: it must not run
# across a UTC midnight. Within two minutes of one, it waits until it has passed.
left=$(( 86400 - $(date -u +%s) % 86400 ))
if [ "$left" -lt 120 ]; then
    echo "# waiting ${left} s for UTC midnight to pass"
    sleep $((left + 2))
fi
web_init
# the test prunes itself, as the runtime role
pgcast_config_add "prune_interval_s = 0"
pgcast_config_add "sse_retry_ms = 300"
lighttpd_start || { web_logs; exit 1; }
export LIGHTTPD_URL WS_PORT WEB_DIR
/usr/bin/python3 "$PGCAST_ROOT/tests/delivery/partition_drop.py"
rc=$?
[ $rc = 0 ] || web_logs
exit $rc
