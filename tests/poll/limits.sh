#!/bin/bash
# Presence entries belong to their token subject and connection, presence has caps, and
# publishing is limited per subject across both publish paths — through real lighttpd
# (pgcast-poll) and the sidecar behind it (lighttpd proxies {prefix}/ws):
# - POST /presence cannot leave, heartbeat or re-join another member's entry (polling or
#   WebSocket); a token without sub cannot choose its userId (nor can data);
# - presence_max_per_subject / presence_max_per_channel: 429 too_many_members, others
#   still join and GET stays bounded;
# - HTTP publish answers 429 rate_limited with Retry-After past the subject's bucket, the
#   WebSocket of the same subject is refused too (one bucket), another subject publishes.
source "$PGCAST_ROOT/tests/lib/tap.sh"
source "$PGCAST_ROOT/tests/lib/webserver.sh"
web_init
pgcast_config_add "anonymous = true"
pgcast_config_add "anonymous_channels = public:*"
pgcast_config_add "publish_rate = 2"
pgcast_config_add "publish_burst = 5"
pgcast_config_add "presence_max_per_subject = 3"
pgcast_config_add "presence_max_per_channel = 6"
lighttpd_start || { web_logs; exit 1; }
/usr/bin/python3 - "$LIGHTTPD_URL" <<'PY'
import asyncio, json, os, sys, time, urllib.error, urllib.parse, urllib.request
import websockets
sys.path.insert(0, os.path.join(os.environ["PGCAST_ROOT"], "scripts"))
from jwt import mint
BASE = sys.argv[1]
n = failed = 0
def ok(cond, what, detail=None):
    global n, failed
    n += 1
    print(f"{'ok' if cond else 'not ok'} {n} - {what}", flush=True)
    if not cond:
        failed += 1
        if detail is not None:
            print("#   " + str(detail)[:600], flush=True)
def note(t): print("# " + t, flush=True)
def token(**c):
    base = {"sub": "alice", "name": "Alice", "tenant": "t1", "exp": "+3600", "channels": ["project:*"],
            "publish": ["project:*"]}
    base.update(c)
    base = {k: v for k, v in base.items() if v is not None}
    return mint("pgcast-test-secret", base)
def http(method, path, body=None, tok=None):
    h = {"Content-Type": "application/json"}
    if tok: h["Authorization"] = f"Bearer {tok}"
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(BASE + path, data=data, method=method, headers=h)
    try:
        with urllib.request.urlopen(req, timeout=30) as r:
            return r.status, dict(r.headers), json.loads(r.read() or b"null")
    except urllib.error.HTTPError as e:
        raw = e.read()
        try: body = json.loads(raw)
        except ValueError: body = raw
        return e.code, dict(e.headers), body
pid = os.getpid()
A, B = token(), token(sub="bob", name="Bob")
def pres(tok, ch, action, conn=None, data=None):
    b = {"channel": ch, "action": action}
    if conn is not None: b["connectionId"] = conn
    if data is not None: b["data"] = data
    return http("POST", "/realtime/presence", b, tok)
def members(ch, tok=A):
    st, _, body = http("GET", f"/realtime/presence?channel={urllib.parse.quote(ch)}", tok=tok)
    return body.get("members", []) if st == 200 else None

async def ws_member(ch, tok):
    ws = await websockets.connect(BASE.replace("http://", "ws://") + f"/realtime/ws?token={tok}")
    hello = json.loads(await ws.recv())
    await ws.send(json.dumps({"type": "subscribe", "channel": ch}))
    await ws.send(json.dumps({"type": "presence.join", "channel": ch, "payload": {"via": "ws"}}))
    end = time.time() + 10
    while time.time() < end:
        if any(m["connectionId"] == hello["connectionId"] for m in members(ch) or []):
            break
        await asyncio.sleep(0.1)
    return ws, hello["connectionId"]

async def main():
    # --- ownership
    ch = f"project:own{pid}"
    st, _, body = pres(A, ch, "join", "tab1", {"color": "red"})
    mine = [m for m in body.get("members", [])] if st == 200 else []
    ok(st == 200 and [m["connectionId"] for m in mine] == ["poll:alice:tab1"],
       "a polling member's connectionId is namespaced to its subject", (st, body))
    st, _, body = pres(B, ch, "leave", "tab1")
    ok([m["connectionId"] for m in members(ch)] == ["poll:alice:tab1"], "another subject's leave of that id leaves nothing of alice's", body)
    st, _, body = pres(B, ch, "heartbeat", "tab1")
    ok(st == 404, "nor keeps it alive (not a member)", (st, body))
    st, _, body = pres(B, ch, "leave", "poll:alice:tab1")
    ok(st == 400 and [m["connectionId"] for m in members(ch)] == ["poll:alice:tab1"],
       "nor can it name alice's entry (connectionId is only the client's own part)", (st, body))
    st, _, body = pres(B, ch, "join", "tab1", {"color": "evil"})
    got = {m["connectionId"]: m for m in members(ch)}
    ok(got.get("poll:alice:tab1", {}).get("color") == "red" and got.get("poll:bob:tab1", {}).get("userId") == "bob",
       "a join with the same id is bob's own entry; alice's is unchanged", got)
    ws, wsid = await ws_member(ch, A)
    for action in ("leave", "heartbeat", "join"):
        pres(B, ch, action, wsid)
    ok(any(m["connectionId"] == wsid and m.get("via") == "ws" for m in members(ch)),
       "a WebSocket member cannot be left, renewed or overwritten over HTTP by another subject", members(ch))
    await ws.close()
    # the SQL functions check the owner too (runtime role, as the handlers run)
    import subprocess
    def sql(q):
        return subprocess.run(["psql", "-qXAt", "-U", os.environ.get("PGCAST_TEST_DB_USER", "postgres"), "-c", q],
                              capture_output=True, text=True)
    r = sql(f"SELECT realtime.presence_heartbeat('t1', '{ch}', 'poll:alice:tab1', 'sub:bob'),"
            f" realtime.presence_leave('t1', '{ch}', 'poll:alice:tab1', 'sub:bob')")
    ok(r.stdout.strip() == "f|f", "presence_heartbeat/leave by another owner: not a member", r.stdout + r.stderr)
    r = sql(f"SELECT realtime.presence_join('t1', '{ch}', 'poll:alice:tab1', 'sub:bob', 'bob', NULL, '{{}}')")
    ok(r.returncode != 0 and "another subject" in r.stderr, "presence_join over another owner's entry is refused", r.stderr)

    # --- a token without sub cannot pose as a user
    chp = f"public:anon{pid}"
    st, _, body = pres(None, chp, "join", "x1", {"userId": "alice", "name": "Alice", "connectionId": "poll:alice:tab1"})
    m = body["members"][0] if st == 200 and body.get("members") else {}
    ok(st == 200 and m.get("userId") == "poll:~:x1" and m.get("connectionId") == "poll:~:x1" and m.get("name") != "Alice",
       "a token without sub gets its connection id as userId; data cannot override userId, name, connectionId", body)

    # --- caps
    chc = f"project:cap{pid}"
    codes = [pres(A, chc, "join", f"t{i}")[0] for i in range(4)]
    st, hd, body = pres(A, chc, "join", "t9")
    ok(codes[:3] == [200, 200, 200] and st == 429 and body["error"]["code"] == "too_many_members",
       "presence_max_per_subject: the fourth entry of one subject is refused, 429 too_many_members", (codes, st, body))
    ok(pres(A, chc, "heartbeat", "t0")[0] == 200, "its existing entries still renew")
    others = [pres(token(sub=f"u{i}"), chc, "join", "t")[0] for i in range(3)]
    st, _, body = pres(token(sub="late"), chc, "join", "t")
    ok(others == [200, 200, 200] and st == 429 and body["error"]["code"] == "too_many_members",
       "presence_max_per_channel: past 6 members of the channel, 429", (others, st, body))
    ok(len(members(chc)) == 6, "GET /presence stays bounded", len(members(chc)))
    pres(A, chc, "leave", "t0")
    ok(pres(token(sub="late"), chc, "join", "t")[0] == 200, "a leave makes room for another")

    # --- publish rate, both paths, one bucket per subject
    chr_ = f"project:rate{pid}"
    P = token(sub="pub")
    # the WebSocket is open before the bucket is emptied over HTTP, so that its publishes
    # follow at once (the bucket refills 2 a second)
    ws = await websockets.connect(BASE.replace("http://", "ws://") + f"/realtime/ws?token={P}")
    await ws.recv()
    # until the first refusal (a busy machine's slow requests let the bucket refill: more
    # than the burst may pass before it), 40 at most
    res = []
    while len(res) < 40 and not (res and res[-1][0] == 429):
        res.append(http("POST", "/realtime/publish", {"channel": chr_, "type": "e", "payload": {"i": len(res)}}, P))
    codes = [r[0] for r in res]
    limited = [r for r in res if r[0] == 429]
    ok(codes[:5] == [201] * 5 and limited and limited[0][2]["error"]["code"] == "rate_limited"
       and int(limited[0][1].get("Retry-After", "0")) >= 1,
       "HTTP publish past the subject's burst: 429 rate_limited with Retry-After", codes)
    # three at once: a bucket of the WebSocket's own (burst 5) would take them all; the
    # subject's, just emptied, refuses one unless 1.5 s passed
    for i in range(3):
        await ws.send(json.dumps({"type": "publish", "channel": chr_, "event": "e", "payload": {}, "requestId": i}))
    answers = [json.loads(await asyncio.wait_for(ws.recv(), 10)) for _ in range(3)]
    ok(any(m.get("code") == "rate_limited" for m in answers), "the same subject over WebSocket draws from the same bucket",
       answers)
    await ws.close()
    st, _, body = http("POST", "/realtime/publish", {"channel": chr_, "type": "e", "payload": {}}, token(sub="other"))
    ok(st == 201, "another subject still publishes", (st, body))
    await asyncio.sleep(1.2)
    st, _, _ = http("POST", "/realtime/publish", {"channel": chr_, "type": "e", "payload": {}}, P)
    ok(st == 201, "after Retry-After the subject publishes again", st)

asyncio.run(main())
print(f"1..{n}")
sys.exit(1 if failed else 0)
PY
rc=$?
[ $rc = 0 ] || web_logs
exit $rc
