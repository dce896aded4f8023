#!/usr/bin/python3
"""partition_drop.sh's client side.

The log gets a partition for yesterday (the empty first partition, made at migration
time, is dropped by hand so that one can be attached). Two channels get 30 events; the
first 20 of each are moved into yesterday's partition; live clients on every transport
read from position 25. Then, while a steady publisher goes on, the runtime role prunes
with an age of one hour: the cut moves to 20 on both channels and yesterday's partition
is dropped. Clients resuming afterwards from 0, 10, 20 and 25 get a gap for exactly what
was cut, then every event once, in order, as in realtime_events_log."""
import asyncio, glob, os, sys

sys.path.insert(0, os.path.join(os.environ["PGCAST_ROOT"], "tests", "lib"))
import resume_clients as rc  # noqa: E402

BASE, WEB = os.environ["LIGHTTPD_URL"], os.environ["WEB_DIR"]
WS_URL = f"ws://127.0.0.1:{os.environ['WS_PORT']}/ws"
RUNTIME = dict(os.environ, PGUSER=os.environ.get("PGCAST_TEST_DB_USER", "pgcast_test_app"))
t = rc.Tap("partition drop")


async def main():
    # yesterday's partition, in place of the empty first one
    rc.psql("""
        DROP TABLE realtime.realtime_events_log_initial;
        DELETE FROM realtime.realtime_log_partitions WHERE part_name = 'realtime_events_log_initial';
        DO $$
        DECLARE lo timestamptz := date_bin('1 day', now(), timestamptz '2000-01-01 00:00+00') - interval '1 day';
        BEGIN
            CREATE TABLE realtime.realtime_events_log_yesterday (LIKE realtime.realtime_events_log INCLUDING DEFAULTS,
                CONSTRAINT realtime_events_log_yesterday_pkey PRIMARY KEY (tenant_id, channel, seq));
            EXECUTE format('ALTER TABLE realtime.realtime_events_log ATTACH PARTITION realtime.realtime_events_log_yesterday '
                           'FOR VALUES FROM (%L) TO (%L)', lo, lo + interval '1 day');
            INSERT INTO realtime.realtime_log_partitions (part_name, lo, hi)
            VALUES ('realtime_events_log_yesterday', lo, lo + interval '1 day');
        END $$""")
    chans = [rc.random_name("project:pd"), rc.random_name("project:pe")]
    for c in chans:
        await rc.apsql(rc.publish_sql("t1", c, 30))
    # the first 20 of each channel become yesterday's (rows move partitions)
    moved = rc.psql(f"""
        WITH u AS (UPDATE realtime.realtime_events_log
                      SET published_at = date_bin('1 day', now(), timestamptz '2000-01-01 00:00+00') - interval '12 hours'
                    WHERE channel IN ('{chans[0]}', '{chans[1]}') AND seq <= 20 RETURNING 1)
        SELECT count(*) FROM u""")
    where = rc.psql(f"SELECT count(*) FROM realtime.realtime_events_log_yesterday WHERE channel IN ('{chans[0]}', '{chans[1]}')")
    t.ok(moved == "40" and where == "40", "40 events are in yesterday's partition", (moved, where))

    live = rc.all_transports(BASE, WS_URL, chans, 25, "-live")
    ok = await rc.wait_delivered(live, {c: 30 for c in chans}, stall=30, cap=120)
    t.ok(ok, "live clients on SSE, long-poll and WebSocket read from 25", [c.summary() for c in live])

    pub = asyncio.ensure_future(asyncio.gather(*(rc.apsql(rc.steady_publish_sql("t1", c, 40, 0.05)) for c in chans)))
    await asyncio.sleep(0.5)
    # a channel the publisher holds at that moment, or a lock not had within
    # lock_timeout, is left for the next run: run again until done
    cut_total, runs, gone, errs = 0, 0, "f", []
    while runs < 20 and not (cut_total == 40 and gone == "t"):
        _, out, err = await rc.apsql("SELECT realtime.prune(interval '1 hour', NULL)", env=RUNTIME)
        cut_total += int(out or 0)
        runs += 1
        errs.append(err)
        gone = rc.psql("SELECT to_regclass('realtime.realtime_events_log_yesterday') IS NULL")
    t.ok(cut_total == 40 and gone == "t",
         f"the runtime role prunes: 40 positions cut, yesterday's partition dropped ({runs} run(s))",
         (cut_total, gone, errs))
    await pub
    final = rc.last_seqs("t1", chans)
    t.ok(final == {c: 70 for c in chans}, "the steady publisher went on through the drop", final)
    cut = {c: rc.pruned_through("t1", c) for c in chans}
    t.ok(cut == {c: 20 for c in chans}, "pruned_through is 20 on both channels", cut)

    everyone = await rc.check_resumes(t, BASE, WS_URL, live, chans, final, {0: [(1, 20)], 10: [(11, 20)], 20: [], 25: []},
                                      "a resume from a dropped position gets the gap exactly (none from the cut or later)")
    problems = rc.check_all(everyone, "t1")
    t.ok(not problems, "every client got each remaining event once, in order, as in realtime_events_log",
         "\n".join(problems))
    t.ok(all(not c.gaps for c in live), "the live clients saw no gap", [c.gaps for c in live])
    hits = rc.sanitizer_reports(glob.glob(os.path.join(WEB, "log", "*")))
    t.ok(not hits, "no sanitizer report in the server logs", "\n".join(hits[:5]))

asyncio.run(main())
t.exit()
