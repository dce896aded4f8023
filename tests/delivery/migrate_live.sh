#!/bin/bash
# Migration 013 (the log partitioned by time) applied while the servers run and events
# are published: SSE, long-poll and WebSocket clients reading through it get every event
# once, in order; resumes afterwards from positions pruned before it get the same gaps.
source "$PGCAST_ROOT/tests/lib/tap.sh"
source "$PGCAST_ROOT/tests/lib/webserver.sh"
db="${PGDATABASE}_live12"
psql -qX -v ON_ERROR_STOP=1 -c "CREATE DATABASE \"$db\"" >/dev/null || exit 1
mkdir -p "$PGCAST_TEST_WORK/mlive-sql12"
for f in "$PGCAST_ROOT"/sql/0*.sql; do
    n=$(basename "$f" | cut -c1-3); [ "$((10#$n))" -le 12 ] && cp "$f" "$PGCAST_TEST_WORK/mlive-sql12/"
done
export PGDATABASE="$db"
export PGCAST_DATABASE_URL="host=$PGHOST port=$PGPORT user=${PGCAST_TEST_DB_USER:-postgres} dbname=$db"
export PGCAST_TEST_OWNER_URL="host=$PGHOST port=$PGPORT user=postgres dbname=$db"
PGCAST_DATABASE_URL="$PGCAST_TEST_OWNER_URL" "$PGCAST_BIN/pgcast-migrate" --quiet --dir "$PGCAST_TEST_WORK/mlive-sql12" \
    --runtime-role pgcast_runtime --publisher-role pgcast_publisher || { echo "not ok 1 - a database at 012"; exit 1; }
web_init
trap 'web_stop_all; psql -qX -d postgres -c "DROP DATABASE IF EXISTS \"$db\" WITH (FORCE)" >/dev/null 2>&1' EXIT
pgcast_config_add "prune_interval_s = 0"
pgcast_config_add "sse_retry_ms = 300"
lighttpd_start || { web_logs; exit 1; }
export LIGHTTPD_URL WS_PORT WEB_DIR
/usr/bin/python3 "$PGCAST_ROOT/tests/delivery/migrate_live.py"
rc=$?
[ $rc = 0 ] || web_logs
exit $rc
