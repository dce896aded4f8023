#!/usr/bin/python3
"""WebSocket flows with Python's websockets (a client we did not write), against two
sidecars on one database: subscribe / publish / resume / filters / presence across
sidecars, limits and authorization errors, rate limit, and a sidecar killed with -9
while events are published: its clients resume on the other with every event exactly
once, in order, and its presence members leave."""
import asyncio, json, os, signal, subprocess, sys, time

import websockets

sys.path.insert(0, os.path.join(os.environ["PGCAST_ROOT"], "tests/lib"))
import wstest  # noqa: E402
from wstest import connect, ok, psql, recv_until, start_sidecar, token  # noqa: E402


async def flows(port_a, port_b):
    a, hello = await connect(port_a)
    ok(hello["type"] == "connected" and hello["tenant"] == "t1" and hello["connectionId"]
       and isinstance(hello["heartbeatIntervalMs"], int), "connected carries connectionId, tenant, heartbeat", hello)
    b, _ = await connect(port_b, token(sub="u2", name="Bob"))
    ch = f"project:ws{os.getpid()}"
    await a.send(json.dumps({"type": "subscribe", "channel": ch, "requestId": "s1"}))
    m, _ = await recv_until(a, lambda m: m["type"] == "subscribed")
    ok(m == {"type": "subscribed", "channel": ch, "requestId": "s1", "seq": 0}, "subscribed with the current seq", m)
    await b.send(json.dumps({"type": "subscribe", "channel": ch}))
    await recv_until(b, lambda m: m["type"] == "subscribed")
    await b.send(json.dumps({"type": "publish", "channel": ch, "event": "x.y", "payload": {"k": 1}, "requestId": 7}))
    m, _ = await recv_until(b, lambda m: m["type"] == "published")
    ok(m == {"type": "published", "channel": ch, "seq": 1, "requestId": 7}, "published through sidecar B", m)
    m, _ = await recv_until(a, lambda m: m.get("seq") == 1 and m["type"] == "x.y")
    ok(m is not None and m["payload"] == {"k": 1} and m["channel"] == ch,
       "received on sidecar A (two sidecars, one database)", m)
    psql(f"SELECT realtime.publish('t1', '{ch}', 'by.sql', '{{}}')")
    m, _ = await recv_until(a, lambda m: m.get("seq") == 2)
    ok(m is not None and m["type"] == "by.sql", "an event published by SQL arrives", m)

    # resume with since, and an events filter
    for i in range(3):
        psql(f"SELECT realtime.publish('t1', '{ch}', '{'keep' if i != 1 else 'skip'}', '{{}}')")
    c, _ = await connect(port_b)
    await c.send(json.dumps({"type": "subscribe", "channel": ch, "since": 1, "events": ["keep", "by.sql"]}))
    got = []
    end = time.time() + 10
    while len(got) < 3 and time.time() < end:
        m, _ = await recv_until(c, lambda m: "seq" in m and m["type"] != "subscribed", 5)
        if m:
            got.append((m["seq"], m["type"]))
    ok(got == [(2, "by.sql"), (3, "keep"), (5, "keep")], "since resumes, events filters by type", got)
    await c.send(json.dumps({"type": "unsubscribe", "channel": ch, "requestId": "u"}))
    m, _ = await recv_until(c, lambda m: m["type"] == "unsubscribed")
    ok(m == {"type": "unsubscribed", "channel": ch, "requestId": "u"}, "unsubscribed", m)
    psql(f"SELECT realtime.publish('t1', '{ch}', 'keep', '{{}}')")
    m, _ = await recv_until(c, lambda m: "seq" in m, 1.5)
    ok(m is None, "nothing arrives after unsubscribe", m)
    await c.close()

    # presence across sidecars
    room = f"room:ws{os.getpid()}"
    await a.send(json.dumps({"type": "subscribe", "channel": room}))
    await recv_until(a, lambda m: m["type"] == "subscribed")
    await b.send(json.dumps({"type": "subscribe", "channel": room}))
    await recv_until(b, lambda m: m["type"] == "subscribed")
    await a.send(json.dumps({"type": "presence.join", "channel": room, "payload": {"color": "red"}}))
    m, _ = await recv_until(b, lambda m: m["type"] == "presence.join")
    ok(m is not None and m["payload"]["userId"] == "u1" and m["payload"]["color"] == "red"
       and m["payload"]["name"] == "Ann", "a join on sidecar A is announced on sidecar B", m)
    await b.send(json.dumps({"type": "presence.join", "channel": room, "payload": {}}))
    await recv_until(a, lambda m: m["type"] == "presence.join" and m["payload"]["userId"] == "u2")
    await a.send(json.dumps({"type": "presence.get", "channel": room}))
    m, _ = await recv_until(a, lambda m: m["type"] == "presence.sync" and len(m["payload"]["members"]) == 2)
    ok(m is not None and sorted(x["userId"] for x in m["payload"]["members"]) == ["u1", "u2"],
       "presence.sync lists members of both sidecars", m)
    await a.send(json.dumps({"type": "presence.update", "channel": room, "payload": {"color": "blue"}}))
    m, _ = await recv_until(b, lambda m: m["type"] == "presence.update")
    ok(m is not None and m["payload"]["color"] == "blue", "presence.update reaches the others", m)
    await a.send(json.dumps({"type": "presence.leave", "channel": room}))
    m, _ = await recv_until(b, lambda m: m["type"] == "presence.leave")
    ok(m is not None and m["payload"]["userId"] == "u1", "presence.leave reaches the others", m)
    # presence.get right after subscribe is answered once the subscription is live, so a
    # member joining in between is in the list or in a live message, never in neither
    late, _ = await connect(port_a, token(sub="u3", name="Cy"))
    await late.send(json.dumps({"type": "subscribe", "channel": room}))
    await late.send(json.dumps({"type": "presence.get", "channel": room, "requestId": "g"}))
    m, seen = await recv_until(late, lambda m: m["type"] == "presence.sync")
    order = [x["type"] for x in seen if x["type"] in ("subscribed", "presence.sync")]
    ok(order == ["subscribed", "presence.sync"] and m["requestId"] == "g"
       and [x["userId"] for x in m["payload"]["members"]] == ["u2"],
       "presence.get sent with the subscribe: answered after subscribed, with the members", seen)
    await late.close()

    # errors keep the connection
    cases = [
        ({"type": "subscribe", "channel": "secret:x"}, "forbidden"),
        ({"type": "publish", "channel": "room:x", "event": "e", "payload": {}}, "forbidden"),
        ({"type": "unsubscribe", "channel": "project:never"}, "not_subscribed"),
        ({"type": "presence.join", "channel": "project:never", "payload": {}}, "not_subscribed"),
    ]
    for msg, code in cases:
        msg["requestId"] = code
        await a.send(json.dumps(msg))
        m, _ = await recv_until(a, lambda m: m["type"] == "error")
        ok(m is not None and m["code"] == code and m["requestId"] == code, f"{msg['type']} -> error {code}", m)
    other, _ = await connect(port_a, token(tenant="t2"))
    await other.send(json.dumps({"type": "subscribe", "channel": ch}))
    await recv_until(other, lambda m: m["type"] == "subscribed")
    psql(f"SELECT realtime.publish('t1', '{ch}', 'keep', '{{}}')")
    m, _ = await recv_until(other, lambda m: "seq" in m and m["type"] != "subscribed", 1.5)
    ok(m is None, "another tenant's connection never gets tenant t1's events", m)
    await other.close()
    many, _ = await connect(port_a, token(channels=["project:*"]))
    for i in range(50):
        await many.send(json.dumps({"type": "subscribe", "channel": f"project:m{i}"}))
    await asyncio.sleep(1.1)  # the rate limit is 50/s in this test
    await many.send(json.dumps({"type": "subscribe", "channel": "project:m50", "requestId": "51"}))
    m, _ = await recv_until(many, lambda m: m["type"] == "error")
    ok(m is not None and m["code"] == "too_many_channels", "the 51st channel is refused", m)
    await many.send(json.dumps({"type": "ping", "timestamp": 5}))
    m, _ = await recv_until(many, lambda m: m["type"] == "pong")
    ok(m == {"type": "pong", "timestamp": 5}, "and the connection is kept", m)
    await many.close()

    # rate limit: 50/s here; a flood gets rate_limited, then close 1008
    r, _ = await connect(port_a)
    for i in range(120):
        try:
            await r.send(json.dumps({"type": "ping", "timestamp": i}))
        except websockets.ConnectionClosed:
            break
    codes = []
    try:
        while True:
            m = json.loads(await asyncio.wait_for(r.recv(), 5))
            codes.append(m.get("code"))
    except websockets.ConnectionClosed as e:
        closed = e.rcvd.code if e.rcvd else None
    except asyncio.TimeoutError:
        closed = None
    ok("rate_limited" in codes, "a flood gets rate_limited errors", codes[-5:])
    ok(closed == 1008, "then the connection is closed with 1008", closed)
    await a.close()
    await b.close()


async def failover(proc_a, port_a, port_b):
    """Clients of A resume on B with since after A is killed with -9."""
    ch = f"project:fail{os.getpid()}"
    room = f"room:fail{os.getpid()}"
    clients = []
    for i in range(5):
        ws, _ = await connect(port_a, token(sub=f"f{i}"))
        await ws.send(json.dumps({"type": "subscribe", "channel": ch}))
        await ws.send(json.dumps({"type": "subscribe", "channel": room}))
        clients.append(ws)
    watcher, _ = await connect(port_b, token(sub="w"))
    await watcher.send(json.dumps({"type": "subscribe", "channel": room}))
    await recv_until(watcher, lambda m: m["type"] == "subscribed")
    for ws in clients:
        await recv_until(ws, lambda m: m["type"] == "subscribed" and m["channel"] == room)
        await ws.send(json.dumps({"type": "presence.join", "channel": room, "payload": {}}))
    await asyncio.sleep(0.5)
    last = {i: 0 for i in range(5)}
    seqs = {i: [] for i in range(5)}
    total = 60
    published = 0

    async def drain(i, ws, timeout):
        try:
            while True:
                m = json.loads(await asyncio.wait_for(ws.recv(), timeout))
                if m.get("channel") == ch and "seq" in m and m["type"] not in ("subscribed",):
                    seqs[i].append(m["seq"])
                    last[i] = m["seq"]
        except (asyncio.TimeoutError, websockets.ConnectionClosed):
            pass

    for k in range(total):
        psql(f"SELECT realtime.publish('t1', '{ch}', 'tick', '{{}}')")
        published += 1
        if k == 20:
            for i, ws in enumerate(clients):
                await drain(i, ws, 0.2)
            proc_a.send_signal(signal.SIGKILL)
            proc_a.wait()
            clients = []
            for i in range(5):  # reconnect to B and resume from the last seq each saw
                ws, _ = await connect(port_b, token(sub=f"f{i}"))
                await ws.send(json.dumps({"type": "subscribe", "channel": ch, "since": last[i]}))
                clients.append(ws)
    for i, ws in enumerate(clients):
        await drain(i, ws, 1.0)
    exact = all(seqs[i] == list(range(1, total + 1)) for i in range(5))
    ok(exact, "after kill -9, clients resumed on the other sidecar with every event exactly once, in order",
       {i: (len(seqs[i]), seqs[i][:3], seqs[i][-3:]) for i in range(5)})
    # the dead sidecar's members leave: its realtime_instances row goes stale and the
    # sweep every live process runs every 30 s removes them (run here at once, with a
    # staleness the live sidecar, refreshing every 5 s, cannot reach); the watcher is told
    await asyncio.sleep(7)
    psql("SELECT realtime.sweep_instances(interval '6 seconds')")
    left = set()
    end = time.time() + 15
    while len(left) < 5 and time.time() < end:
        m, _ = await recv_until(watcher, lambda m: m["type"] == "presence.leave", max(0.1, end - time.time()))
        if m:
            left.add(m["payload"]["userId"])
    ok(left == {f"f{i}" for i in range(5)}, "the dead sidecar's presence members leave and the others are told",
       left)
    for ws in clients:
        await ws.close()
    await watcher.close()


def main():
    pa, port_a = start_sidecar()
    pb, port_b = start_sidecar()
    try:
        asyncio.run(flows(port_a, port_b))
        asyncio.run(failover(pa, port_a, port_b))
    finally:
        for p in (pa, pb):
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
                try:
                    p.wait(10)
                except subprocess.TimeoutExpired:
                    p.kill()
    ok(pb.returncode == 0, "sidecar B exits 0 on SIGTERM", pb.returncode)
    sys.exit(1 if wstest.failed else 0)


main()
