#!/bin/bash
# make run: the demo. A private PostgreSQL cluster in .run/pg of the checkout (kept between
# runs), migrated; then it prints how to publish and read events, and waits. Ctrl-C stops
# everything it started. PGCAST_RUN_DIR moves the folder; PGCAST_PG_PORT picks the port.
set -uo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
run=${PGCAST_RUN_DIR:-$ROOT/.run}
mkdir -p "$run"
run=$(cd "$run" && pwd)

# One demo at a time per folder: flock on a lock file, released when this shell exits.
exec 9>"$run/lock"
if ! flock -n 9; then
    echo "pgcast: a demo is already running from $run (pid $(cat "$run/pid" 2>/dev/null || echo '?'))." >&2
    echo "pgcast: stop it with Ctrl-C in its terminal, or: kill $(cat "$run/pid" 2>/dev/null || echo PID)" >&2
    exit 1
fi
echo $$ >"$run/pid"

pids=()
stop() {
    trap - INT TERM EXIT
    echo
    echo "pgcast: stopping"
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null; done
    for p in "${pids[@]}"; do wait "$p" 2>/dev/null; done
    scripts/pg-cluster.sh stop "$run/pg"
    rm -f "$run/pid"
    exit 0
}
trap stop INT TERM EXIT

[ -n "${PGCAST_PG_PORT:-}" ] && port_arg=$PGCAST_PG_PORT || port_arg=
if ! env_out=$(scripts/pg-cluster.sh start "$run/pg" $port_arg); then
    echo "pgcast: could not start PostgreSQL (see $run/pg/server.log)" >&2
    exit 1
fi
eval "$env_out"
export PGCAST_DATABASE_URL="host=$PGHOST port=$PGPORT user=postgres dbname=postgres"
bin/pgcast-migrate --quiet || exit 1

cat <<EOT

pgcast demo is running.
  PostgreSQL: $PGCAST_DATABASE_URL  (data in $run/pg)

Publish an event:
  psql "$PGCAST_DATABASE_URL" -c "SELECT realtime.publish('demo', 'project:demo', 'project.updated', '{\"hello\": \"world\"}')"

Read the channel from the start:
  psql "$PGCAST_DATABASE_URL" -c "SELECT * FROM realtime.read('demo', ARRAY['project:demo'], ARRAY[0]::bigint[], 100)"

Press Ctrl-C to stop.
EOT
while :; do sleep 3600 & wait $!; done
