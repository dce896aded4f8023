#!/bin/bash
# test: alone (`make run` and a check that no process of bin/ is left: no other test beside it)
# `make run` stopped by SIGTERM to its whole process group (as systemd, container runtimes
# and CI stop things): GNU make passes the signal on to the demo a second time while the
# demo is stopping. Nothing may be left running, and the next `make run` must come up.
source "$(dirname "$0")/../lib/tap.sh"
cd "$PGCAST_ROOT" || exit 1
export PGCAST_RUN_DIR="$PGCAST_TEST_WORK/demo-term"
read -r PGCAST_PG_PORT PGCAST_HTTP_PORT PGCAST_WS_PORT <<<"$(scripts/free-port.sh 3 | tr '\n' ' ')"
export PGCAST_PG_PORT PGCAST_HTTP_PORT PGCAST_WS_PORT
trap 'scripts/pg-cluster.sh stop "$PGCAST_RUN_DIR/pg" >/dev/null 2>&1' EXIT

start_demo() { # OUT -> $demo (its process group leader)
    # (background jobs of a script start with SIGINT ignored; the demo must see Ctrl-C)
    setsid env --default-signal=INT,TERM make --no-print-directory run >"$1" 2>&1 </dev/null &
    demo=$!
    for _ in $(seq 1 600); do grep -q "Press Ctrl-C" "$1" && return 0; kill -0 "$demo" 2>/dev/null || return 1; sleep 0.1; done
    return 1
}
wait_gone() { for _ in $(seq 1 400); do kill -0 "$1" 2>/dev/null || return 0; sleep 0.1; done; return 1; }

out1="$PGCAST_TEST_WORK/demo-term1.out"
ok_if "make run comes up" start_demo "$out1" || sed 's/^/# /' "$out1"
pgpid=$(head -n1 "$PGCAST_RUN_DIR/pg/data/postmaster.pid" 2>/dev/null)
script=$(pgrep -g "$demo" -f scripts/run-demo.sh | head -n1)
kill -TERM -- "-$demo"
# make passes its SIGTERM on to the demo; make that second signal land while the demo is
# stopping, every time (by itself it does only sometimes)
for _ in $(seq 1 100); do grep -q "pgcast: stopping" "$out1" && break; sleep 0.05; done
kill -TERM "$script" 2>/dev/null
ok_if "SIGTERM to its process group ends make run" wait_gone "$demo"
for _ in $(seq 1 100); do [ -e "$PGCAST_RUN_DIR/pg/data/postmaster.pid" ] || break; sleep 0.1; done
ok_if "the demo's PostgreSQL is stopped" test ! -e "$PGCAST_RUN_DIR/pg/data/postmaster.pid"
ok_if "and its process is gone" bash -c "[[ \"\$(ps -o stat= -p ${pgpid:-1} 2>/dev/null)\" =~ ^(Z|$) ]]"
sed 's/^/# first: /' "$out1" | tail -n 5

out2="$PGCAST_TEST_WORK/demo-term2.out"
ok_if "the next make run comes up (not 'already running')" start_demo "$out2" || sed 's/^/# /' "$out2"
kill -INT -- "-$demo"
ok_if "and Ctrl-C ends it" wait_gone "$demo"
tap_done
