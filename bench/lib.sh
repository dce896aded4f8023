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
