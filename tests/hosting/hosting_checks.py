#!/usr/bin/python3
"""Checks of a hosting account's drop-in folder: hosting_checks.py BASE_URL LABEL MODE.

MODE cgi: SSE must deliver as events happen, and a stream holds one database connection.
MODE fcgid: mod_fcgid with its default 64 KiB output buffer holds a stream back, the head
included; polling and long-polling deliver (pgcast.js falls back to them).
MODE fcgid-pad: the same with sse_padding_bytes = 65536: SSE delivers as events happen,
and heartbeats at sse_heartbeat_max_ms keep it under FcgidIOTimeout.
Prints TAP lines; run by tests/hosting/htaccess.sh.
"""
import json, os, socket, subprocess, sys, time, urllib.error, urllib.parse, urllib.request

sys.path.insert(0, os.path.join(os.environ["PGCAST_ROOT"], "scripts"))
from jwt import mint  # noqa: E402

BASE, LABEL, MODE = sys.argv[1], sys.argv[2], sys.argv[3]
U = urllib.parse.urlparse(BASE)
SECRET = "pgcast-test-secret"
RUN = f"{LABEL}{os.getpid()}"
CHAN = f"project:{RUN}"
TOKEN = mint(SECRET, {"sub": "u1", "tenant": "t1", "exp": "+3600", "channels": ["project:*"], "publish": ["project:*"]})
sys.path.insert(0, os.path.join(os.environ["PGCAST_ROOT"], "tests", "lib"))
from tap import T, ok, psql  # noqa: E402


def http(path, body=None, auth=True, timeout=30):
    req = urllib.request.Request(BASE + path, data=None if body is None else json.dumps(body).encode(),
                                 method="GET" if body is None else "POST")
    if auth:
        req.add_header("Authorization", f"Bearer {TOKEN}")
    if body is not None:
        req.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


def log_events():
    rows = psql(f"SELECT seq || ':' || (event_data->>'i') FROM realtime.realtime_events_log "
                f"WHERE tenant_id = 't1' AND channel = '{CHAN}' ORDER BY seq")
    return rows.split("\n") if rows else []


class Stream:
    """An SSE stream over a raw socket (HTTP/1.0: no chunking), read as it arrives."""

    def __init__(self, query):
        self.sock = socket.create_connection((U.hostname, U.port), timeout=10)
        self.sock.sendall((f"GET {U.path}/realtime/sse?{query} HTTP/1.0\r\nHost: {U.hostname}\r\n"
                           f"Authorization: Bearer {TOKEN}\r\nAccept: text/event-stream\r\n\r\n").encode())
        self.buf = b""
        self.head = None
        self.blocks = []  # (time, {field: value})
        self.closed = False  # the server ended the response

    def pump(self, timeout):
        self.sock.settimeout(timeout)
        try:
            data = self.sock.recv(65536)
        except socket.timeout:
            return True
        if not data:
            self.closed = True
            return False
        self.buf += data
        if self.head is None and b"\r\n\r\n" in self.buf:
            self.head, self.buf = self.buf.split(b"\r\n\r\n", 1)
        while self.head is not None and b"\n\n" in self.buf:
            block, self.buf = self.buf.split(b"\n\n", 1)
            fields = {}
            for line in block.decode().split("\n"):
                if line and not line.startswith(":"):
                    k, _, v = line.partition(": ")
                    fields[k] = v
            if fields:
                self.blocks.append((time.monotonic(), fields))
        return True

    def wait_for(self, pred, timeout):
        end = time.monotonic() + timeout
        while not pred() and time.monotonic() < end:
            if not self.pump(min(0.5, max(0.01, end - time.monotonic()))):
                break
        return pred()

    def events(self):
        out = []
        for _, f in self.blocks:
            if "data" in f:
                m = json.loads(f["data"])
                if "seq" in m and m.get("channel") == CHAN:
                    out.append(f"{m['seq']}:{m['payload']['i']}")
        return out

    def status(self):
        return int(self.head.split(b" ")[1]) if self.head else 0


def forbidden(path, what, secret=None):
    st, body = http(path, auth=False)
    ok(st in (403, 404) and (secret is None or secret not in body), f"GET {path}: {st}, {what}",
       body[:200])


FULL = MODE != "fcgid-pad"  # its server is the fcgid variant's: only what padding changes
if FULL:
    forbidden("/realtime/pgcast.conf", "the configuration cannot be downloaded", b"jwt_secret")
    forbidden("/realtime/pgcast-sse.fcgi", "the SSE program cannot be downloaded (or run directly)", b"\x7fELF")
    forbidden("/realtime/pgcast-poll.fcgi", "the poll program cannot be downloaded (or run directly)", b"\x7fELF")
    forbidden("/realtime/pgcast-poll.fcgi/health", "nor reached with a path after it", b"\x7fELF")
    forbidden("/realtime/.htaccess", "the .htaccess cannot be downloaded", b"Rewrite")
    forbidden("/realtime/", "no listing of the folder", b"pgcast")
    forbidden("/realtime/pgcast.conf~", "nor an editor's copy of the configuration", b"jwt_secret")

st, body = http("/realtime/health", auth=False)
ok(st == 200 and json.loads(body).get("status") == "ok", "health: 200, status ok", (st, body[:300]))

# SSE: open, positioned, then events published over HTTP arrive
s = Stream(f"channel={CHAN}")
if MODE != "fcgid":
    opened = s.wait_for(lambda: s.head is not None, 15)
    ok(opened and s.status() == 200 and b"text/event-stream" in s.head,
       "SSE: 200 text/event-stream (the Bearer token passed)", s.head)

for i in (1, 2, 3):
    st, body = http("/realtime/publish", {"channel": CHAN, "type": "e", "payload": {"i": i}})
    ok(st == 201, f"publish {i}: 201", (st, body[:300]))
want = log_events()
ok(len(want) == 3, "the log holds the 3 events", want)

if MODE in ("cgi", "fcgid-pad"):
    ok(s.wait_for(lambda: any("id" in f and "data" not in f for _, f in s.blocks), 10),
       "SSE: the id-only block with the starting position came", s.blocks[:3])
    s.wait_for(lambda: len(s.events()) >= 3, 15)
    ok(s.events() == want, "SSE: the events as in the log (none missing, repeated or out of order), as they happen",
       (s.events(), want))
if MODE == "cgi":
    # one database connection for this open stream (its stats share it); nothing else
    # of pgcast is open now (polls and publishes ended)
    time.sleep(2.5)  # the stats writer flushed at least once meanwhile
    user = os.environ.get("PGCAST_TEST_DB_USER", "postgres")
    q = f"SELECT count(*) FROM pg_stat_activity WHERE usename = '{user}' AND datname = current_database()"
    end = time.monotonic() + 10  # (a poll's process may still be on its way out)
    while (conns := psql(q)) != "1" and time.monotonic() < end:
        time.sleep(0.5)
    ok(conns == "1", "a CGI SSE stream holds exactly one database connection (pg_stat_activity)", conns)
if MODE == "fcgid-pad":
    # heartbeats come at sse_heartbeat_max_ms although the channel type says 60 s, so
    # the stream outlives FcgidIOTimeout (10 s here, with keepalive comments off)
    t0 = time.monotonic()
    s.wait_for(lambda: s.closed, 13)
    alive = not s.closed
    beats = [t for t, f in s.blocks if t > t0 and '"heartbeat"' in f.get("data", "")]
    ok(alive and len(beats) >= 2, f"mod_fcgid: the stream outlives FcgidIOTimeout (10 s) with {len(beats)} "
       "heartbeats in 13 s (sse_heartbeat_max_ms 4 s; the channel type says 60 s)", s.buf[-300:])
    ok(not any("error" in f.get("data", "") for _, f in s.blocks), "no error on the stream",
       [f for _, f in s.blocks if "error" in f.get("data", "")])
if MODE in ("cgi", "fcgid-pad"):
    # a resume from the stream's last id gets nothing twice
    last_id = [f["id"] for _, f in s.blocks if "id" in f][-1]
    s.sock.close()
    st, body = http(f"/realtime/events?channel={CHAN}&since={urllib.parse.quote(last_id)}")
    ok(st == 200 and json.loads(body)["events"] == [], "a poll from the stream's last id: nothing missed, nothing new",
       (st, body[:300]))
if MODE == "fcgid":
    # mod_fcgid holds the stream's output in its 64 KiB buffer, the head included: the
    # client sees nothing (pgcast.js then long-polls: tests/hosting/htaccess.sh)
    s.wait_for(lambda: s.head is not None, 5)
    ok(s.head is None and not s.blocks, "mod_fcgid without sse_padding_bytes: nothing of the stream arrives "
       "(FcgidOutputBufferSize holds it)", (s.head, s.blocks[:2]))
    s.sock.close()

# polling and long-polling deliver on every variant
if FULL:
    st, body = http(f"/realtime/events?channel={CHAN}&since={CHAN}=0")
    got = [f"{e['seq']}:{e['payload']['i']}" for e in json.loads(body)["events"]] if st == 200 else body
    ok(got == want, "poll: the events as in the log", (got, want))
    cursor = json.loads(body)["cursor"] if st == 200 else ""
    t0 = time.monotonic()
    subprocess.Popen(["sh", "-c", f"sleep 2; psql -qXAt -c \"SELECT realtime.publish('t1', '{CHAN}', 'e', "
                      f"'{{\\\"i\\\": 4}}')\" >/dev/null"])
    st, body = http(f"/realtime/events?channel={CHAN}&since={urllib.parse.quote(cursor)}&wait=20")
    dt = time.monotonic() - t0
    got = [f"{e['seq']}:{e['payload']['i']}" for e in json.loads(body)["events"]] if st == 200 else body
    ok(got == log_events()[3:], f"long-poll: the event published while it waited, after {dt:.1f} s", (got, body[:200]))
    ok(dt < 15, "long-poll: answered when the event came, not at the end of its wait", dt)

    st, body = http("/realtime/presence", {"channel": CHAN, "action": "join", "data": {"name": "a"}})
    ok(st in (200, 201), "presence join answers", (st, body[:300]))
    st, body = http(f"/realtime/presence?channel={CHAN}")
    ok(st == 200 and b'"u1"' in body, "presence lists the member", (st, body[:300]))
T.exit()
