#!/usr/bin/python3
"""freeze.py sse|ws: a client that does not read, behind on a channel of 12 KB events
(it resumes from 0 over 1,000 of them for SSE, 3,000 for WebSocket: more than its
queue), and a client reading another channel of the same process while events are
published there every 100 ms. The reader must keep getting them while the other is
stuck, and after it leaves; for WebSocket also after connections that drop without a
close frame 0.3 s and 1 s into that catch-up; a client connecting afterwards too.
Every delivery is checked against the log. A failure notes whether the hub's database
session was seen reading the log (a hub re-reading it in a loop)."""
import asyncio, glob, os, sys, time

sys.path.insert(0, os.path.join(os.environ["PGCAST_ROOT"], "tests", "lib"))
import resume_clients as rc  # noqa: E402

MODE = sys.argv[1]
WEB = os.environ["WEB_DIR"]
BASE = os.environ.get("LIGHTTPD_URL")
WS_URL = f"ws://127.0.0.1:{os.environ['WS_PORT']}/ws"
t = rc.Tap(f"{MODE} freeze")
BIG = 1000 if MODE == "sse" else 3000  # x 12 KB: more than a queue (8 MiB)
TOK = rc.token()


def reader(ch, name):
    if MODE == "sse":
        return rc.SSEClient(BASE, TOK, [ch], since={ch: 0}, name=name).start()
    return rc.WSClient(WS_URL, TOK, [ch], since={ch: 0}, name=name).start()


async def ticker(ch, stop):
    """Publishes one event on ch every 100 ms until stop is set."""
    while not stop.is_set():
        await rc.apsql(rc.publish_sql("t1", ch, 1))
        await asyncio.sleep(0.1)


frozen = False


def hub_reads():
    """Which sessions run realtime.read right now (a hub stuck re-reading the log)."""
    return rc.psql("SELECT string_agg(application_name || ': ' || left(query, 60), '; ') FROM pg_stat_activity "
                   "WHERE state = 'active' AND query LIKE '%realtime.read%' AND pid <> pg_backend_pid()")


async def keeps_up(c, ch, what, secs=8):
    """After secs of live events, the reader has all that was published up to then: it
    must reach that position; 30 s without any progress fails (10 s once a freeze was
    seen, to keep a failing run short)."""
    global frozen
    t0 = time.time()
    await asyncio.sleep(secs)
    t.note(f"longest silence of {c.name} in these {secs} s: {c.max_silence(t0, time.time()):.2f} s")
    target = rc.last_seqs("t1", [ch])
    ok = await rc.wait_delivered([c], target, stall=10 if frozen else 30, cap=90)
    detail = f"{c.summary()}; at seq {c.pos[ch]} of {target[ch]}"
    if not ok:
        frozen = True
        samples = [hub_reads() for _ in range(5)]
        detail += f"\nrealtime.read running in 5 samples: {sum(1 for x in samples if x)} ({samples[0]})"
    t.ok(ok, what, detail)
    return ok


async def main():
    big, live = rc.random_name("project:big"), rc.random_name("project:live")
    await rc.apsql(rc.publish_sql("t1", big, BIG, pad=12000))
    r = reader(live, "reader")
    stop = asyncio.Event()
    tick = asyncio.ensure_future(ticker(live, stop))
    await keeps_up(r, live, "the reader gets live events", 3)

    if MODE == "sse":
        stuck = rc.StuckSSE(BASE, TOK, [big], since={big: 0})
    else:
        stuck = rc.RawWS(WS_URL, TOK, rcvbuf=4096)
        t.ok(stuck.status == 101, "the non-reader's WebSocket opens", stuck.status)
        stuck.subscribe(big, 0)
    t.note(f"a client resumes {big} from 0 over {BIG} x 12 KB events and does not read")
    await keeps_up(r, live, "the reader keeps getting live events while the other does not read", 10)

    # more on the big channel too, while the non-reader is stuck
    await rc.apsql(rc.publish_sql("t1", big, 50, pad=12000))
    await keeps_up(r, live, "... also while events are published to the non-reader's channel", 5)

    stuck.drop() if MODE == "ws" else stuck.close()
    t.note("the non-reader left" + (" without a close frame" if MODE == "ws" else ""))
    await keeps_up(r, live, "the reader keeps getting live events after the non-reader left", 5)

    if MODE == "ws":
        # dropped in the middle of its catch-up (the hub is still reading the backlog for it)
        for delay in (0.3, 1.0):
            d = rc.RawWS(WS_URL, TOK, rcvbuf=4096)
            d.subscribe(big, 0)
            await asyncio.sleep(delay)
            d.drop()
            t.note(f"a client resuming {big} from 0 dropped without a close frame {delay} s after subscribing")
            await keeps_up(r, live, f"the reader keeps getting live events after a client dropped mid catch-up "
                                    f"({delay} s)", 5)

    late = reader(live, "late")
    await keeps_up(late, live, "a client connecting afterwards gets the channel's events", 3)

    stop.set()
    await tick
    final = rc.last_seqs("t1", [live])
    await rc.wait_delivered([r, late], final, stall=10 if frozen else 30, cap=60)
    for c in (r, late):
        await c.stop()
    problems = rc.check_all([r, late], "t1")
    t.ok(not problems, "each reader got every event of its channel once, in order, as in realtime_events_log",
         "\n".join(problems))
    t.ok(r.connects == 1, "the reader never had to reconnect", r.summary())
    hits = rc.sanitizer_reports(glob.glob(os.path.join(WEB, "log", "*")))
    t.ok(not hits, "no sanitizer report in the server logs", "\n".join(hits[:5]) + "\n" + rc.sanitizer_excerpt(glob.glob(os.path.join(WEB, "log", "*"))))

asyncio.run(main())
t.exit()
