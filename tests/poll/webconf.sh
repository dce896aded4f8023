#!/bin/bash
# The shipped web-server configurations keep the rest of the site as the admin set it:
# - lighttpd-conf/pgcast.conf loads into a site that sets proxy.header and
#   server.modules itself;
# - the long idle timeouts apply only to complete GETs of the realtime URLs: silent
#   half-requests anywhere get the site's own timeout, so they cannot keep the site
#   unreachable, while an SSE stream with a silent client lives on;
# - a body larger than max_message_bytes is refused with 413 at once, without a token
#   and before it is sent (lighttpd and Apache);
# - the sidecar's /metrics is not reachable through the web servers ({prefix}/ws/metrics
#   is 404), only directly from metrics_allow, never with forwarding headers.
source "$PGCAST_ROOT/tests/lib/tap.sh"
source "$PGCAST_ROOT/tests/lib/webserver.sh"
SITE_IDLE=4
HALF=80
web_init
LIGHTTPD_SITE_CONF="server.modules = ( \"mod_access\", \"mod_proxy\" )
proxy.header = ( \"https-remap\" => \"enable\" )
server.max-read-idle = $SITE_IDLE
server.max-fds = 1024
server.max-connections = 64"
lighttpd_start || { not_ok "lighttpd starts with the shipped config in a site that sets proxy.header and server.modules"; web_logs; exit 1; }
ok "lighttpd starts with the shipped config in a site that sets proxy.header and server.modules"
echo '<!doctype html><title>site</title>static page' >"$WEB_DIR/www/index.html"
TOKEN=$(mint '{"sub":"u1","tenant":"t1","exp":"+3600","channels":["project:*"],"publish":["project:*"]}')
export TOKEN SITE_IDLE HALF LIGHTTPD_URL WS_PORT
/usr/bin/python3 - <<'PY'
import os, socket, subprocess, sys, threading, time, urllib.request
base = os.environ["LIGHTTPD_URL"]
host, port = "127.0.0.1", int(base.rsplit(":", 1)[1])
idle, half = int(os.environ["SITE_IDLE"]), int(os.environ["HALF"])
n = 0
failed = 0
def ok(cond, what, detail=None):
    global n, failed
    n += 1
    print(f"{'ok' if cond else 'not ok'} {n} - [lighttpd] {what}")
    if not cond:
        failed += 1
        if detail is not None:
            print("#   " + str(detail)[:400])
    sys.stdout.flush()

# an SSE stream whose client says nothing after its request, for longer than the site's idle timeout
sse = subprocess.Popen(["curl", "-sN", "--max-time", str(idle * 3 + 2),
                        f"{base}/realtime/sse?channel=project:idle&token={os.environ['TOKEN']}"],
                       stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)

# silent half-requests (headers never finished) against non-realtime URLs and /realtime/ ones,
# more than the site's max-connections
socks = []
for i in range(half):
    s = socket.create_connection((host, port), timeout=5)
    path = "/realtime/sse?channel=project:x" if i % 4 == 0 else "/index.html"
    s.sendall(f"GET {path} HTTP/1.1\r\nHost: {host}\r\nX-Slow: ".encode())
    socks.append(s)
t0 = time.time()
r = subprocess.run(["curl", "-s", "-o", "-", "-w", "%{http_code}", "--max-time", "60", f"{base}/index.html"],
                   capture_output=True, text=True)
took = time.time() - t0
print(f"# the static page answered after {took:.1f} s with {half} silent half-requests open (site idle {idle} s)")
ok(r.stdout.endswith("200") and "static page" in r.stdout and took < 40,
   f"the static page answers while {half} silent half-requests (more than max-connections) were sent", (r.stdout, took))
closed = 0
for s in socks:
    s.settimeout(max(0.1, 45 - (time.time() - t0)))
    try:
        closed += s.recv(1024) == b"" or 1
    except (socket.timeout, OSError):
        pass
    s.close()
ok(closed == half, f"lighttpd closed every silent half-request (site's own idle timeout): {closed}/{half}", closed)
out, _ = sse.communicate()
ok(sse.returncode == 28 and out.startswith(b"retry:"),
   f"an SSE stream with a silent client outlived the site's idle timeout ({idle} s): ended by the client's --max-time",
   (sse.returncode, out[:200]))

# a body over max_message_bytes, no token: 413 before the body is sent
s = socket.create_connection((host, port), timeout=15)
s.sendall(f"POST /realtime/publish HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\n"
          f"Content-Length: {2 << 30}\r\n\r\n".encode() + b"{" * 65536)
t0 = time.time()
try:
    head = s.recv(200).decode(errors="replace")
except OSError as e:
    head = f"error: {e}"
s.close()
ok(head.startswith("HTTP/1.1 413"), f"a 2 GiB body to /realtime/publish without a token: 413 after {time.time() - t0:.2f} s, "
   "before the body is sent", head[:80])

def get(url, headers=None):
    try:
        with urllib.request.urlopen(urllib.request.Request(url, headers=headers or {}), timeout=15) as res:
            return res.status, res.read().decode(errors="replace")
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode(errors="replace")
for path in ("/realtime/ws/metrics", "/realtime/wsx/metrics", "/realtime/metrics"):
    st, body = get(base + path)
    ok(st in (403, 404) and "pgcast_ws" not in body, f"GET {path} through lighttpd: {st}, no metrics", (st, body[:200]))
ws = f"http://127.0.0.1:{os.environ['WS_PORT']}"
st, body = get(ws + "/metrics")
ok(st == 200 and "pgcast_ws_connections" in body, "the sidecar's /metrics answers a loopback client directly", (st, body[:100]))
for path in ("/realtime/ws/metrics", "/x/metrics", "/metricsx", "/ws/metrics"):
    st, body = get(ws + path)
    ok(st == 404, f"the sidecar matches exact paths: {path} is 404", (st, body[:100]))
st, body = get(ws + "/metrics", {"X-Forwarded-For": "203.0.113.9"})
ok(st == 403 and "pgcast_ws" not in body, "the sidecar's /metrics with X-Forwarded-For (proxied): 403", (st, body[:100]))
st, body = get(ws + "/realtime/ws")
ok(st == 426, "the sidecar still takes /{prefix}/ws (426 for a GET without upgrade)", (st, body[:100]))
sys.exit(1 if failed else 0)
PY
rc=$?
# metrics_allow without loopback: not even the local client
port2=$("$PGCAST_ROOT/scripts/free-port.sh")
PGCAST_METRICS_ALLOW=192.0.2.1 PGCAST_CONFIG="$PGCAST_TEST_CONFIG" "$PGCAST_BIN/pgcast-ws" --listen "127.0.0.1:$port2" \
    >>"$WEB_DIR/log/pgcast-ws2.log" 2>&1 &
_web_pids+=($!)
wait_port "$port2"
is "metrics_allow without loopback: the sidecar's /metrics refuses 127.0.0.1" \
    "$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$port2/metrics")" 403
[ $rc = 0 ] || web_logs
web_stop_all

web_init
apache_start proxy-fcgi || { web_logs; exit 1; }
export APACHE_URL
/usr/bin/python3 - <<'PY'
import os, socket, sys, time, urllib.request
base = os.environ["APACHE_URL"]
host, port = "127.0.0.1", int(base.rsplit(":", 1)[1])
failed = 0
s = socket.create_connection((host, port), timeout=15)
s.sendall(f"POST /realtime/publish HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\n"
          f"Content-Length: {2 << 30}\r\n\r\n".encode() + b"{" * 65536)
try:
    head = s.recv(200).decode(errors="replace")
except OSError as e:
    head = f"error: {e}"
s.close()
good = head.startswith("HTTP/1.1 413")
failed += not good
print(f"{'ok' if good else 'not ok'} 20 - [apache] a 2 GiB body to /realtime/publish without a token: 413 before it is sent")
if not good:
    print("#   " + head[:100])
try:
    st = urllib.request.urlopen(base + "/realtime/ws/metrics", timeout=15).status
except urllib.error.HTTPError as e:
    st = e.code
good = st in (403, 404)
failed += not good
print(f"{'ok' if good else 'not ok'} 21 - [apache] GET /realtime/ws/metrics through Apache: {st}, no metrics")
sys.exit(1 if failed else 0)
PY
rc2=$?
[ $rc2 = 0 ] || web_logs
[ $rc = 0 ] && [ $rc2 = 0 ] && [ "$_tap_failed" = 0 ]
