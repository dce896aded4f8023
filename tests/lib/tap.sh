# TAP helpers for shell tests: source this file.
#   ok_if "what" CMD...     passes when CMD exits 0
#   is "what" GOT WANT      passes when the strings are equal
#   like "what" GOT REGEX   passes when GOT matches the extended regex
#   psql_q SQL              runs SQL in the test's database, prints unaligned rows
#   stop_pids PID...        SIGTERM to each, SIGKILL to what is still there after 5 s
#   wait_port PORT          waits up to 10 s for a listener on 127.0.0.1:PORT (1 if none)
# Each test runs in its own database (PGDATABASE, PGCAST_DATABASE_URL set by tests/run.sh).
_tap_n=0
_tap_failed=0
ok()     { _tap_n=$((_tap_n + 1)); echo "ok $_tap_n - $*"; }
not_ok() { _tap_n=$((_tap_n + 1)); _tap_failed=$((_tap_failed + 1)); echo "not ok $_tap_n - $*"; }
ok_if()  { local what=$1; shift; if "$@"; then ok "$what"; else not_ok "$what"; fi; }
is() {
    if [ "$2" == "$3" ]; then ok "$1"; else not_ok "$1"; echo "#   got:  '$2'"; echo "#   want: '$3'"; fi
}
like() {
    if [[ "$2" =~ $3 ]]; then ok "$1"; else not_ok "$1"; echo "#   got:  '$2'"; echo "#   want match: '$3'"; fi
}
psql_q() { psql -qXAt -v ON_ERROR_STOP=1 -c "$1"; }
stop_pids() {
    local p
    for p in "$@"; do kill -TERM "$p" 2>/dev/null; done
    for p in "$@"; do
        for _ in $(seq 1 100); do kill -0 "$p" 2>/dev/null || break; sleep 0.05; done
        kill -KILL "$p" 2>/dev/null
    done
    return 0
}
wait_port() {
    for _ in $(seq 1 200); do
        (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0
        sleep 0.05
    done
    return 1
}
tap_done() { [ "$_tap_failed" = 0 ]; exit $?; }
