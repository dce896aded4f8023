#!/bin/bash
# The demo page in headless Chromium, two pages at once: they see each other in presence;
# events published with psql appear on both; the sidecar is killed — the pages fall back
# (SSE, and say so) and keep receiving — then it comes back and they reconnect; each page ends with
# every event exactly once, in order. A screenshot is kept in build/test-artifacts/.
source "$PGCAST_ROOT/tests/lib/tap.sh"
source "$PGCAST_ROOT/tests/lib/webserver.sh"
web_init
lighttpd_start || { web_logs; exit 1; }
cp "$PGCAST_ROOT/demo/index.html" "$WEB_DIR/www/index.html"
cp "$PGCAST_ROOT/client/pgcast.js" "$WEB_DIR/www/pgcast.js"
export TOKEN_A=$(mint '{"sub":"alice","name":"Alice","tenant":"demo","exp":"+3600","channels":["project:*"],"publish":["project:*"]}')
export TOKEN_B=$(mint '{"sub":"bob","name":"Bob","tenant":"demo","exp":"+3600","channels":["project:*"],"publish":["project:*"]}')
export ARTIFACTS="$PGCAST_ROOT/build/test-artifacts"
mkdir -p "$ARTIFACTS"
export BASE="$LIGHTTPD_URL" WS_PORT WS_PID PGCAST_TEST_CONFIG PGCAST_BIN WEB_DIR
/usr/bin/python3 - <<'PY'
import os, signal, subprocess, sys, time
sys.path.insert(0, os.path.join(os.environ["PGCAST_ROOT"], "tests", "lib"))
from browser import Browser

n = 0
failed = 0
def ok(cond, what, detail=None):
    global n, failed
    n += 1
    print(f"{'ok' if cond else 'not ok'} {n} - {what}", flush=True)
    if not cond:
        failed += 1
        if detail is not None:
            print(f"#   {str(detail)[:400]}", flush=True)

published = 0
def publish(k=1):
    global published
    for _ in range(k):
        subprocess.run(["psql", "-qXAt", "-c",
                        "SELECT realtime.publish('demo', 'project:demo', 'demo.message', '{\"text\": \"hi\"}')"],
                       check=True, capture_output=True)
        published += 1

base = os.environ["BASE"]
with Browser() as b:
    pa = b.open(f"{base}/?token={os.environ['TOKEN_A']}&name=alice")
    pb = b.open(f"{base}/?token={os.environ['TOKEN_B']}&name=bob")
    for p, who in ((pa, "first"), (pb, "second")):
        ok(p.wait_for("window.pgcast && window.pgcast.status === 'connected' && window.pgcast.transport === 'websocket'", 20),
           f"the {who} page connects over WebSocket")
    ok(pa.wait_for("window.members === 2", 15) and pb.wait_for("window.members === 2", 15),
       "the two pages see each other in presence", (pa.eval("window.members"), pb.eval("window.members")))
    publish(3)
    ok(pa.wait_for("window.received.length === 3", 10) and pb.wait_for("window.received.length === 3", 10),
       "events published with psql appear on both pages")

    # cut the WebSocket: kill the sidecar
    os.kill(int(os.environ["WS_PID"]), signal.SIGKILL)
    time.sleep(0.5)
    for k in range(6):
        publish(1)
        time.sleep(0.3)
    fell = pa.wait_for("window.pgcast.transport === 'sse'", 15) and pb.wait_for("window.pgcast.transport === 'sse'", 15)
    ok(fell, "with the sidecar gone the pages fall back to SSE",
       (pa.eval("window.pgcast.transport"), pb.eval("window.pgcast.transport")))
    ok(pa.eval("window.pgcast.status") == "connected" and "via sse" in pa.eval("document.getElementById('transport').textContent"),
       "and say so: connected via sse", (pa.eval("window.pgcast.status"), pa.eval("document.getElementById('transport').textContent")))
    ok(pa.wait_for(f"window.received.length === {published}", 15) and pb.wait_for(f"window.received.length === {published}", 15),
       "and keep receiving", (pa.eval("window.received"), published))

    # the sidecar comes back on the same port; the pages reconnect
    env = dict(os.environ, PGCAST_CONFIG=os.environ["PGCAST_TEST_CONFIG"])
    ws = subprocess.Popen([os.path.join(os.environ["PGCAST_BIN"], "pgcast-ws"), "--listen", f"127.0.0.1:{os.environ['WS_PORT']}"],
                          env=env, stdout=subprocess.DEVNULL, stderr=open(os.path.join(os.environ["WEB_DIR"], "log", "pgcast-ws2.log"), "w"))
    try:
        back = pa.wait_for("window.pgcast.transport === 'websocket'", 40) and pb.wait_for("window.pgcast.transport === 'websocket'", 40)
        ok(back, "when the sidecar is back the pages reconnect over WebSocket",
           (pa.eval("window.pgcast.transport"), pb.eval("window.pgcast.transport")))
        publish(3)
        want = list(range(1, published + 1))
        pa.wait_for(f"window.received.length >= {published}", 15)
        pb.wait_for(f"window.received.length >= {published}", 15)
        time.sleep(0.5)
        ga, gb = pa.eval("window.received"), pb.eval("window.received")
        ok(ga == want and gb == want, "each page's event list is complete, in order, without duplicates", (ga, gb, want))
        pa.screenshot(os.path.join(os.environ["ARTIFACTS"], "demo.png"))
        ok(os.path.getsize(os.path.join(os.environ["ARTIFACTS"], "demo.png")) > 5000, "a screenshot of the demo page is saved")
    finally:
        ws.terminate()
        ws.wait(10)
sys.exit(1 if failed else 0)
PY
rc=$?
[ $rc = 0 ] || web_logs
exit $rc
