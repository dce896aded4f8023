#!/bin/bash
# Streams whose clients closed cleanly do not linger: lighttpd passes the client's FIN on
# to the handler (tcp-fin-propagate), and keepalive comments make any server notice a
# departure within sse_keepalive_ms; the handler's open streams (its connection-stats
# rows) fall back to none well within one heartbeat (30 s). And what such streams can
# take is bounded: past sse_max_streams a new stream is told to come back later (a 200
# event stream with Retry-After, retry: and a "busy" message, which EventSource honours).
source "$PGCAST_ROOT/tests/lib/tap.sh"
source "$PGCAST_ROOT/tests/lib/webserver.sh"
web_init
pgcast_config_add "sse_max_streams = 150"
lighttpd_start || { web_logs; exit 1; }
apache_start proxy-fcgi || { web_logs; exit 1; }
export TOKEN=$(mint '{"sub":"u1","tenant":"t1","exp":"+3600","channels":["project:*"]}')
LIGHTTPD_URL=$LIGHTTPD_URL APACHE_URL=$APACHE_URL /usr/bin/python3 - <<'PY'
import os, socket, subprocess, time, urllib.parse

n = 0
def ok(cond, what, detail=None):
    global n
    n += 1
    print(f"{'ok' if cond else 'not ok'} {n} - {what}", flush=True)
    if not cond and detail is not None:
        print(f"#   {detail}", flush=True)

def open_rows():
    return int(subprocess.run(["psql", "-qXAt", "-c", "SELECT count(*) FROM realtime.realtime_connection_stats "
                               "WHERE transport = 'sse' AND disconnected_at IS NULL"],
                              check=True, capture_output=True, text=True).stdout)

u = urllib.parse.urlparse(os.environ["LIGHTTPD_URL"])
def stream(i, u=u):
    s = socket.create_connection((u.hostname, u.port), timeout=20)
    s.sendall(f"GET /realtime/sse?channel=project:linger{i % 10}&token={os.environ['TOKEN']} HTTP/1.1\r\n"
              f"Host: {u.hostname}\r\n\r\n".encode())
    head = b""
    while b"\r\n\r\n" not in head:
        chunk = s.recv(4096)
        if not chunk:
            break
        head += chunk
    return s, head.split(b"\r\n", 1)[0].decode(errors="replace"), head

def wait_rows(want, timeout):
    end = time.time() + timeout
    while time.time() < end:
        r = open_rows()
        if r == want:
            return r
        time.sleep(0.2)
    return open_rows()

# churn: three rounds of 120 streams opened and closed cleanly
for rnd in range(3):
    socks = [stream(i)[0] for i in range(120)]
    rows = wait_rows(120, 20)
    ok(rows == 120, f"round {rnd + 1}: 120 streams open", rows)
    t0 = time.time()
    for s in socks:
        s.close()  # a clean close: FIN, nothing more
    rows = wait_rows(0, 40)
    el = time.time() - t0
    print(f"# round {rnd + 1}: 120 cleanly closed streams all ended after {el:.1f} s (heartbeat 30 s)", flush=True)
    ok(rows == 0 and el < 12, f"round {rnd + 1}: the handler ends them within 12 s, not at the next heartbeat",
       (rows, round(el, 1)))

# the bound: sse_max_streams = 150
socks, statuses = [], []
for i in range(160):
    s, status, head = stream(i)
    socks.append(s)
    statuses.append((status, head))
busy = [(s, h) for s, (st, h) in zip(socks, statuses) if " 200 " in st and b"Retry-After:" in h.split(b"\r\n\r\n")[0]]
ok200 = sum(1 for st, _ in statuses if " 200 " in st) - len(busy)
ok(ok200 == 150 and len(busy) == 10, "past sse_max_streams (150) new streams are told to come back later",
   (ok200, len(busy), [st for st, _ in statuses if " 200 " not in st][:3]))
def rest(s, h):
    body = h.split(b"\r\n\r\n", 1)[1]
    while b'"code":"busy"' not in body:
        try:
            chunk = s.recv(4096)
        except OSError:
            break
        if not chunk:
            break
        body += chunk
    return body
bodies = [rest(s, h) for s, h in busy]
ok(bodies and all(b"\nretry: " in b and b'"code":"busy"' in b and b"id:" not in b for b in bodies),
   "as a 200 event stream with retry: and a busy message, and no id: (EventSource comes back, resuming)",
   bodies[:1])
for s in socks:
    s.close()
rows = wait_rows(0, 40)
ok(rows == 0, "and they all end once closed", rows)
s, status, _ = stream(0)
ok(" 200 " in status, "a new stream is accepted again", status)
s.close()
wait_rows(0, 10)

# Apache (mod_proxy_fcgi) passes no FIN on: the keepalive comments (every 5 s by default)
# make it write, fail, and close the handler's connection
a = urllib.parse.urlparse(os.environ["APACHE_URL"])
socks = [stream(i, a)[0] for i in range(60)]
rows = wait_rows(60, 20)
ok(rows == 60, "Apache proxy-fcgi: 60 streams open", rows)
t0 = time.time()
for s in socks:
    s.close()
rows = wait_rows(0, 40)
el = time.time() - t0
print(f"# Apache proxy-fcgi: 60 cleanly closed streams all ended after {el:.1f} s (keepalive 5 s, heartbeat 30 s)")
ok(rows == 0 and el < 15, "Apache proxy-fcgi: the handler ends them within 15 s, not at the next heartbeat",
   (rows, round(el, 1)))
PY
rc=$?
[ $rc = 0 ] || web_logs
exit $rc
