#!/bin/bash
# What reading the log on every wake-up costs (docs/operations.md, "NOTIFY is a wake-up:
# what it costs"), pgcast only (no nchan, so no nginx needed), release build:
# - publish->client latency through lighttpd (SSE) and the sidecar (WebSocket) at fixed
#   offered loads, with bench/loadgen (the pgcast half of bench_sse.sh / bench_ws.sh);
# - one SSE stream on 50 channels of one tenant, 200 transactions of one event per
#   channel (10,000 wake-ups): the time to deliver all and how many realtime.read calls
#   the handler's hub made (pg_stat_user_functions, track_functions = pl).
# - long-poll wake-up: BENCH_WAITERS (9000) long-polls on one channel through lighttpd,
#   woken by one publish (realtime.publish through psql): time from sending it to each
#   answer, p50/p99, and when the publish's commit came back (bench/waiters.c;
#   bench_poll.sh sets the same against nchan).
# BENCH_SECONDS (10) sets each latency run's length; BENCH_PARTS ("latency batch
# longpoll") which parts run.
source "$(dirname "$0")/lib.sh"
secs=${BENCH_SECONDS:-10}
parts=${BENCH_PARTS:-latency batch longpoll}
waiters=${BENCH_WAITERS:-9000}
LOADGEN=build/release/bench/loadgen
[ -x "$LOADGEN" ] && [ -x build/release/bench/waiters ] && [ -x bin/pgcast-sse.fcgi ] || make --no-print-directory >/dev/null
bench_setup wakeup
psql -qX -c "ALTER DATABASE postgres SET track_functions = 'pl'" >/dev/null
pgcast_config_add "queue_events = 4096"
lighttpd_start || { web_logs; exit 1; }
lport=${LIGHTTPD_URL##*:}
tok=$(mint '{"sub":"bench","tenant":"bench","exp":"+86400","channels":["bench:*"]}')
pub=$(bench_pub_conninfo)

[[ " $parts " == *" latency "* ]] && echo "publish->client latency, ${secs}s per run, $(nproc) cores, load generator on the same machine"
for w in "1000 200" "200 1000"; do
    [[ " $parts " == *" latency "* ]] || break
    set -- $w
    echo "sse $1 streams x $2 ev/s: $($LOADGEN 127.0.0.1 "$lport" "/realtime/sse?channel=bench:fan&token=$tok" "$1" "$secs" "$2" pg "$pub" bench bench:fan | tail -n1)"
    sleep 2
    echo "ws  $1 conns   x $2 ev/s: $($LOADGEN --ws --subscribe bench:wsfan 127.0.0.1 "$WS_PORT" "/ws?token=$tok" "$1" "$secs" "$2" pg "$pub" bench bench:wsfan | grep -v '^ready' | tr '\n' ' ')"
    sleep 2
done

# batching: one stream, 50 channels of one tenant
batch() {
tok50=$(mint '{"sub":"u","tenant":"tb","exp":"+600","channels":["c:*"]}')
q=$(for i in $(seq 1 50); do printf 'channel=c:%d&' "$i"; done)
out="$PGCAST_TEST_WORK/batch.out"
curl -sN --max-time 120 "$LIGHTTPD_URL/realtime/sse?${q}token=$tok50" >"$out" &
curl_pid=$!
sleep 2
psql -qX -c "SELECT pg_stat_reset()" >/dev/null
start=$(date +%s%N)
for t in $(seq 1 200); do
    echo "SELECT realtime.publish('tb', 'c:' || g, 'e', jsonb_build_object('t', $t)) FROM generate_series(1, 50) g;"
done | psql -qXAt >/dev/null
for _ in $(seq 1 600); do [ "$(grep -c '^data: {"type":"e"' "$out")" -ge 10000 ] && break; sleep 0.1; done
end=$(date +%s%N)
sleep 12 # backends report function statistics when idle
got=$(grep -c '^data: {"type":"e"' "$out")
reads=$(psql -qXAt -c "SELECT coalesce(sum(calls), 0) FROM pg_stat_user_functions WHERE schemaname = 'realtime' AND funcname = 'read'")
kill $curl_pid 2>/dev/null
echo "50 channels x 200 transactions (10,000 wake-ups) to one stream: $got delivered in $(( (end - start) / 1000000 )) ms, $reads realtime.read calls"
}
[[ " $parts " == *" batch "* ]] && batch

# long-poll wake-up: waiters held on one channel, one publish
if [[ " $parts " == *" longpoll "* ]]; then
    rm -f "$PGCAST_TEST_WORK/held" "$PGCAST_TEST_WORK/go"
    # the publisher's session has published before (its first call compiles the function)
    export WAITERS_WARMUP="SELECT realtime.publish('bench', 'bench:warm', 'e', '{}')"
    build/release/bench/waiters 127.0.0.1 "$lport" \
        "/realtime/events?channel=bench:lp&since=bench:lp%3D0&wait=25" "Authorization: Bearer $tok\r\n" "$waiters" \
        "sql:SELECT realtime.publish('bench', 'bench:lp', 'e', '{}')" "$PGCAST_TEST_WORK" >"$PGCAST_TEST_WORK/wake.out" 2>&1 &
    py=$!
    for _ in $(seq 1 1200); do [ -f "$PGCAST_TEST_WORK/held" ] || ! kill -0 $py 2>/dev/null && break; sleep 0.1; done
    # CPU of pgcast-poll and lighttpd while the waiters are held (3 s) and from the
    # publish until every answer is in
    lpid=$(pgrep -f "lighttpd -D -f $WEB_DIR/lighttpd.conf")
    ppid=$(pgrep -P "$lpid" -f pgcast-poll.fcgi)
    c0=$(cpu_ticks $ppid); l0=$(cpu_ticks $lpid)
    sleep 3
    c1=$(cpu_ticks $ppid); l1=$(cpu_ticks $lpid)
    touch "$PGCAST_TEST_WORK/go"
    wait $py
    c2=$(cpu_ticks $ppid); l2=$(cpu_ticks $lpid)
    ms() { echo $(( $1 * 1000 / hz )); }
    echo "long-poll wake-up, $waiters waiters on one channel through lighttpd, one publish: $(cat "$PGCAST_TEST_WORK/wake.out")"
    echo "  CPU ms, pgcast-poll / lighttpd: holding them 3 s: $(ms $((c1 - c0))) / $(ms $((l1 - l0))); from the publish to the last answer (and the client's 0.5 s poll after it): $(ms $((c2 - c1))) / $(ms $((l2 - l1)))"
fi
