#!/usr/bin/python3
"""A WebSocket ends at its token's exp with token_expired (it used to go on subscribing and
publishing after it), and can renew in-band before that with {"type":"auth","token":T},
answered {"type":"authed","exp":...}; the new token must keep tenant and sub and cover the
channels subscribed, and a refused renewal leaves the connection on its current token."""
import asyncio, base64, json, os, sys, time

sys.path.insert(0, os.path.join(os.environ["PGCAST_ROOT"], "tests/lib"))
from wstest import Reader, connect, ok, start_sidecar, stop_sidecar, token  # noqa: E402
import wstest  # noqa: E402


async def main():
    proc, port = start_sidecar()
    # a connection whose token expires in a few seconds (5 to 6: time enough to connect and
    # subscribe on a busy machine)
    ws, hello = await connect(port, token(exp="+6"))
    r = Reader(ws)
    await ws.send(json.dumps({"type": "subscribe", "channel": "project:exp", "requestId": 1}))
    ok(await r.wait(lambda m: m.get("type") == "subscribed") is not None, "subscribed with a short-lived token")
    m = await r.wait(lambda m: m.get("code") == "token_expired", timeout=20)
    ok(m is not None and m.get("type") == "error", "at exp the client is told token_expired", r.msgs[-3:])
    await r.wait(lambda m: False, 10)  # until the close
    ok(r.closed and ws.close_code == 1008 and "expired" in (ws.close_reason or ""),
       "then closed with 1008 'token expired'", (ws.close_code, ws.close_reason))

    # renewal before exp keeps the connection (the refused renewals and the good one are
    # answered within the first token's 5 to 6 s, on a busy machine too)
    first = token(exp="+6")
    ws, hello = await connect(port, first)
    r = Reader(ws)
    await ws.send(json.dumps({"type": "subscribe", "channel": "project:renew", "requestId": 1}))
    await r.wait(lambda m: m.get("type") == "subscribed")
    await ws.send(json.dumps({"type": "auth", "token": "not.a.token", "requestId": "a0"}))
    m = await r.wait(lambda m: m.get("requestId") == "a0")
    ok(m and m.get("type") == "error" and m.get("code") == "invalid_token", "a bad token is refused: invalid_token", m)
    await ws.send(json.dumps({"type": "auth", "token": token(sub="someone-else", exp="+600"), "requestId": "a1"}))
    m = await r.wait(lambda m: m.get("requestId") == "a1")
    ok(m and m.get("code") == "forbidden", "a token of another sub is refused: forbidden", m)
    await ws.send(json.dumps({"type": "auth", "token": token(tenant="t2", exp="+600"), "requestId": "a2"}))
    m = await r.wait(lambda m: m.get("requestId") == "a2")
    ok(m and m.get("code") == "forbidden", "a token of another tenant is refused: forbidden", m)
    await ws.send(json.dumps({"type": "auth", "token": token(channels=["room:*"], exp="+600"), "requestId": "a3"}))
    m = await r.wait(lambda m: m.get("requestId") == "a3")
    ok(m and m.get("code") == "forbidden", "a token that no longer covers a subscribed channel is refused", m)
    want = int(time.time()) + 600
    await ws.send(json.dumps({"type": "auth", "token": token(exp="+600"), "requestId": "a4"}))
    m = await r.wait(lambda m: m.get("requestId") == "a4")
    ok(m and m.get("type") == "authed" and abs(m.get("exp", 0) - want) <= 5, "a fresh token: authed with its exp", m)
    first_exp = json.loads(base64.urlsafe_b64decode(first.split(".")[1] + "=" * (-len(first.split(".")[1]) % 4)))["exp"]
    await asyncio.sleep(max(0.0, first_exp + 3 - time.time()))  # past the first token's exp (and a sidecar tick)
    await ws.send(json.dumps({"type": "ping", "requestId": "p"}))
    m = await r.wait(lambda m: m.get("type") == "pong", timeout=10)
    ok(m is not None and not r.closed and r.find(lambda m: m.get("code") == "token_expired") is None,
       "past the old exp the renewed connection is still open", r.msgs[-3:])
    await r.close()
    stop_sidecar(proc)


asyncio.run(main())
print(f"1..{wstest.n}")
sys.exit(1 if wstest.failed else 0)
