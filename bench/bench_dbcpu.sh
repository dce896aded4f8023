#!/bin/bash
# Database CPU per publish and per poll: the constants of docs/scaling.md's model.
# PostgreSQL's CPU is read from /proc (the run time of every process of the private
# cluster, plus what its exited backends left in the postmaster's cutime+cstime), over a
# fixed run, minus the idle cluster's CPU over the same time.
#
#   publish   one publishing backend (a loop of single-event transactions on 2 channels,
#             BENCH_RATE a second (200), synchronous_commit=off; its own CPU reported
#             apart) for BENCH_SECONDS (10) while
#               L connections LISTEN on realtime_events and drain their notifications
#               (build/release/bench/pg_listeners), L in BENCH_LISTENERS ("0 1 3 10 50 200"),
#               K hubs serve the channels, each as one pgcast process (own LISTEN, reads
#               of the log; build/release/bench/hub_procs), K in BENCH_HUBS ("1 3 10 50"),
#               the same K hubs through one pgcast-relay (when bin/pgcast-relay exists):
#             database CPU per publish in all, in the publisher, in the listening / hub
#             connections (and per listener / hub), in the rest (WAL writer, autovacuum...)
#   poll      GET {prefix}/events through lighttpd + pgcast-poll (release build), wrk -t1
#             -c8 for BENCH_SECONDS: a conditional poll answered 304, a poll with nothing
#             new (200, no events), a page of 10 events: database CPU per request
#   long-poll W clients (BENCH_WAITERS, "100 400") each holding a long-poll, 4 publishes/s
#             on their channel: database CPU per publish and per waiter woken
#   conns     database connections one host holds (lighttpd with both handlers and the
#             sidecar, each with a client), by program and application_name
# Run it on a quiet machine for figures to quote; it prints the load average with them.
source "$(dirname "$0")/lib.sh"
secs=${BENCH_SECONDS:-10}
rate=${BENCH_RATE:-200}
listeners=${BENCH_LISTENERS:-0 1 3 10 50 200}
PGBIN=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -n1)
LISTEN_BIN=build/release/bench/pg_listeners HUB_BIN=build/release/bench/hub_procs
[ -x "$LISTEN_BIN" ] && [ -x "$HUB_BIN" ] || { echo "bench_dbcpu: $LISTEN_BIN or $HUB_BIN missing (make)" >&2; exit 1; }
lst_pid=
stop_listeners() { [ -n "$lst_pid" ] && kill -TERM "$lst_pid" 2>/dev/null && wait "$lst_pid" 2>/dev/null; lst_pid=; }
relay_pid=
stop_relay() { [ -n "$relay_pid" ] && kill -TERM "$relay_pid" 2>/dev/null && wait "$relay_pid" 2>/dev/null; relay_pid=; }
stop_all() { stop_listeners; stop_publisher; stop_relay; }
bench_on_exit=stop_all
PGCAST_PG_MAX_CONNECTIONS=$(( $(echo $listeners | tr ' ' '\n' | sort -n | tail -n1) + 100 )) bench_setup dbcpu
pm=$(head -n1 "$PGCAST_TEST_WORK/pg/data/postmaster.pid")

# CPU of the whole cluster in ns: every live process (/proc/PID/schedstat: run time in
# ns; PostgreSQL's processes are single-threaded), and the exited ones (reaped by the
# postmaster: its cutime + cstime, in clock ticks)
cpu_ns() { local t=0 x; for p in "$@"; do read -r x _ <"/proc/$p/schedstat" 2>/dev/null && t=$((t + x)); done; echo $t; }
pg_cpu() {
    local t
    t=$(awk -v hz="$hz" '{printf "%d", ($16 + $17) * 1e9 / hz}' "/proc/$pm/stat")
    echo $((t + $(cpu_ns "$pm" $(pgrep -P "$pm"))))
}
# per-event figures in microseconds: us NS COUNT
us() { awk -v t="$1" -v n="$2" 'BEGIN{ if (n > 0) printf "%.1f", t / 1e3 / n; else print "n/a" }'; }
idle_cpu() { # CPU of the idle cluster over $secs s
    local a b
    a=$(pg_cpu); sleep "$secs"; b=$(pg_cpu)
    echo $((b - a))
}

echo "Database CPU per publish and per poll; ${secs}s per figure, $(nproc) cores, load average $(cut -d' ' -f1-3 /proc/loadavg)"
idle=$(idle_cpu)
echo "idle cluster: $(us "$idle" "$secs") us of CPU a second (subtracted below)"
echo

# ---- publish
# One publishing backend (its pid known, so its CPU is its own figure): a loop of
# single-event transactions on two channels, BENCH_RATE a second, synchronous_commit=off.
psql -qXAt -c "SELECT realtime.publish('bench', 'bench:c' || g, 'e', '{}') FROM generate_series(0, 1) g" >/dev/null
pub_pid=
stop_publisher() { # its backend too: a DO loop does not notice its client leave
    [ -n "$pub_pid" ] || return 0
    psql -qXAt -c "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = 'bench_pub'" >/dev/null
    kill -TERM "$pub_pid" 2>/dev/null; wait "$pub_pid" 2>/dev/null; pub_pid=
}

start_publisher() {
    PGAPPNAME=bench_pub PGOPTIONS="-c synchronous_commit=off" psql -qX -c "DO \$\$
        DECLARE t0 float8 := extract(epoch FROM clock_timestamp());
        BEGIN FOR i IN 1..100000000 LOOP
            PERFORM realtime.publish('bench', 'bench:c' || (i % 2), 'e', '{\"i\": 1}');
            COMMIT;
            PERFORM pg_sleep(greatest(0, t0 + i / $rate.0 - extract(epoch FROM clock_timestamp())));
        END LOOP; END \$\$" >/dev/null 2>&1 &
    pub_pid=$!
    for _ in $(seq 1 100); do
        bpid=$(psql -qXAt -c "SELECT pid FROM pg_stat_activity WHERE application_name = 'bench_pub'")
        [ -n "$bpid" ] && return 0
        sleep 0.1
    done
    echo "bench_dbcpu: the publisher did not start" >&2; exit 1
}
start_publisher
sleep 3  # warm: plans cached, autovacuum's first visits done
pub_cpu() { # listen|hub K: publishes with K listening connections (listen) or K hubs serving the channels
    local mode=$1 l=$2 lpids= a b la lb pa pb ta tb n lt notes=
    if [ "$l" -gt 0 ]; then
        if [ "$mode" = listen ]; then
            "$LISTEN_BIN" "host=$PGHOST port=$PGPORT user=postgres dbname=postgres" "$l" >"$PGCAST_TEST_WORK/lst.out" &
        else
            "$HUB_BIN" "host=$PGHOST port=$PGPORT user=postgres dbname=postgres" "$l" bench bench:c0 bench:c1 \
                >"$PGCAST_TEST_WORK/lst.out" 2>"$PGCAST_TEST_WORK/lst.err" &
        fi
        lst_pid=$!
        wait_for "$PGCAST_TEST_WORK/lst.out" ready 120 || { echo "$mode x $l did not start" >&2; cat "$PGCAST_TEST_WORK/lst.err" >&2; exit 1; }
        if [ -n "${HUB_RELAY_SOCKET:-}" ]; then # every hub through the relay
            for _ in $(seq 1 100); do
                [ "$(psql -qXAt -c "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'pgcast-hub-relayed'")" = "$l" ] && break
                sleep 0.2
            done
        fi
        lpids=$(psql -qXAt -c "SELECT pid FROM pg_stat_activity WHERE application_name IN
            ('pg_listeners', 'pgcast-hub', 'pgcast-hub-relayed', 'pgcast-relay')")
    fi
    sleep 2
    ta=$(date +%s.%N); a=$(pg_cpu); la=$(cpu_ns $lpids); pa=$(cpu_ns $bpid)
    sleep "$secs"
    tb=$(date +%s.%N); b=$(pg_cpu); lb=$(cpu_ns $lpids); pb=$(cpu_ns $bpid)
    if [ -n "$lst_pid" ]; then
        stop_listeners
        notes=$(grep -o '[0-9]*$' "$PGCAST_TEST_WORK/lst.out" | tail -n1)
    fi
    n=$(psql -qXAt -c "SELECT count(*) FROM realtime.realtime_events_log WHERE tenant_id = 'bench'
        AND channel IN ('bench:c0', 'bench:c1') AND published_at >= to_timestamp($ta) AND published_at < to_timestamp($tb)")
    lt=$((lb - la))
    printf '%-9s %12s %10s %11s %16s %13s %11s %14s\n' "$l" "$(awk -v n="$n" -v s="$secs" 'BEGIN{printf "%.0f", n/s}')" \
        "$(us $((b - a - idle)) "$n")" "$(us $((pb - pa)) "$n")" "$(us "$lt" "$n")" \
        "$( [ "$l" -gt 0 ] && awk -v t="$lt" -v n="$n" -v l="$l" 'BEGIN{printf "%.2f", t/1e3/n/l}' || echo -)" \
        "$(us $((b - a - idle - (pb - pa) - lt)) "$n")" "${notes:--}"
}
echo "database CPU per publish, in us: all, the publisher's backend, the listening backends (all; per"
echo "listener), the rest (WAL writer, autovacuum, checkpointer, ...)"
printf '%-9s %12s %10s %11s %16s %13s %11s %14s\n' listeners "publishes/s" all publisher "listeners" "per listener" rest notifications
for l in $listeners; do pub_cpu listen "$l"; done
echo
echo "the same with hubs serving the channels (each as one pgcast process: its LISTEN connection"
echo "reads each woken channel from the log; the reads batch under load):"
printf '%-9s %12s %10s %11s %16s %13s %11s %14s\n' hubs "publishes/s" all publisher "hub conns" "per hub" rest "events taken"
for l in ${BENCH_HUBS:-1 3 10 50}; do pub_cpu hub "$l"; done
if [ -x bin/pgcast-relay ]; then
    echo
    echo "the same hubs taking their wake-ups from one pgcast-relay (one LISTEN; its connection counted"
    echo "with the hubs'):"
    export HUB_RELAY_SOCKET="$PGCAST_TEST_WORK/relay.sock"
    PGCAST_CONFIG= PGCAST_DATABASE_URL="host=$PGHOST port=$PGPORT user=postgres dbname=postgres" \
        bin/pgcast-relay --socket "$HUB_RELAY_SOCKET" >"$PGCAST_TEST_WORK/relay.log" 2>&1 &
    relay_pid=$!
    for _ in $(seq 1 100); do [ -S "$HUB_RELAY_SOCKET" ] && break; sleep 0.1; done
    printf '%-9s %12s %10s %11s %16s %13s %11s %14s\n' hubs "publishes/s" all publisher "hubs + relay" "per hub" rest "events taken"
    for l in ${BENCH_HUBS:-1 3 10 50}; do pub_cpu hub "$l"; done
    stop_relay
    unset HUB_RELAY_SOCKET
fi
stop_publisher
echo "(one publisher at ${rate}/s, synchronous_commit=off, single-event transactions on 2 channels)"
echo

# ---- poll
lighttpd_start || { web_logs; exit 1; }
tok=$(mint '{"sub":"bench","tenant":"bench","exp":"+86400","channels":["bench:*"],"publish":["bench:*"]}')
header() { awk -F': ' -v h="$1" 'tolower($1)==h {print $2}' | tr -d '\r'; }
psql -qXAt -c "SELECT realtime.publish('bench', 'bench:page', 'e', jsonb_build_object('i', g)) FROM generate_series(1, 10) g" >/dev/null
p304="$LIGHTTPD_URL/realtime/events?channel=bench:page&since=bench:page%3D10"
pnew="$LIGHTTPD_URL/realtime/events?channel=bench:page&since=bench:page%3D10&wait=0"
ppage="$LIGHTTPD_URL/realtime/events?channel=bench:page&since=bench:page%3D0"
etag=$(curl -s -D - -o /dev/null -H "Authorization: Bearer $tok" "$p304" | header etag)
st=$(curl -s -o /dev/null -w '%{http_code}' -H "Authorization: Bearer $tok" -H "If-None-Match: $etag" "$p304")
[ "$st" = 304 ] || { echo "bench_dbcpu: the conditional poll answers $st, not 304" >&2; exit 1; }
poll_cpu() { # what URL [ETAG]
    local a b out n
    a=$(pg_cpu)
    out=$(BENCH_TOKEN=$tok BENCH_ETAG=${3:-} wrk -t1 -c8 -d"${secs}s" -s bench/poll_header.lua "$2")
    b=$(pg_cpu)
    n=$(echo "$out" | awk '/requests in/ {print $1}')
    bad=$(echo "$out" | awk '/Non-2xx/ {print $NF}')
    printf '%-36s %10s %12s %16s\n' "$1" "$n" "$(awk -v n="$n" -v s="$secs" 'BEGIN{printf "%.0f", n/s}')" \
        "$(us $((b - a - idle)) "$n")"
    [ -n "$bad" ] && [ "$1" != "conditional poll (304)" ] && echo "  ($bad answers were not 2xx)"
    sleep 1
}
printf '%-36s %10s %12s %16s\n' "poll request" requests "requests/s" "DB CPU us/req"
poll_cpu "conditional poll (304)" "$p304" "$etag"
poll_cpu "nothing new (200, no events)" "$pnew"
poll_cpu "page of 10 events (200)" "$ppage"
echo "(wrk -t1 -c8 through lighttpd + one pgcast-poll process, on the same cores as PostgreSQL)"
echo

# long-polls woken by publishes: W clients each holding GET …&wait=25 and asking again
# with the returned cursor (tests/lib/resume_clients.py), 4 publishes/s on their channel
waiters_py='
import asyncio, os, sys
sys.path.insert(0, os.path.join(os.environ["PGCAST_ROOT"], "tests", "lib"))
import resume_clients as rc
base, tok, n, since, work = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), sys.argv[5]
async def main():
    cs = [rc.PollClient(base, tok, ["bench:lp"], since={"bench:lp": since}, wait=25).start() for _ in range(n)]
    await asyncio.sleep(3)
    open(work + "/lp.ready", "w").close()
    while not os.path.exists(work + "/lp.stop"):
        await asyncio.sleep(0.1)
    print(f"requests={sum(c.requests for c in cs)} events={sum(c.count() for c in cs)}", flush=True)
    for c in cs:
        await c.stop()
asyncio.run(main())
'
echo "SELECT realtime.publish('bench', 'bench:lp', 'e', '{\"i\": 1}');" >"$PGCAST_TEST_WORK/lp.sql"
lp_since=$(psql -qXAt -c "SELECT realtime.publish('bench', 'bench:lp', 'e', '{}')")
printf '%-36s %10s %12s %16s %18s\n' "long-poll waiters" publishes deliveries "DB CPU us/pub" "per waiter us/pub"
lp_base=
for w in 0 ${BENCH_WAITERS:-100 400}; do
    rm -f "$PGCAST_TEST_WORK/lp.ready" "$PGCAST_TEST_WORK/lp.stop"
    /usr/bin/python3 -c "$waiters_py" "$LIGHTTPD_URL" "$tok" "$w" "$lp_since" "$PGCAST_TEST_WORK" >"$PGCAST_TEST_WORK/lp.out" 2>&1 &
    py=$!
    for _ in $(seq 1 1200); do [ -f "$PGCAST_TEST_WORK/lp.ready" ] || ! kill -0 $py 2>/dev/null && break; sleep 0.1; done
    [ -f "$PGCAST_TEST_WORK/lp.ready" ] || { echo "waiters did not start" >&2; cat "$PGCAST_TEST_WORK/lp.out" >&2; exit 1; }
    a=$(pg_cpu)
    out=$(PGOPTIONS="-c synchronous_commit=off" "$PGBIN/pgbench" -n -f "$PGCAST_TEST_WORK/lp.sql" -c 1 -R 4 -T "$secs" 2>&1)
    b=$(pg_cpu)
    touch "$PGCAST_TEST_WORK/lp.stop"
    wait $py
    n=$(echo "$out" | awk '/number of transactions actually processed/ {print $NF}' | cut -d/ -f1)
    lp_since=$(psql -qXAt -c "SELECT last_seq FROM realtime.realtime_channels WHERE tenant_id = 'bench' AND channel_name = 'bench:lp'")
    per=$(us $((b - a - idle)) "$n")
    [ "$w" = 0 ] && lp_base=$per
    printf '%-36s %10s %12s %16s %18s\n' "$w" "$n" "$(field events "$(cat "$PGCAST_TEST_WORK/lp.out")")" "$per" \
        "$( [ "$w" -gt 0 ] && awk -v a="$per" -v b="$lp_base" -v w="$w" 'BEGIN{printf "%.2f", (a-b)/w}' || echo -)"
    sleep 1
done
echo "(one pgcast-poll process; per waiter: the extra database CPU per publish over no waiters, divided by W)"
echo

# ---- connections of one host
curl -s -o /dev/null -m 2 -H "Authorization: Bearer $tok" "$LIGHTTPD_URL/realtime/sse?channel=bench:page" &
sse=$!
/usr/bin/python3 - "$WS_PORT" "$tok" <<'EOF' &
import asyncio, json, sys, websockets
async def main():
    async with websockets.connect(f"ws://127.0.0.1:{sys.argv[1]}/ws?token={sys.argv[2]}") as ws:
        await ws.send(json.dumps({"type": "subscribe", "channel": "bench:page", "since": 0}))
        await asyncio.sleep(1.5)
asyncio.run(main())
EOF
ws=$!
sleep 1
echo "database connections of one host (lighttpd: pgcast-sse + pgcast-poll, and pgcast-ws; one client each):"
# which program holds each connection: its client port, looked up with ss
declare -A prog
while read -r port name; do prog[$port]=$name; done < <(ss -Htnp state established "( dport = :$PGPORT )" |
    sed -n 's/.*127\.0\.0\.1:\([0-9]*\) *127\.0\.0\.1:[0-9]*.*users:(("\([^"]*\)".*/\1 \2/p')
psql -qXAt -F ' ' -c "SELECT client_port, coalesce(nullif(application_name, ''), '(none)') FROM pg_stat_activity
    WHERE backend_type = 'client backend' AND pid <> pg_backend_pid() AND client_port > 0" |
    while read -r port app; do echo "${prog[$port]:-?} $app"; done | sort | uniq -c | sed 's/^ */  /'
wait $sse $ws 2>/dev/null
