#!/bin/bash
# The polling API through lighttpd (shipped config, release build) with wrk: requests/s
# for the 304 path (If-None-Match, answered from channel positions only) and for a
# 10-event page; then N concurrent long-poll waiters held (RSS per waiter) and woken by
# one publish (time until all answered). BENCH_SECONDS (10), BENCH_WAITERS (9000).
source "$(dirname "$0")/lib.sh"
secs=${BENCH_SECONDS:-10}
waiters=${BENCH_WAITERS:-9000}
bench_setup poll
lighttpd_start || exit 1
export BENCH_TOKEN=$(mint '{"sub":"bench","tenant":"bench","exp":"+86400","channels":["bench:*"]}')
psql -qXAt -c "SELECT realtime.publish('bench', 'bench:page', 'e', jsonb_build_object('i', g)) FROM generate_series(1, 10) g" >/dev/null
url304="$LIGHTTPD_URL/realtime/events?channel=bench:page&since=bench:page%3D10"
export BENCH_ETAG=$(curl -s -D - -o /dev/null -H "Authorization: Bearer $BENCH_TOKEN" "$url304" | awk -F': ' 'tolower($1)=="etag"{print $2}' | tr -d '\r')
echo "Polling benchmark through lighttpd + pgcast-poll (FastCGI), wrk on the same $(nproc) cores"
r304=$(wrk -t2 -c64 -d"${secs}s" -s bench/poll_header.lua "$url304" | awk '/Requests\/sec/{print $2}')
echo "304 path (If-None-Match, nothing new):  $r304 requests/s   (aim >= 10,000)"
BENCH_ETAG= r10=$(BENCH_ETAG= wrk -t2 -c64 -d"${secs}s" -s bench/poll_header.lua "$LIGHTTPD_URL/realtime/events?channel=bench:page&since=bench:page%3D0" | awk '/Requests\/sec/{print $2}')
echo "10-event page:                         $r10 requests/s"

# long-poll waiters: hold them, measure RSS, then one publish wakes them all
pids="$(pgrep -f "lighttpd -D -f $WEB_DIR") $(pgrep -f "$PGCAST_BIN/pgcast-poll.fcgi")"
rss() { local t=0; for p in $pids; do t=$((t + $(awk '/VmRSS/{print $2}' /proc/$p/status))); done; echo $t; }
before=$(rss)
/usr/bin/python3 - "$LIGHTTPD_URL" "$waiters" <<'PY' &
import os, select, socket, sys, time, urllib.parse
base, n = sys.argv[1], int(sys.argv[2])
u = urllib.parse.urlparse(base)
tok = os.environ["BENCH_TOKEN"]
socks = []
for _ in range(n):
    s = socket.create_connection((u.hostname, u.port))
    s.sendall(f"GET /realtime/events?channel=bench:lp&since=bench:lp%3D0&wait=25 HTTP/1.0\r\nAuthorization: Bearer {tok}\r\n\r\n".encode())
    socks.append(s)
open(os.environ["PGCAST_TEST_WORK"] + "/held", "w").write(str(len(socks)))
while not os.path.exists(os.environ["PGCAST_TEST_WORK"] + "/go"):
    time.sleep(0.05)
t0 = float(open(os.environ["PGCAST_TEST_WORK"] + "/go").read())
ep = select.epoll()
pending = {}
for s in socks:
    ep.register(s.fileno(), select.EPOLLIN)
    pending[s.fileno()] = s
done = []
while pending and time.time() - t0 < 20:
    for fd, _ in ep.poll(0.5):
        s = pending.get(fd)
        if s and not s.recv(65536):
            ep.unregister(fd)
            del pending[fd]
            done.append(time.time() - t0)
            s.close()
done.sort()
p = lambda q: done[min(len(done) - 1, int(len(done) * q))] * 1000 if done else float("nan")
print(f"long-poll: {len(done)}/{n} waiters answered after one publish; wake-up p50 {p(0.5):.1f} ms, p99 {p(0.99):.1f} ms, last {p(1.0):.1f} ms")
PY
lp=$!
for _ in $(seq 1 600); do [ -f "$PGCAST_TEST_WORK/held" ] && break; sleep 0.1; done
sleep 3
after=$(rss)
echo "long-poll: $waiters waiters held: lighttpd + pgcast-poll RSS $before -> $after KiB, $(( (after - before) * 1024 / waiters )) bytes per waiter"
python3 -c "import time; print(time.time())" >"$PGCAST_TEST_WORK/go.tmp" && mv "$PGCAST_TEST_WORK/go.tmp" "$PGCAST_TEST_WORK/go"
psql -qXAt -c "SELECT realtime.publish('bench', 'bench:lp', 'e', '{}')" >/dev/null
wait $lp
echo "(nchan's long-poll on the same workload is not measured yet)"
