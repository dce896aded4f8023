#!/usr/bin/python3
"""migrate_live.sh's client side: a database at 012 with two channels of 20 events,
pruned by 012's prune (DELETE) through 15; live clients on every transport from 15; a
steady publisher; pgcast-migrate brings the database to 013 meanwhile. Then resumers
from 0, 10, 15 and 18 on every transport. Everything is checked against the log."""
import asyncio, glob, os, subprocess, sys

sys.path.insert(0, os.path.join(os.environ["PGCAST_ROOT"], "tests", "lib"))
import resume_clients as rc  # noqa: E402

BASE, WEB = os.environ["LIGHTTPD_URL"], os.environ["WEB_DIR"]
WS_URL = f"ws://127.0.0.1:{os.environ['WS_PORT']}/ws"
t = rc.Tap("013 while running")


async def main():
    chans = [rc.random_name("project:ml"), rc.random_name("project:mm")]
    for c in chans:
        await rc.apsql(rc.publish_sql("t1", c, 20))
    rc.psql("SELECT realtime.prune(NULL, 5)")
    t.ok(rc.psql("SELECT max(name) FROM realtime.schema_migrations") == "012_presence_owner_limits.sql"
         and {c: rc.pruned_through("t1", c) for c in chans} == {c: 15 for c in chans},
         "a database at 012, both channels pruned through 15 by DELETE")

    live = rc.all_transports(BASE, WS_URL, chans, 15, "-live")
    ok = await rc.wait_delivered(live, {c: 20 for c in chans}, stall=30, cap=120)
    t.ok(ok, "live clients on SSE, long-poll and WebSocket read from 15", [c.summary() for c in live])

    pub = asyncio.ensure_future(asyncio.gather(*(rc.apsql(rc.steady_publish_sql("t1", c, 60, 0.05)) for c in chans)))
    await asyncio.sleep(1.0)
    env = dict(os.environ, PGCAST_DATABASE_URL=os.environ["PGCAST_TEST_OWNER_URL"])
    p = await asyncio.create_subprocess_exec(os.path.join(os.environ["PGCAST_BIN"], "pgcast-migrate"), "--quiet", env=env,
                                             stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    out, err = await p.communicate()
    t.ok(p.returncode == 0 and rc.psql("SELECT relkind FROM pg_class WHERE oid = 'realtime.realtime_events_log'::regclass") == "p",
         "pgcast-migrate applied 013 while publishing went on", (p.returncode, out, err))
    await pub
    final = rc.last_seqs("t1", chans)
    t.ok(final == {c: 80 for c in chans}, "every publish committed", final)

    everyone = await rc.check_resumes(t, BASE, WS_URL, live, chans, final, {0: [(1, 15)], 10: [(11, 15)], 15: [], 18: []},
                                      "resumes from positions 012 pruned get the same gaps after 013")
    problems = rc.check_all(everyone, "t1")
    t.ok(not problems, "every client got each event once, in order, as in realtime_events_log", "\n".join(problems))
    t.ok(all(not c.gaps for c in live), "the live clients saw no gap", [c.gaps for c in live])
    hits = rc.sanitizer_reports(glob.glob(os.path.join(WEB, "log", "*")))
    t.ok(not hits, "no sanitizer report in the server logs", "\n".join(hits[:5]))

asyncio.run(main())
t.exit()
