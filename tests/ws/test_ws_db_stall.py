#!/usr/bin/python3
"""A stalled database stalls only the requests that wait for it. A trigger added to this
test's database makes every presence join of a room:stall* channel wait on an advisory
lock that the test holds. Meanwhile: pings (protocol and JSON) are answered, on the
stalled connection too; publishes of other connections go through and their events are
delivered to every subscriber, the stalled connection included; a client that keeps
sending while its requests wait is refused with rate_limited past its bound instead of
queueing without end; a connection that closes with a request waiting is safe. Once the
lock is released, the stalled requests complete, their replies in the order sent; the
closed connection's join is followed by its leave; every event was delivered exactly
once, in order (checked against realtime_events_log)."""
import asyncio, json, os, subprocess, sys, time

sys.path.insert(0, os.path.join(os.environ["PGCAST_ROOT"], "tests/lib"))
from wstest import Reader, connect, metrics, note, ok, psql, start_sidecar, stop_sidecar, token  # noqa: E402
import wstest  # noqa: E402

PENDING = 6  # ws_db_pending for this run
GATE = 4242


def install_gate():
    psql(f"""
CREATE FUNCTION public.pgcast_test_gate() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.channel LIKE 'room:stall%' THEN PERFORM pg_advisory_xact_lock_shared({GATE}); END IF;
    RETURN NEW;
END $$;
CREATE TRIGGER pgcast_test_gate BEFORE INSERT ON realtime.realtime_presence
    FOR EACH ROW EXECUTE FUNCTION public.pgcast_test_gate();""")


class Gate:
    """Holds the advisory lock in a psql session of its own until release()."""

    def __init__(self):
        self.p = subprocess.Popen(["psql", "-qXAt", "-v", "ON_ERROR_STOP=1"], stdin=subprocess.PIPE,
                                  stdout=subprocess.PIPE, text=True)
        self.p.stdin.write(f"SELECT pg_advisory_lock({GATE});\n\\echo locked\n")
        self.p.stdin.flush()
        while self.p.stdout.readline().strip() != "locked":
            pass

    def release(self):
        self.p.stdin.write("\\q\n")
        self.p.stdin.close()
        self.p.wait(timeout=30)


def waiting_joins():
    return int(psql("SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' "
                    "AND query LIKE '%presence_join%'"))


async def main():
    install_gate()
    proc, port = start_sidecar({"PGCAST_WS_DB_PENDING": str(PENDING), "PGCAST_WS_DB_WORKERS": "4"})
    pid = os.getpid()
    room, live = f"room:stall{pid}", f"project:live{pid}"
    a_ws, a_hello = await connect(port, token(sub="u1", name="Ann"))
    b_ws, _ = await connect(port, token(sub="u2", name="Bob"))
    c_ws, _ = await connect(port, token(sub="u3", name="Cy"))
    a, b, c = Reader(a_ws), Reader(b_ws), Reader(c_ws)
    for r, chans in ((a, (room, live)), (b, (live,)), (c, (live,))):
        for ch in chans:
            await r.ws.send(json.dumps({"type": "subscribe", "channel": ch, "requestId": "s-" + ch}))
            await r.wait(lambda m, ch=ch: m["type"] == "subscribed" and m["channel"] == ch)

    gate = Gate()
    # A: a join that waits for the gate, then requests queued behind it, then a flood
    await a_ws.send(json.dumps({"type": "presence.join", "channel": room, "payload": {"n": -1}, "requestId": "j1"}))
    await a_ws.send(json.dumps({"type": "publish", "channel": live, "event": "a.p1", "payload": {}, "requestId": "p1"}))
    await a_ws.send(json.dumps({"type": "presence.get", "channel": room, "requestId": "g1"}))
    await a_ws.send(json.dumps({"type": "publish", "channel": live, "event": "a.p2", "payload": {}, "requestId": "p2"}))
    for i in range(20):
        await a_ws.send(json.dumps({"type": "presence.update", "channel": room, "payload": {"n": i},
                                    "requestId": f"u{i}"}))
    t0 = time.time()
    for _ in range(100):
        if waiting_joins() >= 1:
            break
        await asyncio.sleep(0.1)
    ok(waiting_joins() >= 1, "the join waits on the gate in the database")

    # A's flood: past its bound, refused at once rather than queued
    refused = await a.wait_count(lambda m: m["type"] == "error" and m.get("code") == "rate_limited", 18, 10)
    ids = sorted(m.get("requestId") for m in refused)
    ok(ids == sorted(f"u{i}" for i in range(PENDING - 4, 20)),
       f"a connection's requests past ws_db_pending={PENDING} are refused with rate_limited at once", ids)

    # pings go on: on another connection (JSON) and on the stalled one (protocol)
    t = time.time()
    await b_ws.send(json.dumps({"type": "ping", "requestId": "ping-b"}))
    pong = await b.wait(lambda m: m["type"] == "pong", 5)
    note(f"JSON pong on another connection after {1000 * (time.time() - t):.0f} ms while the database stalls")
    ok(pong is not None and pong.get("requestId") == "ping-b", "another connection's ping is answered", pong)
    t = time.time()
    try:
        waiter = await a_ws.ping()
        await asyncio.wait_for(waiter, 5)
        pinged = True
    except (asyncio.TimeoutError, Exception) as e:  # noqa: BLE001
        pinged = str(e) or type(e).__name__
    note(f"protocol pong on the stalled connection after {1000 * (time.time() - t):.0f} ms")
    ok(pinged is True, "the stalled connection's own ping frame is answered", pinged)
    await a_ws.send(json.dumps({"type": "ping", "requestId": "ping-a"}))
    pong = await a.wait(lambda m: m["type"] == "pong", 5)
    ok(pong is not None and pong.get("requestId") == "ping-a", "the stalled connection's JSON ping is answered",
       pong)

    # publishes of others go through and are delivered, to the stalled connection too
    t = time.time()
    await b_ws.send(json.dumps({"type": "publish", "channel": live, "event": "b.e1", "payload": {}, "requestId": "b1"}))
    pub = await b.wait(lambda m: m["type"] == "published" and m.get("requestId") == "b1", 5)
    note(f"publish on another connection answered after {1000 * (time.time() - t):.0f} ms")
    ok(pub is not None, "another connection's publish is answered while the database stalls", pub)
    got_c = await c.wait(lambda m: m["type"] == "b.e1", 5)
    got_a = await a.wait(lambda m: m["type"] == "b.e1", 5)
    ok(got_c is not None and got_a is not None, "its event reaches the other subscribers and the stalled one",
       (got_c, got_a))
    psql(f"SELECT realtime.publish('t1', '{live}', 'sql.e2', '{{}}')")
    ok(await c.wait(lambda m: m["type"] == "sql.e2", 5) is not None, "an event published by SQL is delivered")
    ok(a.find(lambda m: m.get("requestId") in ("p1", "g1", "p2")) is None
       and psql(f"SELECT count(*) FROM realtime.realtime_events_log WHERE channel = '{live}' "
                "AND event_type LIKE 'a.%'") == "0",
       "A's publishes wait behind its join (its requests run in the order sent)")

    # D closes while its join waits; its publish still runs, its reply goes nowhere
    d_ws, d_hello = await connect(port, token(sub="u4", name="Di"))
    droom = f"room:stall-d{pid}"
    await d_ws.send(json.dumps({"type": "subscribe", "channel": droom}))
    d = Reader(d_ws)
    await d.wait(lambda m: m["type"] == "subscribed")
    await d_ws.send(json.dumps({"type": "presence.join", "channel": droom, "requestId": "dj"}))
    await d_ws.send(json.dumps({"type": "publish", "channel": live, "event": "d.p", "payload": {}, "requestId": "dp"}))
    for _ in range(100):
        if waiting_joins() >= 2:
            break
        await asyncio.sleep(0.1)
    await d.close()
    m = metrics(port)
    ok(m.get("pgcast_ws_db_refused_total", 0) >= 18 and m.get("pgcast_ws_db_jobs", 0) >= 1,
       "/metrics counts the jobs waiting and the requests refused", m)
    held = time.time() - t0
    note(f"the database stalled for {held:.1f} s")

    gate.release()
    # the stalled requests complete, in the order sent
    await a.wait(lambda m: m.get("requestId") == "p2", 20)
    order = [(m.get("requestId"), m["type"]) for m in a.msgs if m.get("requestId") in ("j1", "p1", "g1", "p2")]
    ok(order == [("p1", "published"), ("g1", "presence.sync"), ("p2", "published")],
       "after the stall, A's replies come in the order of its requests", (order, a.msgs))
    sync = next((m for m in a.msgs if m.get("requestId") == "g1"), None)
    ok(sync is not None and [x["userId"] for x in sync["payload"]["members"]] == ["u1"],
       "presence.get ran after the join queued before it", sync)
    await a_ws.send(json.dumps({"type": "presence.get", "channel": room, "requestId": "g2"}))
    g2 = await a.wait(lambda m: m.get("requestId") == "g2", 20)
    data = g2 and [x.get("n") for x in g2["payload"]["members"]]
    ok(data == [PENDING - 5], "the updates accepted ran in order (the last accepted one is the member's data)",
       g2)
    members = None
    for _ in range(100):
        members = psql(f"SELECT realtime.presence_members('t1', '{droom}')")
        if members == "[]" and psql(f"SELECT count(*) FROM realtime.realtime_events_log "
                                    f"WHERE channel = '{live}' AND event_type = 'd.p'") == "1":
            break
        await asyncio.sleep(0.2)
    ok(members == "[]", "the closed connection's join was followed by its leave (no member left behind)", members)

    # every event of the channel exactly once, in order, for C and for A (each waited for:
    # A's deliveries may come later than C's on a busy machine)
    on_live = lambda m: m.get("channel") == live and "seq" in m and m["type"] not in ("subscribed", "published")  # noqa: E731
    for r in (c, a):
        await r.wait_count(on_live, 5, 20)
    await asyncio.sleep(0.5)  # (a duplicate would come meanwhile)
    log = [tuple(r.split("|")) for r in psql(f"SELECT seq, event_type FROM realtime.realtime_events_log "
                                              f"WHERE channel = '{live}' ORDER BY seq").splitlines()]
    log = [(int(s), t) for s, t in log]
    for name, r in (("C", c), ("A", a)):
        got = [(m["seq"], m["type"]) for m in r.msgs if m.get("channel") == live and m["type"] != "subscribed"
               and "seq" in m and m["type"] not in ("published",)]
        ok(got == log and len(log) == 5, f"{name} received every event of the channel once, in order", (got, log))
    p1 = next((m["seq"] for m in a.msgs if m.get("requestId") == "p1"), None)
    p2 = next((m["seq"] for m in a.msgs if m.get("requestId") == "p2"), None)
    ok(p1 is not None and p2 is not None and p1 < p2, "A's publishes took their positions in the order sent",
       (p1, p2))

    for r in (a, b, c):
        await r.close()
    for _ in range(50):  # (a presence heartbeat may be under way)
        m = metrics(port)
        if m.get("pgcast_ws_db_jobs") == 0:
            break
        await asyncio.sleep(0.1)
    ok(m.get("pgcast_ws_db_jobs") == 0, "no job is left once every request is answered", m)
    stop_sidecar(proc)


asyncio.run(main())
print(f"1..{wstest.n}")
sys.exit(1 if wstest.failed else 0)
