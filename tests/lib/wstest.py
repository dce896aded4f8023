"""Shared by the WebSocket tests in Python: TAP output, psql, a sidecar on a free port,
tokens, connecting and reading until a message comes."""
import asyncio, atexit, json, os, socket, subprocess, sys, time, urllib.request

import websockets

ROOT = os.environ["PGCAST_ROOT"]
BIN = os.environ.get("PGCAST_BIN", os.path.join(ROOT, "build/asan/bin"))
sys.path.insert(0, os.path.join(ROOT, "scripts"))
from jwt import mint  # noqa: E402
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import tap  # noqa: E402
from tap import note, ok, psql  # noqa: E402,F401  (re-exported)


def __getattr__(name):
    """wstest.n, wstest.failed: the counts of the test's TAP lines."""
    if name in ("n", "failed"):
        return getattr(tap.T, name)
    raise AttributeError(name)


SECRET = "ws-test-secret"
_procs = []


@atexit.register
def _kill_left():
    """A test that ended early (an exception) leaves no sidecar behind."""
    for p in _procs:
        if p.poll() is None:
            p.kill()
            p.wait()


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    p = s.getsockname()[1]
    s.close()
    return p


def start_sidecar(extra_env=None, preload=None):
    """The sidecar on a free port; extra_env: PGCAST_* settings."""
    port = free_port()
    env = dict(os.environ, PGCAST_JWT_SECRET=SECRET, PGCAST_CLIENT_RATE="50", PGCAST_LOG_LEVEL="warn",
               # limits per token subject: off unless a test turns them on (tests reuse one sub)
               PGCAST_PUBLISH_RATE="0", PGCAST_WS_MAX_CONNS_PER_SUBJECT="0",
               PGCAST_PRESENCE_MAX_PER_SUBJECT="0")
    env.update(extra_env or {})
    if preload:
        env["LD_PRELOAD"] = preload
        env["ASAN_OPTIONS"] = env.get("ASAN_OPTIONS", "") + ":verify_asan_link_order=0"
    proc = subprocess.Popen([os.path.join(BIN, "pgcast-ws"), "--listen", f"127.0.0.1:{port}"], env=env)
    _procs.append(proc)
    for _ in range(400):
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            break
        except OSError:
            time.sleep(0.05)
    return proc, port


def stop_sidecar(proc, what="the sidecar"):
    """SIGTERM; ok when it ends with status 0 (an ASan report would make it non-zero)."""
    if proc.poll() is None:
        proc.terminate()
    try:
        rc = proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        proc.kill()
        rc = proc.wait()
    ok(rc == 0, f"{what} ends cleanly on SIGTERM (exit 0, no sanitizer report)", rc)


def token(**claims):
    c = {"sub": "u1", "name": "Ann", "tenant": "t1", "exp": "+600", "channels": ["project:*", "room:*"],
         "publish": ["project:*"]}
    c.update(claims)
    return mint(SECRET, c)


async def connect(port, tok=None):
    ws = await websockets.connect(f"ws://127.0.0.1:{port}/ws?token={tok or token()}", max_size=None)
    hello = json.loads(await ws.recv())
    return ws, hello


async def recv_until(ws, pred, timeout=10):
    """Messages until pred(msg): (that message or None, everything seen)."""
    seen = []
    end = time.time() + timeout
    while time.time() < end:
        try:
            m = json.loads(await asyncio.wait_for(ws.recv(), max(0.05, end - time.time())))
        except asyncio.TimeoutError:
            break
        seen.append(m)
        if pred(m):
            return m, seen
    return None, seen


def metrics(port):
    """/metrics as a dict of name -> number."""
    body = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10).read().decode()
    out = {}
    for line in body.splitlines():
        if line and not line.startswith("#"):
            k, v = line.split()
            out[k] = float(v)
    return out


class Reader:
    """Reads a connection in the background: every message, in arrival order, with the
    time it came; wait() for the first message (from a given index) that matches."""

    def __init__(self, ws):
        self.ws = ws
        self.msgs = []
        self.times = []
        self.closed = False
        self._cv = asyncio.Condition()
        self._task = asyncio.ensure_future(self._run())

    async def _run(self):
        try:
            async for raw in self.ws:
                async with self._cv:
                    self.msgs.append(json.loads(raw))
                    self.times.append(time.time())
                    self._cv.notify_all()
        except websockets.ConnectionClosed:
            pass
        async with self._cv:
            self.closed = True
            self._cv.notify_all()

    def find(self, pred, start=0):
        for i in range(start, len(self.msgs)):
            if pred(self.msgs[i]):
                return i
        return None

    async def wait(self, pred, timeout=10, start=0):
        """The first matching message (or None after timeout)."""
        async def match():
            async with self._cv:
                while True:
                    i = self.find(pred, start)
                    if i is not None:
                        return self.msgs[i]
                    if self.closed:
                        return None
                    await self._cv.wait()
        try:
            return await asyncio.wait_for(match(), timeout)
        except asyncio.TimeoutError:
            return None

    async def wait_count(self, pred, count, timeout=10):
        """Waits until count messages match; returns the matching ones."""
        end = time.time() + timeout
        while True:
            got = [m for m in self.msgs if pred(m)]
            if len(got) >= count or time.time() >= end:
                return got
            await self.wait(lambda m: False, min(0.1, max(0.01, end - time.time())))

    async def close(self):
        await self.ws.close()
        await self._task
