#!/bin/bash
# WebSocket through the web servers, as shipped: lighttpd mod_proxy (upgrade) and Apache
# mod_proxy_http (upgrade=websocket), with Python's websockets; then headless Chromium's
# own WebSocket from a page served by lighttpd receives events published by SQL.
source "$PGCAST_ROOT/tests/lib/tap.sh"
source "$PGCAST_ROOT/tests/lib/webserver.sh"
web_init
lighttpd_start || { web_logs; exit 1; }
TOKEN=$(mint '{"sub":"u1","tenant":"t1","exp":"+3600","channels":["project:*"],"publish":["project:*"]}')
export TOKEN
check() { # URL LABEL
/usr/bin/python3 - "$1" "$2" <<'PY'
import asyncio, json, os, subprocess, sys
import websockets
url, label = sys.argv[1], sys.argv[2]
async def main():
    ws = await websockets.connect(f"{url}?token={os.environ['TOKEN']}")
    hello = json.loads(await ws.recv())
    print(("ok" if hello.get("type") == "connected" else "not ok"), f"1 - [{label}] connected through the web server")
    ch = f"project:px{os.getpid()}"
    await ws.send(json.dumps({"type": "subscribe", "channel": ch}))
    while json.loads(await ws.recv())["type"] != "subscribed":
        pass
    await ws.send(json.dumps({"type": "publish", "channel": ch, "event": "e", "payload": {"v": 1}, "requestId": 1}))
    subprocess.run(["psql", "-qXAt", "-c", f"SELECT realtime.publish('t1', '{ch}', 'sql', '{{}}')"], check=True,
                   capture_output=True)
    got = []
    while len(got) < 2:
        m = json.loads(await asyncio.wait_for(ws.recv(), 10))
        if m.get("channel") == ch and m["type"] in ("e", "sql"):
            got.append((m["seq"], m["type"]))
    print(("ok" if got == [(1, "e"), (2, "sql")] else "not ok"),
          f"2 - [{label}] publish and events through the web server: {got}")
    await ws.close()
asyncio.run(main())
PY
}
check "ws://${LIGHTTPD_URL#http://}/realtime/ws" lighttpd
cat >"$WEB_DIR/www/ws.html" <<EOT
<!doctype html><title>pgcast WebSocket</title>
<script>
window.received = []; window.state = 'connecting';
const ws = new WebSocket('ws://' + location.host + '/realtime/ws?token=$TOKEN');
ws.onopen = () => { window.state = 'open'; ws.send(JSON.stringify({type: 'subscribe', channel: 'project:browser-ws'})); };
ws.onmessage = (e) => { const m = JSON.parse(e.data); if (m.type === 'subscribed') window.state = 'subscribed';
                        if (m.type === 'demo.tick') window.received.push(m.seq); };
</script>
EOT
URL="$LIGHTTPD_URL/ws.html" /usr/bin/python3 - <<'PY'
import os, subprocess, sys, time
sys.path.insert(0, os.path.join(os.environ["PGCAST_ROOT"], "tests", "lib"))
from browser import Browser
with Browser() as b:
    page = b.open(os.environ["URL"])
    up = page.wait_for("window.state === 'subscribed'", 20)
    print(("ok" if up else "not ok"), "3 - Chromium's WebSocket connects through lighttpd and subscribes")
    for _ in range(5):
        subprocess.run(["psql", "-qXAt", "-c", "SELECT realtime.publish('t1', 'project:browser-ws', 'demo.tick', '{}')"],
                       check=True, capture_output=True)
    page.wait_for("window.received.length >= 5", 10)
    got = page.eval("window.received")
    print(("ok" if got == [1, 2, 3, 4, 5] else "not ok"), f"4 - the page received the events published by SQL: {got}")
PY
web_stop_all
web_init
apache_start proxy-fcgi || { web_logs; exit 1; }
check "ws://${APACHE_URL#http://}/realtime/ws" apache
rc=$?
[ $rc = 0 ] || web_logs
exit $rc
