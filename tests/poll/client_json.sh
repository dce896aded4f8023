#!/bin/bash
# What clients send as JSON, through lighttpd (HTTP publish/presence) and the sidecar
# (WebSocket): \u0000 never cuts a channel name or reaches PostgreSQL, invalid UTF-8 is a
# 400, and a payload of max_payload_bytes (1 MiB) fits in a message on both paths, one
# byte more is refused with too_large. Nothing refused is written.
source "$PGCAST_ROOT/tests/lib/tap.sh"
source "$PGCAST_ROOT/tests/lib/webserver.sh"
web_init
lighttpd_start || { web_logs; exit 1; }
TOKEN=$(mint '{"sub":"u1","tenant":"t1","exp":"+3600","channels":["*"],"publish":["*"]}')
export TOKEN LIGHTTPD_URL
/usr/bin/python3 - <<'PY'
import asyncio, json, os, subprocess, sys, urllib.request, urllib.error
import websockets
base, tok = os.environ["LIGHTTPD_URL"], os.environ["TOKEN"]
n = failed = 0
def ok(cond, what, detail=None):
    global n, failed
    n += 1
    print(f"{'ok' if cond else 'not ok'} {n} - {what}", flush=True)
    if not cond:
        failed += 1
        if detail is not None: print("#   " + str(detail)[:400])
def psql(sql):
    return subprocess.run(["psql", "-qXAt", "-c", sql], check=True, capture_output=True, text=True).stdout.strip()
def post(path, raw):
    req = urllib.request.Request(base + path, data=raw, method="POST",
                                 headers={"Authorization": f"Bearer {tok}", "Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=30) as r:
            return r.status, json.loads(r.read() or b"{}")
    except urllib.error.HTTPError as e:
        body = e.read()
        try: return e.code, json.loads(body).get("error", {})
        except ValueError: return e.code, {"raw": body[:200]}
def logcount(): return int(psql("SELECT count(*) FROM realtime.realtime_events_log"))

MIB = 1 << 20
def payload_of(size):  # {"p":"xxx..."} whose JSON text is exactly size bytes
    return {"p": "x" * (size - len('{"p":""}'))}

before = logcount()
st, body = post("/realtime/publish", b'{"channel":"project:a\\u0000b","type":"e","payload":{}}')
ok(st == 400 and body.get("code") == "invalid_json", "HTTP: \\u0000 in a channel name is refused, not cut to 'project:a'", (st, body))
st, body = post("/realtime/publish", b'{"channel":"project:a","type":"e","payload":{"s":"a\\u0000b"}}')
ok(st == 400 and body.get("code") == "invalid_json", "HTTP: \\u0000 in a payload is a 400, not a 500", (st, body))
st, body = post("/realtime/publish", b'{"channel":"project:a","type":"e","payload":{"s":"\xff\xfe"}}')
ok(st == 400 and body.get("code") == "invalid_json" and "UTF-8" in body.get("message", ""),
   "HTTP: invalid UTF-8 is a 400 that says so", (st, body))
st, body = post("/realtime/publish", b'{"channel":"project:a","type":"e","payload":{"s":"\\\\u0000 is text"}}')
ok(st == 201, "HTTP: an escaped backslash before u0000 is ordinary text", (st, body))
ok(logcount() == before + 1, "nothing refused was written")
st, body = post("/realtime/publish", json.dumps({"channel": "project:big", "type": "e", "payload": payload_of(MIB)}).encode())
ok(st == 201, "HTTP: a payload of exactly 1 MiB is published", (st, body))
st, body = post("/realtime/publish", json.dumps({"channel": "project:big", "type": "e", "payload": payload_of(MIB + 1)}).encode())
ok(st == 413 and body.get("code") == "too_large", "HTTP: one byte more is 413 too_large", (st, body))
st, body = post("/realtime/presence", json.dumps({"channel": "project:p", "action": "join", "data": payload_of(MIB + 1)}).encode())
ok(st == 413 and body.get("code") == "too_large", "HTTP: presence data over the bound is 413 too_large", (st, body))
ok(psql("SELECT count(*) FROM realtime.realtime_events_log WHERE channel = 'project:big'") == "1", "only the 1 MiB one was written")

async def ws_checks():
    url = base.replace("http", "ws", 1) + f"/realtime/ws?token={tok}"
    ws = await websockets.connect(url, max_size=4 * MIB)
    await ws.recv()  # connected
    async def ask(text):
        await ws.send(text)
        return json.loads(await asyncio.wait_for(ws.recv(), 30))
    m = await ask('{"type":"subscribe","channel":"project:a\\u0000b","requestId":1}')
    ok(m.get("type") == "error" and m.get("code") == "invalid_json", "WS: \\u0000 in a channel name is refused", m)
    m = await ask('{"type":"publish","channel":"project:w","event":"e","payload":{"s":"a\\u0000"},"requestId":2}')
    ok(m.get("type") == "error" and m.get("code") == "invalid_json", "WS: \\u0000 in a payload is invalid_json, not internal", m)
    m = await ask(json.dumps({"type": "publish", "channel": "project:w", "event": "e", "payload": payload_of(MIB), "requestId": 3}))
    ok(m.get("type") == "published", "WS: a payload of exactly 1 MiB is published", {k: m[k] for k in m if k != "payload"})
    m = await ask(json.dumps({"type": "publish", "channel": "project:w", "event": "e", "payload": payload_of(MIB + 1), "requestId": 4}))
    ok(m.get("type") == "error" and m.get("code") == "too_large", "WS: one byte more is too_large", m)
    await ws.close()
try:
    asyncio.run(asyncio.wait_for(ws_checks(), 60))
except Exception as e:
    ok(False, f"WebSocket checks finished ({e!r})")
ok(psql("SELECT count(*) FROM realtime.realtime_events_log WHERE channel = 'project:w'") == "1", "WS: only the 1 MiB one was written")
sys.exit(1 if failed else 0)
PY
rc=$?
[ $rc = 0 ] || web_logs
exit $rc
