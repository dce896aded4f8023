#!/bin/bash
# Runs every pgcast test and ends with one line: "N passed, N failed".
#
# One private PostgreSQL cluster serves the whole run (each test gets its own database,
# copied from a migrated template); it is stopped and removed on exit, whatever happens.
# A test is any of:
#   build/asan/tests/test_*          C unit tests (AddressSanitizer + UBSan build)
#   tests/{sql,integration,...}/*.sh shell tests
#   tests/**/test_*.py               Python tests (Debian's /usr/bin/python3)
# and reports TAP lines ("ok N - what" / "not ok N - what") on stdout.
#
#   tests/run.sh [PATTERN]   run only the tests whose path contains PATTERN
set -uo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
export PGCAST_ROOT="$ROOT"
export PGCAST_BIN="${PGCAST_BIN:-$ROOT/build/asan/bin}"
export PGCAST_RELEASE_BIN="$ROOT/bin"
export ASAN_OPTIONS="${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=0:halt_on_error=1}"
export UBSAN_OPTIONS="${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}"
pattern="${1:-${T:-}}"
per_test_timeout="${PGCAST_TEST_TIMEOUT:-600}"

work=$(mktemp -d /tmp/pgcast-test.XXXXXX)
chmod 0755 "$work"
export PGCAST_TEST_WORK="$work"
logs="$ROOT/build/test-logs"
rm -rf "$logs"; mkdir -p "$logs"

cleanup() {
    "$ROOT/scripts/pg-cluster.sh" stop "$work/pg" >/dev/null 2>&1
    rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

if ! env_out=$("$ROOT/scripts/pg-cluster.sh" start "$work/pg"); then
    echo "tests: could not start the private PostgreSQL cluster" >&2
    echo "0 passed, 1 failed"
    exit 1
fi
eval "$env_out"
export PGCAST_TEST_PGHOST="$PGHOST" PGCAST_TEST_PGPORT="$PGPORT"
psql -qX -v ON_ERROR_STOP=1 -c "CREATE DATABASE pgcast_template" >/dev/null || exit 1
# The handlers and the sidecar of every test run as a runtime role with only what
# pgcast-migrate grants it (docs/deploy.md): a missing grant fails the tests that need it.
if ! PGDATABASE=pgcast_template "$PGCAST_BIN/pgcast-migrate" --quiet --runtime-role pgcast_runtime \
        --publisher-role pgcast_publisher; then
    echo "tests: migrations failed on a fresh database" >&2
    echo "0 passed, 1 failed"
    exit 1
fi
psql -qX -v ON_ERROR_STOP=1 -c "CREATE ROLE pgcast_test_app LOGIN IN ROLE pgcast_runtime" >/dev/null || exit 1
export PGCAST_TEST_DB_USER=pgcast_test_app

tests=()
for f in build/asan/tests/test_*; do [ -x "$f" ] && tests+=("$f"); done
while IFS= read -r f; do tests+=("$f"); done < <(find tests -mindepth 2 -name '*.sh' -path 'tests/*/*' ! -path 'tests/lib/*' | sort)
while IFS= read -r f; do tests+=("$f"); done < <(find tests -mindepth 2 -name 'test_*.py' ! -path 'tests/lib/*' | sort)

passed=0 failed=0 n=0
failed_tests=()
for t in "${tests[@]}"; do
    [ -n "$pattern" ] && [[ "$t" != *"$pattern"* ]] && continue
    n=$((n + 1))
    name=$(echo "$t" | sed 's|^build/asan/||; s|/|_|g')
    log="$logs/$name.log"
    db="t${n}_$(echo "$name" | tr -c 'a-z0-9_' '_' | cut -c1-40)"
    psql -qX -c "CREATE DATABASE \"$db\" TEMPLATE pgcast_template" >/dev/null 2>&1
    start=$(date +%s)
    case "$t" in
        *.py) cmd=(/usr/bin/python3 "$t") ;;
        *.sh) cmd=(bash "$t") ;;
        *)    cmd=("$t") ;;
    esac
    PGDATABASE="$db" PGCAST_DATABASE_URL="host=$PGHOST port=$PGPORT user=$PGCAST_TEST_DB_USER dbname=$db" \
        PGCAST_TEST_OWNER_URL="host=$PGHOST port=$PGPORT user=postgres dbname=$db" \
        timeout -k 10 "$per_test_timeout" "${cmd[@]}" >"$log" 2>&1
    rc=$?
    secs=$(( $(date +%s) - start ))
    p=$(grep -cE '^ok [0-9]+' "$log")
    f=$(grep -cE '^not ok [0-9]+' "$log")
    if [ "$rc" != 0 ] && [ "$f" = 0 ]; then f=1; echo "not ok - exited with status $rc" >>"$log"; fi
    if [ "$p" = 0 ] && [ "$f" = 0 ]; then f=1; echo "not ok - reported no test" >>"$log"; fi
    passed=$((passed + p)); failed=$((failed + f))
    if [ "$f" -gt 0 ]; then
        failed_tests+=("$t")
        printf 'FAIL %-55s %3d ok %3d failed  %4ss\n' "$t" "$p" "$f" "$secs"
        grep -E '^not ok' "$log" | head -n 20 | sed 's/^/     /'
        echo "     --- last lines of $log:"
        tail -n 25 "$log" | sed 's/^/     | /'
    else
        printf 'pass %-55s %3d ok  %4ss\n' "$t" "$p" "$secs"
    fi
    psql -qX -c "DROP DATABASE IF EXISTS \"$db\" WITH (FORCE)" >/dev/null 2>&1
done

echo
[ ${#failed_tests[@]} -gt 0 ] && echo "failed: ${failed_tests[*]}"
echo "$passed passed, $failed failed"
[ "$failed" = 0 ] && [ "$n" -gt 0 ]
