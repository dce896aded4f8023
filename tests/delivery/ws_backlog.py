#!/usr/bin/python3
"""ws_backlog.sh's client side: 20,000 x 1 KB events (about 20 MB, over queue_bytes
8 MiB) published before the client subscribes with since=0; live events go on meanwhile.
The client (python3-websockets) reads about 1,000 messages a second (a pause of 1 ms after
each: what a page that renders them may do), far faster than the live rate; it resubscribes with `since`
after any close, so a close costs nothing in the count — it is checked separately."""
import asyncio, glob, os, sys, time

sys.path.insert(0, os.path.join(os.environ["PGCAST_ROOT"], "tests", "lib"))
import resume_clients as rc  # noqa: E402

WEB = os.environ["WEB_DIR"]
WS_URL = f"ws://127.0.0.1:{os.environ['WS_PORT']}/ws"
t = rc.Tap("ws backlog")
BACKLOG = 20000


async def main():
    ch = rc.random_name("project:backlog")
    await rc.apsql(rc.publish_sql("t1", ch, BACKLOG, pad=1000))
    c = rc.WSClient(WS_URL, rc.token(), [ch], since={ch: 0}, name="resumer",
                    read_pause=float(os.environ.get("RP", 0.001))).start()
    stop = asyncio.Event()

    async def live():
        while not stop.is_set():
            await rc.apsql(rc.publish_sql("t1", ch, 5, pad=1000))
            await asyncio.sleep(0.2)
    lt = asyncio.ensure_future(live())
    started = time.time()
    await rc.wait_until(lambda: c.pos[ch] >= BACKLOG, 5)
    await rc.wait_delivered([c], {ch: BACKLOG}, stall=30, cap=300)
    took = time.time() - started
    stop.set()
    await lt
    final = rc.last_seqs("t1", [ch])
    ok = await rc.wait_delivered([c], final, stall=30, cap=120)
    t.ok(ok, f"the client got the backlog and the live events ({final[ch]}; backlog in {took:.1f} s)",
         c.summary())
    await c.stop()
    overflow = [(code, r) for code, r in c.closes if code == 1008]
    t.ok(c.connects == 1 and not overflow, "on one connection: never closed with 1008 during its own catch-up",
         f"connections {c.connects}, closes {c.closes[:5]}")
    problems = rc.check(c, "t1")
    t.ok(not problems, "each event once, in order, as in realtime_events_log", "\n".join(problems))
    hits = rc.sanitizer_reports(glob.glob(os.path.join(WEB, "log", "*")))
    t.ok(not hits, "no sanitizer report in the server logs", "\n".join(hits[:5]) + "\n" + rc.sanitizer_excerpt(glob.glob(os.path.join(WEB, "log", "*"))))

asyncio.run(main())
t.exit()
