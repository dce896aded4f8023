#!/bin/bash
# A web host in a network namespace, for tests of many hosts: run inside the namespace
# (ip netns exec NS bash netns_host.sh NAME DATABASE_URL). Starts lighttpd with both FastCGI
# handlers and the WebSocket sidecar on the namespace's own loopback
# (tests/lib/webserver.sh), the database reached at DATABASE_URL (over the host's veth),
# and, when $PGCAST_BIN has pgcast-relay (MH_RELAY=0: not), the host's relay first (one
# LISTEN for the host, on a socket in the host's own run directory),
# prints "ready URL WS_PORT WEB_DIR RELAY(yes|no)", then obeys commands on stdin, one a
# line, and answers each with one line:
#   kill-sidecar     kill -9 the sidecar           -> "killed PID"
#   start-sidecar    a new sidecar on the same port -> "started PID" / "failed"
#   kill-relay       kill -9 the relay             -> "killed PID"
#   start-relay      a new relay on the same socket -> "started PID" / "failed"
#   pids             -> "pids SIDECAR SSE POLL RELAY" (handler pids: children of lighttpd)
#   quit             stops everything (also on EOF)
name=$1 dburl=$2
source "$PGCAST_ROOT/tests/lib/webserver.sh"
exec 3>&1 1>&2  # answers on fd 3; anything else goes to stderr
web_init
# the handlers and the sidecar find the database only at the host's network address
unset PGHOST PGHOSTADDR
export PGCAST_DATABASE_URL="$dburl"
pgcast_config_add "database_url = $dburl"
pgcast_config_add "sse_retry_ms = 300"
pgcast_config_add "retention_max_events = 10000000"
[ -n "${MH_CONFIG_EXTRA:-}" ] && pgcast_config_add "$MH_CONFIG_EXTRA"
RELAY_PID= relay=no
if [ -x "$PGCAST_BIN/pgcast-relay" ] && [ "${MH_RELAY:-1}" != 0 ]; then
    relay=yes
    relay_config
    if ! relay_start 3>&-; then
        web_logs
        echo "failed" >&3
        exit 1
    fi
else
    pgcast_config_add "relay_socket ="
fi
if ! lighttpd_start 3>&-; then
    web_logs
    echo "failed" >&3
    exit 1
fi
echo "ready $LIGHTTPD_URL $WS_PORT $WEB_DIR $relay" >&3

handler_pid() { # NAME: the handler lighttpd runs (its child)
    local l
    l=$(cat "$WEB_DIR/run/lighttpd.pid" 2>/dev/null) || return
    pgrep -P "$l" -f "$PGCAST_BIN/$1" | head -n1
}

while read -r cmd; do
    case "$cmd" in
    kill-sidecar)
        kill -KILL "$WS_PID"
        wait "$WS_PID" 2>/dev/null
        echo "killed $WS_PID" >&3 ;;
    start-sidecar)
        if ws_start "$WS_PORT" 3>&-; then echo "started $WS_PID" >&3; else echo "failed" >&3; fi ;;
    kill-relay)
        kill -KILL "$RELAY_PID"
        wait "$RELAY_PID" 2>/dev/null
        echo "killed $RELAY_PID" >&3 ;;
    start-relay)
        if relay_start 3>&-; then echo "started $RELAY_PID" >&3; else echo "failed" >&3; fi ;;
    pids)
        echo "pids $WS_PID $(handler_pid pgcast-sse.fcgi) $(handler_pid pgcast-poll.fcgi) ${RELAY_PID:--}" >&3 ;;
    quit) break ;;
    *) echo "unknown $cmd" >&3 ;;
    esac
done
web_stop_all
