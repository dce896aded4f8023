#!/bin/bash
# WebSocket: pgcast-ws (release build) against nginx + nchan's websocket subscriber, same
# machine, same load generator (bench/loadgen.c --ws): connections held on one sidecar
# and across two, server RSS per idle connection; then fan-out of one channel at fixed
# offered loads — deliveries/s, publish-to-client latency, server CPU time per delivery
# (the sidecar, resp. nginx, from /proc, while events flow).
# BENCH_SECONDS (10), BENCH_IDLE (19000), BENCH_IDLE_TWO (20000, split over two sidecars
# and two load generators: one process cannot hold 20,000 sockets under 20,000 fds) and
# BENCH_CONNS_SMALL/LARGE (1000/10000) and BENCH_REPEAT (3 runs of each fan-out per
# server) scale it.
source "$(dirname "$0")/lib.sh"
secs=${BENCH_SECONDS:-10}
idle=${BENCH_IDLE:-19000}
idle2=${BENCH_IDLE_TWO:-20000}
small=${BENCH_CONNS_SMALL:-1000}
large=${BENCH_CONNS_LARGE:-10000}
reps=${BENCH_REPEAT:-3}
LOADGEN=build/release/bench/loadgen
bench_on_exit=nginx_stop
bench_setup ws
# subscribers get what is published after they came, like a subscribe without since
nginx_start '        location = /sub { nchan_subscriber websocket; nchan_channel_id bench; nchan_subscriber_first_message newest; }
        location = /pub { nchan_publisher; nchan_channel_id bench; }
        keepalive_requests 1000000;' || exit 1
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
idle_one=0 idle_two=0 idle_nchan=0
if [ "$idle" -gt 0 ]; then  # BENCH_IDLE=0: fan-out only
    sidecar; a_pid=$WS_PID a_port=$WS_PORT
    idle_run pgcast "$a_pid" "$a_port $idle"; idle_one=$idle_per
    kill "$a_pid"
fi
sidecar; b_pid=$WS_PID b_port=$WS_PORT  # also the fan-out's
if [ "$idle2" -gt 0 ]; then
    sidecar; c_pid=$WS_PID c_port=$WS_PORT
    idle_run pgcast "$b_pid $c_pid" "$b_port $((idle2 / 2))" "$c_port $((idle2 - idle2 / 2))"; idle_two=$idle_per
    kill "$c_pid"
fi
[ "$idle" -gt 0 ] && { idle_run nchan "$(nginx_pids)" "$NGINX_PORT $idle"; idle_nchan=$idle_per; }
echo "aim: <= 8 KiB (8192 bytes) per idle connection on the sidecar; nchan's figure is the reference"
echo

# fan-out: SIDE CONNECTIONS RATE; CPU is sampled once every connection is open and
# subscribed (loadgen's "ready" line, a second before it publishes) and after the run
export LOADGEN_GRACE_S=${LOADGEN_GRACE_S:-10}  # late deliveries count (loadgen ends once all are in)
fan_run() {
    local side=$1 n=$2 rate=$3 pids c0 c1 res
    if [ $side = pgcast ]; then
        pids=$b_pid
        $LOADGEN --subscribe bench:fan 127.0.0.1 "$b_port" "/ws?token=$tok" "$n" "$secs" "$rate" \
            pg "$(bench_pub_conninfo)" bench bench:fan >"$out" &
    else
        pids=$(nginx_pids)
        $LOADGEN --ws 127.0.0.1 "$NGINX_PORT" /sub "$n" "$secs" "$rate" http 127.0.0.1 "$NGINX_PORT" /pub >"$out" &
    fi
    local lg=$!
    wait_for "$out" '^ready' 120
    c0=$(cpu_ticks $pids)
    wait $lg
    c1=$(cpu_ticks $pids)
    res=$(grep '^streams=' "$out")
    local pubs=$(grep '^publish ' "$out")
    local d=$(field deliveries "$res")
    local per=$(awk -v t=$((c1 - c0)) -v hz=$hz -v d=${d:-0} 'BEGIN{ if (d>0) printf "%.2f", t*1e6/hz/d; else print "n/a" }')
    printf '  %-7s %5d conns x %3d ev/s: %s cpu=%sus/delivery\n' "$side" "$n" "$rate" "$res" "$per"
    printf '  %-7s %5s                 %s\n' "" "" "$pubs"
    local k=${side}_$n
    eval "cpu_$k+=($per) p50_$k+=($(field p50 "$res")) p99_$k+=($(field p99 "$res")) rate_$k+=($(field rate "$res"))"
    eval "s50_$k+=($(field sent_p50 "$pubs")) s99_$k+=($(field sent_p99 "$pubs")) rtt_$k+=($(field rtt_p50 "$pubs"))"
    eval "lost_$k=\$(( \${lost_$k:-0} + $(field expected "$res") - ${d:-0} ))"
    sleep 2
}
# Runs alternate between the two servers, $reps times each: the machine is shared, so
# the figures compared are medians of runs taken side by side.
for w in "$small 200" "$large 20"; do
    set -- $w
    for ((r = 1; r <= reps; r++)); do
        fan_run pgcast "$1" "$2"
        fan_run nchan "$1" "$2"
    done
done
echo
echo "fan-out, median of $reps runs each; latency in ms from when each publish was due (a publish the server"
echo "held up counts: nchan answers a POST only after its fan-out, so its one publisher falls behind the fixed"
echo "rate, while pgcast's events wait in the sidecar) and, in brackets, from when it was sent; publish: the"
echo "publish call's round trip (ms);"
echo "not delivered: within ${LOADGEN_GRACE_S} s of the last publish, over the $reps runs"
printf '  %-27s %12s %9s %9s %18s %10s %16s %s\n' "" deliveries/s p50 p99 "[p50 / p99 sent]" publish "cpu us/delivery" "not delivered"
for w in "$small 200" "$large 20"; do
    set -- $w
    for side in pgcast nchan; do
        k=${side}_$1
        eval "m_rate=\$(median \${rate_$k[@]}) m_p50=\$(median \${p50_$k[@]}) m_p99=\$(median \${p99_$k[@]}) m_cpu=\$(median \${cpu_$k[@]})"
        eval "m_s50=\$(median \${s50_$k[@]}) m_s99=\$(median \${s99_$k[@]}) m_rtt=\$(median \${rtt_$k[@]}) lost=\$lost_$k"
        printf '  %-7s %5d conns x %3d ev/s %12s %9s %9s %18s %10s %16s %d\n' "$side" "$1" "$2" "$m_rate" "$m_p50" "$m_p99" \
            "[$m_s50 / $m_s99]" "$m_rtt" "$m_cpu" "$lost"
        eval "med_${k}_cpu=$m_cpu med_${k}_p50=$m_p50 med_${k}_p99=$m_p99 med_${k}_rate=$m_rate med_${k}_s99=$m_s99"
    done
done
echo
echo "ratios pgcast/nchan (aims: CPU per delivery <= nchan's, p99 <= nchan's):"
printf '  idle RSS per connection: %s (%d vs %d bytes)\n' "$(ratio $idle_one $idle_nchan)" "$idle_one" "$idle_nchan"
for n in "$small" "$large"; do
    eval "pc=\$med_pgcast_${n}_cpu nc=\$med_nchan_${n}_cpu pp=\$med_pgcast_${n}_p99 np=\$med_nchan_${n}_p99"
    eval "p5=\$med_pgcast_${n}_p50 n5=\$med_nchan_${n}_p50 pr=\$med_pgcast_${n}_rate nr=\$med_nchan_${n}_rate"
    eval "ps9=\$med_pgcast_${n}_s99 ns9=\$med_nchan_${n}_s99"
    printf '  %5d connections: deliveries/s %sx, cpu/delivery %sx, p50 %sx, p99 %sx [p99 from the send %sx]\n' "$n" \
        "$(ratio "$pr" "$nr")" "$(ratio "$pc" "$nc")" "$(ratio "$p5" "$n5")" "$(ratio "$pp" "$np")" "$(ratio "$ps9" "$ns9")"
done
echo "(pgcast's latency includes the publish's commit in PostgreSQL, with synchronous_commit=${BENCH_SYNC_COMMIT:-off},"
echo " and the hub's NOTIFY; the database's CPU is not counted on either side; two sidecars: ${idle_two} bytes"
echo " per idle connection at ${idle2})"
