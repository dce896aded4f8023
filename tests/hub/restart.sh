#!/bin/bash
# The hub across a full restart of the PostgreSQL server: a private cluster of its own
# (the shared one must not restart under the other tests), stopped mid-run and started again.
cd "$(dirname "$0")/../.." || exit 1
dir="$PGCAST_TEST_WORK/hub-restart"
trap 'scripts/pg-cluster.sh stop "$dir" >/dev/null 2>&1' EXIT
eval "$(scripts/pg-cluster.sh start "$dir")" || exit 1
export PGCAST_DATABASE_URL="host=$PGHOST port=$PGPORT user=postgres dbname=postgres"
export PGCAST_TEST_OWNER_URL="$PGCAST_DATABASE_URL"
"$PGCAST_BIN/pgcast-migrate" --quiet || exit 1
export PGCAST_TEST_RESTART_CMD="scripts/pg-cluster.sh stop '$dir' && scripts/pg-cluster.sh start '$dir' >/dev/null"
build/asan/tests/test_hub  # not exec: the EXIT trap must stop the cluster
