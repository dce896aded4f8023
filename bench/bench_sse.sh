#!/bin/bash
# SSE through lighttpd (the shipped config, release build) against nginx + nchan, same
# machine, same load generator (bench/loadgen.c): idle capacity and memory per stream,
# then fan-out at fixed offered loads — deliveries/s, publish-to-client latency, and
# server CPU time per delivery (lighttpd + pgcast-sse, resp. nginx, from /proc).
# BENCH_SECONDS (10), BENCH_IDLE (9000) and BENCH_STREAMS_SMALL/LARGE (1000/9000) scale it.
source "$(dirname "$0")/lib.sh"
secs=${BENCH_SECONDS:-10}
idle=${BENCH_IDLE:-9000}
small=${BENCH_STREAMS_SMALL:-1000}
large=${BENCH_STREAMS_LARGE:-9000}
LOADGEN=build/release/bench/loadgen
bench_on_exit=nginx_stop
bench_setup sse
pgcast_config_add "queue_events = 4096"
lighttpd_start || { web_logs; exit 1; }
lport=${LIGHTTPD_URL##*:}
tok=$(mint '{"sub":"bench","tenant":"bench","exp":"+86400","channels":["bench:*"]}')

nginx_start '        location = /sub { nchan_subscriber eventsource; nchan_channel_id bench; }
        location = /pub { nchan_publisher; nchan_channel_id bench; }
        keepalive_requests 1000000;' || exit 1  # the publisher keeps one connection
nport=$NGINX_PORT

pids_pgcast() { echo $(pgrep -f "lighttpd -D -f $WEB_DIR") $(pgrep -f "$PGCAST_BIN/pgcast-sse.fcgi"); }
pids_handler() { pgrep -f "$PGCAST_BIN/pgcast-sse.fcgi"; }
pids_nchan() { nginx_pids; }

echo "SSE benchmark: lighttpd + pgcast-sse (FastCGI) vs nginx + nchan, $(nproc) cores, load generator on the same machine"
echo

# idle capacity
for side in pgcast nchan; do
    if [ $side = pgcast ]; then pids=$(pids_pgcast); args=(127.0.0.1 "$lport" "/realtime/sse?channel=bench:idle&token=$tok");
    else pids=$(pids_nchan); args=(127.0.0.1 "$nport" "/sub"); fi
    before=$(rss_kb $pids)
    $LOADGEN "${args[@]}" "$idle" 8 0 idle >"$PGCAST_TEST_WORK/idle.out" &
    lg=$!
    sleep 7
    [ $side = pgcast ] && pids=$(pids_pgcast)
    after=$(rss_kb $pids)
    wait $lg
    streams=$(grep -o 'streams=[0-9]*' "$PGCAST_TEST_WORK/idle.out" | cut -d= -f2)
    per=$(( (after - before) * 1024 / (streams > 0 ? streams : 1) ))
    printf 'idle %-7s %5s streams held: server RSS %6d -> %6d KiB, %5d bytes per stream\n' "$side" "$streams" "$before" "$after" "$per"
    eval "idle_$side=$per"
    sleep 3
done
echo "aim: <= 24 KiB per stream (lighttpd + pgcast together); nchan's figure is the reference"
echo

# The publisher commits without waiting for its WAL flush (synchronous_commit=off, a
# per-session choice open to any publisher; docs/operations.md): nchan's publish is not
# durable either, so both sides are timed without a disk flush in the path.
# BENCH_SYNC_COMMIT=on times pgcast with durable commits instead.
pub_conninfo=$(bench_pub_conninfo)

run() { # side streams rate
    local side=$1 n=$2 rate=$3 pids out
    if [ $side = pgcast ]; then
        pids=$(pids_pgcast)
        args=(127.0.0.1 "$lport" "/realtime/sse?channel=bench:fan&token=$tok" "$n" "$secs" "$rate" pg "$pub_conninfo" bench bench:fan)
    else
        pids=$(pids_nchan)
        args=(127.0.0.1 "$nport" /sub "$n" "$secs" "$rate" http 127.0.0.1 "$nport" /pub)
    fi
    local c0=$(cpu_ticks $pids) h0=$(cpu_ticks $(pids_handler))
    out=$($LOADGEN "${args[@]}")
    [ $side = pgcast ] && pids=$(pids_pgcast)
    local c1=$(cpu_ticks $pids) h1=$(cpu_ticks $(pids_handler))
    local deliveries=$(echo "$out" | grep -o 'deliveries=[0-9]*' | cut -d= -f2)
    local us=$(( (c1 - c0) * 1000000 / hz ))
    local per=$(awk -v u=$us -v d=${deliveries:-0} 'BEGIN{ if (d>0) printf "%.2f", u/d; else print "n/a" }')
    local split=""
    if [ $side = pgcast ]; then
        split=$(awk -v h=$(( (h1 - h0) * 1000000 / hz )) -v u=$us -v d=${deliveries:-0} \
            'BEGIN{ if (d>0) printf " (pgcast-sse %.2f + lighttpd %.2f)", h/d, (u-h)/d }')
    fi
    printf '%-7s %5d streams x %3d ev/s: %s cpu=%sus/delivery%s\n' "$side" "$n" "$rate" "$out" "$per" "$split"
    eval "res_${side}_${n}_cpu=$per"
    eval "res_${side}_${n}_p99=$(echo "$out" | grep -o 'p99=[0-9.]*' | cut -d= -f2)"
    eval "res_${side}_${n}_rate=$(echo "$out" | grep -o ' rate=[0-9]*' | cut -d= -f2)"
    sleep 3
}
for w in "$small 200" "$large 20"; do
    set -- $w
    run pgcast "$1" "$2"
    run nchan "$1" "$2"
done
echo
echo "ratios pgcast/nchan (aims: CPU per delivery <= 2x nchan, p99 <= nchan's, full offered rate at ${large} x 20/s):"
for n in "$small" "$large"; do
    eval "pc=\$res_pgcast_${n}_cpu nc=\$res_nchan_${n}_cpu pp=\$res_pgcast_${n}_p99 np=\$res_nchan_${n}_p99"
    awk -v n=$n -v pc=$pc -v nc=$nc -v pp=$pp -v np=$np 'BEGIN{ printf "  %5d streams: cpu/delivery %.2fx, p99 %.2fx\n", n, (nc>0?pc/nc:0), (np>0?pp/np:0) }'
done
echo "(pgcast's figures include lighttpd's relay; the database's own CPU for publishing is not counted on either side;"
echo " pgcast's publishes commit with synchronous_commit=${BENCH_SYNC_COMMIT:-off})"
