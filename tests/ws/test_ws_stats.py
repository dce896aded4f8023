#!/usr/bin/python3
"""What the sidecar says about its connections.

- pgcast_ws_subscriptions (/metrics) counts the channels actually subscribed, also when a
  subscribe fails (a subscription the hub could not take: injected with
  tests/lib/fault_strdup.c, for a new channel and for a resubscribe), and comes back to 0
  when the connections close (it used to be decremented twice and wrap).
- realtime.realtime_connection_stats gets a row per WebSocket (transport websocket,
  tenant, user, message count), closed with its reason when the connection ends."""
import asyncio, json, os, subprocess, sys, time

sys.path.insert(0, os.path.join(os.environ["PGCAST_ROOT"], "tests/lib"))
from wstest import Reader, connect, metrics, ok, psql, start_sidecar, stop_sidecar, token  # noqa: E402
import wstest  # noqa: E402

ROOT = os.environ["PGCAST_ROOT"]


def build_fault_lib():
    work = os.environ.get("PGCAST_TEST_WORK", "/tmp")
    so = os.path.join(work, f"fault_strdup_{os.getpid()}.so")
    subprocess.run(["cc", "-shared", "-fPIC", "-o", so, os.path.join(ROOT, "tests/lib/fault_strdup.c"), "-ldl"],
                   check=True)
    return so


async def wait_metric(port, name, want, timeout=10):
    end = time.time() + timeout
    while True:
        v = metrics(port).get(name)
        if v == want or time.time() >= end:
            return v
        await asyncio.sleep(0.1)


async def wait_sql(sql, pred, timeout=10):
    end = time.time() + timeout
    while True:
        v = psql(sql)
        if pred(v) or time.time() >= end:
            return v
        await asyncio.sleep(0.2)


async def main():
    pid = os.getpid()
    good, new, re_ = f"project:ok{pid}", f"project:failnew{pid}", f"project:failre{pid}"
    # the loop thread's copies of a channel name for a subscribe: the message's, the
    # session's (new channel only), the hub subscriber's, the hub command's
    # (new: 3rd fails; resubscribe: 4 before, then the message's, the remove command's, 7th fails)
    proc, port = start_sidecar({"PGCAST_FAIL_STRDUP": f"{new}=3,{re_}=7"}, preload=build_fault_lib())

    ws, hello = await connect(port)
    a = Reader(ws)
    await ws.send(json.dumps({"type": "subscribe", "channel": good, "requestId": "s1"}))
    ok(await a.wait(lambda m: m["type"] == "subscribed" and m["channel"] == good) is not None, "subscribed")
    await ws.send(json.dumps({"type": "subscribe", "channel": new, "requestId": "s2"}))
    err = await a.wait(lambda m: m.get("requestId") == "s2")
    ok(err is not None and err["type"] == "error" and err["message"] == "could not subscribe",
       "a subscribe the hub cannot take is refused (fault injected)", err)
    await ws.send(json.dumps({"type": "unsubscribe", "channel": new, "requestId": "u2"}))
    m = await a.wait(lambda m: m.get("requestId") == "u2")
    ok(m is not None and m.get("code") == "not_subscribed", "the channel of a failed subscribe is not kept", m)
    await ws.send(json.dumps({"type": "subscribe", "channel": re_, "requestId": "s3"}))
    ok(await a.wait(lambda m: m["type"] == "subscribed" and m["channel"] == re_) is not None, "subscribed again")
    await ws.send(json.dumps({"type": "subscribe", "channel": re_, "requestId": "s4"}))
    err = await a.wait(lambda m: m.get("requestId") == "s4")
    ok(err is not None and err["type"] == "error" and err["message"] == "could not subscribe",
       "a resubscribe the hub cannot take is refused (fault injected)", err)
    v = await wait_metric(port, "pgcast_ws_subscriptions", 1)
    ok(v == 1, "pgcast_ws_subscriptions counts the one channel still subscribed", v)
    psql(f"SELECT realtime.publish('t1', '{re_}', 'gone', '{{}}')")
    psql(f"SELECT realtime.publish('t1', '{good}', 'here', '{{}}')")
    ok(await a.wait(lambda m: m["type"] == "here") is not None, "the channel still subscribed delivers")
    await asyncio.sleep(0.3)
    ok(a.find(lambda m: m["type"] == "gone") is None, "the channel of the failed resubscribe delivers nothing")

    # a connection-stats row per WebSocket
    ws2, hello2 = await connect(port, token(sub="u2", name="Bob"))
    b = Reader(ws2)
    st = f"project:st{pid}"
    await ws2.send(json.dumps({"type": "subscribe", "channel": st}))
    await b.wait(lambda m: m["type"] == "subscribed")
    for i in range(3):
        psql(f"SELECT realtime.publish('t1', '{st}', 'e{i}', '{{}}')")
    await b.wait(lambda m: m["type"] == "e2")
    row_sql = ("SELECT transport, tenant_id, user_id, message_count, instance_id IS NOT NULL, "
               "disconnected_at IS NULL FROM realtime.realtime_connection_stats WHERE connection_id = '{}'")
    row = await wait_sql(row_sql.format(hello2["connectionId"]), lambda v: v.split("|")[3:4] == ["5"])
    ok(row == "websocket|t1|u2|5|t|t",
       "an open WebSocket has its stats row (transport, tenant, user, 5 messages sent, open)", row)
    await b.close()
    row = await wait_sql("SELECT disconnect_reason FROM realtime.realtime_connection_stats "
                         f"WHERE connection_id = '{hello2['connectionId']}' AND disconnected_at IS NOT NULL",
                         lambda v: v != "")
    ok(row == "closed", "its row is closed when the WebSocket ends", row)

    # a connection closed by the sidecar says why
    ws3, hello3 = await connect(port, token(sub="u3"))
    c = Reader(ws3)
    for i in range(70):  # client_rate is 50: the 10th message over it closes
        try:
            await ws3.send(json.dumps({"type": "ping"}))
        except Exception:  # noqa: BLE001 (closed meanwhile)
            break
    await c.wait(lambda m: False, 5)
    row = await wait_sql("SELECT disconnect_reason FROM realtime.realtime_connection_stats "
                         f"WHERE connection_id = '{hello3['connectionId']}' AND disconnected_at IS NOT NULL",
                         lambda v: v != "")
    ok(row == "rate limit exceeded", "a row closed by the rate limit gives that reason", row)

    await a.close()
    v = await wait_metric(port, "pgcast_ws_subscriptions", 0)
    ok(v == 0, "pgcast_ws_subscriptions is 0 once every connection is closed (no wrap)", v)
    row = await wait_sql("SELECT count(*) FROM realtime.realtime_connection_stats WHERE transport = 'websocket' "
                         "AND disconnected_at IS NULL", lambda v: v == "0")
    ok(row == "0", "every WebSocket row is closed", row)
    stop_sidecar(proc)


asyncio.run(main())
print(f"1..{wstest.n}")
sys.exit(1 if wstest.failed else 0)
