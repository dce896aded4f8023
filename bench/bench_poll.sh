#!/bin/bash
# Polling through lighttpd + pgcast-poll (the shipped config, release build) against
# nginx + nchan on the same workload, same machine, same clients, in one run:
#   304 path       pgcast: GET /realtime/events?channel=bench:page&since=bench:page=10 with
#                  its ETag in If-None-Match (token checked, positions the process keeps
#                  from the wake-ups, proven current by one barrier per batch);
#                  nchan: interval-poll GET with the 10th message's id in
#                  If-Modified-Since/If-None-Match (memory store, no authentication)
#   10-event page  pgcast: since=bench:page=0, the 10 events as JSON; nchan: long-poll
#                  from the oldest message, the 10 messages in one multipart answer
#   waiters        N long-polls held (RSS per waiter: lighttpd + pgcast-poll, resp. the
#                  nginx master + worker), then one publish on a connection opened
#                  beforehand (realtime.publish on a libpq connection: lighttpd holds its
#                  9,000-connection limit then; resp. a POST to nchan's publisher
#                  location): time from sending it until each waiter's answer, p50/p99,
#                  and the CPU each process spent from the publish to the last answer
#                  (web server, handler, database, the client): on a machine shared with
#                  other work the times vary from run to run, the CPU much less. Both
#                  sides are warmed first by 20 waiters on another channel (see warm_up)
# The waiters client is bench/waiters.c (build/release/bench/waiters; bench/waiters.py is
# the same in Python, which costs the client more CPU). wrk -t2 -c64 for BENCH_SECONDS
# (10) each; BENCH_WAITERS (9000).
source "$(dirname "$0")/lib.sh"
secs=${BENCH_SECONDS:-10}
waiters=${BENCH_WAITERS:-9000}
bench_on_exit=nginx_stop
[ -x build/release/bench/waiters ] || make --no-print-directory >/dev/null
bench_setup poll
lighttpd_start || { web_logs; exit 1; }
nginx_start '
        location = /poll { nchan_subscriber intervalpoll; nchan_channel_id page; }
        location = /page { nchan_subscriber longpoll; nchan_channel_id page;
                           nchan_subscriber_first_message oldest; nchan_longpoll_multipart_response on; }
        location = /wait { nchan_subscriber longpoll; nchan_channel_id $arg_ch; }
        location = /pub  { nchan_publisher; nchan_channel_id $arg_channel; nchan_message_buffer_length 100; }' || exit 1
NGX=http://127.0.0.1:$NGINX_PORT
tok=$(mint '{"sub":"bench","tenant":"bench","exp":"+86400","channels":["bench:*"],"publish":["bench:*"]}')
header() { awk -F': ' -v h="$1" 'tolower($1)==h {print $2}' | tr -d '\r'; }
fail() { echo "bench_poll: $*" >&2; exit 1; }

# the same ten events on both sides, and a check that each request answers what it should
psql -qXAt -c "SELECT realtime.publish('bench', 'bench:page', 'e', jsonb_build_object('i', g)) FROM generate_series(1, 10) g" >/dev/null
for i in $(seq 1 10); do curl -sf -o /dev/null -X POST -d "{\"i\":$i}" "$NGX/pub?channel=page" || fail "nchan publish"; done
p304="$LIGHTTPD_URL/realtime/events?channel=bench:page&since=bench:page%3D10"
ppage="$LIGHTTPD_URL/realtime/events?channel=bench:page&since=bench:page%3D0"
petag=$(curl -s -D - -o /dev/null -H "Authorization: Bearer $tok" "$p304" | header etag)
[ "$(curl -s -o /dev/null -w '%{http_code}' -H "Authorization: Bearer $tok" -H "If-None-Match: $petag" "$p304")" = 304 ] \
    || fail "pgcast's 304 request does not answer 304"
[ "$(curl -s -H "Authorization: Bearer $tok" "$ppage" | python3 -c 'import json,sys; print(len(json.load(sys.stdin)["events"]))')" = 10 ] \
    || fail "pgcast's page request does not answer 10 events"
nhead=$(curl -s -D - -o "$PGCAST_TEST_WORK/npage" "$NGX/page")
nims=$(echo "$nhead" | header last-modified)
netag=$(echo "$nhead" | header etag)
[ "$(grep -c '^{"i":' "$PGCAST_TEST_WORK/npage")" = 10 ] || fail "nchan's page request does not answer 10 messages"
[ "$(curl -s -o /dev/null -w '%{http_code}' -H "If-Modified-Since: $nims" -H "If-None-Match: $netag" "$NGX/poll")" = 304 ] \
    || fail "nchan's interval-poll with the last id does not answer 304"

# requests/s; BENCH_* in the environment name the headers (bench/poll_header.lua)
rps() {
    local out bad
    out=$(wrk -t2 -c64 -d"${secs}s" -s bench/poll_header.lua "$1")
    bad=$(echo "$out" | awk '/Non-2xx/ {print $NF}')
    [ -n "$bad" ] && echo "  ($bad answers to $1 were errors)" >&2
    echo "$out" | awk '/Requests\/sec/ {print $2}'
}
# the database's CPU (every process of the bench's cluster: backends, background workers)
db_ticks() { cpu_ticks $(pgrep -P "$(head -1 "$PGCAST_TEST_WORK/pg/data/postmaster.pid")"); }
echo "Polling: lighttpd + pgcast-poll (FastCGI, PostgreSQL) vs nginx + nchan (1 worker, memory store),"
echo "wrk -t2 -c64 for ${secs}s per figure, everything on the same $(nproc) cores"
db0=$(db_ticks)
pg304=$(BENCH_TOKEN=$tok BENCH_ETAG=$petag rps "$p304")
db304=$(( $(db_ticks) - db0 ))
db304_us=$(awk -v t="$db304" -v hz="$hz" -v r="$pg304" -v s="$secs" 'BEGIN { if (r > 0) printf "%.1f", t * 1e6 / hz / (r * s); else print "n/a" }')
db304_pct=$(awk -v t="$db304" -v hz="$hz" -v s="$secs" 'BEGIN { printf "%.0f", t * 100 / hz / s }')
sleep 2
nc304=$(BENCH_ETAG=$netag BENCH_IMS=$nims rps "$NGX/poll"); sleep 2
pgpage=$(BENCH_TOKEN=$tok rps "$ppage"); sleep 2
ncpage=$(rps "$NGX/page"); sleep 2

# long-poll waiters: held, then woken by one publish sent by the same client
# (bench/waiters.c); the table counts the 200s.
rss_kb() { local t=0; for p in "$@"; do t=$((t + $(awk '/VmRSS/ {print $2}' "/proc/$p/status" 2>/dev/null || echo 0))); done; echo $t; }
lpid=$(pgrep -f "lighttpd -D -f $WEB_DIR/lighttpd.conf")
pids_pgcast() { echo $lpid $(pgrep -P "$lpid" -f pgcast-poll.fcgi); }
# CPU from the publish to the last answer (ms): the web server, the handler, the
# database (every process of the bench's cluster), and the client's own (cpu=).
# Warm first, as a server that has been answering is: 20 waiters on another channel woken
# by one publish (the hub's first read on its connection prepares and compiles
# realtime.read, a publisher's first call compiles realtime.publish: several ms each,
# once per connection), and the measured publish's session has published before
# (WAITERS_WARMUP).
export WAITERS_WARMUP="SELECT realtime.publish('bench', 'bench:warm', 'e', '{}')"
warm_up() { # host port path headers sql:STATEMENT|http:PATH
    rm -f "$PGCAST_TEST_WORK/held" "$PGCAST_TEST_WORK/go"
    build/release/bench/waiters "$1" "$2" "$3" "$4" 20 "$5" "$PGCAST_TEST_WORK" >"$PGCAST_TEST_WORK/warm.out" 2>&1 &
    local w=$!
    for _ in $(seq 1 300); do [ -f "$PGCAST_TEST_WORK/held" ] || ! kill -0 $w 2>/dev/null && break; sleep 0.1; done
    sleep 1
    touch "$PGCAST_TEST_WORK/go"
    wait $w
    grep -q "answered=20 ok=20" "$PGCAST_TEST_WORK/warm.out" || echo "warm-up: $(cat "$PGCAST_TEST_WORK/warm.out")" >&2
}
hold_and_wake() { # side host port path headers count sql:STATEMENT|http:PATH
    local side=$1 pids before after out c0 c1
    shift
    rm -f "$PGCAST_TEST_WORK/held" "$PGCAST_TEST_WORK/go"
    pids=$(pids_$side)
    before=$(rss_kb $pids)
    build/release/bench/waiters "$@" "$PGCAST_TEST_WORK" >"$PGCAST_TEST_WORK/wake.out" 2>&1 &
    local py=$!
    for _ in $(seq 1 1200); do [ -f "$PGCAST_TEST_WORK/held" ] || ! kill -0 $py 2>/dev/null && break; sleep 0.1; done
    sleep 3
    after=$(rss_kb $pids)
    c0="$(cpu_ticks $(web_$side)) $(cpu_ticks $(handler_$side)) $(db_ticks)"
    touch "$PGCAST_TEST_WORK/go"
    wait $py
    c1="$(cpu_ticks $(web_$side)) $(cpu_ticks $(handler_$side)) $(db_ticks)"
    out=$(cat "$PGCAST_TEST_WORK/wake.out")
    [[ "$out" == *answered=* ]] || echo "$side waiters: $out" >&2
    eval "${side}_rss_before=$before ${side}_rss_after=$after ${side}_per=$(( (after - before) * 1024 / waiters ))"
    for k in answered ok early first p50 p99 last publish acked cpu; do
        eval "${side}_$k=$(echo "$out" | grep -o "$k=[^ ]*" | cut -d= -f2)"
    done
    eval "$(echo $c0 $c1 | awk -v s=$side -v hz=$hz '{ printf "%s_cpu_web=%d %s_cpu_handler=%d %s_cpu_db=%d\n",
        s, ($4 - $1) * 1000 / hz, s, ($5 - $2) * 1000 / hz, s, ($6 > $3 ? $6 - $3 : 0) * 1000 / hz }')"
    sleep 2
}
web_pgcast() { echo $lpid; }
handler_pgcast() { pgrep -P "$lpid" -f pgcast-poll.fcgi; }
web_nchan() { nginx_pids; }
handler_nchan() { :; }
pids_nchan() { nginx_pids; }
warm_up 127.0.0.1 "${LIGHTTPD_URL##*:}" "/realtime/events?channel=bench:lpwarm&since=bench:lpwarm%3D0&wait=25" \
    "Authorization: Bearer $tok\r\n" "sql:SELECT realtime.publish('bench', 'bench:lpwarm', 'e', '{}')"
hold_and_wake pgcast 127.0.0.1 "${LIGHTTPD_URL##*:}" "/realtime/events?channel=bench:lp&since=bench:lp%3D0&wait=25" \
    "Authorization: Bearer $tok\r\n" "$waiters" "sql:SELECT realtime.publish('bench', 'bench:lp', 'e', '{}')"
warm_up 127.0.0.1 "$NGINX_PORT" "/wait?ch=lpwarm" "" "http:/pub?channel=lpwarm"
hold_and_wake nchan 127.0.0.1 "$NGINX_PORT" "/wait?ch=lp" "" "$waiters" "http:/pub?channel=lp"

ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0) printf "%.2f", a / b; else print "n/a" }'; }
row() { printf '%-38s %12s %12s %10s\n' "$1" "$2" "$3" "${4-$(ratio "$2" "$3")}"; }
echo
echo "Compared: 304 path = pgcast's If-None-Match on /realtime/events (token checked, positions kept"
echo "from the wake-ups, one barrier per batch) vs nchan's interval-poll with its last message's id; page = the 10 events as JSON vs"
echo "nchan's long-poll multipart answer with its 10 messages; waiters = long-polls (wait=25 / nchan"
echo "long-poll) woken by one publish (realtime.publish on a libpq connection / POST to nchan's publisher)."
printf '%-38s %12s %12s %10s\n' "" pgcast nchan pgcast/nchan
row "304 path, requests/s" "$pg304" "$nc304"
row "  database CPU per 304, us" "$db304_us" "-" ""
row "  database CPU, % of one core" "$db304_pct" "-" ""
row "10-event page, requests/s" "$pgpage" "$ncpage"
row "long-poll waiters answered" "${pgcast_answered:-0}/$waiters" "${nchan_answered:-0}/$waiters" ""
row "  of them 200 (before the publish)" "${pgcast_ok:-0} (${pgcast_early:-?})" "${nchan_ok:-0} (${nchan_early:-?})" ""
row "  RSS per waiter, bytes" "$pgcast_per" "$nchan_per"
row "  wake-up first answer, ms" "$pgcast_first" "$nchan_first" ""
row "  wake-up p50, ms" "$pgcast_p50" "$nchan_p50"
row "  wake-up p99, ms" "$pgcast_p99" "$nchan_p99"
row "  wake-up last, ms" "$pgcast_last" "$nchan_last"
row "  CPU in the wake-up, ms: web server" "$pgcast_cpu_web" "$nchan_cpu_web"
row "    handler (pgcast-poll)" "$pgcast_cpu_handler" "-" ""
row "    database" "$pgcast_cpu_db" "-" ""
row "    the client" "$pgcast_cpu" "$nchan_cpu" ""
echo "(RSS: lighttpd + pgcast-poll $pgcast_rss_before -> $pgcast_rss_after KiB, nginx $nchan_rss_before -> $nchan_rss_after KiB;"
echo " publish answered ${pgcast_publish//_/ } ${pgcast_acked} ms after it was sent (its commit) resp. $nchan_publish after the"
echo " last answer; wake-up counted from sending the publish to each answer's first bytes at the one client"
echo " (bench/waiters.c), which shares the cores: CPU = utime + stime from the publish to the last answer, the"
echo " database's with the connection-stats flush when one falls in it)"
awk -v r="$pg304" 'BEGIN { printf "aim: 304 path >= 10,000 requests/s through lighttpd on this machine: %s\n", (r >= 10000 ? "met" : "not met") }'
