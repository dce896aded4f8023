# Web servers for tests: source this file. Each server runs in the foreground of a
# background job, on a free loopback port, with its files in $PGCAST_TEST_WORK, and is
# stopped by web_stop_all (installed as an EXIT trap by web_init).
#
#   web_init                       temp dir + pgcast config ($PGCAST_TEST_CONFIG) + trap
#   pgcast_config_add "key = v"    adds a line to the handlers' config (before starting)
#   lighttpd_start                 -> $LIGHTTPD_URL (http://127.0.0.1:PORT)
#     LIGHTTPD_SITE_CONF="lines"     the site's own settings, before pgcast's include
#   mint CLAIMS_JSON [ALG]         a token signed with the test secret
# stop_pids (and the TAP helpers) for those who source this file alone
declare -F stop_pids >/dev/null || source "$PGCAST_ROOT/tests/lib/tap.sh"
TEST_JWT_SECRET="pgcast-test-secret"
_web_pids=()

web_init() {
    WEB_DIR=$(mktemp -d "$PGCAST_TEST_WORK/web.XXXXXX")
    chmod 0755 "$WEB_DIR"
    mkdir -p "$WEB_DIR/run" "$WEB_DIR/log"
    chmod 0777 "$WEB_DIR/run" "$WEB_DIR/log"
    PGCAST_TEST_CONFIG="$WEB_DIR/pgcast.conf"
    cat >"$PGCAST_TEST_CONFIG" <<EOT
database_url = host=127.0.0.1 port=$PGPORT user=${PGCAST_TEST_DB_USER:-postgres} dbname=$PGDATABASE
jwt_secret = $TEST_JWT_SECRET
log_level = info
# limits per token subject are off unless a test turns them on (tests reuse one sub)
publish_rate = 0
ws_max_conns_per_subject = 0
presence_max_per_subject = 0
# the site's stream-slot file in the test's own dir (not one per test in /dev/shm)
site_streams_file = $WEB_DIR/run/streams
EOT
    chmod 0644 "$PGCAST_TEST_CONFIG"
    trap web_stop_all EXIT
}

pgcast_config_add() { echo "$1" >>"$PGCAST_TEST_CONFIG"; }

mint() { /usr/bin/python3 "$PGCAST_ROOT/scripts/jwt.py" "$TEST_JWT_SECRET" "$1" "${2:-HS256}"; }

# The WebSocket sidecar the web servers proxy {prefix}/ws to -> $WS_PORT
ws_start() { # [PORT] (default: a free one)
    WS_PORT=${1:-$("$PGCAST_ROOT/scripts/free-port.sh")}
    PGCAST_CONFIG="$PGCAST_TEST_CONFIG" "$PGCAST_BIN/pgcast-ws" --listen "127.0.0.1:$WS_PORT" \
        >>"$WEB_DIR/log/pgcast-ws.log" 2>&1 &
    WS_PID=$!
    _web_pids+=($WS_PID)
    wait_port "$WS_PORT" || { echo "# pgcast-ws did not listen"; return 1; }
}

# The host's relay: relay_config (before the servers start) names its socket
# ($RELAY_SOCKET) in the config, with a short retry; relay_start runs pgcast-relay on it
# -> $RELAY_PID; 1 when it does not serve its socket
relay_config() {
    RELAY_SOCKET="$WEB_DIR/run/relay.sock"
    pgcast_config_add "relay_socket = $RELAY_SOCKET"
    pgcast_config_add "relay_retry_ms = 500"
}
relay_start() {
    rm -f "$RELAY_SOCKET"
    PGCAST_CONFIG="$PGCAST_TEST_CONFIG" "$PGCAST_BIN/pgcast-relay" --socket "$RELAY_SOCKET" \
        >>"$WEB_DIR/log/pgcast-relay.log" 2>&1 &
    RELAY_PID=$!
    _web_pids+=($RELAY_PID)
    for _ in $(seq 1 200); do [ -S "$RELAY_SOCKET" ] && return 0; sleep 0.05; done
    return 1
}

lighttpd_start() {
    local port
    ws_start || return 1
    port=$("$PGCAST_ROOT/scripts/free-port.sh")
    cat >"$WEB_DIR/lighttpd.conf" <<EOT
server.document-root = "$WEB_DIR/www"
server.bind = "127.0.0.1"
server.port = $port
server.errorlog = "$WEB_DIR/log/lighttpd-error.log"
server.pid-file = "$WEB_DIR/run/lighttpd.pid"
$(grep -q 'server.max-connections' <<<"${LIGHTTPD_SITE_CONF:-}" || echo 'server.max-fds = 20000
server.max-connections = 9000')
${LIGHTTPD_SITE_CONF:-}
mimetype.assign = ( ".html" => "text/html", ".js" => "text/javascript" )
index-file.names = ( "index.html" )
var.pgcast_bindir = "$PGCAST_BIN"
var.pgcast_rundir = "$WEB_DIR/run"
var.pgcast_config = "$PGCAST_TEST_CONFIG"
var.pgcast_ws_host = "127.0.0.1"
var.pgcast_ws_port = $WS_PORT
include "$PGCAST_ROOT/lighttpd-conf/pgcast.conf"
EOT
    mkdir -p "$WEB_DIR/www"
    lighttpd -D -f "$WEB_DIR/lighttpd.conf" >"$WEB_DIR/log/lighttpd.out" 2>&1 &
    _web_pids+=($!)
    if ! wait_port "$port"; then
        echo "# lighttpd did not start:"; sed 's/^/# /' "$WEB_DIR/log/lighttpd.out" "$WEB_DIR/log/lighttpd-error.log" 2>/dev/null
        return 1
    fi
    LIGHTTPD_URL="http://127.0.0.1:$port"
    LIGHTTPD_PID=${_web_pids[${#_web_pids[@]}-1]}
}

# lighttpd_handler_pid NAME: the pid of the handler (pgcast-sse.fcgi, pgcast-poll.fcgi)
# this test's lighttpd spawned, waiting up to 5 s for it; empty if there is none. Only
# this test's: other tests' servers may run beside it.
lighttpd_handler_pid() {
    local pid=""
    for _ in $(seq 1 50); do
        pid=$(pgrep -P "$LIGHTTPD_PID" -f "$PGCAST_BIN/$1" | head -1)
        [ -n "$pid" ] && break
        sleep 0.1
    done
    echo "$pid"
}

# apache_start VARIANT: proxy-fcgi (handlers as FastCGI daemons on their own ports),
# cgi (plain CGI, the shared-hosting case) or fcgid (Apache spawns the handlers);
# includes apache-conf/pgcast-VARIANT.conf.
#   APACHE_SITE_CONF="lines"  the site's own settings, before pgcast's include (modules
#                             a distribution enables, e.g. mod_fcgid with its AddHandler)
#   APACHE_MPM=event|worker|prefork, APACHE_CGI=cgid|cgi   (default: event, cgid)
apache_start() {
    local variant=$1 port sse_port poll_port
    WS_PORT=
    [ "$variant" = proxy-fcgi ] && { ws_start || return 1; }
    # distinct ports in one call (the sidecar's is taken already: it listens)
    read -r port sse_port poll_port <<<"$("$PGCAST_ROOT/scripts/free-port.sh" 3 | tr '\n' ' ')"
    local mods=/usr/lib/apache2/modules user=""
    [ "$(id -u)" = 0 ] && user="User www-data
Group www-data"
    mkdir -p "$WEB_DIR/apache" "$WEB_DIR/www"
    cat >"$WEB_DIR/apache.conf" <<EOT
ServerRoot "$WEB_DIR/apache"
ServerName 127.0.0.1
Listen 127.0.0.1:$port
PidFile "$WEB_DIR/run/apache.pid"
ErrorLog "$WEB_DIR/log/apache-error.log"
LogLevel warn
# file (fcntl) locks as an admin may set them: pgcast-fcgid.conf keeps mod_fcgid's own
# locks off them (with them it ends Apache children on false deadlocks under load)
Mutex file:$WEB_DIR/run default
LoadModule mpm_${APACHE_MPM:-event}_module $mods/mod_mpm_${APACHE_MPM:-event}.so
LoadModule authz_core_module $mods/mod_authz_core.so
LoadModule mime_module $mods/mod_mime.so
TypesConfig /etc/mime.types
LoadModule alias_module $mods/mod_alias.so
LoadModule env_module $mods/mod_env.so
LoadModule ${APACHE_CGI:-cgid}_module $mods/mod_${APACHE_CGI:-cgid}.so
<IfModule cgid_module>
    ScriptSock "$WEB_DIR/run/cgid.sock"
</IfModule>
$user
DocumentRoot "$WEB_DIR/www"
${APACHE_SITE_CONF:-}
Define PGCAST_BINDIR "$PGCAST_BIN"
Define PGCAST_CONFIG "$PGCAST_TEST_CONFIG"
Define PGCAST_SSE_ADDR 127.0.0.1:$sse_port
Define PGCAST_POLL_ADDR 127.0.0.1:$poll_port
Define PGCAST_WS_ADDR 127.0.0.1:${WS_PORT:-1}
Include "$PGCAST_ROOT/apache-conf/pgcast-$variant.conf"
EOT
    if [ "$variant" = proxy-fcgi ]; then
        PGCAST_CONFIG="$PGCAST_TEST_CONFIG" "$PGCAST_BIN/pgcast-sse.fcgi" --listen "127.0.0.1:$sse_port" \
            >>"$WEB_DIR/log/pgcast-sse.log" 2>&1 &
        _web_pids+=($!)
        if [ -x "$PGCAST_BIN/pgcast-poll.fcgi" ]; then
            PGCAST_CONFIG="$PGCAST_TEST_CONFIG" "$PGCAST_BIN/pgcast-poll.fcgi" --listen "127.0.0.1:$poll_port" \
                >>"$WEB_DIR/log/pgcast-poll.log" 2>&1 &
            _web_pids+=($!)
        fi
        wait_port "$sse_port" || { echo "# pgcast-sse.fcgi did not listen"; return 1; }
    fi
    # prefork signals its whole process group when it stops: a session of its own
    local own_session=()
    [ "${APACHE_MPM:-event}" = prefork ] && own_session=(setsid)
    "${own_session[@]}" apache2 -f "$WEB_DIR/apache.conf" -D FOREGROUND >"$WEB_DIR/log/apache.out" 2>&1 &
    _web_pids+=($!)
    if ! wait_port "$port"; then
        echo "# apache did not start:"; sed 's/^/# /' "$WEB_DIR/log/apache.out" "$WEB_DIR/log/apache-error.log" 2>/dev/null
        return 1
    fi
    APACHE_URL="http://127.0.0.1:$port"
}

web_stop_all() {
    stop_pids "${_web_pids[@]}"
    # handlers spawned by the servers end with them; make sure
    pkill -TERM -f "$WEB_DIR/" 2>/dev/null
    _web_pids=()
}

# Prints the error logs (for a failing test's output).
web_logs() { tail -n 40 "$WEB_DIR"/log/* 2>/dev/null | sed 's/^/# /'; }

# Built or installed once per run and shared by the tests that need them. Tests may run
# side by side (tests/run.sh): a lock keeps two from building into the same place at once.
#   npm_eventsource   the npm `eventsource` package; exports ES_MODULE (its entry point)
#   make_static       `make static`, its output (build/static) copied to $STATIC_OUT
npm_eventsource() {
    local dir="$PGCAST_TEST_WORK/npm-eventsource"
    mkdir -p "$dir"
    if ! flock "$dir.lock" bash -c "cd '$dir' && [ -f node_modules/eventsource/dist/index.js ] ||
            npm install --no-save --no-audit --no-fund --silent eventsource@5.1.5 >npm.log 2>&1"; then
        echo "not ok 1 - the npm eventsource package installs"; sed 's/^/# /' "$dir/npm.log"; return 1
    fi
    export ES_MODULE="$dir/node_modules/eventsource/dist/index.js"
}
make_static() {
    local log="$PGCAST_TEST_WORK/make-static.$$.log"
    STATIC_OUT="$PGCAST_TEST_WORK/static.$$"
    rm -rf "$STATIC_OUT"
    flock "$PGCAST_ROOT/build/.make-static.lock" bash -c "make -C '$PGCAST_ROOT' --no-print-directory -s static &&
        mkdir -p '$STATIC_OUT' && cd '$PGCAST_ROOT/build/static' &&
        cp -a pgcast-sse.fcgi pgcast-poll.fcgi pgcast-migrate realtime '$STATIC_OUT/'" >"$log" 2>&1 && return 0
    echo "not ok 1 - make static"; tail -20 "$log" | sed 's/^/# /'
    return 1
}
