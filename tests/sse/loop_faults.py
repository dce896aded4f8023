#!/usr/bin/python3
"""SSE stream-loop faults through a running web server: loop_faults.py BASE_URL LABEL.

Clients that resume far behind (megabytes of catch-up, much more than the stream's
64 KiB output bound) at the same time and read at their own pace (small receive
buffers), on a channel type whose heartbeats tick
every 100 ms (each tick flushes the stream's output), gets every event of the log once,
in order — compared with realtime.realtime_events_log — and the stream stays open.
(Before, a stream whose output a tick flushed to the end was never pumped again.)
Run by tests/sse/loop_faults.sh; prints TAP lines."""
import os, socket, struct, sys, threading, time, urllib.parse

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import sse_checks as sc  # noqa: E402  (Stream, psql, token, ok)
from flow import EventFlow, exited  # noqa: E402  (tests/lib, on the path through sse_checks)


def log_seqs(ch):
    out = sc.psql(f"SELECT seq FROM realtime.realtime_events_log WHERE tenant_id = 't1' AND channel = '{ch}' ORDER BY seq")
    return [int(x) for x in out.split()] if out else []


def slow_read(s, want, per_read, pause, timeout):
    """Reads per_read bytes at a time with a pause in between until want events came."""
    end = time.time() + timeout
    s.sock.setblocking(True)
    s.sock.settimeout(1.0)
    while time.time() < end and len(s.seqs()) < want and not s.closed:
        try:
            chunk = s.sock.recv(per_read)
        except (TimeoutError, OSError):
            chunk = None
        if chunk == b"":
            s.closed = True
        elif chunk:
            s.buf += chunk
            s.parse()
        time.sleep(pause)
    s.sock.setblocking(False)
    return s.seqs()


def check_resume_far_behind():
    sc.psql("INSERT INTO realtime.realtime_heartbeat_config VALUES ('lf', 100, 1000) "
            "ON CONFLICT (channel_type) DO UPDATE SET heartbeat_interval_ms = 100, timeout_ms = 1000")
    time.sleep(1.5)  # the handlers reload the heartbeat config within a second
    ch = f"lf:{sc.RUN}"
    total = int(os.environ.get("LF_EVENTS", "3000"))
    sc.psql(f"SELECT realtime.publish('t1', '{ch}', 'big', jsonb_build_object('i', g, 'pad', repeat('x', 2000))) "
            f"FROM generate_series(1, {total}) g")
    expect = log_seqs(ch)
    tok = sc.mint(sc.SECRET, {"sub": "u1", "tenant": "t1", "exp": "+3600", "channels": ["lf:*"]})
    readers = int(os.environ.get("LF_READERS", "12"))
    streams = [sc.Stream(f"channel={ch}&since={urllib.parse.quote(f'{ch}=0')}&token={tok}", rcvbuf=16384)
               for _ in range(readers)]
    t0 = time.time()
    got = [None] * readers

    def run(i):
        got[i] = slow_read(streams[i], total, 4096, 0.004, float(os.environ.get("LF_TIMEOUT", "60")))

    threads = [threading.Thread(target=run, args=(i,)) for i in range(readers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    secs = time.time() - t0
    counts = [len(g) for g in got]
    print(f"# {readers} clients resumed over {total} x 2 KB: {counts} events in {secs:.1f} s")
    sc.ok(len(expect) == total, "the log holds every published event", len(expect))
    bad = [i for i in range(readers) if got[i] != expect]
    sc.ok(not bad, f"{readers} clients resuming far behind, reading at their pace, each get every event of the log once, "
          "in order", "; ".join(f"client {i}: {len(got[i])} of {len(expect)}, last {got[i][-3:]}" for i in bad[:4]))
    s = streams[0]
    for x in streams[1:]:
        x.close()
    # live events after the catch-up still arrive on the same stream
    sc.psql(f"SELECT realtime.publish('t1', '{ch}', 'live', '{{}}')")
    s.sock.setblocking(False)
    sc.ok(s.wait_for(lambda x: len(x.seqs()) == total + 1, 10) and not s.closed,
          "after the catch-up the stream stays open and gets live events", f"{len(s.seqs())} closed={s.closed}")
    s.close()


def check_churn_and_shutdown():
    """Streams come and go while events flow — half of each round reset by the client —
    then SIGTERM ends the rest while events still flow: the stream loop frees a stream
    only after the batch that may still point at it (the handlers' logs are checked for
    sanitizer reports by loop_faults.sh). The process exits."""
    ch = f"project:{sc.RUN}churn"
    tok = sc.token()
    opened = 0
    with EventFlow("t1", ch):
        for rnd in range(4):
            streams = [sc.Stream(f"channel={ch}&token={tok}") for _ in range(100)]
            opened += sum(1 for x in streams if x.status == 200)
            time.sleep(0.3)
            for i, x in enumerate(streams):
                if i % 2 == 0:
                    x.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                x.close()
        last = [sc.Stream(f"channel={ch}&token={tok}") for _ in range(100)]
        time.sleep(0.3)
        pid = int(os.environ.get("LF_SSE_PID") or 0)  # this test's handler (a child of its lighttpd)
        if pid:
            os.kill(pid, 15)
        end = time.time() + 20
        while time.time() < end and not all(x.closed for x in last):
            for x in last:
                x.pump(0)
            time.sleep(0.05)
        ended = [x.closed for x in last]
    sc.ok(opened == 400, "400 streams opened in rounds while events flow, half of each round reset", opened)
    sc.ok(bool(pid) and all(ended), "SIGTERM while events flow ends every open stream", f"{sum(ended)} of 100")
    sc.ok(bool(pid) and exited(pid, 15), "the handler exits")


if __name__ == "__main__":
    check_resume_far_behind()
    check_churn_and_shutdown()
    sc.tap.T.exit()
