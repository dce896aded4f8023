#!/usr/bin/python3
"""SSE checks against a running web server: sse_checks.py BASE_URL LABEL [STREAMS].

Run by tests/sse/*.sh once they started a server; prints TAP lines. Uses only the
standard library (raw sockets, HTTP/1.0), psql for publishing, scripts/jwt.py for tokens.
"""
import json, os, select, sys, time, urllib.parse

sys.path.insert(0, os.path.join(os.environ["PGCAST_ROOT"], "scripts"))
sys.path.insert(0, os.path.join(os.environ["PGCAST_ROOT"], "tests/lib"))
import sse_raw  # noqa: E402
import tap  # noqa: E402
from tap import ok, psql  # noqa: E402
from flow import exited  # noqa: E402
from jwt import mint  # noqa: E402

BASE, LABEL = sys.argv[1], sys.argv[2]
STREAMS = int(sys.argv[3]) if len(sys.argv) > 3 else 0
SECRET = "pgcast-test-secret"
HOST, PORT = urllib.parse.urlparse(BASE).hostname, urllib.parse.urlparse(BASE).port
PREFIX = urllib.parse.urlparse(BASE).path.rstrip("/") + "/realtime"
RUN = f"{LABEL}{os.getpid()}"  # channels unique to this run


def publish(tenant, channel, count=1, etype="e"):
    return psql(f"SELECT max(realtime.publish('{tenant}', '{channel}', '{etype}', jsonb_build_object('i', g))) "
                f"FROM generate_series(1, {count}) g")


def token(**claims):
    c = {"sub": "u1", "tenant": "t1", "exp": "+3600", "channels": ["project:*", "hbt:*", "many:*", "user:{sub}"]}
    c.update(claims)
    return mint(SECRET, c)


def Stream(query, headers=None, method="GET", rcvbuf=None):
    """An SSE stream of the server under test (tests/lib/sse_raw.py)."""
    return sse_raw.Stream(BASE, query, headers, method, timeout=10, rcvbuf=rcvbuf)


def check_errors():
    def expect(query, status, code, headers=None, method="GET"):
        s = Stream(query, headers, method)
        body = s.read_body(5)
        try:
            got = json.loads(body.decode())["error"]["code"]
        except Exception:
            got = body[:200]
        ok(s.status == status and got == code and s.headers.get("content-type") == "application/json",
           f"{status} {code} for {query[:50] or 'no query'}{' ' + method if method != 'GET' else ''}",
           f"got {s.status} {got}")
        s.close()

    ch = f"project:{RUN}e"
    expect(f"channel={ch}", 401, "unauthorized")
    expect(f"channel={ch}&token={token(exp='-10')}", 401, "invalid_token")
    expect(f"channel={ch}&token={mint('another-secret', {'tenant': 't1', 'exp': 9999999999})}", 401, "invalid_token")
    expect(f"channel={ch}&token={mint(SECRET, {'tenant': 't1', 'exp': 9999999999}, 'none')}", 401, "invalid_token")
    expect(f"channel={ch}&token={mint(SECRET, {'tenant': 't1', 'exp': 9999999999}, 'HS512')}", 401, "invalid_token")
    expect(f"channel={ch}&token={token(tenant=None)}", 401, "invalid_token")
    expect(f"channel=secret:{RUN}&token={token()}", 403, "forbidden")
    expect(f"channel=user:someone-else&token={token()}", 403, "forbidden")
    expect(f"channel=bad%20channel&token={token()}", 400, "bad_channel")
    expect(f"token={token()}", 400, "missing_channel")
    expect(f"channel={ch}&since={ch}%3Dabc&token={token()}", 400, "bad_cursor")
    expect(f"channel={ch}&token={token()}", 400, "bad_cursor", {"Last-Event-ID": "x=1,x=2"})
    expect(f"channel={ch}&token={token()}", 405, "method_not_allowed", method="POST")
    many = "&".join(f"channel=project:{RUN}m{i}" for i in range(51))
    expect(f"{many}&token={token()}", 400, "too_many_channels")


def check_stream():
    ch = f"project:{RUN}s"
    s = Stream(f"channel={ch}&token={token()}")
    ok(s.status == 200, "stream answers 200", s.status)
    ok(s.headers.get("content-type", "").startswith("text/event-stream"), "Content-Type text/event-stream",
       s.headers)
    ok(s.headers.get("cache-control") == "no-cache", "Cache-Control: no-cache")
    ok(s.headers.get("x-accel-buffering") == "no", "X-Accel-Buffering: no")
    ok("content-encoding" not in s.headers, "no compression even when the client accepts it")
    ok(s.wait_for(lambda x: x.retry is not None, 5), "retry: comes first", s.buf[:100])
    # a stream without a cursor starts live from the position the hub learns for it: an
    # event published before that is not the stream's (the id-only block says where it starts)
    ok(s.wait_for(lambda x: x.last_event_id is not None, 15) and s.last_event_id == f"{ch}=0" and not s.events,
       "then the id-only block with the starting position", (s.last_event_id, s.events[:2]))
    publish("t1", ch, 1, "project.updated")
    arrived = s.wait_for(lambda x: len(x.seqs()) >= 1, 10)
    ok(arrived and not s.closed, "a published event arrives while the stream is open (nothing buffers it)")
    if arrived:
        eid, d = s.events[-1]
        ok(d["type"] == "project.updated" and d["channel"] == ch and d["seq"] == 1 and d["payload"] == {"i": 1}
           and isinstance(d["timestamp"], int), "data: is the SPEC envelope", d)
        ok(eid == f"{ch}=1", "id: is the cursor after the event", eid)
    publish("t2", ch, 2)  # same channel name, another tenant
    publish("t1", ch, 2)
    s.wait_for(lambda x: len(x.seqs()) >= 3, 10)
    ok(s.seqs() == [1, 2, 3], "another tenant's events on the same name never arrive", s.seqs())
    s.close()

    # resume with Last-Event-ID (what the browser sends) and with since=
    last = f"{ch}=3"
    publish("t1", ch, 3)
    r = Stream(f"channel={ch}&token={token()}", {"Last-Event-ID": last})
    r.wait_for(lambda x: len(x.seqs()) >= 3, 10)
    publish("t1", ch, 1)
    r.wait_for(lambda x: len(x.seqs()) >= 4, 10)
    ok(r.seqs() == [4, 5, 6, 7], "Last-Event-ID resumes: missed events, then live, no gap, no duplicate", r.seqs())
    r.close()
    q = Stream(f"channel={ch}&since={urllib.parse.quote(f'{ch}=5')}&token={token()}")
    q.wait_for(lambda x: len(x.seqs()) >= 2, 10)
    ok(q.seqs() == [6, 7], "since= resumes too", q.seqs())
    q.close()

    # several channels: the id carries every channel's position
    a, b = f"project:{RUN}a", f"project:{RUN}b"
    publish("t1", a, 2)
    m = Stream(f"channel={a}&channel={b}&token={token()}")
    m.wait_for(lambda x: x.last_event_id is not None, 15)  # positioned: what is published now is live
    publish("t1", b, 1)
    m.wait_for(lambda x: len(x.seqs()) >= 1, 10)
    ok(m.events and m.events[-1][0] == f"{a}=2,{b}=1", "id: carries the position of every channel",
       m.events[-1:] if m.events else None)
    m.close()


def check_heartbeats():
    psql("INSERT INTO realtime.realtime_heartbeat_config VALUES ('hbt', 200, 1000) "
         "ON CONFLICT (channel_type) DO UPDATE SET heartbeat_interval_ms = 200, timeout_ms = 1000")
    time.sleep(1.2)  # the handlers reload within a second
    s = Stream(f"channel=hbt:{RUN}&token={token()}")
    s.wait_for(lambda x: len(x.data("heartbeat")) >= 4, 5)
    hb = s.data("heartbeat")
    ok(len(hb) >= 4, "heartbeats arrive at the channel type's interval (200 ms)", len(hb))
    ok(all(e[0] == f"hbt:{RUN}=0" for e in s.events if e[1].get("type") == "heartbeat"),
       "heartbeats carry the stream's cursor as id: (a quiet stream resumes where it was)",
       [e[0] for e in s.events][:3])
    ok(all(isinstance(h.get("timestamp"), int) for h in hb), "heartbeat has a timestamp")
    psql("UPDATE realtime.realtime_heartbeat_config SET heartbeat_interval_ms = 60000, timeout_ms = 180000 "
         "WHERE channel_type = 'hbt'")
    time.sleep(1.5)
    before = len(s.data("heartbeat"))
    s.wait_for(lambda x: False, 2.5)
    after = len(s.data("heartbeat"))
    ok(after - before <= 1, "after an UPDATE of the config the open stream uses the new interval",
       f"{after - before} heartbeats in 2.5 s")
    ok(not s.closed, "the stream stays open")
    s.close()


def open_count(channel):
    return int(psql("SELECT count(*) FROM realtime.realtime_connection_stats "
                    f"WHERE transport = 'sse' AND channel = '{channel}' AND disconnected_at IS NULL"))


def pump_until(streams, done, timeout):
    """Reads the streams side by side until done(stream) holds for each, or it closed, or
    timeout: those still pending."""
    end = time.time() + timeout
    pending = [s for s in streams if not done(s) and not s.closed]
    while pending and time.time() < end:
        socks = {s.sock: s for s in pending}
        r, _, _ = select.select(list(socks), [], [], 0.5)
        for sk in r:
            socks[sk].pump(0)
        pending = [s for s in pending if not done(s) and not s.closed]
    return pending


def check_many(nstreams, nevents=100):
    # a client that leaves is noticed within one heartbeat interval: make it short
    ch = f"many:{RUN}"
    psql("INSERT INTO realtime.realtime_heartbeat_config VALUES ('many', 1000, 3000) "
         "ON CONFLICT (channel_type) DO UPDATE SET heartbeat_interval_ms = 1000")
    time.sleep(1.2)
    streams = []
    for i in range(nstreams):
        streams.append(Stream(f"channel={ch}&token={token()}"))
    good = sum(1 for s in streams if s.status == 200)
    ok(good == nstreams, f"{nstreams} concurrent streams open", good)
    # every stream positioned (its id-only block came) before the events are published:
    # a stream without a cursor only gets what is published after its start
    pending = pump_until([s for s in streams if s.status == 200], lambda s: s.last_event_id is not None, 60)
    ok(not pending, "every stream is positioned", f"{len(pending)} not positioned")
    # the stats writer records the streams in batches (every second): its rows may lag
    end = time.time() + 30
    cnt = open_count(ch)
    while cnt != nstreams and time.time() < end:
        time.sleep(0.5)
        cnt = open_count(ch)
    ok(cnt == nstreams, "each open stream has its row in realtime_connection_stats", cnt)
    publish("t1", ch, nevents)
    pump_until([s for s in streams if s.status == 200], lambda s: len(s.seqs()) >= nevents, 60)
    full = sum(1 for s in streams if s.seqs() == list(range(1, nevents + 1)))
    bad = [s for s in streams if s.seqs() != list(range(1, nevents + 1))][:1]
    ok(full == nstreams, f"each of {nstreams} streams received all {nevents} events in order",
       f"{full} complete; first incomplete: {bad[0].seqs()[:10] if bad else ''} closed={bad[0].closed if bad else ''} "
       f"events={bad[0].events[:3] if bad else ''}")
    for s in streams:
        s.close()
    deadline = time.time() + 20
    cnt = open_count(ch)
    while cnt > 0 and time.time() < deadline:
        time.sleep(0.5)
        cnt = open_count(ch)
    ok(cnt == 0, "after the clients leave, the open-stream count returns to zero", cnt)


def check_slow_client():
    """A burst larger than a stream's queue does not end a client that reads at its pace:
    what does not fit stays in the log and is fed to it as it drains (also to one that
    paused for less than queue_stall_ms). A client that stops reading stalls only itself
    and, once it has taken nothing for queue_stall_ms (SSE_STALL_MS, set by the caller), is
    ended with an overflow error after what it was sent, in order, with no hole."""
    ch = f"project:{RUN}slow"
    tok = token()
    stall_s = int(os.environ.get("SSE_STALL_MS", "10000")) / 1000
    slow = Stream(f"channel={ch}&token={tok}")  # never reads until it has stalled
    fast = Stream(f"channel={ch}&token={tok}")
    paused = Stream(f"channel={ch}&token={tok}")  # reads after a short pause
    # 1,500 x 7 KB in one transaction: more than the handler's queue (queue_bytes, set by
    # the caller) plus every socket buffer
    total = 1500
    psql(f"SELECT realtime.publish('t1', '{ch}', 'big', jsonb_build_object('i', g, 'pad', repeat('x', 7000))) "
         f"FROM generate_series(1, {total}) g")
    started = time.time()
    readers = [fast]
    end = started + 90
    while time.time() < end and any(len(r.seqs()) < total and not r.closed for r in (fast, paused)):
        if paused not in readers and time.time() - started >= stall_s / 4:
            readers.append(paused)
        socks = {r.sock: r for r in readers if not r.closed}
        got, _, _ = select.select(list(socks), [], [], 0.2)
        for sk in got:
            socks[sk].pump(0)
    want = list(range(1, total + 1))
    ok(fast.seqs() == want, "a client that reads gets every event, in order, while another stops reading",
       f"{len(fast.seqs())} events, closed={fast.closed}, errors={fast.data('error')}")
    ok(paused.seqs() == want and not paused.data("error"),
       "a client that paused for less than queue_stall_ms, then read, gets every event too (not ended)",
       f"{len(paused.seqs())} events, closed={paused.closed}, errors={paused.data('error')}")
    fast.close()
    paused.close()
    time.sleep(max(0.0, started + stall_s + 2.5 - time.time()))  # slow has now stalled past the bound
    slow.read_body(timeout=60)
    seqs, errs = slow.seqs(), slow.data("error")
    ok(slow.closed and errs and errs[-1].get("code") == "overflow",
       "the client that stopped reading is ended with an overflow error", f"closed={slow.closed} errors={errs}")
    ok(0 < len(seqs) < total and seqs == list(range(1, len(seqs) + 1)),
       "before that it got a prefix of the events, in order, with no hole (it resumes from its last id)",
       f"{len(seqs)} events: {seqs[:3]}...{seqs[-3:]}")
    slow.close()


def check_shutdown(pid):
    """SIGTERM: every open stream gets a shutdown error and ends; the process exits."""
    ch = f"project:{RUN}term"
    streams = [Stream(f"channel={ch}&token={token()}") for _ in range(20)]
    ok(all(s.status == 200 for s in streams), "20 streams open")
    publish("t1", ch)
    ok(all(s.wait_for(lambda x: x.seqs() == [1], 10) for s in streams), "each got the event published")
    os.kill(pid, 15)
    ended = [s.wait_for(lambda x: x.closed, 15) for s in streams]
    ok(all(ended), "SIGTERM ends every stream", f"{sum(ended)} of 20 ended")
    codes = [(s.data("error") or [{}])[-1].get("code") for s in streams]
    ok(codes == ["shutdown"] * 20, "each with a shutdown error as its last message", codes)
    ok(exited(pid, 15), "the process exits")


if __name__ == "__main__":
    if os.environ.get("SSE_SHUTDOWN_PID"):
        check_shutdown(int(os.environ["SSE_SHUTDOWN_PID"]))
        tap.T.exit()
    check_errors()
    check_stream()
    if os.environ.get("SSE_SLOW"):
        check_slow_client()
    if os.environ.get("SSE_HEARTBEATS"):
        check_heartbeats()
    if STREAMS:
        check_many(STREAMS)
    tap.T.exit()
