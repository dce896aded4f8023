#!/usr/bin/python3
"""sse_overflow_resume.sh's client side. Default queue bounds (1,024 events / 8 MiB).
The client stops reading; 12,000 x 1 KB events (more than the web server, the kernel
and the hub queue hold for it) end its stream with `overflow`. Then it reads again at
its pace (64 KiB every 10 ms), reconnects with Last-Event-ID and catches up over
thousands of events while 20 events a second are published."""
import asyncio, glob, os, sys, time

sys.path.insert(0, os.path.join(os.environ["PGCAST_ROOT"], "tests", "lib"))
import resume_clients as rc  # noqa: E402

BASE, WEB = os.environ["LIGHTTPD_URL"], os.environ["WEB_DIR"]
t = rc.Tap("sse overflow resume")
BURST = 12000
RS = int(os.environ.get("RS", 65536))
LIVE = float(os.environ.get("LIVE", 0.005))
LIVE_N = int(os.environ.get("LIVE_N", 2000))
BATCH = int(os.environ.get("BATCH", 1))


def overflowed(ch):
    return int(rc.psql("SELECT count(*) FROM realtime.realtime_connection_stats WHERE transport = 'sse' "
                       f"AND channel = '{ch}' AND disconnect_reason ILIKE '%overflow%'"))


async def main():
    ch = rc.random_name("project:ovf")
    c = rc.SSEClient(BASE, rc.token(), [ch], since={ch: 0}, read_size=RS, read_pause=0.01, rcvbuf=65536,
                     name="resumer").start()
    t.ok(await rc.wait_until(lambda: c.stream_open, 30), "the stream opens", c.summary())
    await rc.apsql(rc.publish_sql("t1", ch, 10, pad=1000))
    await rc.wait_until(lambda: c.pos[ch] >= 10, 30)
    c.paused = True
    await asyncio.sleep(0.5)
    await rc.apsql(rc.publish_sql("t1", ch, BURST, pad=1000))
    # the burst fills the stream's queue; the client takes nothing for longer than
    # queue_stall_ms (8 s), so the hub ends it (overflow); the server writes the error once
    # the client reads what was sent before. The 8 s count from the stream's last take,
    # which comes after the commit once the web server's buffers are full: nothing tells
    # the client when that was, so it stays paused 4 s past the bound (a busy machine
    # fills those buffers slowly)
    await asyncio.sleep(12)
    lt = asyncio.ensure_future(rc.apsql(rc.steady_publish_sql("t1", ch, LIVE_N, LIVE, pad=1000, batch=BATCH)))
    c.paused = False
    await rc.wait_until(lambda: c.connects >= 2, 60)
    t.ok(c.error_codes()[:1] == ["overflow"] and c.connects >= 2,
         "the client that stopped reading was ended with an overflow error and reconnected", c.summary())
    t.note(f"resumed after {c.pos[ch]} events")
    t0, p0 = time.monotonic(), c.pos[ch]
    await rc.wait_delivered([c], {ch: BURST + 10}, stall=30, cap=240)
    dt = time.monotonic() - t0
    t.note(f"catch-up read at {(c.pos[ch] - p0) * 1.1 / max(dt, 0.001):.0f} KB/s ({c.pos[ch] - p0} events in {dt:.1f} s)")
    await lt  # live events go on after the catch-up
    final = rc.last_seqs("t1", [ch])
    ok = await rc.wait_delivered([c], final, stall=30, cap=120)
    t.ok(ok, f"it got all {final[ch]} events", c.summary())
    await c.stop()
    codes = c.error_codes()
    # A resumed stream's catch-up is paced by the client; it is not ended again. (The
    # client must read fast enough that the web server's socket buffer to it — several
    # MB on loopback — drains within queue_stall_ms: the server stops reading the
    # stream until it has, see docs/operations.md "queue_stall_ms".)
    t.ok(codes.count("overflow") == 1 and c.connects == codes.count("overflow") + 1,
         "the resumed stream is not ended again",
         f"errors {codes}; connections {c.connects}; overflow rows in connection stats: {overflowed(ch)}")
    problems = rc.check(c, "t1")
    t.ok(not problems, "each event once, in order, as in realtime_events_log", "\n".join(problems))
    hits = rc.sanitizer_reports(glob.glob(os.path.join(WEB, "log", "*")))
    t.ok(not hits, "no sanitizer report in the server logs", "\n".join(hits[:5]) + "\n" + rc.sanitizer_excerpt(glob.glob(os.path.join(WEB, "log", "*"))))

asyncio.run(main())
t.exit()
