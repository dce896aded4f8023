# Shared set-up of the HTTP benchmarks: source it from bench/bench_*.sh.
#   bench_setup NAME   a temp dir, a private migrated cluster, lighttpd with the shipped
#                      config and the release handlers (tests/lib/webserver.sh); all
#                      stopped and removed on exit, plus whatever bench_on_exit names.
set -uo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
export PGCAST_ROOT=$(pwd) PGCAST_BIN=$(pwd)/bin
bench_on_exit=:

bench_cleanup() {
    $bench_on_exit
    web_stop_all 2>/dev/null
    scripts/pg-cluster.sh stop "$PGCAST_TEST_WORK/pg" >/dev/null 2>&1
    rm -rf "$PGCAST_TEST_WORK"
}

bench_setup() {
    export PGCAST_TEST_WORK=$(mktemp -d "/tmp/pgcast-bench-$1.XXXXXX")
    chmod 0755 "$PGCAST_TEST_WORK"
    trap bench_cleanup EXIT
    eval "$(scripts/pg-cluster.sh start "$PGCAST_TEST_WORK/pg")" || exit 1
    export PGCAST_DATABASE_URL="host=127.0.0.1 port=$PGPORT user=postgres dbname=postgres"
    bin/pgcast-migrate --quiet || exit 1
    ulimit -n "$(ulimit -Hn)"
    source tests/lib/webserver.sh
    web_init
    trap bench_cleanup EXIT
}
