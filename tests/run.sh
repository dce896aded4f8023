#!/bin/bash
# Runs every pgcast test, several at a time (see below), and ends with one line: "N passed, N failed".
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
    jobs -p | xargs -r kill 2>/dev/null
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

# Tests run side by side, PGCAST_TEST_JOBS at a time (default: the number of cores, at
# least 2): most of a test's time is waiting on timers and servers, and every test has
# its own database, ports and files. A test that must have the machine to itself (it
# installs into the system, or builds into the tree) says so with a line "# test: alone"
# among its first ten lines; those run first, one at a time.
jobs=${PGCAST_TEST_JOBS:-$(nproc)}
[ "$jobs" -ge 2 ] 2>/dev/null || jobs=2
results="$work/results"
mkdir -p "$results"

# run_test N PATH: runs one test; writes "P F SECS" to $results/N.sum and what to print
# (the pass line, or the failure with its log's tail) to $results/N.out.
run_test() {
    local n=$1 t=$2 name log db start cmd rc secs p f
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
        timeout -k 10 "$per_test_timeout" "${cmd[@]}" >"$log" 2>&1 </dev/null
    rc=$?
    secs=$(( $(date +%s) - start ))
    p=$(grep -cE '^ok [0-9]+' "$log")
    f=$(grep -cE '^not ok [0-9]+' "$log")
    if [ "$rc" != 0 ] && [ "$f" = 0 ]; then f=1; echo "not ok - exited with status $rc" >>"$log"; fi
    if [ "$p" = 0 ] && [ "$f" = 0 ]; then f=1; echo "not ok - reported no test" >>"$log"; fi
    if [ "$f" -gt 0 ]; then
        {
            printf 'FAIL %-55s %3d ok %3d failed  %4ss\n' "$t" "$p" "$f" "$secs"
            grep -E '^not ok' "$log" | head -n 20 | sed 's/^/     /'
            echo "     --- last lines of $log:"
            tail -n 25 "$log" | sed 's/^/     | /'
        } >"$results/$n.out"
    else
        printf 'pass %-55s %3d ok  %4ss\n' "$t" "$p" "$secs" >"$results/$n.out"
    fi
    psql -qX -c "DROP DATABASE IF EXISTS \"$db\" WITH (FORCE)" >/dev/null 2>&1
    echo "$p $f $secs" >"$results/$n.sum"
}

alone=() shared=()
for t in "${tests[@]}"; do
    [ -n "$pattern" ] && [[ "$t" != *"$pattern"* ]] && continue
    if [[ "$t" != build/* ]] && head -n 10 "$t" | grep -q '^# test: alone'; then alone+=("$t"); else shared+=("$t"); fi
done

passed=0 failed=0 n=0
failed_tests=()
declare -A running=() # pid -> "N PATH"
# collect: waits for one running test to end and prints its result
collect() {
    local pid k t p f secs
    wait -n -p pid "${!running[@]}" 2>/dev/null
    [ -n "${pid:-}" ] && [ -n "${running[$pid]:-}" ] || return 1
    read -r k t <<<"${running[$pid]}"
    unset "running[$pid]"
    cat "$results/$k.out"
    read -r p f secs <"$results/$k.sum" 2>/dev/null || { p=0 f=1; }
    passed=$((passed + p)); failed=$((failed + f))
    [ "$f" -gt 0 ] && failed_tests+=("$t")
    return 0
}
for t in "${alone[@]}"; do
    n=$((n + 1))
    run_test "$n" "$t" &
    running[$!]="$n $t"
    collect
done
for t in "${shared[@]}"; do
    while [ "${#running[@]}" -ge "$jobs" ]; do collect || break; done
    n=$((n + 1))
    run_test "$n" "$t" &
    running[$!]="$n $t"
done
while [ "${#running[@]}" -gt 0 ]; do collect || break; done

echo
[ ${#failed_tests[@]} -gt 0 ] && echo "failed: ${failed_tests[*]}"
echo "$passed passed, $failed failed"
[ "$failed" = 0 ] && [ "$n" -gt 0 ]
