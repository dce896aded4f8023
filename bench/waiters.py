"""Long-poll waiters for bench/bench_poll.sh and bench/bench_wakeup.sh: N connections each
send one request (path, extra headers), then - once the file WORK/go exists - one publish
is sent (sql:STATEMENT through a psql session opened beforehand, or http:PATH as a POST on
a connection opened beforehand) and the time from sending it to each answer's first bytes
is taken. WORK/held is written once every request was sent. Prints one line:
answered= ok= early= first= p50= p99= last= publish= cpu=  (ms; ok = answered 200; early = answered
before the publish; cpu = the client's own CPU time from the publish to the last answer).

usage: waiters.py HOST PORT PATH HEADERS N sql:STATEMENT|http:PATH WORK
They connect at about 2,000 a second: in a faster burst libfcgi's accept
(is_af_unix_keeper) drops FastCGI connections whose request has not arrived within 2 s
and lighttpd answers those 500."""
import os, select, socket, subprocess, sys, time
host, port, path, hdrs, n, publish, work = sys.argv[1:8]
n = int(n)
hdrs = hdrs.replace("\\r\\n", "\r\n")  # given as text
req = f"GET {path} HTTP/1.0\r\nHost: {host}\r\n{hdrs}\r\n".encode()
socks = {}
for i in range(n):
    s = socket.create_connection((host, int(port)))
    s.sendall(req)
    socks[s.fileno()] = s
    if i % 250 == 249:
        time.sleep(0.1)  # about 2,000 new waiters a second (see the note above)
ep = select.epoll()
for fd in socks:
    ep.register(fd, select.EPOLLIN)
# the publisher is connected before the clock starts: psql for SQL, a socket for HTTP
kind, what = publish.split(":", 1)
if kind == "sql":
    pub = subprocess.Popen(["psql", "-qXAt", "-v", "ON_ERROR_STOP=1"], stdin=subprocess.PIPE,
                           stdout=subprocess.PIPE, text=True)
    # a publisher's session is warm (WAITERS_WARMUP, see bench/waiters.c)
    pub.stdin.write((os.environ.get("WAITERS_WARMUP") or "SELECT 1") + ";\n")
    pub.stdin.flush()
    pub.stdout.readline()
else:
    pub = socket.create_connection((host, int(port)))
open(work + "/held", "w").write(str(len(socks)))
while not os.path.exists(work + "/go"):
    time.sleep(0.05)
early = len(ep.poll(0))  # answered before the publish: not waiting
c0 = time.process_time()
t0 = time.perf_counter()
if kind == "sql":
    pub.stdin.write(what + ";\n")
    pub.stdin.flush()
else:
    pub.sendall(f"POST {what} HTTP/1.0\r\nHost: {host}\r\nContent-Length: 2\r\n\r\n{{}}".encode())
lat, good = [], 0
while socks and time.perf_counter() - t0 < 30:
    events = ep.poll(0.5)
    now = time.perf_counter()
    for fd, _ in events:
        s = socks.pop(fd)
        data = s.recv(256)
        ep.unregister(fd)
        s.close()
        lat.append((now - t0) * 1000)
        good += data.split(b"\r\n", 1)[0].split(b" ")[1:2] == [b"200"]
cpu = (time.process_time() - c0) * 1000
if kind == "sql":
    pub_status = "seq_" + pub.stdout.readline().strip()
    pub.stdin.close()
    pub.wait()
else:
    pub_status = pub.recv(64).split(b" ")[1].decode()
lat.sort()
q = lambda f: lat[min(len(lat) - 1, int(len(lat) * f))] if lat else float("nan")
print(f"answered={len(lat)} ok={good} early={early} first={q(0):.1f} p50={q(0.5):.1f} p99={q(0.99):.1f} last={q(1.0):.1f} publish={pub_status} cpu={cpu:.0f}")
