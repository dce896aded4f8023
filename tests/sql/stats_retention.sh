#!/bin/bash
# Connection stats are pruned (migration 014): realtime.prune_connection_stats deletes the
# rows of connections that ended longer ago than its age, never an open one, at most its
# limit per call, oldest first; the runtime role may call it but still cannot DELETE rows
# itself; the cron lines of docs/shared-hosting.md run as written; and a running sidecar
# prunes them with stats_retention_s.
source "$(dirname "$0")/../lib/tap.sh"
u=$$
as() { local role=$1; shift; psql -qXAt -U "$role" -v ON_ERROR_STOP=1 -c "$1" 2>&1; }
psql_q "CREATE ROLE app_$u LOGIN IN ROLE pgcast_runtime; CREATE ROLE pub_$u LOGIN IN ROLE pgcast_publisher" >/dev/null

# rows: 'old-N' ended 10 days ago (connected 11 days ago), 'recent' ended 10 minutes ago,
# 'open-old' connected 30 days ago and still open, 'long' connected 20 days ago and ended
# 1 day ago
seed() {
    psql_q "TRUNCATE realtime.realtime_connection_stats;
            INSERT INTO realtime.realtime_connection_stats (connection_id, transport, connected_at, disconnected_at)
            SELECT 'old-' || i, 'long-poll', now() - interval '11 days' + i * interval '1 second',
                   now() - interval '10 days'
              FROM generate_series(1, $1) i;
            INSERT INTO realtime.realtime_connection_stats (connection_id, transport, connected_at, disconnected_at) VALUES
              ('recent', 'sse', now() - interval '20 minutes', now() - interval '10 minutes'),
              ('open-old', 'websocket', now() - interval '30 days', NULL),
              ('long', 'sse', now() - interval '20 days', now() - interval '1 day')" >/dev/null
}
left() { psql_q "SELECT string_agg(connection_id, ',' ORDER BY connection_id) FROM realtime.realtime_connection_stats WHERE connection_id NOT LIKE 'old-%'"; }
nold() { psql_q "SELECT count(*) FROM realtime.realtime_connection_stats WHERE connection_id LIKE 'old-%'"; }

seed 5
is "the runtime role prunes the stats of connections ended over 7 days ago" \
   "$(as app_$u "SELECT realtime.prune_connection_stats('7 days')")" 5
is "an open connection, however old, and recent ends are kept" "$(left)" "long,open-old,recent"
is "a shorter age takes the connection that ended a day ago" \
   "$(as app_$u "SELECT realtime.prune_connection_stats('12 hours')")" 1
is "NULL keeps every row" "$(as app_$u "SELECT realtime.prune_connection_stats(NULL)")" 0
like "a negative age is refused with a reason" "$(as app_$u "SELECT realtime.prune_connection_stats('-1 day')")" \
     "the stats age must be >= 0"

seed 250
is "one call deletes at most its limit" "$(as app_$u "SELECT realtime.prune_connection_stats('7 days', 100)")" 100
is "the oldest first" \
   "$(psql_q "SELECT min(substr(connection_id, 5)::int) FROM realtime.realtime_connection_stats WHERE connection_id LIKE 'old-%'")" 101
is "the next calls take the rest" \
   "$(as app_$u "SELECT realtime.prune_connection_stats('7 days', 100)")$(as app_$u "SELECT realtime.prune_connection_stats('7 days', 100)")" "10050"
is "and keep the others" "$(left)" "long,open-old,recent"

like "the runtime role still cannot delete stats rows itself" \
     "$(as app_$u "DELETE FROM realtime.realtime_connection_stats")" "permission denied"
like "a publisher cannot prune them" "$(as pub_$u "SELECT realtime.prune_connection_stats('0')")" "permission denied"
is "prune_connection_stats is SECURITY DEFINER with its search_path pinned" \
   "$(psql_q "SELECT prosecdef, proconfig::text FROM pg_proc WHERE oid = 'realtime.prune_connection_stats(interval,integer)'::regprocedure")" \
   "t|{\"search_path=pg_catalog, pg_temp\"}"

# the cron lines of docs/shared-hosting.md, with this test's connection
seed 3
cmd=$(awk '/^psql "host=db.example.com/ { print; getline; print; exit }' "$PGCAST_ROOT/docs/shared-hosting.md" |
      sed -e 's/\\$//' | tr '\n' ' ' | sed -e 's/^psql "[^"]*"/psql -qXAt -v ON_ERROR_STOP=1 -U app_'$u'/')
like "docs/shared-hosting.md has the cron lines" "$cmd" "prune_connection_stats"
out=$(eval "$cmd" 2>&1)
is "they run as written (the log's prune, then the stats)" "$(echo "$out" | tail -1)" 3
is "and leave the rows that are not due" "$(left)" "long,open-old,recent"

# a running sidecar prunes them with stats_retention_s
seed 4
source "$PGCAST_ROOT/tests/lib/webserver.sh"
web_init
pgcast_config_add "stats_retention_s = 3600"
pgcast_config_add "prune_interval_s = 1"
ws_start || { web_logs; exit 1; }
for _ in $(seq 1 300); do [ "$(nold)" = 0 ] && break; sleep 0.1; done
is "the sidecar pruned them (stats_retention_s = 3600)" "$(nold)" 0
is "and kept what is not due" "$(left)" "open-old,recent"
# a database without migration 014 (the function gone): the sidecar says what to do
psql_q "DROP FUNCTION realtime.prune_connection_stats(interval, integer)" >/dev/null
for _ in $(seq 1 300); do grep -q "apply the migrations" "$WEB_DIR/log/pgcast-ws.log" && break; sleep 0.1; done
like "without the function the sidecar says to apply the migrations" \
     "$(grep -m1 "connection stats are not pruned" "$WEB_DIR/log/pgcast-ws.log")" "apply the migrations: pgcast-migrate"
[ "$_tap_failed" = 0 ] || web_logs
tap_done
