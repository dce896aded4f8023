#!/usr/bin/python3
"""Smoke checks of an installed pgcast behind a web server: smoke.py BASE_URL LABEL

health, publish (HTTP), poll, long-poll, SSE that resumes after a drop (Last-Event-ID),
and a WebSocket through the server's proxy that resumes too; what the streams delivered
is compared with realtime.realtime_events_log (missing, duplicated, out of order fail).
Tokens are signed with tests/lib/webserver.sh's secret. Prints TAP lines."""
import asyncio, json, os, sys, threading, time, urllib.error, urllib.parse, urllib.request

sys.path.insert(0, os.path.join(os.environ["PGCAST_ROOT"], "tests", "lib"))
import resume_clients as rc  # noqa: E402

BASE, LABEL = sys.argv[1].rstrip("/"), sys.argv[2]
RUN = rc.random_name(LABEL.replace("-", ""))
T = rc.Tap(LABEL)
TOK = rc.token(channels=[f"smoke:{RUN}*"], publish=[f"smoke:{RUN}*"])


def http(method, path, body=None, timeout=30):
    h = {"Authorization": f"Bearer {TOK}"}
    data = json.dumps(body).encode() if body is not None else None
    if data is not None:
        h["Content-Type"] = "application/json"
    req = urllib.request.Request(BASE + path, data=data, method=method, headers=h)
    try:
        with urllib.request.urlopen(req, timeout=timeout) as res:
            raw = res.read()
            return res.status, json.loads(raw) if raw else None
    except urllib.error.HTTPError as e:
        return e.code, e.read()[:300]
    except OSError as e:
        return 0, repr(e)


def q(s):
    return urllib.parse.quote(s, safe="")


def sync_checks():
    st, body = http("GET", "/realtime/health")
    T.ok(st == 200 and isinstance(body, dict) and body.get("database") == "ok", "health: 200, database ok", (st, body))
    ch = f"smoke:{RUN}:pub"
    st, body = http("POST", "/realtime/publish", {"channel": ch, "type": "smoke", "payload": {"n": 1}})
    T.ok(st == 201 and body == {"channel": ch, "seq": 1}, "publish: 201 with the seq", (st, body))
    st, body = http("GET", f"/realtime/events?channel={q(ch)}")
    T.ok(st == 200 and [(e["seq"], e["payload"]) for e in body["events"]] == [(1, {"n": 1})],
         "poll: the published event reads back", (st, body))
    res = {}

    def waiter():
        t0 = time.time()
        res["r"] = http("GET", f"/realtime/events?channel={q(ch)}&since={q(ch + '=1')}&wait=20", timeout=40)
        res["t"] = time.time() - t0

    th = threading.Thread(target=waiter)
    th.start()
    time.sleep(1.0)
    waited = th.is_alive()
    rc.psql(rc.publish_sql("t1", ch, 1))
    th.join(40)
    st, body = res.get("r", (0, None))
    T.ok(waited and st == 200 and [e["seq"] for e in body["events"]] == [2] and res["t"] < 15,
         "long-poll: waits, then returns with the event published meanwhile", (waited, st, body, res.get("t")))


async def stream_checks():
    ch_sse, ch_ws = f"smoke:{RUN}:sse", f"smoke:{RUN}:ws"
    u = urllib.parse.urlparse(BASE)
    sse = rc.SSEClient(BASE, TOK, [ch_sse], since={ch_sse: 0}, max_retry_ms=300, name="sse")
    ws = rc.WSClient(f"ws://{u.hostname}:{u.port}/realtime/ws", TOK, [ch_ws], since={ch_ws: 0}, name="ws")
    clients = [sse, ws]
    for c in clients:
        c.start()
    await rc.apsql(rc.publish_sql("t1", ch_sse, 5) + "; " + rc.publish_sql("t1", ch_ws, 5))
    first = await rc.wait_delivered(clients, {ch_sse: 5, ch_ws: 5}, stall=20, cap=60)
    # the connections drop (no close): both resume from what they got
    sse.drop()
    ws.drop()
    await rc.apsql(rc.publish_sql("t1", ch_sse, 5) + "; " + rc.publish_sql("t1", ch_ws, 5))
    last = rc.last_seqs("t1", [ch_sse, ch_ws])
    done = await rc.wait_delivered(clients, last, stall=20, cap=60)
    for c in clients:
        await c.stop()
    T.ok(first and sse.connects >= 1 and sse.count() >= 5, "SSE: a stream receives the events", sse.summary())
    T.ok(done and sse.connects >= 2 and not rc.check(sse, "t1"),
         "SSE: after a drop it resumes (Last-Event-ID): all 10 events, in order, none twice",
         "\n".join(rc.check(sse, "t1") + [sse.summary()] + sse.log[-5:]))
    T.ok(first and ws.count() >= 5, "WebSocket through the web server's proxy receives the events", ws.summary())
    T.ok(done and ws.connects >= 2 and not rc.check(ws, "t1"),
         "WebSocket: after a drop it resumes: all 10 events, in order, none twice",
         "\n".join(rc.check(ws, "t1") + [ws.summary()] + ws.log[-5:]))


sync_checks()
asyncio.run(stream_checks())
T.exit()
