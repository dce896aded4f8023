#!/usr/bin/python3
"""The sidecar's event loop under abuse, with raw sockets and python3-websockets:
connection churn while events flow (half the clients drop without a close frame; no
sanitizer report, still serving), pongs in the pings' order, a ping flood from a client
that never reads (closed, memory bounded), a resume over a backlog many times queue_bytes
(every event of the log once, in order, no 1008), an unfinished fragmented message past
ws_max_unfinished_bytes (1009), and a reader that stalls past its queue and then reads
(it gets the 1008 close frame, not a dropped connection)."""
import asyncio, base64, json, os, socket, struct, subprocess, sys, time

import websockets

ROOT = os.environ["PGCAST_ROOT"]
BIN = os.environ.get("PGCAST_BIN", os.path.join(ROOT, "build/asan/bin"))
sys.path.insert(0, os.path.join(ROOT, "scripts"))
sys.path.insert(0, os.path.join(ROOT, "tests/lib"))
import tap  # noqa: E402
from tap import ok, psql  # noqa: E402
from jwt import mint  # noqa: E402
from flow import EventFlow  # noqa: E402
from wsframes import Reader, frame  # noqa: E402

SECRET = "ws-bounds-secret"
WORK = os.environ.get("PGCAST_TEST_WORK", "/tmp")
procs = []


def log_seqs(ch):
    out = psql(f"SELECT seq FROM realtime.realtime_events_log WHERE tenant_id = 't1' AND channel = '{ch}' ORDER BY seq")
    return [int(x) for x in out.split()] if out else []


def free_port():
    return int(subprocess.check_output([os.path.join(ROOT, "scripts/free-port.sh")]).strip())


class Sidecar:
    def __init__(self, name, **env):
        self.port = free_port()
        self.log = os.path.join(WORK, f"ws-bounds-{name}-{os.getpid()}.log")
        e = dict(os.environ, PGCAST_JWT_SECRET=SECRET, PGCAST_LOG_LEVEL="warn",
                 # one sub for every connection here: the per-subject limits are off
                 PGCAST_WS_MAX_CONNS_PER_SUBJECT="0", PGCAST_PUBLISH_RATE="0", PGCAST_PRESENCE_MAX_PER_SUBJECT="0")
        e.update({f"PGCAST_{k.upper()}": str(v) for k, v in env.items()})
        self.proc = subprocess.Popen([os.path.join(BIN, "pgcast-ws"), "--listen", f"127.0.0.1:{self.port}"], env=e,
                                     stdout=open(self.log, "w"), stderr=subprocess.STDOUT)
        procs.append(self.proc)
        for _ in range(200):
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                break
            except OSError:
                if self.proc.poll() is not None:
                    break
                time.sleep(0.05)

    def alive(self):
        return self.proc.poll() is None

    def rss_kib(self):
        with open(f"/proc/{self.proc.pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
        return 0

    def sanitizer_report(self):
        with open(self.log, errors="replace") as f:
            text = f.read()
        for mark in ("AddressSanitizer", "runtime error", "double free", "LeakSanitizer"):
            i = text.find(mark)
            if i >= 0:
                return text[max(0, i - 200):i + 1500]
        return None

    def stop(self):
        if self.alive():
            self.proc.terminate()
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def token():
    return mint(SECRET, {"sub": "u1", "tenant": "t1", "exp": "+600", "channels": ["*"]})


# ---------------------------------------------------------------- raw sockets

class Raw(Reader):
    """A WebSocket over a raw socket: the handshake, then frames read on demand."""

    def __init__(self, port, rcvbuf=None, timeout=10):
        s = socket.socket()
        if rcvbuf:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        s.settimeout(timeout)
        s.connect(("127.0.0.1", port))
        key = base64.b64encode(os.urandom(16)).decode()
        s.sendall((f"GET /ws?token={token()} HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                   f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n").encode())
        self.s, self.buf = s, b""
        while b"\r\n\r\n" not in self.buf:
            c = s.recv(4096)
            if not c:
                raise EOFError("no handshake answer")
            self.buf += c
        head, _, self.buf = self.buf.partition(b"\r\n\r\n")
        if not head.startswith(b"HTTP/1.1 101"):
            raise EOFError(head[:80])

    def send(self, data):
        self.s.sendall(data)

    def text(self, obj):
        self.send(frame(1, json.dumps(obj).encode()))

    def until_close(self):
        """Frames until the close: its code, or None when the connection ended without one."""
        try:
            while True:
                op, p = self.frame()
                if op == 8:
                    return struct.unpack("!H", p[:2])[0] if len(p) >= 2 else 1005
        except (EOFError, OSError):
            return None

    def close(self):
        try:
            self.s.close()
        except OSError:
            pass


# ---------------------------------------------------------------- checks

def check_pong_order(sc):
    r = Raw(sc.port)
    r.frame()  # connected
    r.send(b"".join(frame(9, f"p{i}".encode()) for i in range(10)))
    pongs = []
    while len(pongs) < 10:
        op, p = r.frame()
        if op == 10:
            pongs.append(p.decode())
    ok(pongs == [f"p{i}" for i in range(10)], "ten pings in one write: pongs in the pings' order", pongs)
    r.close()


def check_ping_flood(sc):
    """A client that never reads floods pings (each answered with a pong it never takes)."""
    r = Raw(sc.port, rcvbuf=4096)
    r.frame()
    before = sc.rss_kib()
    burst = frame(9, b"x" * 125) * 2000  # 2,000 pings (262 KB) per write
    sent, end, closed_early = 0, time.time() + 4, False
    r.s.settimeout(2)
    while time.time() < end:
        try:
            r.send(burst)
            sent += 2000
        except (socket.timeout, OSError):
            closed_early = True  # input refused / connection closed: the flood is cut off
            break
    peak = sc.rss_kib()
    grew = (peak - before) / 1024
    print(f"# ping flood: {sent} pings sent in 4 s; sidecar RSS {before // 1024} -> {peak // 1024} MiB "
          f"(+{grew:.0f} MiB)", flush=True)
    ok(grew < 100, "a ping flood from a client that never reads does not grow the sidecar (< 100 MiB)",
       f"+{grew:.0f} MiB after {sent} pings")
    r.s.settimeout(10)
    code = r.until_close()
    ok(code == 1008, "the flooding client is closed with 1008 (its pongs passed queue_bytes)",
       f"close code {code}, cut off while sending: {closed_early}")
    r.close()
    ok(sc.alive(), "the sidecar still runs after the flood")


def check_churn(sc):
    """200 connections at a time subscribed to a channel while events flow; half of each
    round dropped at once without a close frame (RST), the rest closed properly."""
    ch = f"churn:{os.getpid()}"
    rounds, errors = int(os.environ.get("WS_CHURN_ROUNDS", "8")), []
    with EventFlow("t1", ch, pad=300, threads=2):
        for rnd in range(rounds):
            conns = []
            for _ in range(200):
                try:
                    c = Raw(sc.port, rcvbuf=4096)
                    c.text({"type": "subscribe", "channel": ch})
                    conns.append(c)
                except (OSError, EOFError) as e:
                    errors.append(repr(e))
            time.sleep(0.5)  # events flow to all of them; their small buffers fill
            for i, c in enumerate(conns):
                if i % 2 == 0:  # dropped: no close frame, reset
                    c.s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                    c.close()
            for i, c in enumerate(conns):
                if i % 2 == 1:
                    try:
                        c.send(frame(8, struct.pack("!H", 1000)))
                    except OSError:
                        pass
                    c.close()
    ok(not errors, f"{rounds} rounds of 200 connections opened while events flow", errors[:3])
    time.sleep(1)
    ok(sc.alive(), "the sidecar survives the churn")
    rep = sc.sanitizer_report()
    ok(rep is None, "no sanitizer report under churn (half the clients dropped without a close frame)", rep)
    # still serving: a new client subscribes and gets a live event
    r = Raw(sc.port)
    r.frame()
    r.text({"type": "subscribe", "channel": ch + "x"})
    while json.loads(r.frame()[1]).get("type") != "subscribed":
        pass
    psql(f"SELECT realtime.publish('t1', '{ch}x', 'after', '{{}}')")
    got = None
    while got is None:
        m = json.loads(r.frame()[1])
        if m.get("type") == "after":
            got = m
    ok(got["seq"] == 1, "after the churn a new client subscribes and gets live events", got)
    r.close()


async def resume_backlog(port, ch, total):
    """Subscribes from 0 and reads everything; (seqs, close code or None)."""
    seqs, code = [], None
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 16384)  # the pace is the reader's
    sock.connect(("127.0.0.1", port))
    async with websockets.connect(f"ws://127.0.0.1:{port}/ws?token={token()}", max_size=None,
                                  max_queue=16, sock=sock) as ws:
        await ws.recv()
        await ws.send(json.dumps({"type": "subscribe", "channel": ch, "since": 0}))
        try:
            while len(seqs) < total:
                m = json.loads(await asyncio.wait_for(ws.recv(), 30))
                if m.get("type") == "e":
                    seqs.append(m["seq"])
                    if len(seqs) % 20 == 0:
                        await asyncio.sleep(0.002)
        except websockets.ConnectionClosed as e:
            code = e.rcvd.code if e.rcvd else None
        except asyncio.TimeoutError:
            code = "timeout"
    return seqs, code


def check_resume_backlog(sc, queue_bytes):
    ch = f"backlog:{os.getpid()}"
    total = int(os.environ.get("WS_BACKLOG_EVENTS", "8000"))
    psql(f"SELECT realtime.publish('t1', '{ch}', 'e', jsonb_build_object('i', g, 'pad', repeat('x', 1000))) "
         f"FROM generate_series(1, {total}) g")
    expect = log_seqs(ch)
    t0 = time.time()
    seqs, code = asyncio.run(resume_backlog(sc.port, ch, total))
    print(f"# resumed over {total} x 1 KB ({total * 1.05 / 1024:.1f} MiB, queue_bytes {queue_bytes // 1024} KiB): "
          f"{len(seqs)} events in {time.time() - t0:.1f} s, close {code}", flush=True)
    ok(code is None, "a WebSocket resuming over a backlog many times queue_bytes is not closed (no 1008)", code)
    ok(seqs == expect and len(expect) == total, "it gets every event of the log once, in order",
       f"{len(seqs)} of {len(expect)}: first {seqs[:3]} last {seqs[-3:]}")


def check_unfinished(sc):
    r = Raw(sc.port)
    r.frame()
    # a fragmented message within the bound is assembled and answered
    body = json.dumps({"type": "ping", "timestamp": 7, "pad": "y" * 40000}).encode()
    parts = [body[i:i + 10000] for i in range(0, len(body), 10000)]
    r.send(b"".join(frame(1 if i == 0 else 0, p, fin=i == len(parts) - 1) for i, p in enumerate(parts)))
    m = json.loads(r.frame()[1])
    ok(m.get("type") == "pong" and m.get("timestamp") == 7, "a 40 KB fragmented message under the bound is answered", m)
    # fragments never finished, past ws_max_unfinished_bytes (64 KiB; max_message_bytes 1 MiB)
    code = None
    try:
        r.send(frame(1, b"{" + b"z" * 16383, fin=False))
        for _ in range(7):
            r.send(frame(0, b"z" * 16384, fin=False))
    except OSError:
        pass
    code = r.until_close()
    ok(code == 1009, "an unfinished fragmented message past ws_max_unfinished_bytes is closed with 1009", code)
    r.close()
    # a single frame still arriving counts too
    r = Raw(sc.port)
    r.frame()
    try:
        f = frame(1, b"a" * 200000)
        r.send(f[:100000])
    except OSError:
        pass
    code = r.until_close()
    ok(code == 1009, "a frame still arriving past the bound is closed with 1009", code)
    r.close()


def sidecar_socket(sc, client_port):
    """The sidecar's end of the connection from client_port as ss shows it ('' if none)."""
    out = subprocess.run(["ss", "-tnpH", "state", "all", f"( sport = :{sc.port} and dport = :{client_port} )"],
                         capture_output=True, text=True).stdout
    return out.strip()


def check_stalled_reader(sc):
    """A reader that stops reading falls past its queue and, after queue_stall_ms without
    taking anything, the sidecar cuts it off with 1008.
    Until the reader has taken the close frame, the sidecar keeps the connection: a
    descriptor closed with megabytes unsent leaves the kernel an orphan socket, which it
    abandons (reset, no close frame for the client: 1006) after a few minutes of zero
    window or under memory pressure. The reader reads again after longer than the old 5 s
    close wait and gets the close frame."""
    ch = f"stall:{os.getpid()}"
    r = Raw(sc.port, rcvbuf=8192)
    r.frame()
    r.text({"type": "subscribe", "channel": ch})
    while json.loads(r.frame()[1]).get("type") != "subscribed":
        pass
    # small batches: the socket buffers fill first, then the queue overflows behind them
    p = subprocess.Popen(["psql", "-qXAt"], stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True)
    for _ in range(300):
        p.stdin.write(f"SELECT realtime.publish('t1', '{ch}', 'e', jsonb_build_object('i', g, 'pad', repeat('x', 1000))) "
                      "FROM generate_series(1, 20) g;\n")
        p.stdin.flush()
        time.sleep(0.01)
    p.stdin.close()
    p.wait()
    time.sleep(8)
    state = sidecar_socket(sc, r.s.getsockname()[1])
    print("# the sidecar's end after the stall:", " ".join(state.split()[:5]), "owned" if "pgcast-ws" in state else "")
    ok("pgcast-ws" in state, "while the stalled reader has not taken its close, the sidecar keeps the connection "
       "(not left to the kernel as an orphan)", state[:300])
    r.s.settimeout(20)
    cport = r.s.getsockname()[1]
    code = r.until_close()
    ok(code == 1008, "a reader that stalled past its queue and then reads gets the 1008 close frame (not 1006)", code)
    r.close()
    end = time.time() + 10
    while time.time() < end and "pgcast-ws" in sidecar_socket(sc, cport):
        time.sleep(0.2)
    ok("pgcast-ws" not in sidecar_socket(sc, cport), "once the reader has it, the sidecar releases the connection")


def main():
    a = Sidecar("a")  # defaults
    b = Sidecar("b", queue_bytes="1MiB", max_message_bytes="1MiB", ws_max_unfinished_bytes="64KiB")
    c = Sidecar("c", queue_bytes="256KiB")
    d = Sidecar("d", queue_bytes="256KiB", queue_stall_ms="2000")  # the stalled reader is ended 2 s after its last take
    try:
        ok(a.alive() and b.alive() and c.alive() and d.alive(), "sidecars started (ws_max_unfinished_bytes is a known key)")
        for name, fn in (("pong order", lambda: check_pong_order(a)), ("unfinished input", lambda: check_unfinished(b)),
                         ("ping flood", lambda: check_ping_flood(b)),
                         ("resume over a backlog", lambda: check_resume_backlog(c, 256 * 1024)),
                         ("stalled reader", lambda: check_stalled_reader(d)), ("churn", lambda: check_churn(a))):
            try:
                fn()
            except Exception as e:  # the check's client failed: that is the check failing
                ok(False, f"{name}: the check ran to its end", repr(e))
        for s in (a, b, c, d):
            s.stop()
        reps = [s.sanitizer_report() for s in (a, b, c, d)]
        ok(all(x is None for x in reps), "no sanitizer report in any sidecar's log (after shutdown)",
           next((x for x in reps if x), None))
    finally:
        for s in (a, b, c, d):
            s.stop()


try:
    main()
except Exception as e:  # a crash of the test itself is a failure, not a silent pass
    import traceback
    traceback.print_exc()
    ok(False, f"the test ran to its end ({e!r})")
finally:
    for p in procs:
        if p.poll() is None:
            p.kill()
print(f"1..{tap.T.n}")
tap.T.exit()
