#!/usr/bin/python3
"""presence_switch.sh's client side (issue: presence across a switch of the wake-up source).

Three WebSocket clients on one sidecar, subscribed to one channel: A and B join before
the freeze; the relay is then frozen (SIGSTOP), and while it is, C subscribes and joins,
B updates and leaves, C updates; then the relay is killed (kill -9). Every client must
end with exactly the presence messages of the channel written after it subscribed, in
the order of realtime_presence_events, each once: those of the freeze come after the
sidecar LISTENs on its own (their wake-ups went to the frozen relay); those before it
must not come again. Then the sidecar's own LISTEN connection is terminated and kept
from reconnecting (CONNECT revoked) while a member joins, updates and leaves by SQL:
after the reconnect those come too, once each, in order."""
import asyncio, glob, json, os, signal, sys, time

import websockets

sys.path.insert(0, os.path.join(os.environ["PGCAST_ROOT"], "tests", "lib"))
import resume_clients as rc  # noqa: E402
from wstest import Reader  # noqa: E402

WS_URL = f"ws://127.0.0.1:{os.environ['WS_PORT']}/ws"
RELAY_PID = int(os.environ["RELAY_PID"])
TENANT = "t1"
CH = rc.random_name("room:pswitch")
t = rc.Tap("presence-switch")


def sessions():
    """{application_name: count} of this database's hub and relay sessions."""
    out = rc.psql("SELECT application_name, count(*) FROM pg_stat_activity WHERE datname = current_database() "
                  "AND application_name IN ('pgcast-hub', 'pgcast-hub-relayed', 'pgcast-relay') GROUP BY 1")
    return {a: int(n) for a, n in (line.split("|") for line in out.splitlines() if line)}


def rows():
    """The channel's presence messages as written, in id order: [(id, message)]."""
    out = rc.psql(f"SELECT id, message::text FROM realtime.realtime_presence_events "
                  f"WHERE tenant_id = '{TENANT}' AND channel = '{CH}' ORDER BY id")
    return [(int(i), json.loads(m)) for i, m in (line.split("|", 1) for line in out.splitlines() if line)]


def presence(reader):
    """What a client got of the channel's presence, in order (type, channel, payload)."""
    return [{k: m.get(k) for k in ("type", "channel", "payload")} for m in reader.msgs
            if m.get("type", "").startswith("presence.") and m.get("channel") == CH]


class Client:
    async def open(self, sub):
        self.sub = sub
        self.ws = await websockets.connect(f"{WS_URL}?token={rc.token(TENANT, sub, name=sub)}", max_size=None)
        self.r = Reader(self.ws)
        if not await self.r.wait(lambda m: m.get("type") == "connected", 30):
            raise RuntimeError(f"{sub}: no connected message: {self.r.msgs}")
        await self.send({"type": "subscribe", "channel": CH})
        if not await self.r.wait(lambda m: m.get("type") == "subscribed" and m.get("channel") == CH, 30):
            raise RuntimeError(f"{sub}: not subscribed: {self.r.msgs}")
        self.after = max((i for i, _ in rows()), default=0)  # rows written before are not its
        return self

    async def send(self, obj):
        await self.ws.send(json.dumps(obj))

    async def act(self, kind, payload=None):
        """A presence action; returns once its row is written."""
        n = len(rows())
        await self.send({"type": kind, "channel": CH, **({"payload": payload} if payload is not None else {})})
        if not await rc.wait_until(lambda: len(rows()) > n, 30):
            raise RuntimeError(f"{self.sub}: {kind} wrote no presence row: {self.r.msgs[-3:]}")


async def main():
    ok = await rc.wait_until(lambda: sessions() == {"pgcast-hub-relayed": 1, "pgcast-relay": 1}, 60, 0.2)
    t.ok(ok, "the sidecar takes its wake-ups from the relay (one listening connection)", sessions())

    a = await Client().open("ann")
    b = await Client().open("bob")
    await a.act("presence.join", {"role": "watcher"})
    await b.act("presence.join", {"color": "red"})
    before = [m for _, m in rows()]
    await a.r.wait_count(lambda m: m.get("type") == "presence.join" and m.get("channel") == CH, 2, 30)
    t.ok(presence(a.r) == before, "before the freeze, A gets both joins through the relay", (presence(a.r), before))

    os.kill(RELAY_PID, signal.SIGSTOP)
    frozen_from = rows()[-1][0]
    c = await Client().open("cat")
    await c.act("presence.join", {"n": 1})
    await b.act("presence.update", {"color": "blue"})
    await b.act("presence.leave")
    await c.act("presence.update", {"n": 2})
    during = [m for i, m in rows() if i > frozen_from]
    t.note(f"{len(during)} presence messages written while the relay was frozen; A had {len(presence(a.r)) - 2} "
           "of them before the kill")
    os.kill(RELAY_PID, signal.SIGKILL)
    killed = time.time()

    ok = await rc.wait_until(lambda: sessions().get("pgcast-hub", 0) == 1, 30, 0.2)
    t.ok(ok, f"after kill -9 of the relay the sidecar LISTENs on its own ({time.time() - killed:.1f} s)", sessions())
    everything = [m for _, m in rows()]
    await a.r.wait_count(lambda m: m.get("type", "").startswith("presence.") and m.get("channel") == CH,
                         len(everything), 30)
    await asyncio.sleep(2)  # anything delivered twice would come by now
    t.ok(presence(a.r)[len(before):] == during,
         "A gets every presence message written while the relay was frozen, once each, in order",
         (presence(a.r)[len(before):], during))
    t.ok(presence(a.r) == everything, "A gets nothing twice: the channel's presence messages exactly, in order",
         (presence(a.r), everything))
    t.ok(presence(c.r) == [m for i, m in rows() if i > c.after],
         "C (subscribed while the relay was frozen) gets exactly those written after it subscribed",
         (presence(c.r), [m for i, m in rows() if i > c.after]))
    t.ok(presence(b.r) == [m for i, m in rows() if i > b.after], "B gets them too, once, in order",
         (presence(b.r), [m for i, m in rows() if i > b.after]))

    # and the sidecar delivers live again from its own LISTEN
    await a.act("presence.update", {"role": "still here"})
    m = await c.r.wait(lambda m: m.get("type") == "presence.update" and m.get("payload", {}).get("role") == "still here",
                       30)
    t.ok(m is not None, "a presence message after the switch is delivered live", presence(c.r)[-2:])

    # The sidecar's own LISTEN connection is lost (terminated, and the database takes no
    # new connection for a while): presence written meanwhile notifies no one of it.
    db = rc.psql("SELECT current_database()")
    rc.psql(f'REVOKE CONNECT ON DATABASE "{db}" FROM PUBLIC')  # superusers (psql here) still connect
    mark = rows()[-1][0]
    rc.psql("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = current_database() "
            "AND application_name = 'pgcast-hub'")
    gone = await rc.wait_until(lambda: sessions().get("pgcast-hub", 0) == 0, 30, 0.2)
    rc.psql(f"SELECT realtime.presence_join('{TENANT}', '{CH}', 'sql-1', 'dan', 'dan', 'Dan', '{{\"via\": \"sql\"}}')")
    rc.psql(f"SELECT realtime.presence_join('{TENANT}', '{CH}', 'sql-1', 'dan', 'dan', 'Dan', '{{\"via\": \"sql 2\"}}')")
    rc.psql(f"SELECT realtime.presence_leave('{TENANT}', '{CH}', 'sql-1', 'dan')")
    gap = [m for i, m in rows() if i > mark]
    rc.psql(f'GRANT CONNECT ON DATABASE "{db}" TO PUBLIC')
    back = await rc.wait_until(lambda: sessions().get("pgcast-hub", 0) == 1, 30, 0.2)
    t.ok(gone and back and len(gap) == 3, "the sidecar's database connection is lost, 3 presence messages are "
         "written, then it reconnects", (gone, back, gap))
    everything = [m for _, m in rows()]
    await c.r.wait_count(lambda m: m.get("type", "").startswith("presence.") and m.get("channel") == CH,
                         len([i for i, _ in rows() if i > c.after]), 30)
    await asyncio.sleep(2)
    t.ok(presence(c.r)[-3:] == gap and presence(c.r) == [m for i, m in rows() if i > c.after],
         "after the reconnect C gets the presence messages written while it was away, once each, in order",
         (presence(c.r), gap))
    t.ok(presence(a.r) == everything, "and A: every presence message of the channel exactly once, in order",
         (presence(a.r), everything))

    for x in (a, b, c):
        await x.ws.close()
    with open(os.path.join(os.environ["WEB_DIR"], "log", "pgcast-ws.log"), errors="replace") as f:
        t.note("".join(line for line in f if "read again" in line).strip() or "(the sidecar logged no presence replay)")
    hits = rc.sanitizer_reports(glob.glob(os.path.join(os.environ["WEB_DIR"], "log", "*")))
    t.ok(not hits, "no sanitizer report in the servers' logs", "\n".join(hits[:5]))
    t.exit()


asyncio.run(main())
