#!/bin/bash
# A private PostgreSQL cluster in a folder: for tests (throwaway) and for `make run` (kept).
#
#   pg-cluster.sh start DIR [PORT]   initdb if DIR has no cluster, start it on 127.0.0.1:PORT
#                                    and a socket in DIR; prints shell exports (PGHOST ...)
#   pg-cluster.sh stop DIR           stop it (fast shutdown)
#   pg-cluster.sh kill DIR           stop it immediately (crash-style, for tests)
#   pg-cluster.sh env DIR            prints the exports of a running cluster
#   pg-cluster.sh status DIR         exit 0 if the cluster in DIR is running
#
# initdb and postgres refuse to run as root; as root, the cluster belongs to the
# unprivileged 'postgres' user that Debian's package creates.
set -euo pipefail

PGBIN=${PGBIN:-$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n1)}
[ -x "$PGBIN/initdb" ] || { echo "pg-cluster: no PostgreSQL server binaries (apt-get install postgresql)" >&2; exit 1; }

as_owner() {
    if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi
}

cmd=${1:?usage: pg-cluster.sh start|stop|kill|env|status DIR [PORT]}
dir=${2:?usage: pg-cluster.sh start|stop|kill|env|status DIR [PORT]}
mkdir -p "$dir"
dir=$(cd "$dir" && pwd)
data="$dir/data"

print_env() {
    local port
    port=$(cat "$dir/port")
    echo "export PGHOST='$dir' PGPORT='$port' PGUSER=postgres PGDATABASE=postgres"
    echo "export PGCAST_PG_DIR='$dir'"
}

case "$cmd" in
start)
    port=${3:-$( [ -f "$dir/port" ] && cat "$dir/port" || "$(dirname "$0")/free-port.sh")}
    if [ "$(id -u)" = 0 ]; then chown postgres: "$dir"; chmod 0700 "$dir"; fi
    if [ ! -f "$data/PG_VERSION" ]; then
        as_owner "$PGBIN/initdb" -D "$data" -U postgres --auth=trust -E UTF8 --locale=C.UTF-8 >"$dir/initdb.log" 2>&1 \
            || { cat "$dir/initdb.log" >&2; exit 1; }
        {
            echo "listen_addresses = '127.0.0.1'"
            echo "unix_socket_directories = '$dir'"
            echo "max_connections = ${PGCAST_PG_MAX_CONNECTIONS:-300}"
            echo "shared_buffers = 128MB"
            echo "fsync = ${PGCAST_PG_FSYNC:-on}"
            echo "logging_collector = off"
            echo "log_min_messages = warning"
        } | as_owner tee -a "$data/postgresql.conf" >/dev/null
    fi
    echo "$port" > "$dir/port"
    as_owner "$PGBIN/pg_ctl" -D "$data" -l "$dir/server.log" -o "-p $port" -w -t 60 start >/dev/null \
        || { tail -n 30 "$dir/server.log" >&2; exit 1; }
    print_env
    ;;
stop)
    [ -f "$data/postmaster.pid" ] && as_owner "$PGBIN/pg_ctl" -D "$data" -m fast -w -t 60 stop >/dev/null || true
    ;;
kill)
    [ -f "$data/postmaster.pid" ] && as_owner "$PGBIN/pg_ctl" -D "$data" -m immediate -w -t 60 stop >/dev/null || true
    ;;
env)
    print_env
    ;;
status)
    [ -f "$data/PG_VERSION" ] && as_owner "$PGBIN/pg_ctl" -D "$data" status >/dev/null 2>&1
    ;;
*)
    echo "pg-cluster: unknown command $cmd" >&2; exit 2;;
esac
