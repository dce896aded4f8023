#!/bin/bash
# realtime.read, wide against narrow: a poll of 20 channels with limit=30 against a poll
# of one channel with the same number of events in its answer, with the reader of
# migration 007 (each channel reads `limit` full payloads before the overall limit)
# and the one of 008 (positions first, payloads of the returned rows only). Prints
# microseconds per call (the statement pgc_db_read sends, payloads fetched) and the
# buffers EXPLAIN (ANALYZE, BUFFERS) counts for one call (in a fresh session, so they
# include the catalog reads of the first call). Figures only, no assertion.
#
#   bench/bench_read.sh [PAYLOAD_BYTES ...]   (default: 1000 4000)
set -uo pipefail
cd "$(dirname "$0")/.." || exit 1
[ -x bin/pgcast-migrate ] || make -s >/dev/null || exit 1
work=$(mktemp -d /tmp/pgcast-bench-read.XXXXXX)
chmod 0755 "$work"
trap 'scripts/pg-cluster.sh stop "$work/pg" >/dev/null 2>&1; rm -rf "$work"' EXIT
env_out=$(scripts/pg-cluster.sh start "$work/pg") || exit 1
eval "$env_out"
bin/pgcast-migrate --quiet || exit 1
q() { psql -qXAt -v ON_ERROR_STOP=1 "$@"; }

# 007's reader, kept under another name to compare with
q -c "CREATE SCHEMA bench_old" || exit 1
sed -n '/^CREATE OR REPLACE FUNCTION realtime.read(/,/^END \$\$;/p' sql/007_poll_plans.sql |
    sed 's/^CREATE OR REPLACE FUNCTION realtime.read(/CREATE FUNCTION bench_old.read(/' | q || exit 1

q <<'SQL' || exit 1
CREATE FUNCTION bench_time(p_sql text, p_chans int, p_limit int, p_iters int) RETURNS float8
LANGUAGE plpgsql AS $$
DECLARE
    t0 timestamptz;
    v bigint;
    c text[] := ARRAY(SELECT 'project:b' || g FROM generate_series(1, p_chans) g);
    a bigint[] := array_fill(0::bigint, ARRAY[p_chans]);
BEGIN
    EXECUTE p_sql INTO v USING 'bench', c, a, p_limit; -- warm: plans and caches
    t0 := clock_timestamp();
    FOR i IN 1..p_iters LOOP
        EXECUTE p_sql INTO v USING 'bench', c, a, p_limit;
    END LOOP;
    RETURN extract(epoch FROM clock_timestamp() - t0) * 1e6 / p_iters;
END $$;
SQL

old_sql='SELECT sum(octet_length(payload)) FROM bench_old.read($1, $2, $3, $4)'
new_sql='SELECT sum(octet_length(payload)) FROM realtime.read($1, $2, $3, $4, 1048576::bigint)'
buffers() { # FUNCTION-CALL -> shared buffers hit+read of one call
    q -c "EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON) SELECT sum(octet_length(payload)) FROM $1" |
        python3 -c 'import json,sys; p=json.load(sys.stdin)[0]["Plan"]; print(p.get("Shared Hit Blocks",0)+p.get("Shared Read Blocks",0))'
}
chans20="ARRAY(SELECT 'project:b' || g FROM generate_series(1, 20) g)"

sizes=("$@")
[ ${#sizes[@]} -gt 0 ] || sizes=(1000 4000)
for bytes in "${sizes[@]}"; do
    q -c "TRUNCATE realtime.realtime_events_log; DELETE FROM realtime.realtime_channels WHERE tenant_id = 'bench'" || exit 1
    # 20 channels x 200 events, published round-robin (so a wide read interleaves them);
    # payloads of random hex, which does not compress
    q -c "SELECT realtime.publish('bench', 'project:b' || (g % 20 + 1), 'e',
                 jsonb_build_object('g', g, 'pad', (SELECT string_agg(md5(random()::text || g || k), '')
                                                     FROM generate_series(1, $bytes / 32) k)))
            FROM generate_series(0, 3999) g" >/dev/null || exit 1
    q -c "VACUUM ANALYZE realtime.realtime_events_log" || exit 1
    echo "payloads of ~$bytes bytes, 20 channels x 200 events; 30 events per answer"
    printf '  %-34s %12s %12s %9s\n' "" "us/call" "buffers" "wide/1ch"
    for fn in old new; do
        sql=$old_sql; call="bench_old.read('bench', %s, %s, 30)"; label="007 (limit per channel, payloads)"
        [ $fn = new ] && { sql=$new_sql; call="realtime.read('bench', %s, %s, 30, 1048576)"; label="008 (positions first)"; }
        # the median of 7 rounds of 200 calls (a shared machine is noisy)
        one=$(q -c "SELECT round(percentile_cont(0.5) WITHIN GROUP (ORDER BY t)::numeric, 1)
                      FROM (SELECT bench_time(\$\$$sql\$\$, 1, 30, 200) AS t FROM generate_series(1, 7)) r")
        wide=$(q -c "SELECT round(percentile_cont(0.5) WITHIN GROUP (ORDER BY t)::numeric, 1)
                       FROM (SELECT bench_time(\$\$$sql\$\$, 20, 30, 200) AS t FROM generate_series(1, 7)) r")
        # shellcheck disable=SC2059
        b1=$(buffers "$(printf "$call" "ARRAY['project:b1']" "ARRAY[0]::bigint[]")")
        # shellcheck disable=SC2059
        b20=$(buffers "$(printf "$call" "$chans20" "array_fill(0::bigint, ARRAY[20])")")
        printf '  %-34s %12s %12s\n' "$label, 1 channel" "$one" "$b1"
        printf '  %-34s %12s %12s %8.1fx\n' "$label, 20 channels" "$wide" "$b20" "$(echo "$wide / $one" | bc -l)"
    done
done
