#!/bin/bash
# `make run` brings the demo up, the printed publish command works, a second one says a
# demo is running, and Ctrl-C (SIGINT) stops everything it started.
source "$(dirname "$0")/../lib/tap.sh"
cd "$PGCAST_ROOT" || exit 1
export PGCAST_RUN_DIR="$PGCAST_TEST_WORK/demo-run"
export PGCAST_PG_PORT=$(scripts/free-port.sh)
out="$PGCAST_TEST_WORK/demo.out"
# background jobs of a script start with SIGINT ignored; the demo must see Ctrl-C
setsid env --default-signal=INT scripts/run-demo.sh >"$out" 2>&1 </dev/null &
demo=$!
trap 'kill -INT -$demo 2>/dev/null; sleep 1; scripts/pg-cluster.sh stop "$PGCAST_RUN_DIR/pg" >/dev/null 2>&1' EXIT
for _ in $(seq 1 300); do grep -q "Press Ctrl-C" "$out" && break; sleep 0.1; done
ok_if "the demo comes up and prints its instructions" grep -q "Press Ctrl-C" "$out"
head -n1 "$PGCAST_RUN_DIR/pg/data/postmaster.pid" >"$PGCAST_TEST_WORK/demo.pgpid"
cmd=$(grep -m1 "SELECT realtime.publish" "$out" | sed 's/^ *//')
is "the printed publish command works" "$(eval "$cmd -qAt")" 1
second=$(timeout 20 scripts/run-demo.sh 2>&1 </dev/null)
like "a second demo says one is running" "$second" "already running"
kill -INT -"$demo"
for _ in $(seq 1 100); do kill -0 "$demo" 2>/dev/null || break; sleep 0.1; done
ok_if "Ctrl-C ends the demo" bash -c "! kill -0 $demo 2>/dev/null"
pgpid=$(cat "$PGCAST_TEST_WORK/demo.pgpid" 2>/dev/null)
ok_if "the demo's PostgreSQL is stopped" test ! -e "$PGCAST_RUN_DIR/pg/data/postmaster.pid"
# (a zombie whose parent has not reaped it yet counts as gone)
ok_if "and its process is gone" bash -c "[[ \"\$(ps -o stat= -p ${pgpid:-1} 2>/dev/null)\" =~ ^(Z|$) ]]"
tap_done
