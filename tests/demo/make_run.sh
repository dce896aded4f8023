#!/bin/bash
# test: alone (`make run` and a check that no process of bin/ is left: no other test beside it)
# `make run` brings the whole demo up on free ports (PostgreSQL, the sidecar, lighttpd with
# the handlers, the page); /health answers, the page and pgcast.js are served, the printed
# publish command works, a second demo says one is running, and Ctrl-C (SIGINT) stops
# everything it started.
source "$(dirname "$0")/../lib/tap.sh"
cd "$PGCAST_ROOT" || exit 1
export PGCAST_RUN_DIR="$PGCAST_TEST_WORK/demo-run"
read -r PGCAST_PG_PORT PGCAST_HTTP_PORT PGCAST_WS_PORT <<<"$(scripts/free-port.sh 3 | tr '\n' ' ')"
export PGCAST_PG_PORT PGCAST_HTTP_PORT PGCAST_WS_PORT
out="$PGCAST_TEST_WORK/demo.out"
# background jobs of a script start with SIGINT ignored; the demo must see Ctrl-C
setsid env --default-signal=INT scripts/run-demo.sh >"$out" 2>&1 </dev/null &
demo=$!
trap 'kill -INT -$demo 2>/dev/null; sleep 2; scripts/pg-cluster.sh stop "$PGCAST_RUN_DIR/pg" >/dev/null 2>&1' EXIT
for _ in $(seq 1 300); do grep -q "Press Ctrl-C" "$out" && break; sleep 0.1; done
ok_if "the demo comes up and prints its instructions" grep -q "Press Ctrl-C" "$out" || sed 's/^/# /' "$out"
url=$(grep -m1 -o "http://127.0.0.1:$PGCAST_HTTP_PORT/?token=[^ ]*" "$out")
ok_if "it prints the page's URL with a token" test -n "$url"
is "/health answers 200" "$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$PGCAST_HTTP_PORT/realtime/health")" 200
like "the page is served" "$(curl -s "$url")" "<title>pgcast demo</title>"
like "pgcast.js is served" "$(curl -s "http://127.0.0.1:$PGCAST_HTTP_PORT/pgcast.js")" "export class PgcastClient"
like "the sidecar answers behind lighttpd" "$(curl -s "http://127.0.0.1:$PGCAST_HTTP_PORT/realtime/ws" -o /dev/null -w '%{http_code}') $(curl -s "http://127.0.0.1:$PGCAST_WS_PORT/health")" '^426 .*"database":"ok"'
head -n1 "$PGCAST_RUN_DIR/pg/data/postmaster.pid" >"$PGCAST_TEST_WORK/demo.pgpid"
# the handlers and the sidecar are not superusers: they connect as the runtime role
roles=$(psql -qXAt "host=127.0.0.1 port=$PGCAST_PG_PORT user=postgres dbname=postgres" -c \
    "SELECT string_agg(DISTINCT usename || ':' || (SELECT rolsuper FROM pg_roles WHERE rolname = usename), ',')
       FROM pg_stat_activity WHERE application_name LIKE 'pgcast%'")
is "the demo's processes connect as pgcast_demo, not as a superuser" "$roles" "pgcast_demo:false"
cmd=$(grep -m1 "SELECT realtime.publish" "$out" | sed 's/^ *//')
is "the printed publish command works" "$(eval "$cmd -qAt")" 1
second=$(timeout 20 scripts/run-demo.sh 2>&1 </dev/null)
like "a second demo says one is running" "$second" "already running"
kill -INT -"$demo"
for _ in $(seq 1 400); do kill -0 "$demo" 2>/dev/null || break; sleep 0.1; done
if ! ok_if "Ctrl-C ends the demo" bash -c "! kill -0 $demo 2>/dev/null"; then :; fi
if kill -0 "$demo" 2>/dev/null; then
    sed 's/^/# out: /' "$out"; ps -o pid,ppid,pgid,stat,wchan:20,cmd -g "$demo" | sed 's/^/# ps: /'
    ps -eo pid,ppid,pgid,stat,cmd | grep -E "postgres|pg_ctl|runuser" | grep -v grep | sed 's/^/# pg: /'
fi || { sed "s/^/# /" "$out"; ps -o pid,pgid,stat,cmd -g $demo | sed "s/^/# /"; }
pgpid=$(cat "$PGCAST_TEST_WORK/demo.pgpid" 2>/dev/null)
ok_if "the demo's PostgreSQL is stopped" test ! -e "$PGCAST_RUN_DIR/pg/data/postmaster.pid"
# (a zombie whose parent has not reaped it yet counts as gone)
ok_if "and its process is gone" bash -c "[[ \"\$(ps -o stat= -p ${pgpid:-1} 2>/dev/null)\" =~ ^(Z|$) ]]"
ok_if "nothing listens on the demo's ports any more" \
    bash -c "! (exec 3<>/dev/tcp/127.0.0.1/$PGCAST_HTTP_PORT) 2>/dev/null && ! (exec 3<>/dev/tcp/127.0.0.1/$PGCAST_WS_PORT) 2>/dev/null"
# (a handler lighttpd spawned while stopping is told by its parent's death: give it a moment)
for _ in $(seq 1 50); do pgrep -f "^$PGCAST_ROOT/bin/pgcast-(sse|poll)" >/dev/null || break; sleep 0.1; done
ok_if "no handler process of the demo is left" bash -c "! pgrep -f '^$PGCAST_ROOT/bin/pgcast-(sse|poll)' >/dev/null"
pgrep -f "^$PGCAST_ROOT/bin/pgcast-(sse|poll)" | while read -r p; do ps -o pid,ppid,stat,etimes,cmd -p "$p" | sed 's/^/# left: /'; done
tap_done
