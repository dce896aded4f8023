# Shared set-up of the HTTP benchmarks: source it from bench/bench_*.sh.
#   bench_setup NAME   a temp dir, a private migrated cluster, lighttpd with the shipped
#                      config and the release handlers (tests/lib/webserver.sh); all
#                      stopped and removed on exit, plus whatever bench_on_exit names.
#   nginx_start (nchan, the reference server); cpu_ticks/rss_kb PIDS, field NAME LINE,
#   wait_for FILE PATTERN, median, ratio A B, bench_pub_conninfo: see below.
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

# nginx + nchan for the comparisons, on a free loopback port, one worker (lighttpd runs
# one process too), files in $PGCAST_TEST_WORK:
#   nginx_start 'LOCATIONS'   the server block's lines (location = /sub { nchan_... })
#                             -> $NGINX_PORT, $NGINX_PID; 1 when it does not listen
#   nginx_pids                the master and its workers (for RSS and CPU figures)
#   nginx_stop                for bench_on_exit=nginx_stop (set before bench_setup)
NGINX_PID=
nginx_start() {
    NGINX_PORT=$(scripts/free-port.sh)
    cat >"$PGCAST_TEST_WORK/nginx.conf" <<EOT
load_module /usr/lib/nginx/modules/ngx_nchan_module.so;
worker_processes 1;
worker_rlimit_nofile $(ulimit -Hn);
pid $PGCAST_TEST_WORK/nginx.pid;
error_log $PGCAST_TEST_WORK/nginx-error.log warn;
events { worker_connections 20000; }
http {
    access_log off;
    server {
        listen 127.0.0.1:$NGINX_PORT;
$1
    }
}
EOT
    nginx -c "$PGCAST_TEST_WORK/nginx.conf" -p "$PGCAST_TEST_WORK" -g 'daemon off;' 2>>"$PGCAST_TEST_WORK/nginx.out" &
    NGINX_PID=$!
    for _ in $(seq 1 100); do
        (exec 3<>"/dev/tcp/127.0.0.1/$NGINX_PORT") 2>/dev/null && return 0
        sleep 0.05
    done
    echo "nginx did not listen:" >&2
    cat "$PGCAST_TEST_WORK/nginx.out" "$PGCAST_TEST_WORK/nginx-error.log" >&2 2>/dev/null
    return 1
}
nginx_pids() { echo "$NGINX_PID" $(pgrep -P "$NGINX_PID"); }
nginx_stop() {
    [ -n "$NGINX_PID" ] || return 0
    kill "$NGINX_PID" 2>/dev/null
    wait "$NGINX_PID" 2>/dev/null
    NGINX_PID=
}

# ---- measuring servers (/proc) and load-generator output
hz=$(getconf CLK_TCK)
# utime + stime of the processes, in clock ticks
cpu_ticks() { local t=0; for p in "$@"; do set -- $(cut -d' ' -f14,15 "/proc/$p/stat" 2>/dev/null); t=$((t + ${1:-0} + ${2:-0})); done; echo $t; }
rss_kb() { local t=0; for p in "$@"; do t=$((t + $(awk '/VmRSS/{print $2}' "/proc/$p/status" 2>/dev/null || echo 0))); done; echo $t; }
# field NAME "OUTPUT": the value of NAME=value in a loadgen line (ms/s suffixes dropped)
field() { echo "$2" | grep -o "\(^\| \)$1=[0-9.]*" | tail -n1 | cut -d= -f2; }
# wait_for FILE PATTERN [SECONDS]: until a line of FILE matches (a background job's output)
wait_for() {
    local i
    for ((i = 0; i < ${3:-120} * 20; i++)); do grep -q "$2" "$1" 2>/dev/null && return 0; sleep 0.05; done
    return 1
}
# median VALUES...: the middle one (the lower middle of an even count); n/a when none
median() { printf '%s\n' "$@" | grep -E '^[0-9.]+$' | sort -g | awk '{a[NR]=$1} END{print NR ? a[int((NR+1)/2)] : "n/a"}'; }
# ratio A B: A/B with two decimals, "n/a" when B is not positive
ratio() { awk -v a="$1" -v b="$2" 'BEGIN{ if (b+0 > 0) printf "%.2f", a/b; else print "n/a" }'; }
# The conninfo pgcast's benchmark publishers use: commits without waiting for the WAL
# flush (synchronous_commit=off, a per-session choice open to any publisher), as nchan's
# publish is not durable either; BENCH_SYNC_COMMIT=on times durable commits instead.
bench_pub_conninfo() { echo "$PGCAST_DATABASE_URL options='-c synchronous_commit=${BENCH_SYNC_COMMIT:-off}'"; }
