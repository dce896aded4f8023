#!/bin/bash
# A web host in a network namespace, for tests of many hosts: run inside the namespace
# (ip netns exec NS bash netns_host.sh NAME DATABASE_URL). Starts lighttpd with both FastCGI
# handlers and the WebSocket sidecar on the namespace's own loopback
# (tests/lib/webserver.sh), the database reached at DATABASE_URL (over the host's veth),
# prints "ready URL WS_PORT WEB_DIR", then obeys commands on stdin, one a line, and
# answers each with one line:
#   kill-sidecar     kill -9 the sidecar           -> "killed PID"
#   start-sidecar    a new sidecar on the same port -> "started PID" / "failed"
#   pids             -> "pids SIDECAR SSE POLL" (handler pids: children of lighttpd)
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
if ! lighttpd_start 3>&-; then
    web_logs
    echo "failed" >&3
    exit 1
fi
echo "ready $LIGHTTPD_URL $WS_PORT $WEB_DIR" >&3

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
    pids)
        echo "pids $WS_PID $(handler_pid pgcast-sse.fcgi) $(handler_pid pgcast-poll.fcgi)" >&3 ;;
    quit) break ;;
    *) echo "unknown $cmd" >&3 ;;
    esac
done
web_stop_all
