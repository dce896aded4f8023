#!/bin/bash
# The hub on a private cluster: in-memory fan-out (1 channel x 10,000 subscribers, the
# events published in one transaction; deliveries/s into the subscriber queues) and
# publish-to-hub latency at 1,000 publishes/s through the database (p50/p99).
# BENCH_HUB_SUBS, BENCH_HUB_EVENTS, BENCH_HUB_RATE, BENCH_HUB_SECONDS change the sizes.
set -euo pipefail
cd "$(dirname "$0")/.."
subs=${BENCH_HUB_SUBS:-10000}
events=${BENCH_HUB_EVENTS:-300}
rate=${BENCH_HUB_RATE:-1000}
secs=${BENCH_HUB_SECONDS:-5}
[ -x build/release/bench/hub_fanout ] && [ -x bin/pgcast-migrate ] || make --no-print-directory >/dev/null
dir=$(mktemp -d /tmp/pgcast-bench-hub.XXXXXX)
trap 'scripts/pg-cluster.sh stop "$dir" >/dev/null 2>&1; rm -rf "$dir"' EXIT
eval "$(scripts/pg-cluster.sh start "$dir")"
export PGCAST_DATABASE_URL="host=$PGHOST port=$PGPORT user=postgres dbname=postgres"
bin/pgcast-migrate --quiet

echo "# aim: >= 2,000,000 deliveries/s in memory (1 channel x $subs subscribers)"
build/release/bench/hub_fanout fanout "$subs" "$events"
echo "# aim: p99 <= 5 ms publish-to-hub at $rate publishes/s"
build/release/bench/hub_fanout latency "$rate" "$secs"
