#!/bin/bash
# One LISTEN per host (docs/operations.md, "One LISTEN per host: pgcast-relay"): what the
# number of hub processes costs publishing, each process with its own LISTEN (before the
# relay) and all of them through the host's pgcast-relay (after), release build.
# For 1, 10, 50 and 200 hub processes (bench/listeners.c, one hub and one subscriber each):
#   publishes/s  PUBLISHERS connections (synchronous_commit = off) calling realtime.publish
#                flat out for TPUT seconds, on channels no hub serves (with its own LISTEN
#                every process still gets each wake-up and sorts it out; through the relay,
#                which filters by the channels a process serves, none is woken)
#   p50/p99      publish -> the subscriber's queue in every hub process, LAT_RATE events/s
#                on a channel every hub serves (each process reads it from the log) for LAT s
#   listening    connections LISTENing on the database, from pg_stat_activity
# HUBS="1 10 50 200" TPUT=5 PUBLISHERS=4 LAT=5 LAT_RATE=20 set the sizes.
source "$(dirname "$0")/lib.sh"
HUBS=${HUBS:-"1 10 50 200"}
TPUT=${TPUT:-5}; PUBLISHERS=${PUBLISHERS:-4}; LAT=${LAT:-5}; LAT_RATE=${LAT_RATE:-20}
TOOL=build/release/bench/listeners
[ -x "$TOOL" ] && [ -x bin/pgcast-relay ] || make --no-print-directory >/dev/null
max=0; for n in $HUBS; do [ "$n" -gt "$max" ] && max=$n; done
export PGCAST_PG_MAX_CONNECTIONS=$((max + 50))
bench_setup listeners
conn="host=127.0.0.1 port=$PGPORT user=postgres dbname=postgres"
sock="$PGCAST_TEST_WORK/relay.sock"
relay_pid=
relay_stop() { [ -n "$relay_pid" ] && kill "$relay_pid" 2>/dev/null && wait "$relay_pid" 2>/dev/null; relay_pid=; }
bench_on_exit=relay_stop

run() { # HUBS MODE
    psql -qXAt -c "TRUNCATE realtime.realtime_events_log" >/dev/null 2>&1
    if [ "$2" = relay ]; then
        PGCAST_CONFIG= PGCAST_DATABASE_URL="$conn" PGCAST_LOG_LEVEL=warn bin/pgcast-relay --socket "$sock" \
            >>"$PGCAST_TEST_WORK/relay.log" 2>&1 &
        relay_pid=$!
        for _ in $(seq 1 100); do [ -S "$sock" ] && break; sleep 0.05; done
        out=$(PGCAST_CONFIG= "$TOOL" "$conn" "$1" "$sock" "$PGCAST_TEST_WORK" "$TPUT" "$PUBLISHERS" "$LAT" "$LAT_RATE" 2>>"$PGCAST_TEST_WORK/tool.log")
        relay_stop
    else
        out=$(PGCAST_CONFIG= "$TOOL" "$conn" "$1" - "$PGCAST_TEST_WORK" "$TPUT" "$PUBLISHERS" "$LAT" "$LAT_RATE" 2>>"$PGCAST_TEST_WORK/tool.log")
    fi
    printf '| %5s | %-24s | %9s | %11s | %7s | %7s | %s |\n' "$1" \
        "$([ "$2" = relay ] && echo "through pgcast-relay" || echo "own LISTEN each (before)")" \
        "$(field listening "$out")" "$(field publishes_s "$out")" "$(field p50_ms "$out")" "$(field p99_ms "$out")" \
        "$(echo "$out" | grep -o 'delivered=[0-9/]*' | cut -d= -f2)"
    echo "$out" >>"$PGCAST_TEST_WORK/raw.txt"
    sleep 1
}

echo "hub processes on one host, $(nproc) cores (database, publishers and hubs share them);"
echo "$PUBLISHERS publishers flat out for ${TPUT}s; latency at $LAT_RATE events/s for ${LAT}s"
echo "| hub processes | wake-ups | listening | publishes/s | p50 ms | p99 ms | deliveries |"
echo "|---|---|---|---|---|---|---|"
for n in $HUBS; do
    run "$n" own
    run "$n" relay
done
if grep -q 'not_ready=[1-9]' "$PGCAST_TEST_WORK/raw.txt"; then
    echo "(some hub processes were not ready in time:)"; grep 'not_ready=[1-9]' "$PGCAST_TEST_WORK/raw.txt"
fi
