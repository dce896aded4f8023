#!/bin/bash
# make run: the demo. A private PostgreSQL cluster in .run/pg of the checkout (kept between
# runs), migrated; the WebSocket sidecar; lighttpd on 127.0.0.1 with the shipped
# lighttpd-conf/pgcast.conf (SSE and poll handlers, /realtime/ws proxied to the sidecar)
# serving the demo page. Prints the URL, a demo token and a psql publish command; Ctrl-C
# stops everything it started.
#   PGCAST_HTTP_PORT (8080), PGCAST_WS_PORT (8081), PGCAST_PG_PORT (free),
#   PGCAST_RUN_DIR (.run of the checkout)
set -uo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
run=${PGCAST_RUN_DIR:-$ROOT/.run}
mkdir -p "$run"
run=$(cd "$run" && pwd)
http_port=${PGCAST_HTTP_PORT:-8080}
ws_port=${PGCAST_WS_PORT:-8081}

# One demo at a time per folder: flock on a lock file, released when this shell exits.
exec 9>"$run/lock"
if ! flock -n 9; then
    echo "pgcast: a demo is already running from $run (pid $(cat "$run/pid" 2>/dev/null || echo '?'))." >&2
    echo "pgcast: stop it with Ctrl-C in its terminal, or: kill $(cat "$run/pid" 2>/dev/null || echo PID)" >&2
    exit 1
fi
echo $$ >"$run/pid"

port_busy() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
for p in "$http_port" "$ws_port"; do
    if port_busy "$p"; then
        echo "pgcast: port $p on 127.0.0.1 is in use; set PGCAST_HTTP_PORT / PGCAST_WS_PORT to free ones." >&2
        exit 1
    fi
done

pids=()
stop() {
    # A second SIGTERM while stopping (GNU make passes the one it got on to this script,
    # after the process group got it too) must not cut the stopping short: from here on
    # INT and TERM are ignored, by this shell and by what it starts to stop things.
    trap '' INT TERM
    trap - EXIT
    [ -n "${stopped:-}" ] && return
    stopped=1
    echo
    echo "pgcast: stopping"
    # The handlers lighttpd spawned (bin-path) are its children; it may spawn one more
    # while it stops, so they are collected until it is gone, then stopped in turn.
    local kids=()
    for p in "${pids[@]}"; do kill -TERM "$p" 2>/dev/null; done
    for p in "${pids[@]}"; do
        for _ in $(seq 1 100); do
            kids+=($(pgrep -P "$p" 2>/dev/null))
            kill -0 "$p" 2>/dev/null || break
            sleep 0.05
        done
        kill -KILL "$p" 2>/dev/null
        wait "$p" 2>/dev/null
    done
    for p in "${kids[@]}"; do kill -TERM "$p" 2>/dev/null; done
    for p in "${kids[@]}"; do
        for _ in $(seq 1 100); do kill -0 "$p" 2>/dev/null || break; sleep 0.05; done
        kill -KILL "$p" 2>/dev/null
    done
    scripts/pg-cluster.sh stop "$run/pg" 9>&-
    rm -f "$run/pid"
    exit 0
}
trap stop INT TERM EXIT

wait_port() {
    for _ in $(seq 1 200); do port_busy "$1" && return 0; sleep 0.05; done
    return 1
}

# Every server below is started with the lock's descriptor closed (9>&-): a server that
# outlived its demo must not keep the next `make run` out.
# A PostgreSQL still running here was left by a demo that was killed (this one holds the
# lock): it is stopped before starting afresh.
if [ -f "$run/pg/data/postmaster.pid" ] && scripts/pg-cluster.sh status "$run/pg" 9>&-; then
    echo "pgcast: stopping the PostgreSQL a previous demo left running" >&2
    scripts/pg-cluster.sh stop "$run/pg" 9>&-
fi
[ -n "${PGCAST_PG_PORT:-}" ] && port_arg=$PGCAST_PG_PORT || port_arg=
if ! env_out=$(scripts/pg-cluster.sh start "$run/pg" $port_arg 9>&-); then
    echo "pgcast: could not start PostgreSQL (see $run/pg/server.log)" >&2
    exit 1
fi
eval "$env_out"
# Migrations as the owner (the cluster's superuser here); the handlers and the sidecar
# as pgcast_demo, a login role with only what the runtime role has (docs/deploy.md).
owner_url="host=127.0.0.1 port=$PGPORT user=postgres dbname=postgres"
PGCAST_DATABASE_URL="$owner_url" bin/pgcast-migrate --quiet --runtime-role pgcast_runtime \
    --publisher-role pgcast_publisher 9>&- || exit 1
psql -qX "$owner_url" -v ON_ERROR_STOP=1 -c "DO \$\$BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'pgcast_demo') THEN
        CREATE ROLE pgcast_demo LOGIN IN ROLE pgcast_runtime;
    END IF; END\$\$" 9>&- || exit 1
export PGCAST_DATABASE_URL="host=127.0.0.1 port=$PGPORT user=pgcast_demo dbname=postgres"

# The demo's configuration and secret, kept between runs.
[ -s "$run/secret" ] || head -c 24 /dev/urandom | base64 | tr -d '/+=' >"$run/secret"
secret=$(cat "$run/secret")
mkdir -p "$run/sockets" "$run/logs"
cat >"$run/pgcast.conf" <<EOT
# written by make run
database_url = $PGCAST_DATABASE_URL
jwt_secret = $secret
anonymous = true
anonymous_tenant = demo
anonymous_channels = public:*
log_level = info
EOT
export PGCAST_CONFIG="$run/pgcast.conf"

bin/pgcast-ws --listen "127.0.0.1:$ws_port" >>"$run/logs/pgcast-ws.log" 2>&1 9>&- &
pids+=($!)
wait_port "$ws_port" || { echo "pgcast: the sidecar did not start (see $run/logs/pgcast-ws.log)" >&2; exit 1; }

cat >"$run/lighttpd.conf" <<EOT
server.document-root = "$ROOT/demo"
server.bind = "127.0.0.1"
server.port = $http_port
server.errorlog = "$run/logs/lighttpd-error.log"
server.modules += ( "mod_alias" )
alias.url = ( "/pgcast.js" => "$ROOT/client/pgcast.js" )
index-file.names = ( "index.html" )
mimetype.assign = ( ".html" => "text/html; charset=utf-8", ".js" => "text/javascript" )
var.pgcast_bindir = "$ROOT/bin"
var.pgcast_rundir = "$run/sockets"
var.pgcast_config = "$run/pgcast.conf"
var.pgcast_ws_host = "127.0.0.1"
var.pgcast_ws_port = $ws_port
include "$ROOT/lighttpd-conf/pgcast.conf"
EOT
lighttpd -D -f "$run/lighttpd.conf" >>"$run/logs/lighttpd.out" 2>&1 9>&- &
pids+=($!)
wait_port "$http_port" || { echo "pgcast: lighttpd did not start (see $run/logs/)" >&2; exit 1; }

token=$(/usr/bin/python3 scripts/jwt.py "$secret" \
    '{"sub":"demo-user","name":"Demo","tenant":"demo","exp":"+86400","channels":["project:*","public:*"],"publish":["project:*"]}')

cat <<EOT

pgcast demo is running.

  Open:     http://127.0.0.1:$http_port/?token=$token
  Token:    $token
            (tenant "demo", may subscribe to project:* and publish to project:*, valid 24 h)

  Publish from the database, and watch it appear on the page:
  psql "$PGCAST_DATABASE_URL" -c "SELECT realtime.publish('demo', 'project:demo', 'demo.message', '{\"text\": \"hello from SQL\"}')"

  Health:   curl http://127.0.0.1:$http_port/realtime/health
  Logs:     $run/logs/     Data: $run/pg

Press Ctrl-C to stop.
EOT
# The signal only sets a flag; the stopping itself runs here, not inside a trap.
interrupted=
trap 'interrupted=1' INT TERM
while [ -z "$interrupted" ]; do sleep 1 & wait $! 2>/dev/null; done
stop
