#!/usr/bin/python3
"""sse_catchup.sh's client side: a burst of large events (more than the web server and
the kernel buffer, within the hub queue's bounds) to streams that read at their own
pace (16-64 KiB at a time, small socket buffers), with heartbeats every 100 ms: every
tick of the stream loop may write a heartbeat and flush the stream's output."""
import asyncio, glob, os, sys, time

sys.path.insert(0, os.path.join(os.environ["PGCAST_ROOT"], "tests", "lib"))
import resume_clients as rc  # noqa: E402

BASE, WEB = os.environ["LIGHTTPD_URL"], os.environ["WEB_DIR"]
TOTAL = int(os.environ.get("N", 2500))
PAD = int(os.environ.get("PAD", 6000))
HB = int(os.environ.get("HB", 100))
t = rc.Tap("sse catch-up")
# (bytes per read, pause after it): from about 1.5 to 6 MB/s when the machine is idle
PACES = [(16384, 0.01), (32768, 0.01), (65536, 0.02), (65536, 0.01)]


async def main():
    rc.psql(f"INSERT INTO realtime.realtime_heartbeat_config VALUES ('burst', {HB}, 10000) "
            f"ON CONFLICT (channel_type) DO UPDATE SET heartbeat_interval_ms = {HB}")
    ch = rc.random_name("burst:")
    cs = [rc.SSEClient(BASE, rc.token(), [ch], since={ch: 0}, read_size=rs, read_pause=rp, rcvbuf=16384,
                       name=f"reader{i}").start() for i, (rs, rp) in enumerate(PACES)]
    t.ok(await rc.wait_until(lambda: all(c.stream_open for c in cs), 30), f"{len(cs)} streams open",
         "\n".join(c.summary() for c in cs))
    await asyncio.sleep(0.5)
    rc.psql(rc.publish_sql("t1", ch, TOTAL, pad=PAD))
    t.note(f"published {TOTAL} events of {PAD} bytes in one transaction")
    started = time.time()
    done = await rc.wait_delivered(cs, {ch: TOTAL}, stall=30, cap=240)
    took = time.time() - started
    stuck = [c for c in cs if not c.reached({ch: TOTAL})]
    detail = ""
    if stuck:  # the bug this guards against: stopped for good while heartbeats go on
        before = {c.name: (c.pos[ch], c.heartbeats) for c in stuck}
        await asyncio.sleep(3)
        detail = "\n".join(f"{c.summary()}; stopped at seq {c.pos[ch]}; in the next 3 s: "
                           f"{c.pos[ch] - before[c.name][0]} events, {c.heartbeats - before[c.name][1]} heartbeats"
                           for c in stuck)
    t.ok(done, f"every slow reader got all {TOTAL} events (took {took:.1f} s)", detail)
    for c in cs:
        await c.stop()
    problems = rc.check_all(cs, "t1")
    t.ok(not problems, "each event once, in order, as in realtime_events_log", "\n".join(problems))
    t.ok(all(c.connects == 1 and not c.errors for c in cs),
         "each on the one stream it opened, with no error (no overflow)", "\n".join(c.summary() for c in cs))
    hits = rc.sanitizer_reports(glob.glob(os.path.join(WEB, "log", "*")))
    t.ok(not hits, "no sanitizer report in the server logs", "\n".join(hits[:5]) + "\n" + rc.sanitizer_excerpt(glob.glob(os.path.join(WEB, "log", "*"))))

asyncio.run(main())
t.exit()
