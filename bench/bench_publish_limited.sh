#!/bin/bash
# What the per-subject publish rate limit costs: realtime.publish against
# realtime.publish_limited (the token bucket row taken in the same statement) with a
# rate high enough never to refuse, with pgbench on a private cluster (fsync on,
# synchronous_commit off as the handlers' publishes would usually be bounded by it):
# 1 and 4 publishers on distinct channels, each publisher one subject, and 4 publishers
# sharing one subject (they queue on its bucket row). BENCH_SECONDS sets each run (5).
set -euo pipefail
cd "$(dirname "$0")/.."
secs=${BENCH_SECONDS:-5}
PGBIN=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -n1)
[ -x bin/pgcast-migrate ] || make --no-print-directory >/dev/null
dir=$(mktemp -d /tmp/pgcast-bench-limited.XXXXXX)
trap 'scripts/pg-cluster.sh stop "$dir" >/dev/null 2>&1; rm -rf "$dir"' EXIT
eval "$(PGCAST_PG_FSYNC=on scripts/pg-cluster.sh start "$dir")"
export PGCAST_DATABASE_URL="host=$PGHOST port=$PGPORT user=postgres dbname=postgres"
bin/pgcast-migrate --quiet

s="$dir/scripts"; mkdir -p "$s"
echo "SELECT realtime.publish('bench', 'bench:c' || :client_id, 'e', '{\"i\": 1}');" >"$s/plain.sql"
echo "SELECT seq FROM realtime.publish_limited('sub:s' || :client_id, 1000000, 1000000, 'bench', 'bench:l' || :client_id, 'e', '{\"i\": 1}');" >"$s/limited.sql"
echo "SELECT seq FROM realtime.publish_limited('sub:shared', 1000000, 1000000, 'bench', 'bench:s' || :client_id, 'e', '{\"i\": 1}');" >"$s/shared.sql"

run() { # script clients sync
    PGOPTIONS="-c synchronous_commit=$3" "$PGBIN/pgbench" -n -f "$s/$1.sql" -c "$2" -j "$(( $2 < 2 ? 1 : 2 ))" \
        -T "$secs" 2>/dev/null | awk '/^tps = /{printf "%d", $3}'
}

echo "publish vs publish_limited (tx/s = publishes/s), ${secs}s per run, fsync on, $(nproc) cores"
printf '%-44s %14s %14s\n' "workload" "sync_commit on" "sync_commit off"
for c in 1 4; do
    printf '%-44s %14s %14s\n' "publish, distinct channels, $c publishers" "$(run plain $c on)" "$(run plain $c off)"
    printf '%-44s %14s %14s\n' "publish_limited, one subject each, $c" "$(run limited $c on)" "$(run limited $c off)"
done
printf '%-44s %14s %14s\n' "publish_limited, 4 publishers, one subject" "$(run shared 4 on)" "$(run shared 4 off)"
