#!/usr/bin/python3
"""ws_churn.sh's client side. 10 resuming clients stay on two channels while about 100
events a second are published to each (in transactions of 2); meanwhile ROUNDS rounds of 200 connections at
once subscribe to the same channels (from 50 events back or from now) and leave after up to half a second, half of them
without a close frame. Then: the sidecar still runs, its log has no sanitizer report,
each staying client got every event once, in order."""
import asyncio, glob, os, sys, time

sys.path.insert(0, os.path.join(os.environ["PGCAST_ROOT"], "tests", "lib"))
import resume_clients as rc  # noqa: E402

WEB = os.environ["WEB_DIR"]
WS_URL = f"ws://127.0.0.1:{os.environ['WS_PORT']}/ws"
PID = int(os.environ["WS_PID"])
ROUNDS = int(os.environ.get("ROUNDS", 20))
t = rc.Tap("ws churn")


def alive(pid):
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split()[2] != "Z"
    except OSError:
        return False


async def main():
    tok = rc.token()
    chans = [rc.random_name("project:churnA"), rc.random_name("project:churnB")]
    for ch in chans:
        await rc.apsql(rc.publish_sql("t1", ch, 2000, pad=200))  # a backlog for catch-ups
    stayers = [rc.WSClient(WS_URL, tok, chans, since={c: 0 for c in chans}, name=f"stay{i}") for i in range(10)]
    for c in stayers:
        c.start()
    pubs = [asyncio.ensure_future(rc.apsql(rc.steady_publish_sql("t1", ch, 1000, 0.02, pad=200, batch=2)))
            for ch in chans]
    stats = {}
    started = time.time()
    for r in range(ROUNDS):
        # half the rounds resume a little behind (a short catch-up each), half start live
        since = max(0, min(rc.last_seqs("t1", chans).values()) - 50) if r % 2 == 0 else None
        await rc.ws_churn(WS_URL, tok, chans, 200, since=since, drop_ratio=0.5,
                          stay=(0.0, 0.5), stats=stats)
        if not alive(PID):
            break
    t.note(f"churn: {ROUNDS} rounds of 200 in {time.time() - started:.1f} s: {stats}")
    t.ok(alive(PID), "the sidecar is still running after the churn")
    t.ok(stats.get("opened", 0) >= ROUNDS * 200 * 0.95, "the churning connections opened",
         stats)
    for p in pubs:
        try:
            await p
        except RuntimeError as e:
            t.note(f"publisher: {e}")
    final = rc.last_seqs("t1", chans)
    ok = await rc.wait_delivered(stayers, final, stall=30 if alive(PID) else 3, cap=120)
    t.ok(ok, "the connections that stayed got every event",
         "\n".join(c.summary() for c in stayers[:3]) + ("" if ok else "\n" + rc.hub_activity()))
    if not ok and os.environ.get("CHURN_GDB"):
        out = __import__("subprocess").run(["gdb", "-p", str(PID), "-batch", "-ex", "thread apply all bt 12"],
                                           capture_output=True, text=True).stdout
        t.note("\n".join(l for l in out.splitlines() if l.startswith(("#", "Thread")))[:6000])
        sp = __import__("subprocess")
        t.note(sp.run(f"ss -tn state established '( sport = :{os.environ['WS_PORT']} )' | head -30", shell=True,
                      capture_output=True, text=True).stdout)
        t.note(sp.run(["curl", "-s", f"http://127.0.0.1:{os.environ['WS_PORT']}/metrics"], capture_output=True,
                      text=True).stdout)
    if not ok and alive(PID):
        # diagnosis: one more NOTIFY makes the hub read its connection; if that releases
        # every missing event, they were sitting unread in the hub's connection
        before = {c: stayers[0].pos[c] for c in chans}
        for ch in chans:
            await rc.apsql(rc.publish_sql("t1", ch, 1, pad=200))
        final2 = rc.last_seqs("t1", chans)
        got = await rc.wait_delivered(stayers, final2, stall=15, cap=30)
        t.note(f"after one more event per channel: stay0 went from {before} to {stayers[0].pos} "
               f"(log: {final2}); {'all delivered' if got else 'still missing'}")
    for _ in range(int(os.environ.get("CHURN_WATCH", 0)) if not ok else 0):  # diagnosis: does it recover?
        await asyncio.sleep(10)
        t.note(f"{time.strftime('%T')} stay0 at {stayers[0].pos} of {final}; {rc.hub_activity(3)}")
    for c in stayers:
        await c.stop()
    problems = rc.check_all(stayers, "t1")
    t.ok(not problems, "each of them: every event once, in order, as in realtime_events_log",
         "\n".join(problems[:20]))
    again = [c for c in stayers if c.connects != 1]
    if again:  # a client process this busy may fall behind the live rate: it resumes
        t.note(f"{len(again)} of them resumed after a close: {again[0].closes[:2]}")
    hits = rc.sanitizer_reports(glob.glob(os.path.join(WEB, "log", "*")))
    t.ok(not hits, "no sanitizer report in the sidecar's log", "\n".join(hits[:5]) + "\n" + rc.sanitizer_excerpt(glob.glob(os.path.join(WEB, "log", "*"))))

asyncio.run(main())
t.exit()
