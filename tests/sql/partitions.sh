#!/bin/bash
# The event log partitioned by time (migration 013): a database at 012 with events on
# several channels is migrated, and reads, resumes, cursors and positions are what they
# were; the old table becomes the first partition without being rewritten; publish makes
# a missing partition, also when several publishers (one in REPEATABLE READ) need it at
# once; prune, run as the runtime role, moves each channel's cut and drops a partition
# once none of its events can be read, never before; a resume from a dropped position
# gets the same gap as before; reads use each partition's primary key.
source "$(dirname "$0")/../lib/tap.sh"
work=$(mktemp -d "$PGCAST_TEST_WORK/part.XXXX")
u=$$
db="${PGDATABASE}_m12"
psql_q "CREATE DATABASE \"$db\"" >/dev/null
psql_q "CREATE ROLE app_$u LOGIN IN ROLE pgcast_runtime; CREATE ROLE pub_$u LOGIN IN ROLE pgcast_publisher" >/dev/null
cleanup() {
    psql -qXAt -d postgres -c "DROP DATABASE IF EXISTS \"$db\" WITH (FORCE)" >/dev/null 2>&1
    psql -qXAt -d postgres -c "DROP ROLE IF EXISTS app_$u" -c "DROP ROLE IF EXISTS pub_$u" >/dev/null 2>&1
}
trap cleanup EXIT
m()  { psql -qXAt -v ON_ERROR_STOP=1 -d "$db" -c "$1" 2>&1; }
as() { psql -qXAt -v ON_ERROR_STOP=1 -d "$db" -U "$1" -c "$2" 2>&1; }
owner_url="host=$PGHOST port=$PGPORT user=postgres dbname=$db"

# --- a database at 012, with events
mkdir "$work/sql12"
for f in "$PGCAST_ROOT"/sql/0*.sql; do
    case "$(basename "$f")" in 0[0-1][0-9]_*) [ "$(basename "$f" | cut -c1-3)" -le 12 ] && cp "$f" "$work/sql12/" ;; esac
done
PGCAST_DATABASE_URL="$owner_url" "$PGCAST_BIN/pgcast-migrate" --quiet --dir "$work/sql12" \
    --runtime-role pgcast_runtime --publisher-role pgcast_publisher
is "a database at 012" "$(m "SELECT max(name) FROM realtime.schema_migrations")" "012_presence_owner_limits.sql"
as pub_$u "SELECT realtime.publish('t1','project:a','e', jsonb_build_object('i', g)) FROM generate_series(1,6) g;
           SELECT realtime.publish('t1','project:b','e', jsonb_build_object('i', g)) FROM generate_series(1,3) g;
           SELECT realtime.publish('t2','project:a','e', jsonb_build_object('i', g)) FROM generate_series(1,4) g;
           SELECT realtime.publish('t1','chat:keep','e', jsonb_build_object('i', g)) FROM generate_series(1,3) g" >/dev/null
m "UPDATE realtime.realtime_channels SET config = '{\"retention_count\": 100}' WHERE channel_name = 'chat:keep'" >/dev/null
m "SELECT realtime.prune(NULL, 4)" >/dev/null   # 012's prune deletes project:a 1-2

state() {
    as app_$u "SELECT string_agg(kind || ':' || channel || ':' || seq || coalesce('-' || gap_to, '') || ':' || coalesce(payload, ''), ' ')
                 FROM realtime.read('t1', ARRAY['project:a','project:b','chat:keep'], ARRAY[0,1,0]::bigint[], 100, 0);
               SELECT string_agg(kind || ':' || seq || coalesce('-' || gap_to, ''), ' ')
                 FROM realtime.read('t1', ARRAY['project:a'], ARRAY[3]::bigint[], 2);
               SELECT string_agg(kind || ':' || seq, ' ') FROM realtime.read('t2', ARRAY['project:a'], ARRAY[1]::bigint[], 100);
               SELECT realtime.cursor('t1', ARRAY['project:a','project:b','nope:x']);
               SELECT string_agg(ord || '=' || last_seq || '/' || pruned_through, ' ')
                 FROM realtime.positions_of(ARRAY['t1','t1','t2'], ARRAY['project:a','project:b','project:a'])"
}
before=$(state)
like "012 state is as expected" "$before" "^gap:project:a:1-2:.*event:project:a:3:\{\"i\": 3\}"
filenode=$(m "SELECT pg_relation_filenode('realtime.realtime_events_log')")

# The bound of the first partition checked beforehand, online (docs/operations.md); a few
# seconds ahead, so that the test sees publishes after it go to new partitions.
bound=$(m "SELECT (clock_timestamp() + interval '4 seconds')::text")
m "ALTER TABLE realtime.realtime_events_log ADD CONSTRAINT realtime_events_log_partition_bound
     CHECK (published_at < '$bound') NOT VALID;
   ALTER TABLE realtime.realtime_events_log VALIDATE CONSTRAINT realtime_events_log_partition_bound" >/dev/null

# --- 013
out=$(PGCAST_DATABASE_URL="$owner_url" "$PGCAST_BIN/pgcast-migrate" --quiet 2>&1)
is "013 applies to a database with events" "$out|$(m "SELECT count(*) FROM realtime.schema_migrations WHERE name LIKE '013_%'")" "|1"
is "the log is partitioned" "$(m "SELECT relkind FROM pg_class WHERE oid = 'realtime.realtime_events_log'::regclass")" "p"
is "the old table is the first partition, not rewritten" \
   "$(m "SELECT pg_relation_filenode('realtime.realtime_events_log_initial')")" "$filenode"
is "with the bound checked beforehand" \
   "$(m "SELECT hi = '$bound'::timestamptz FROM realtime.realtime_log_partitions WHERE lo IS NULL")" t
is "reads, resumes, cursors and positions are unchanged" "$(state)" "$before"

# Minute partitions from now on, none made ahead: the partitions 013 made ahead are
# dropped by hand (their registry rows become stale, which publish must cope with).
m "UPDATE realtime.realtime_log_config SET partition_interval = '1 minute', premake = 0" >/dev/null
m "SELECT format('DROP TABLE realtime.%I', part_name) FROM realtime.realtime_log_partitions WHERE lo IS NOT NULL" \
    | while read -r stmt; do m "$stmt" >/dev/null; done
for _ in $(seq 100); do [ "$(m "SELECT clock_timestamp() > '$bound'")" = t ] && break; sleep 0.1; done

# --- publishers that need a missing partition at the same moment
PGUSER=pub_$u psql -qXAt -d "$db" -c "BEGIN; SELECT realtime.publish('t1','race:0','e','{}'); SELECT pg_sleep(1.5); COMMIT;" \
    >"$work/race0" 2>&1 &
pids=($!)
sleep 0.5
psql -qXAt -d "$db" -U pub_$u -c "BEGIN ISOLATION LEVEL REPEATABLE READ; SELECT 1;" \
     -c "SELECT realtime.publish('t1','race:rr','e','{}'); COMMIT;" >"$work/racerr" 2>&1 &
pids+=($!)
for i in 1 2 3 4 5; do
    role=pub_$u; [ $((i % 2)) = 0 ] && role=app_$u
    psql -qXAt -d "$db" -U "$role" -c "SELECT realtime.publish('t1','race:$i','e', jsonb_build_object('i', g)) FROM generate_series(1,10) g" \
        >"$work/race$i" 2>&1 &
    pids+=($!)
done
fails=0
for p in "${pids[@]}"; do wait "$p" || fails=$((fails + 1)); done
is "every racing publisher succeeded (one of them in REPEATABLE READ)" "$fails" 0
is "each channel has its positions once, in order" \
   "$(m "SELECT string_agg(channel || '=' || n || '/' || mx, ' ' ORDER BY channel) FROM (SELECT channel, count(*) n, max(seq) mx, count(DISTINCT seq) d FROM realtime.realtime_events_log WHERE channel LIKE 'race:%' GROUP BY channel) s WHERE n = d")" \
   "race:0=1/1 race:1=10/10 race:2=10/10 race:3=10/10 race:4=10/10 race:5=10/10 race:rr=1/1"
is "they landed in a partition made after the bound" \
   "$(m "SELECT count(*) FROM realtime.realtime_events_log WHERE channel LIKE 'race:%' AND tableoid <> 'realtime.realtime_events_log_initial'::regclass")" 52
listed() {
    m "SELECT (SELECT count(*) FROM realtime.realtime_log_partitions p $1)
              = (SELECT count(*) FROM pg_inherits WHERE inhparent = 'realtime.realtime_events_log'::regclass)
           AND NOT EXISTS (SELECT 1 FROM realtime.realtime_log_partitions p JOIN realtime.realtime_log_partitions q
                            ON p.part_name < q.part_name AND tstzrange(p.lo, p.hi) && tstzrange(q.lo, q.hi)
                           WHERE to_regclass('realtime.' || quote_ident(p.part_name)) IS NOT NULL
                             AND to_regclass('realtime.' || quote_ident(q.part_name)) IS NOT NULL)"
}
is "the partitions listed (but those dropped by hand) are those attached, and none overlap" \
   "$(listed "WHERE to_regclass('realtime.' || quote_ident(p.part_name)) IS NOT NULL")" t

# --- prune never waits long for a transaction that is making a partition
m "UPDATE realtime.realtime_log_config SET premake = 3" >/dev/null
# (the holder keeps the lock until the check is done: a row in part_release, 60 s at most;
# the check starts once it holds it, when pg_stat_activity shows it waiting in its loop)
m "CREATE TABLE part_release (done bool)" >/dev/null
m "SELECT pg_advisory_xact_lock(hashtextextended('pgcast.realtime_events_log partitions', 7213));
   DO \$\$ BEGIN FOR i IN 1..600 LOOP EXIT WHEN EXISTS (SELECT FROM part_release); PERFORM pg_sleep(0.1); END LOOP; END \$\$" >/dev/null &
holder=$!
for _ in $(seq 1 300); do
    [ "$(m "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND query LIKE '%part_release%' AND query NOT LIKE '%pg_stat_activity%' AND wait_event = 'PgSleep'")" = 1 ] && break
    sleep 0.1
done
out=$(psql -qXAt -d "$db" -U app_$u -c "SET statement_timeout = '2s'; SELECT realtime.prune(NULL, NULL)" 2>&1)
like "prune skips making partitions while another transaction makes one" "$out" "being made by another transaction.*"$'\n'"0$"
m "INSERT INTO part_release VALUES (true)" >/dev/null
wait $holder

# --- reads use the primary key of every partition
plan=$(m "SET plan_cache_mode = force_generic_plan;
          PREPARE q(text, text, bigint, int) AS SELECT * FROM realtime.realtime_events_log l
           WHERE l.tenant_id = \$1 AND l.channel = \$2 AND l.seq > \$3 ORDER BY l.seq LIMIT \$4;
          EXPLAIN (COSTS OFF) EXECUTE q('t1', 'project:a', 0, 100)")
nparts=$(m "SELECT count(*) FROM pg_inherits WHERE inhparent = 'realtime.realtime_events_log'::regclass")
is "a read probes each partition's primary key, scans none" \
   "$(grep -c 'Index Scan using realtime_events_log_.*_pkey' <<<"$plan")/$(grep -c 'Seq Scan' <<<"$plan")" "$nparts/0"

# --- prune drops a partition once nothing in it can be read
as pub_$u "SELECT realtime.publish('t1','project:a','e','{\"new\":7}'); SELECT realtime.publish('t1','project:b','e','{\"new\":4}');
           SELECT realtime.publish('t2','project:a','e','{\"new\":5}')" >/dev/null
out=$(as app_$u "SELECT realtime.prune(NULL, 1)")
is "the runtime role prunes: cuts moved, as positions" "$out" "$(( (6-2) + (3-0) + (4-0) + 5 * 9 ))"
is "a partition with an event a reader can still get stays (chat:keep keeps 100)" \
   "$(m "SELECT to_regclass('realtime.realtime_events_log_initial') IS NOT NULL")" t
m "UPDATE realtime.realtime_channels SET config = '{\"retention_count\": 1}' WHERE channel_name = 'chat:keep'" >/dev/null
as pub_$u "SELECT realtime.publish('t1','chat:keep','e','{\"new\":4}')" >/dev/null
# two hosts prune at the same moment: neither fails, the cut is made once; the partition
# goes in that round or, if one run held it while the other wanted it, in a later one
as app_$u "SELECT realtime.prune(NULL, 1)" >"$work/prune_a" 2>&1 &
pa=$!
as app_$u "SELECT realtime.prune(NULL, 1)" >"$work/prune_b" 2>&1 &
pb=$!
wait $pa; ra=$?; wait $pb; rb=$?
is "two prunes at once both succeed and cut once" "$ra$rb|$(( $(grep -E '^[0-9]+$' "$work/prune_a") + $(grep -E '^[0-9]+$' "$work/prune_b") ))" "00|3"
for _ in 1 2 3 4 5; do
    [ "$(m "SELECT to_regclass('realtime.realtime_events_log_initial') IS NULL")" = t ] && break
    as app_$u "SELECT realtime.prune(NULL, 1)" >/dev/null
done
is "then the partition is dropped" \
   "$(m "SELECT to_regclass('realtime.realtime_events_log_initial') IS NULL, (SELECT count(*) FROM realtime.realtime_log_partitions WHERE lo IS NULL)")" \
   "t|0"
is "the list is the partitions attached, now without those dropped by hand" "$(listed "")" t
is "pruned_through is each channel's cut" \
   "$(m "SELECT string_agg(tenant_id || ':' || channel_name || '=' || pruned_through || '/' || last_seq, ' ' ORDER BY tenant_id, channel_name) FROM realtime.realtime_channels WHERE channel_name NOT LIKE 'race:%'")" \
   "t1:chat:keep=3/4 t1:project:a=6/7 t1:project:b=3/4 t2:project:a=4/5"
is "a resume from a dropped position gets the gap, then the rest" \
   "$(as app_$u "SELECT string_agg(kind || ':' || channel || ':' || seq || coalesce('-' || gap_to, '') || ':' || coalesce(payload, ''), ' ')
                  FROM realtime.read('t1', ARRAY['project:a','project:b','chat:keep'], ARRAY[0,1,0]::bigint[], 100, 0)")" \
   'gap:chat:keep:1-3: gap:project:a:1-6: gap:project:b:2-3: event:project:a:7:{"new": 7} event:project:b:4:{"new": 4} event:chat:keep:4:{"new": 4}'
is "a resume from the cut gets no gap" \
   "$(as app_$u "SELECT string_agg(kind || ':' || seq, ' ') FROM realtime.read('t2', ARRAY['project:a'], ARRAY[4]::bigint[], 100)")" \
   "event:5"
is "the cursor is unchanged" "$(as app_$u "SELECT realtime.cursor('t1', ARRAY['project:a','project:b'])")" "project:a=7,project:b=4"
is "publishing goes on" "$(as pub_$u "SELECT realtime.publish('t1','project:a','e','{}')")" 8

# --- who may do what
like "a publisher cannot run the partition upkeep" "$(as pub_$u "SELECT realtime.log_maintain()")" "permission denied"
like "nor make partitions" "$(as pub_$u "SELECT realtime.log_partition_for(now())")" "permission denied"
like "the runtime role cannot make partitions far from now" \
   "$(as app_$u "SELECT realtime.log_partition_for(now() + interval '30 days')")" "only near the current time"
like "nor touch the partition list" "$(as app_$u "DELETE FROM realtime.realtime_log_partitions")" "permission denied"
# --- the age cut by bisection is the walk's answer (in the test's own database)
psql_q "SELECT realtime.publish('t1','age:x','e', jsonb_build_object('i', g)) FROM generate_series(1,50) g;
        UPDATE realtime.realtime_events_log SET published_at = now() - (50 - seq) * interval '1 minute'
         WHERE tenant_id = 't1' AND channel = 'age:x'" >/dev/null
agecmp() {
    psql_q "SELECT count(*) FILTER (WHERE b IS DISTINCT FROM w), count(*) FROM (
              SELECT realtime.log_age_cut('t1', 'age:x', a, 50, tm) AS b,
                     (SELECT max(seq) FROM realtime.realtime_events_log
                       WHERE tenant_id = 't1' AND channel = 'age:x' AND seq > a AND seq <= 50 AND published_at < tm) AS w
                FROM generate_series(0, 52) k, (VALUES (0), (10), (49), (50)) v(a),
                     LATERAL (SELECT now() - k * interval '1 minute' + interval '30 seconds' AS tm) t) s"
}
is "the age cut found by bisection is the last event before the cut, for every cut" "$(agecmp)" "0|212"
psql_q "DELETE FROM realtime.realtime_events_log WHERE tenant_id = 't1' AND channel = 'age:x' AND seq = 25" >/dev/null
is "also with an event deleted by hand" "$(agecmp)" "0|212"
tap_done
