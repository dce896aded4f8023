#!/bin/bash
# WebSocket: pgcast-ws (release build) against nginx + nchan's websocket subscriber, same
# machine, same load generator (bench/loadgen.c --ws): connections held on one sidecar
# and across two, server RSS per idle connection; then fan-out of one channel at fixed
# offered loads — deliveries/s, publish-to-client latency, server CPU time per delivery
# (the sidecar, resp. nginx, from /proc, while events flow).
# BENCH_SECONDS (10), BENCH_IDLE (19000), BENCH_IDLE_TWO (20000, split over two sidecars
# and two load generators: one process cannot hold 20,000 sockets under 20,000 fds) and
# BENCH_CONNS_SMALL/LARGE (1000/10000) scale it.
source "$(dirname "$0")/lib.sh"
secs=${BENCH_SECONDS:-10}
idle=${BENCH_IDLE:-19000}
idle2=${BENCH_IDLE_TWO:-20000}
small=${BENCH_CONNS_SMALL:-1000}
large=${BENCH_CONNS_LARGE:-10000}
LOADGEN=build/release/bench/loadgen
bench_setup ws
nchan_start websocket || exit 1
tok=$(mint '{"sub":"bench","tenant":"bench","exp":"+86400","channels":["bench:*"]}')
sidecar() { ws_start || { web_logs; exit 1; }; }
out=$PGCAST_TEST_WORK/loadgen

echo "WebSocket benchmark: pgcast-ws vs nginx + nchan (websocket subscriber), $(nproc) cores, load generator on the same machine"
echo

# idle: SIDE PIDS -- one "PORT COUNT" per load generator; each connection subscribes to
# one channel (pgcast) and is held while the servers' RSS is read
idle_run() {
    local side=$1 pids=$2 i=0 held=0 lgs=() before after
    shift 2
    before=$(rss_kb $pids)
    for w in "$@"; do
        set -- $w
        if [ $side = pgcast ]; then
            $LOADGEN --subscribe bench:idle 127.0.0.1 "$1" "/ws?token=$tok" "$2" 4 0 idle >"$out.$i" &
        else
            $LOADGEN --ws 127.0.0.1 "$1" /sub "$2" 4 0 idle >"$out.$i" &
        fi
        lgs+=($!)
        i=$((i + 1))
    done
    for ((j = 0; j < i; j++)); do wait_for "$out.$j" '^ready' 120; done
    sleep 1
    after=$(rss_kb $pids)
    wait "${lgs[@]}"
    for ((j = 0; j < i; j++)); do
        held=$((held + $(field "$([ $side = pgcast ] && echo subscribed || echo open)" "$(cat "$out.$j")")))
    done
    local per=$(( (after - before) * 1024 / (held > 0 ? held : 1) ))
    printf 'idle %-7s %5d connections held (%d server%s): RSS %7d -> %7d KiB, %5d bytes per connection\n' \
        "$side" "$held" "$i" "$([ $i -gt 1 ] && echo s)" "$before" "$after" "$per"
    idle_per=$per
    sleep 2
}
sidecar; a_pid=$WS_PID a_port=$WS_PORT
idle_run pgcast "$a_pid" "$a_port $idle"; idle_one=$idle_per
kill "$a_pid"
sidecar; b_pid=$WS_PID b_port=$WS_PORT
sidecar; c_pid=$WS_PID c_port=$WS_PORT
idle_run pgcast "$b_pid $c_pid" "$b_port $((idle2 / 2))" "$c_port $((idle2 - idle2 / 2))"; idle_two=$idle_per
kill "$c_pid"
idle_run nchan "$(nchan_pids)" "$NCHAN_PORT $idle"; idle_nchan=$idle_per
echo "aim: <= 8 KiB (8192 bytes) per idle connection on the sidecar; nchan's figure is the reference"
echo

# fan-out: SIDE CONNECTIONS RATE; CPU is sampled once every connection is open and
# subscribed (loadgen's "ready" line, a second before it publishes) and after the run
fan_run() {
    local side=$1 n=$2 rate=$3 pids c0 c1 res
    if [ $side = pgcast ]; then
        pids=$b_pid
        $LOADGEN --subscribe bench:fan 127.0.0.1 "$b_port" "/ws?token=$tok" "$n" "$secs" "$rate" \
            pg "$PGCAST_DATABASE_URL" bench bench:fan >"$out" &
    else
        pids=$(nchan_pids)
        $LOADGEN --ws 127.0.0.1 "$NCHAN_PORT" /sub "$n" "$secs" "$rate" http 127.0.0.1 "$NCHAN_PORT" /pub >"$out" &
    fi
    local lg=$!
    wait_for "$out" '^ready' 120
    c0=$(cpu_ticks $pids)
    wait $lg
    c1=$(cpu_ticks $pids)
    res=$(grep '^streams=' "$out")
    local d=$(field deliveries "$res")
    local us=$(( (c1 - c0) * 1000000 / hz ))
    local per=$(awk -v u=$us -v d=${d:-0} 'BEGIN{ if (d>0) printf "%.2f", u/d; else print "n/a" }')
    printf '%-7s %5d conns x %3d ev/s: %s cpu=%sus/delivery\n' "$side" "$n" "$rate" "$res" "$per"
    eval "res_${side}_${n}_cpu=$per res_${side}_${n}_p99=$(field p99 "$res") res_${side}_${n}_p50=$(field p50 "$res")"
    sleep 2
}
for w in "$small 200" "$large 20"; do
    set -- $w
    fan_run pgcast "$1" "$2"
    fan_run nchan "$1" "$2"
done
echo
echo "ratios pgcast/nchan (aims: CPU per delivery <= nchan's, p99 <= nchan's):"
printf '  idle RSS per connection: %s (%d vs %d bytes)\n' "$(ratio $idle_one $idle_nchan)" "$idle_one" "$idle_nchan"
for n in "$small" "$large"; do
    eval "pc=\$res_pgcast_${n}_cpu nc=\$res_nchan_${n}_cpu pp=\$res_pgcast_${n}_p99 np=\$res_nchan_${n}_p99"
    eval "p5=\$res_pgcast_${n}_p50 n5=\$res_nchan_${n}_p50"
    printf '  %5d connections: cpu/delivery %sx, p50 %sx, p99 %sx\n' "$n" "$(ratio "$pc" "$nc")" \
        "$(ratio "$p5" "$n5")" "$(ratio "$pp" "$np")"
done
echo "(two sidecars: ${idle_two} bytes per connection at ${idle2}; the database's CPU for publishing is not counted on either side)"
