#!/bin/bash
# Publish throughput through realtime.publish on a private cluster (fsync on), with
# pgbench: single-event transactions/s with 1, 4 and 16 publishers on one channel and on
# distinct channels, events/s with 100 publishes per transaction, each with
# synchronous_commit on and off; and the cost of the NOTIFY itself (the same publish
# without it). BENCH_SECONDS sets each run's length (default 5).
set -euo pipefail
cd "$(dirname "$0")/.."
secs=${BENCH_SECONDS:-5}
PGBIN=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -n1)
dir=$(mktemp -d /tmp/pgcast-bench.XXXXXX)
trap 'scripts/pg-cluster.sh stop "$dir" >/dev/null 2>&1; rm -rf "$dir"' EXIT
eval "$(PGCAST_PG_FSYNC=on scripts/pg-cluster.sh start "$dir")"
export PGCAST_DATABASE_URL="host=$PGHOST port=$PGPORT user=postgres dbname=postgres"
bin/pgcast-migrate --quiet

# The same work as realtime.publish minus the NOTIFY, to show what the notify lock costs.
psql -qX -v ON_ERROR_STOP=1 >/dev/null <<'SQL'
CREATE FUNCTION bench_publish_without_notify(p_tenant text, p_channel text, p_type text, p_payload jsonb)
RETURNS bigint LANGUAGE plpgsql AS $$
DECLARE v_seq bigint;
BEGIN
    INSERT INTO realtime.realtime_channels AS c (tenant_id, channel_name, channel_type, last_seq)
    VALUES (p_tenant, p_channel, realtime.channel_type(p_channel), 1)
    ON CONFLICT (tenant_id, channel_name) DO UPDATE SET last_seq = c.last_seq + 1, last_activity_at = now()
    RETURNING c.last_seq INTO v_seq;
    INSERT INTO realtime.realtime_events_log (tenant_id, channel, seq, event_type, event_data, published_at)
    VALUES (p_tenant, p_channel, v_seq, p_type, p_payload, clock_timestamp());
    RETURN v_seq;
END $$;
SQL

s="$dir/scripts"; mkdir -p "$s"
echo "SELECT realtime.publish('bench', 'bench:one', 'e', '{\"i\": 1}');" >"$s/one.sql"
echo "SELECT realtime.publish('bench', 'bench:c' || :client_id, 'e', '{\"i\": 1}');" >"$s/distinct.sql"
echo "SELECT realtime.publish('bench', 'bench:b' || :client_id, 'e', jsonb_build_object('i', g)) FROM generate_series(1, 100) g;" >"$s/batch.sql"
echo "SELECT bench_publish_without_notify('bench', 'bench:n' || :client_id, 'e', '{\"i\": 1}');" >"$s/nonotify.sql"

# prints transactions per second
run() { # script clients sync
    PGOPTIONS="-c synchronous_commit=$3" "$PGBIN/pgbench" -n -f "$s/$1.sql" -c "$2" -j "$(( $2 < 2 ? 1 : 2 ))" \
        -T "$secs" 2>/dev/null | awk '/^tps = /{printf "%d", $3}'
}

echo "realtime.publish throughput, ${secs}s per run, fsync on, $(nproc) cores (pgbench on the same machine)"
printf '%-34s %14s %14s\n' "workload" "sync_commit on" "sync_commit off"
for c in 1 4 16; do
    printf '%-34s %14s %14s\n' "1 channel, $c publishers (tx/s)" "$(run one $c on)" "$(run one $c off)"
done
for c in 1 4 16; do
    printf '%-34s %14s %14s\n' "distinct channels, $c publishers" "$(run distinct $c on)" "$(run distinct $c off)"
done
for c in 1 4; do
    on=$(run batch $c on); off=$(run batch $c off)
    printf '%-34s %14s %14s\n' "100 per tx, $c publishers (events/s)" "$((on * 100))" "$((off * 100))"
done
for c in 1 4; do
    printf '%-34s %14s %14s\n' "no NOTIFY, distinct, $c publishers" "$(run nonotify $c on)" "$(run nonotify $c off)"
done
echo
echo "aims: >= 5,000 single-event publishes/s and >= 20,000 events/s batched on 2 cores;"
echo "reference: Centrifugo's PostgreSQL broker reports ~17,000 publishes/s on a laptop."
echo "The 'no NOTIFY' rows are the same writes without the wake-up: the difference is the"
echo "cost of PostgreSQL's cluster-wide notify lock, held through each commit's WAL flush."
