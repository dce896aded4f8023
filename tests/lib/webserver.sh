# Web servers for tests: source this file. Each server runs in the foreground of a
# background job, on a free loopback port, with its files in $PGCAST_TEST_WORK, and is
# stopped by web_stop_all (installed as an EXIT trap by web_init).
#
#   web_init                       temp dir + pgcast config ($PGCAST_TEST_CONFIG) + trap
#   pgcast_config_add "key = v"    adds a line to the handlers' config (before starting)
#   lighttpd_start                 -> $LIGHTTPD_URL (http://127.0.0.1:PORT)
#   mint CLAIMS_JSON [ALG]         a token signed with the test secret
TEST_JWT_SECRET="pgcast-test-secret"
_web_pids=()

web_init() {
    WEB_DIR=$(mktemp -d "$PGCAST_TEST_WORK/web.XXXXXX")
    chmod 0755 "$WEB_DIR"
    mkdir -p "$WEB_DIR/run" "$WEB_DIR/log"
    chmod 0777 "$WEB_DIR/run" "$WEB_DIR/log"
    PGCAST_TEST_CONFIG="$WEB_DIR/pgcast.conf"
    cat >"$PGCAST_TEST_CONFIG" <<EOT
database_url = $PGCAST_DATABASE_URL
jwt_secret = $TEST_JWT_SECRET
log_level = info
EOT
    chmod 0644 "$PGCAST_TEST_CONFIG"
    trap web_stop_all EXIT
}

pgcast_config_add() { echo "$1" >>"$PGCAST_TEST_CONFIG"; }

mint() { /usr/bin/python3 "$PGCAST_ROOT/tests/lib/jwt.py" "$TEST_JWT_SECRET" "$1" "${2:-HS256}"; }

_wait_port() {
    for _ in $(seq 1 200); do
        (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0
        sleep 0.05
    done
    return 1
}

lighttpd_start() {
    local port
    port=$("$PGCAST_ROOT/scripts/free-port.sh")
    cat >"$WEB_DIR/lighttpd.conf" <<EOT
server.document-root = "$WEB_DIR/www"
server.bind = "127.0.0.1"
server.port = $port
server.errorlog = "$WEB_DIR/log/lighttpd-error.log"
server.pid-file = "$WEB_DIR/run/lighttpd.pid"
server.max-fds = 20000
server.max-connections = 9000
mimetype.assign = ( ".html" => "text/html", ".js" => "text/javascript" )
var.pgcast_bindir = "$PGCAST_BIN"
var.pgcast_rundir = "$WEB_DIR/run"
var.pgcast_config = "$PGCAST_TEST_CONFIG"
include "$PGCAST_ROOT/lighttpd-conf/pgcast.conf"
EOT
    mkdir -p "$WEB_DIR/www"
    lighttpd -D -f "$WEB_DIR/lighttpd.conf" >"$WEB_DIR/log/lighttpd.out" 2>&1 &
    _web_pids+=($!)
    if ! _wait_port "$port"; then
        echo "# lighttpd did not start:"; sed 's/^/# /' "$WEB_DIR/log/lighttpd.out" "$WEB_DIR/log/lighttpd-error.log" 2>/dev/null
        return 1
    fi
    LIGHTTPD_URL="http://127.0.0.1:$port"
}

web_stop_all() {
    for p in "${_web_pids[@]}"; do kill -TERM "$p" 2>/dev/null; done
    for p in "${_web_pids[@]}"; do
        for _ in $(seq 1 100); do kill -0 "$p" 2>/dev/null || break; sleep 0.05; done
        kill -KILL "$p" 2>/dev/null
    done
    # handlers spawned by the servers end with them; make sure
    pkill -TERM -f "$WEB_DIR/" 2>/dev/null
    _web_pids=()
}

# Prints the error logs (for a failing test's output).
web_logs() { tail -n 40 "$WEB_DIR"/log/* 2>/dev/null | sed 's/^/# /'; }
