#!/bin/bash
# Retention cost: realtime.prune on a log of N rows, half of them past the retention age,
# with migration 012's prune (DELETE of every pruned row) and with 013's (the cut moved
# per channel, the old partition dropped). Prints, for the prune itself and for the
# VACUUM it leaves to do: wall time, WAL bytes (pg_current_wal_insert_lsn before and after),
# and what VACUUM reports (pages and tuples removed). Figures only, no assertion.
#
# Both logs hold the same rows: CHANNELS channels, each with its events spread evenly
# over the last four days (daily partitions after 013); prune(interval '2 days', NULL)
# cuts the older half of every channel. 013 drops the partitions wholly older than the
# cut at once; the rows of the one holding the cut go with it when its day has passed
# (so fewer rows leave the disk in this run than 012 deletes). Both are vacuumed and
# checkpointed before the prune, so the figures are what the prune and its cleanup add
# (full-page images included, as after any checkpoint).
#
#   bench/bench_prune.sh [ROWS] [CHANNELS]      (default: 2000000 1000)
set -uo pipefail
cd "$(dirname "$0")/.." || exit 1
rows=${1:-${BENCH_PRUNE_ROWS:-2000000}}
chans=${2:-${BENCH_PRUNE_CHANNELS:-1000}}
per=$((rows / chans))
half=$((per / 2))
[ -x bin/pgcast-migrate ] || make -s >/dev/null || exit 1
work=$(mktemp -d /tmp/pgcast-bench-prune.XXXXXX)
chmod 0755 "$work"
trap 'scripts/pg-cluster.sh stop "$work/pg" >/dev/null 2>&1; rm -rf "$work"' EXIT
env_out=$(scripts/pg-cluster.sh start "$work/pg") || exit 1
eval "$env_out"
q() { psql -qXAt -v ON_ERROR_STOP=1 "$@"; }
# the VACUUM measured is the one after the prune: no autovacuum in between
q -c "ALTER SYSTEM SET autovacuum = off" -c "SELECT pg_reload_conf()" >/dev/null || exit 1

mkdir "$work/sql12"
for f in sql/0*.sql; do n=$(basename "$f" | cut -c1-3); [ "$((10#$n))" -le 12 ] && cp "$f" "$work/sql12/"; done
q -c "CREATE DATABASE del" -c "CREATE DATABASE part" || exit 1
PGDATABASE=del bin/pgcast-migrate --quiet --dir "$work/sql12" || exit 1
# 013 on an empty log whose first partition ends three days ago; the daily partitions
# after it are made here as log_maintain would have made them on those days.
PGDATABASE=part bin/pgcast-migrate --quiet --dir "$work/sql12" || exit 1
day0=$(q -d part -c "SELECT date_bin('1 day', now(), timestamptz '2000-01-01 00:00+00') - interval '4 days'")
q -d part -c "ALTER TABLE realtime.realtime_events_log ADD CONSTRAINT realtime_events_log_partition_bound
                CHECK (published_at < '$day0') NOT VALID" \
          -c "ALTER TABLE realtime.realtime_events_log VALIDATE CONSTRAINT realtime_events_log_partition_bound" || exit 1
PGDATABASE=part bin/pgcast-migrate --quiet || exit 1
q -d part <<SQL || exit 1
DO \$\$
DECLARE
    lo timestamptz;
    n  name;
BEGIN
    FOR i IN 0 .. 3 LOOP
        lo := '$day0'::timestamptz + i * interval '1 day';
        n := 'realtime_events_log_' || to_char(lo AT TIME ZONE 'UTC', 'YYYYMMDD"_"HH24MISS');
        EXECUTE format('CREATE TABLE realtime.%I (LIKE realtime.realtime_events_log INCLUDING DEFAULTS, '
                       'CONSTRAINT %I PRIMARY KEY (tenant_id, channel, seq))', n, n || '_pkey');
        EXECUTE format('ALTER TABLE realtime.realtime_events_log ATTACH PARTITION realtime.%I FOR VALUES FROM (%L) TO (%L)',
                       n, lo, lo + interval '1 day');
        INSERT INTO realtime.realtime_log_partitions (part_name, lo, hi) VALUES (n, lo, lo + interval '1 day');
    END LOOP;
END \$\$;
SQL

# The same rows in both: each channel's seq 1..per spread evenly over the last four days.
load() {
    q -d "$1" <<SQL
INSERT INTO realtime.realtime_channels (tenant_id, channel_name, channel_type, entity_id, last_seq)
SELECT 'bench', 'project:c' || c, 'project', 'c' || c, $per FROM generate_series(1, $chans) c;
INSERT INTO realtime.realtime_events_log (tenant_id, channel, seq, event_type, event_data, published_at, payload_bytes)
SELECT 'bench', 'project:c' || c, s, 'update',
       jsonb_build_object('id', s, 'title', 'event number ' || s, 'body', repeat('x', 60)),
       now() - interval '4 days' + (s::float8 / $per) * interval '4 days',
       100
  FROM generate_series(1, $per) s, generate_series(1, $chans) c;
VACUUM (ANALYZE, FREEZE) realtime.realtime_events_log;
VACUUM ANALYZE realtime.realtime_channels;
CHECKPOINT;
SQL
}
echo "loading $rows rows on $chans channels into both logs..."
load del || exit 1
load part || exit 1

# prune, then VACUUM of what it touched; prints one line of figures
measure() {
    local db=$1
    q -d "$db" <<SQL
\\set ON_ERROR_STOP 1
SELECT pg_current_wal_insert_lsn() AS l0, clock_timestamp() AS t0 \\gset
SELECT realtime.prune(interval '2 days', NULL) AS pruned \\gset
SELECT pg_current_wal_insert_lsn() AS l1, clock_timestamp() AS t1 \\gset
SELECT pg_total_relation_size('realtime.realtime_events_log') AS size_after_prune \\gset
VACUUM realtime.realtime_events_log, realtime.realtime_channels;
SELECT pg_current_wal_insert_lsn() AS l2, clock_timestamp() AS t2 \\gset
SELECT format('pruned=%s prune_ms=%s prune_wal_bytes=%s vacuum_ms=%s vacuum_wal_bytes=%s log_bytes_after=%s',
              :'pruned',
              round(extract(epoch FROM (:'t1'::timestamptz - :'t0'::timestamptz)) * 1000),
              pg_wal_lsn_diff(:'l1', :'l0'),
              round(extract(epoch FROM (:'t2'::timestamptz - :'t1'::timestamptz)) * 1000),
              pg_wal_lsn_diff(:'l2', :'l1'),
              (SELECT sum(pg_total_relation_size(c.oid)) FROM pg_class c
                WHERE c.oid = 'realtime.realtime_events_log'::regclass
                   OR c.oid IN (SELECT inhrelid FROM pg_inherits WHERE inhparent = 'realtime.realtime_events_log'::regclass)));
SQL
}
del=$(measure del) || exit 1
part=$(measure part) || exit 1
check_del=$(q -d del -c "SELECT count(*) FROM realtime.realtime_events_log")
check_part=$(q -d part -c "SELECT count(*) FROM realtime.realtime_events_log")
reads_same=$(diff <(q -d del -c "SELECT kind, channel, seq, gap_to, event_type, payload FROM realtime.read('bench', ARRAY['project:c1','project:c$chans'], ARRAY[0,$((half - 1))]::bigint[], 5)") \
                  <(q -d part -c "SELECT kind, channel, seq, gap_to, event_type, payload FROM realtime.read('bench', ARRAY['project:c1','project:c$chans'], ARRAY[0,$((half - 1))]::bigint[], 5)") \
             >/dev/null && echo yes || echo NO)

# Publish and read on both, after the prune: the backend's CPU time per publish (30,000
# in one transaction, after 2,000 to warm up) and per realtime.read of one channel (100
# events after a position, 2,000 calls), from /proc of the backend, the best of three.
cpu_per() { # DB WARM_SQL SQL N
    /usr/bin/python3 - "$@" <<'PY'
import subprocess, sys
db, warm, sql, n = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
p = subprocess.Popen(["psql", "-qXAt", "-v", "ON_ERROR_STOP=1", "-d", db], stdin=subprocess.PIPE,
                     stdout=subprocess.PIPE, text=True, bufsize=1)
def q(s):
    p.stdin.write(s + "\n"); p.stdin.flush(); return p.stdout.readline().strip()
pid = q("SELECT pg_backend_pid();")
def cpu():
    f = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    return int(f[11]) + int(f[12])
q(warm)
best = None
for _ in range(3):  # the best of three: other work on the machine only adds
    c0 = cpu(); q(sql); c1 = cpu()
    best = c1 - c0 if best is None else min(best, c1 - c0)
print(round(best * 1e6 / 100 / n, 1))
PY
}
pubsql() { echo "SELECT count(realtime.publish('bench', 'project:c' || (g % $chans + 1), 'e', '{\"a\": 1}')) FROM generate_series(1, $1) g;"; }
readsql() { echo "SELECT sum(n) FROM (SELECT (SELECT count(*) FROM realtime.read('bench', ARRAY['project:c' || (g % $chans + 1)], ARRAY[$half]::bigint[], 100, 0)) AS n FROM generate_series(1, $1) g) s;"; }
pub_del=$(cpu_per del "$(pubsql 2000)" "$(pubsql 30000)" 30000)
pub_part=$(cpu_per part "$(pubsql 2000)" "$(pubsql 30000)" 30000)
read_del=$(cpu_per del "$(readsql 200)" "$(readsql 2000)" 2000)
read_part=$(cpu_per part "$(readsql 200)" "$(readsql 2000)" 2000)
nparts=$(q -d part -c "SELECT count(*) FROM pg_inherits WHERE inhparent = 'realtime.realtime_events_log'::regclass")
# read cost against the number of partitions: empty daily partitions added after the
# last one (a read probes every partition)
parts_to() {
    q -d part <<SQL
DO \$\$
DECLARE
    lo timestamptz;
    n  name;
BEGIN
    WHILE (SELECT count(*) FROM pg_inherits WHERE inhparent = 'realtime.realtime_events_log'::regclass) < $1 LOOP
        SELECT max(hi) INTO lo FROM realtime.realtime_log_partitions;
        n := 'realtime_events_log_' || to_char(lo AT TIME ZONE 'UTC', 'YYYYMMDD"_"HH24MISS');
        EXECUTE format('CREATE TABLE realtime.%I (LIKE realtime.realtime_events_log INCLUDING DEFAULTS, '
                       'CONSTRAINT %I PRIMARY KEY (tenant_id, channel, seq))', n, n || '_pkey');
        EXECUTE format('ALTER TABLE realtime.realtime_events_log ATTACH PARTITION realtime.%I FOR VALUES FROM (%L) TO (%L)',
                       n, lo, lo + interval '1 day');
        INSERT INTO realtime.realtime_log_partitions (part_name, lo, hi) VALUES (n, lo, lo + interval '1 day');
    END LOOP;
END \$\$;
SQL
}
read_by_parts=""
for np in 10 15 20 30 50; do
    parts_to "$np" || exit 1
    read_by_parts="$read_by_parts $np:$(cpu_per part "$(readsql 200)" "$(readsql 2000)" 2000)"
done

# A channel's age cut on a busy channel: 1,000,000 events over the last 36 hours, cut at
# 18 hours; 013's bisection against 010's query (which walks back over every event newer
# than the cut).
hot=$(q -d part <<'SQL'
INSERT INTO realtime.realtime_channels (tenant_id, channel_name, channel_type, last_seq)
VALUES ('bench', 'hot:1', 'hot', 1000000);
INSERT INTO realtime.realtime_events_log (tenant_id, channel, seq, event_type, event_data, published_at, payload_bytes)
SELECT 'bench', 'hot:1', s, 'e', '{"a": 1}', now() - interval '36 hours' + (s::float8 / 1000000) * interval '36 hours' - interval '1 second', 8
  FROM generate_series(1, 1000000) s;
VACUUM ANALYZE realtime.realtime_events_log;
SELECT realtime.log_age_cut('bench', 'hot:1', 0, 1000000, now() - interval '18 hours');
SELECT clock_timestamp() AS t0 \gset
SELECT coalesce(realtime.log_age_cut('bench', 'hot:1', 0, 1000000, now() - interval '18 hours'), 0) AS b \gset
SELECT clock_timestamp() AS t1 \gset
SELECT coalesce(max(seq), 0) AS w FROM realtime.realtime_events_log WHERE tenant_id = 'bench' AND channel = 'hot:1'
   AND seq > 0 AND seq <= 1000000 AND published_at < now() - interval '18 hours' \gset
SELECT clock_timestamp() AS t2 \gset
SELECT format('%s ms (cut %s), walk %s ms (cut %s)',
              round(extract(epoch FROM :'t1'::timestamptz - :'t0'::timestamptz) * 1000, 1), :'b',
              round(extract(epoch FROM :'t2'::timestamptz - :'t1'::timestamptz) * 1000, 1), :'w');
SQL
) || exit 1

# Migrating an existing log: 013 on the 012 log left above (ATTACH reads it once to
# check the bound), and on a fresh copy whose bound was checked beforehand, online.
ms() { echo $(( ($(date +%s%N) - $1) / 1000000 )); }
mig_bytes=$(q -d del -c "SELECT pg_total_relation_size('realtime.realtime_events_log')")
mig_rows=$(q -d del -c "SELECT count(*) FROM realtime.realtime_events_log")
t=$(date +%s%N); PGDATABASE=del bin/pgcast-migrate --quiet || exit 1; mig_plain=$(ms "$t")
q -c "CREATE DATABASE mig" && PGDATABASE=mig bin/pgcast-migrate --quiet --dir "$work/sql12" && load mig >/dev/null || exit 1
mig2_bytes=$(q -d mig -c "SELECT pg_total_relation_size('realtime.realtime_events_log')")
bound=$(q -d mig -c "SELECT date_bin('1 day', now(), timestamptz '2000-01-01 00:00+00') + interval '1 day'")
t=$(date +%s%N)
q -d mig -c "ALTER TABLE realtime.realtime_events_log ADD CONSTRAINT realtime_events_log_partition_bound
               CHECK (published_at < '$bound') NOT VALID" \
        -c "ALTER TABLE realtime.realtime_events_log VALIDATE CONSTRAINT realtime_events_log_partition_bound" || exit 1
mig_validate=$(ms "$t")
t=$(date +%s%N); PGDATABASE=mig bin/pgcast-migrate --quiet || exit 1; mig_checked=$(ms "$t")

f() { echo "$2" | grep -o "$1=[0-9]*" | cut -d= -f2; }
mb() { awk -v b="$1" 'BEGIN{printf "%.1f MB", b/1048576}'; }
printf '\nprune of %s rows (half of %s, %s channels, four days), loaded machine:\n' "$((chans * half))" "$rows" "$chans"
printf '%-28s %14s %14s\n' "" "012 (DELETE)" "013 (DROP)"
printf '%-28s %14s %14s\n' "positions pruned" "$(f pruned "$del")" "$(f pruned "$part")"
printf '%-28s %11s ms %11s ms\n' "prune time" "$(f prune_ms "$del")" "$(f prune_ms "$part")"
printf '%-28s %14s %14s\n' "prune WAL" "$(mb "$(f prune_wal_bytes "$del")")" "$(mb "$(f prune_wal_bytes "$part")")"
printf '%-28s %11s ms %11s ms\n' "VACUUM after it, time" "$(f vacuum_ms "$del")" "$(f vacuum_ms "$part")"
printf '%-28s %14s %14s\n' "VACUUM after it, WAL" "$(mb "$(f vacuum_wal_bytes "$del")")" "$(mb "$(f vacuum_wal_bytes "$part")")"
printf '%-28s %14s %14s\n' "log size after (disk)" "$(mb "$(f log_bytes_after "$del")")" "$(mb "$(f log_bytes_after "$part")")"
printf '%-28s %14s %14s   (013: the partition holding the cut goes when its day has passed)\n' "rows left in the table" "$check_del" "$check_part"
echo "reads after the prune give the same events and gaps (timestamps aside): $reads_same"
echo "(012's freed space stays in the table for reuse; 013 gives the partition's files back)"
printf '%-28s %11s us %11s us\n' "publish, backend CPU" "$pub_del" "$pub_part"
printf '%-28s %11s us %11s us   (013: %s partitions)\n' "read of 100 events, CPU" "$read_del" "$read_part" "$nparts"
echo "013, read of 100 events, CPU by number of partitions (partitions:us):$read_by_parts"
echo "age cut of a channel of 1,000,000 events over 36 hours, at 18 hours: bisection $(echo "$hot" | tail -n1)"
printf '\nmigrating an existing log to 013 (the table is attached, not rewritten):\n'
printf '  %s rows, %s: pgcast-migrate %s ms (ATTACH reads the table once to check the bound)\n' \
    "$mig_rows" "$(mb "$mig_bytes")" "$mig_plain"
printf '  %s rows, %s: VALIDATE CONSTRAINT beforehand, publishers running: %s ms; then pgcast-migrate %s ms\n' \
    "$rows" "$(mb "$mig2_bytes")" "$mig_validate" "$mig_checked"
