#!/usr/bin/python3
"""Origin rules and CORS (SPEC §3) against a running web server:
origin_checks.py BASE_URL LABEL ALLOWED_ORIGIN

The token cookie works only from allowed origins (POSTs from another site are refused,
form and text/plain bodies too), every WebSocket upgrade with a foreign Origin is
refused, and allowed origins get answered preflights and Access-Control-Allow-* headers
on SSE, events, publish and presence. Prints TAP lines."""
import asyncio, http.client, json, os, sys, urllib.parse

import websockets

sys.path.insert(0, os.path.join(os.environ["PGCAST_ROOT"], "scripts"))
sys.path.insert(0, os.path.join(os.environ["PGCAST_ROOT"], "tests/lib"))
import tap  # noqa: E402
from tap import ok  # noqa: E402
from jwt import mint  # noqa: E402

BASE, LABEL, ALLOWED = sys.argv[1].rstrip("/"), sys.argv[2], sys.argv[3]
U = urllib.parse.urlsplit(BASE)
SELF = f"{U.scheme}://{U.netloc}"
EVIL = "https://evil.example"
TOK = mint("pgcast-test-secret", {"sub": "victim", "tenant": "t1", "exp": "+3600", "channels": ["project:*"],
                                  "publish": ["project:*"]})
COOKIE = f"pgcast_token={TOK}"
CH = f"project:origin{os.getpid()}"


def req(method, path, body=None, headers=None):
    c = http.client.HTTPConnection(U.hostname, U.port, timeout=30)
    c.request(method, "/realtime" + path, body=body, headers=headers or {})
    r = c.getresponse()
    # an event stream does not end: its first line is enough
    raw = r.readline() if r.getheader("Content-Type", "").startswith("text/event-stream") else r.read()
    c.close()
    try:
        j = json.loads(raw) if raw else None
    except ValueError:
        j = raw
    return r.status, {k.lower(): v for k, v in r.getheaders()}, j


def code(j):
    return j.get("error", {}).get("code") if isinstance(j, dict) else None


PUB = json.dumps({"channel": CH, "type": "x", "payload": {"a": 1}})
JOIN = json.dumps({"channel": CH, "action": "join", "data": {}})

# --- the token cookie from another site: refused
for path, body in (("/publish", PUB), ("/presence", JOIN)):
    for ctype in ("text/plain", "application/x-www-form-urlencoded", "application/json"):
        s, h, j = req("POST", path, body, {"Cookie": COOKIE, "Origin": EVIL, "Content-Type": ctype})
        ok(s == 403 and code(j) == "origin_not_allowed" and "access-control-allow-origin" not in h,
           f"POST {path} ({ctype}) with the token cookie from {EVIL}: 403 origin_not_allowed", (s, j, h))
s, h, j = req("POST", "/publish", PUB, {"Cookie": COOKIE, "Content-Type": "application/json"})
ok(s == 403 and code(j) == "origin_not_allowed", "POST /publish with the token cookie and no Origin: 403", (s, j))
s, h, j = req("POST", "/publish", PUB, {"Cookie": COOKIE, "Origin": "null", "Content-Type": "application/json"})
ok(s == 403 and code(j) == "origin_not_allowed", "POST /publish with the token cookie and Origin: null: 403", (s, j))
for path in (f"/events?channel={CH}", f"/sse?channel={CH}", f"/presence?channel={CH}"):
    s, h, j = req("GET", path, None, {"Cookie": COOKIE, "Origin": EVIL})
    ok(s == 403 and code(j) == "origin_not_allowed", f"GET {path.split('?')[0]} with the token cookie from {EVIL}: 403",
       (s, j))
s, h, j = req("GET", f"/events?channel={CH}", None, {"Cookie": COOKIE, "Sec-Fetch-Site": "cross-site"})
ok(s == 403 and code(j) == "origin_not_allowed",
   "GET /events with the token cookie, no Origin but Sec-Fetch-Site: cross-site: 403", (s, j))
rows = int(os.popen(f"psql -qXAt -c \"SELECT count(*) FROM realtime.realtime_events_log WHERE channel = '{CH}'\"").read()
           or -1)
ok(rows == 0, "nothing was published by the refused requests", rows)

# --- the token cookie from the site itself or an allowed origin: served
s, h, j = req("GET", f"/events?channel={CH}", None, {"Cookie": COOKIE})
ok(s == 200 and "access-control-allow-origin" not in h, "GET /events with the token cookie and no Origin (same origin): 200",
   (s, j))
s, h, j = req("POST", "/publish", PUB, {"Cookie": COOKIE, "Origin": SELF, "Content-Type": "application/json"})
ok(s == 201 and j.get("seq") == 1, f"POST /publish with the token cookie from the server's own origin {SELF}: 201", (s, j))
s, h, j = req("POST", "/publish", PUB, {"Cookie": COOKIE, "Origin": ALLOWED, "Content-Type": "application/json; charset=utf-8"})
ok(s == 201 and h.get("access-control-allow-origin") == ALLOWED and h.get("access-control-allow-credentials") == "true",
   f"POST /publish with the token cookie from the allowed {ALLOWED}: 201 with Access-Control-Allow-Origin", (s, j, h))
s, h, j = req("POST", "/publish", PUB, {"Cookie": COOKIE, "Origin": ALLOWED, "Content-Type": "text/plain"})
ok(s == 415 and code(j) == "unsupported_media_type", "a text/plain body from an allowed origin: 415", (s, j))

# --- bodies must be JSON, whatever carries the token
for path, body in (("/publish", PUB), ("/presence", JOIN)):
    for ctype in ("text/plain", "application/x-www-form-urlencoded", "multipart/form-data; boundary=x", None):
        hd = {"Authorization": f"Bearer {TOK}"}
        if ctype:
            hd["Content-Type"] = ctype
        s, h, j = req("POST", path, body, hd)
        ok(s == 415 and code(j) == "unsupported_media_type", f"POST {path} with Bearer and Content-Type {ctype}: 415",
           (s, j))

# --- a Bearer token from another origin: served, but without CORS headers
s, h, j = req("GET", f"/events?channel={CH}", None, {"Authorization": f"Bearer {TOK}", "Origin": EVIL})
ok(s == 200 and "access-control-allow-origin" not in h and "origin" in h.get("vary", "").lower(),
   "Bearer from a foreign origin: 200 without Access-Control-Allow-Origin (the browser keeps it from the page)", (s, h))

# --- preflights
want_methods = {"/sse": "GET", "/events": "GET", "/publish": "POST", "/presence": "POST"}
for path, m in want_methods.items():
    s, h, j = req("OPTIONS", path + f"?channel={CH}", None,
                  {"Origin": ALLOWED, "Access-Control-Request-Method": m,
                   "Access-Control-Request-Headers": "authorization, content-type, last-event-id, if-none-match"})
    allow_h = {x.strip().lower() for x in h.get("access-control-allow-headers", "").split(",")}
    ok(s == 204 and h.get("access-control-allow-origin") == ALLOWED and h.get("access-control-allow-credentials") == "true"
       and m in h.get("access-control-allow-methods", "")
       and {"authorization", "content-type", "last-event-id", "if-none-match"} <= allow_h
       and int(h.get("access-control-max-age", "0")) > 0 and "origin" in h.get("vary", "").lower(),
       f"OPTIONS {path} preflight from {ALLOWED}: 204 with Access-Control-Allow-*", (s, h, j))
    s, h, j = req("OPTIONS", path, None, {"Origin": EVIL, "Access-Control-Request-Method": m})
    ok(s == 403 and "access-control-allow-origin" not in h and code(j) == "origin_not_allowed",
       f"OPTIONS {path} preflight from {EVIL}: 403 without Access-Control-Allow-Origin", (s, h, j))

# --- answers to an allowed origin carry the CORS headers: 200, 304, errors, SSE
s, h, j = req("GET", f"/events?channel={CH}", None, {"Authorization": f"Bearer {TOK}", "Origin": ALLOWED})
cors_ok = lambda h: (h.get("access-control-allow-origin") == ALLOWED and h.get("access-control-allow-credentials") == "true"
                     and "origin" in h.get("vary", "").lower() and "etag" in h.get("access-control-expose-headers", "").lower())
ok(s == 200 and cors_ok(h), "GET /events from an allowed origin: Allow-Origin, -Credentials, Expose-Headers: ETag, Vary",
   (s, h))
q = f"/events?channel={CH}&since=" + urllib.parse.quote(f"{CH}=2")
s, h, j = req("GET", q, None, {"Authorization": f"Bearer {TOK}", "Origin": ALLOWED})
etag = h.get("etag")
s, h, j = req("GET", q, None, {"Authorization": f"Bearer {TOK}", "Origin": ALLOWED,
                                                     "If-None-Match": etag or "x"})
ok(s == 304 and cors_ok(h), "a 304 to an allowed origin carries them too", (s, h))
s, h, j = req("GET", f"/events?channel={CH}", None, {"Origin": ALLOWED})
ok(s == 401 and cors_ok(h), "a 401 to an allowed origin carries them too (the page can read the reason)", (s, h))
s, h, j = req("POST", "/presence", JOIN, {"Authorization": f"Bearer {TOK}", "Origin": ALLOWED,
                                          "Content-Type": "application/json"})
ok(s == 200 and cors_ok(h), "POST /presence from an allowed origin: 200 with them", (s, h, j))
c = http.client.HTTPConnection(U.hostname, U.port, timeout=30)
c.request("GET", f"/realtime/sse?channel={CH}&token={TOK}", headers={"Origin": ALLOWED})
r = c.getresponse()
h = {k.lower(): v for k, v in r.getheaders()}
first = r.readline()
ok(r.status == 200 and h.get("content-type", "").startswith("text/event-stream") and cors_ok(h) and first.startswith(b"retry:"),
   "an SSE stream to an allowed origin starts with them", (r.status, h, first))
c.close()


# --- WebSocket upgrades: every one is checked
async def ws_try(origin, token=None, cookie=None):
    hd = {}
    if cookie:
        hd["Cookie"] = cookie
    url = BASE.replace("http://", "ws://") + "/realtime/ws" + (f"?token={token}" if token else "")
    try:
        ws = await websockets.connect(url, origin=origin, extra_headers=hd, open_timeout=15)
    except websockets.exceptions.InvalidStatusCode as e:
        return e.status_code
    hello = json.loads(await ws.recv())
    await ws.close()
    return 101 if hello.get("type") == "connected" else hello


async def ws_checks():
    got = await ws_try(EVIL, cookie=COOKIE)
    ok(got == 403, f"a WebSocket upgrade with the token cookie and Origin {EVIL}: 403", got)
    got = await ws_try(EVIL, token=TOK)
    ok(got == 403, f"a WebSocket upgrade with ?token= and Origin {EVIL}: 403 (every upgrade is checked)", got)
    got = await ws_try(SELF, cookie=COOKIE)
    ok(got == 101, f"a WebSocket upgrade with the token cookie from the server's own origin {SELF}: 101", got)
    got = await ws_try(ALLOWED, cookie=COOKIE)
    ok(got == 101, f"a WebSocket upgrade with the token cookie from the allowed {ALLOWED}: 101", got)
    got = await ws_try(None, token=TOK)
    ok(got == 101, "a WebSocket upgrade without Origin (no browser) and ?token=: 101", got)

asyncio.run(ws_checks())
tap.T.exit()
