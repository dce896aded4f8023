"""Resuming clients for delivery tests, and a checker against the event log.

Every client subscribes to some channels from a known position, resumes after anything
that ends its connection the way a real client of that transport does, and records every
event it was delivered as (channel, seq). `check()` then compares, per channel, what the
client got with `realtime.realtime_events_log`: a missing, duplicated or out-of-order
event fails; a `gap` message counts only for events retention pruned.

  SSEClient   raw HTTP to {prefix}/sse: parses `retry:`/`id:`/`data:` blocks the way a
              browser's EventSource does, reconnects after `retry` ms with Last-Event-ID
              (the last id it saw, id-only blocks included); reads at its own pace
              (`read_size` bytes, then `read_pause` seconds) or not at all (`paused`)
  PollClient  GET {prefix}/events?since=CURSOR&wait=W, again at once with the returned
              cursor (while the page was full, `hasMore`, or events came), else waits
  WSClient    python3-websockets to /ws: `connected`, then a subscribe per channel with
              `since` = the last seq it got; after any close, reconnects and resubscribes

All are asyncio tasks (`start()` / `await stop()`), so hundreds run in one thread.
Standard library and python3-websockets only; run with /usr/bin/python3.
"""
import asyncio
import json
import os
import random
import socket
import subprocess
import sys
import time
import urllib.parse

sys.path.insert(0, os.path.join(os.environ.get("PGCAST_ROOT", os.path.join(os.path.dirname(__file__), "..", "..")),
                                "scripts"))
from jwt import mint  # noqa: E402
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from tap import Tap, psql  # noqa: E402,F401  (re-exported: rc.Tap, rc.psql)

TEST_SECRET = "pgcast-test-secret"  # tests/lib/webserver.sh's


def token(tenant="t1", sub="u1", channels=("*",), publish=(), exp="+3600", secret=TEST_SECRET, **extra):
    claims = {"sub": sub, "tenant": tenant, "exp": exp, "channels": list(channels), "publish": list(publish)}
    claims.update(extra)
    return mint(secret, claims)


async def apsql(sql, env=None, check=True):
    """psql without blocking the event loop. Returns (returncode, stdout, stderr)."""
    p = await asyncio.create_subprocess_exec("psql", "-qXAt", "-v", "ON_ERROR_STOP=1", "-c", sql, env=env,
                                             stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    out, err = await p.communicate()
    if check and p.returncode != 0:
        raise RuntimeError(f"psql failed ({p.returncode}): {err.decode().strip()}")
    return p.returncode, out.decode().strip(), err.decode().strip()


def publish_sql(tenant, channel, count, etype="e", pad=0):
    """One statement publishing `count` events (payload {"i":n,"pad":"xxx…"} of `pad` bytes)."""
    body = "jsonb_build_object('i', g" + (f", 'pad', repeat('x', {int(pad)})" if pad else "") + ")"
    return (f"SELECT max(realtime.publish('{tenant}', '{channel}', '{etype}', {body})) "
            f"FROM generate_series(1, {int(count)}) g")


def steady_publish_sql(tenant, channel, count, interval_s, etype="e", pad=0, batch=1):
    """A DO block publishing `count` transactions of `batch` events each, `interval_s`
    apart (one backend; far steadier than a psql per event). Run it with apsql while
    clients read."""
    body = "jsonb_build_object('i', i" + (f", 'pad', repeat('x', {int(pad)})" if pad else "") + ")"
    return (f"DO $$ BEGIN FOR i IN 1..{int(count)} LOOP "
            f"PERFORM realtime.publish('{tenant}', '{channel}', '{etype}', {body}) FROM generate_series(1, {int(batch)}); "
            f"COMMIT; PERFORM pg_sleep({float(interval_s)}); END LOOP; END $$")


def cursor_text(positions):
    return ",".join(f"{c}={s}" for c, s in positions.items())


def parse_cursor(text):
    out = {}
    for part in (text or "").split(","):
        if "=" in part:
            c, _, s = part.rpartition("=")
            try:
                out[c] = int(s)
            except ValueError:
                pass
    return out


def is_event(m):
    """An event envelope (not heartbeat, error, gap, subscribed or any other reply)."""
    return isinstance(m, dict) and "seq" in m and "channel" in m and "payload" in m and "timestamp" in m


class Client:
    """What every client records. `start` is each channel's starting position (events
    after it are expected); `got` the delivered seqs per channel in arrival order."""

    kind = "?"

    def __init__(self, channels, since=None, name=None):
        self.channels = list(channels)
        self.start_pos = {c: int((since or {}).get(c, 0)) for c in self.channels}
        self.pos = dict(self.start_pos)  # last seq delivered (or skipped by a gap) per channel
        self.got = {c: [] for c in self.channels}
        self.arrivals = []      # (time, channel, seq) of each delivery
        self.gaps = []          # (channel, from, to)
        self.errors = []        # (time, code or close reason)
        self.connects = 0       # connections opened (1 = never resumed)
        self.statuses = []      # HTTP statuses other than 200 / connection failures
        self.log = []           # short notes for diagnostics
        self.name = name or f"{self.kind}{id(self) % 100000}"
        self.task = None
        self._stopping = False
        self.paused = False     # True: stop reading (the server's writes back up)
        self.done = False       # the task ended (stop() or give up)

    # ---- bookkeeping shared by the transports
    def _deliver(self, m):
        ch = m.get("channel")
        if ch in self.got:
            self.got[ch].append(m["seq"])
            self.arrivals.append((time.time(), ch, m["seq"]))
            if m["seq"] > self.pos[ch]:
                self.pos[ch] = m["seq"]
        else:
            self.note(f"event of a channel not subscribed: {ch}")

    def _message(self, m):
        if is_event(m):
            self._deliver(m)
        elif isinstance(m, dict) and m.get("type") == "gap":
            ch = m.get("channel")
            self.gaps.append((ch, m.get("from"), m.get("to")))
            if ch in self.pos and isinstance(m.get("to"), int):
                self.pos[ch] = max(self.pos[ch], m["to"])
        elif isinstance(m, dict) and m.get("type") == "error":
            self.errors.append((time.time(), m.get("code")))

    def note(self, text):
        if len(self.log) < 200:
            self.log.append(f"{time.strftime('%H:%M:%S')} {text}")

    def count(self, channel=None):
        return sum(len(v) for c, v in self.got.items() if channel is None or c == channel)

    def reached(self, last):
        """Whether every channel's delivered position reached last[channel]."""
        return all(self.pos.get(c, 0) >= s for c, s in last.items() if c in self.pos)

    def max_silence(self, since=0.0, until=None):
        """The longest time between two deliveries (or from `since`) in [since, until]."""
        ts = [a for a, _, _ in self.arrivals if a >= since and (until is None or a <= until)]
        edges = [since] + ts + ([until] if until else [])
        return max((b - a for a, b in zip(edges, edges[1:])), default=0.0)

    def error_codes(self):
        return [c for _, c in self.errors]

    # ---- life
    def start(self):
        self.task = asyncio.ensure_future(self._main())
        return self

    async def _main(self):
        try:
            await self.run()
        except asyncio.CancelledError:
            pass
        except Exception as e:  # a bug in the client: make it visible
            self.note(f"client crashed: {e!r}")
            self.statuses.append(f"client crashed: {e!r}")
        finally:
            self.done = True

    async def stop(self):
        self._stopping = True
        if self.task and not self.task.done():
            self.task.cancel()
            try:
                await self.task
            except BaseException:
                pass

    async def run(self):
        raise NotImplementedError

    async def _wait_unpaused(self):
        while self.paused and not self._stopping:
            await asyncio.sleep(0.05)

    def summary(self):
        return (f"{self.name}: got {self.count()} events on {len(self.channels)} channel(s), "
                f"{self.connects} connection(s), errors {self.error_codes()[-5:]}, gaps {self.gaps[:3]}, "
                f"statuses {self.statuses[-3:]}")


# --------------------------------------------------------------------------- HTTP bits


async def _open(host, port, rcvbuf=None, timeout=15):
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    if rcvbuf:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    s.setblocking(False)
    loop = asyncio.get_running_loop()
    try:
        await asyncio.wait_for(loop.sock_connect(s, (host, port)), timeout)
    except BaseException:
        s.close()
        raise
    # a small StreamReader limit keeps the client's own buffer small: what it does not
    # read stays in the kernel, then in the server
    return await asyncio.open_connection(sock=s, limit=64 * 1024)


async def _read_head(reader, timeout=30):
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), timeout)
    lines = head.decode("latin-1").split("\r\n")
    parts = lines[0].split()
    status = int(parts[1]) if len(parts) > 1 and parts[1].isdigit() else 0
    headers = {}
    for line in lines[1:]:
        k, _, v = line.partition(":")
        if k:
            headers[k.strip().lower()] = v.strip()
    return status, headers


class _Body:
    """The body of an HTTP/1.x answer: plain, or chunked (decoded)."""

    def __init__(self, reader, headers):
        self.reader = reader
        self.chunked = "chunked" in headers.get("transfer-encoding", "").lower()
        self.left = 0  # of the current chunk
        self.eof = False

    async def read(self, n):
        if self.eof:
            return b""
        if not self.chunked:
            data = await self.reader.read(n)
            if not data:
                self.eof = True
            return data
        if self.left == 0:
            line = await self.reader.readline()
            if not line:
                self.eof = True
                return b""
            if line in (b"\r\n", b"\n"):  # the CRLF after the previous chunk
                line = await self.reader.readline()
            size = int(line.split(b";")[0].strip() or b"0", 16)
            if size == 0:
                self.eof = True
                return b""
            self.left = size
        data = await self.reader.read(min(n, self.left))
        if not data:
            self.eof = True
        self.left -= len(data)
        return data


def _http_target(base):
    u = urllib.parse.urlparse(base)
    return u.hostname, u.port or 80, u.path.rstrip("/")


# --------------------------------------------------------------------------- SSE


class SSEClient(Client):
    """An EventSource: GET {prefix}/sse?channel=…&since=<start cursor>&token=…, then on any
    end of the stream wait `retry` ms and reconnect to the same URL with Last-Event-ID.

    read_size/read_pause: how fast it reads (bytes per read, pause after each read).
    rcvbuf: SO_RCVBUF of its socket (small = the server sees it fall behind sooner).
    retry_errors: reconnect after a 5xx or a refused connection too (a browser gives up
    on a non-200 answer; a page then makes a new EventSource — same thing here)."""

    kind = "sse"

    def __init__(self, base, tok, channels, since=None, read_size=65536, read_pause=0.0, rcvbuf=None,
                 retry_errors=True, default_retry_ms=3000, max_retry_ms=None, name=None, prefix="/realtime"):
        super().__init__(channels, since, name)
        self.host, self.port, path = _http_target(base)
        q = [("channel", c) for c in self.channels] + [("since", cursor_text(self.start_pos)), ("token", tok)]
        self.target = f"{path}{prefix}/sse?{urllib.parse.urlencode(q)}"
        self.read_size, self.read_pause, self.rcvbuf = read_size, read_pause, rcvbuf
        self.retry_errors = retry_errors
        self.retry_ms = default_retry_ms
        self.max_retry_ms = max_retry_ms
        self.last_id = ""       # EventSource's "last event ID string"
        self.ids_seen = 0       # id: fields seen (id-only blocks included)
        self.heartbeats = 0
        self.stream_open = False
        self.writer = None

    def drop(self):
        """Ends the current connection abruptly (like a network drop); it resumes."""
        if self.writer:
            self.writer.transport.abort()

    async def run(self):
        while not self._stopping:
            await self._wait_unpaused()
            try:
                await self._connect_once()
            except (OSError, asyncio.TimeoutError, asyncio.IncompleteReadError, ValueError) as e:
                self.statuses.append(type(e).__name__)
                self.note(f"connection failed: {e!r}")
            self.stream_open = False
            if self._stopping:
                break
            delay = self.retry_ms if self.max_retry_ms is None else min(self.retry_ms, self.max_retry_ms)
            await asyncio.sleep(delay / 1000.0)

    async def _connect_once(self):
        reader, writer = await _open(self.host, self.port, self.rcvbuf)
        self.writer = writer
        try:
            lines = [f"GET {self.target} HTTP/1.1", f"Host: {self.host}:{self.port}", "Accept: text/event-stream",
                     "Cache-Control: no-cache", "Connection: close"]
            if self.last_id:
                lines.append(f"Last-Event-ID: {self.last_id}")
            writer.write(("\r\n".join(lines) + "\r\n\r\n").encode())
            await writer.drain()
            status, headers = await _read_head(reader)
            self.connects += 1
            if status != 200 or not headers.get("content-type", "").startswith("text/event-stream"):
                body = await asyncio.wait_for(reader.read(2000), 10)
                self.statuses.append(status)
                self.note(f"answer {status}: {body[:200]!r}")
                if not self.retry_errors or (400 <= status < 500):
                    self._stopping = True
                return
            self.stream_open = True
            body = _Body(reader, headers)
            await self._read_stream(body)
            self.note("stream ended")
        finally:
            self.writer = None
            writer.transport.abort()

    async def _read_stream(self, body):
        buf = b""
        data, event_id_buf = [], None
        while not self._stopping:
            await self._wait_unpaused()
            chunk = await body.read(self.read_size)
            if not chunk:
                return
            buf += chunk
            # lines end with CRLF, LF or CR; a CR at the very end may be half a CRLF
            while True:
                i = min((k for k in (buf.find(b"\r"), buf.find(b"\n")) if k >= 0), default=-1)
                if i < 0 or (buf[i:i + 1] == b"\r" and i + 1 == len(buf)):
                    break
                line = buf[:i].decode("utf-8", "replace")
                buf = buf[i + 2:] if buf[i:i + 2] == b"\r\n" else buf[i + 1:]
                if line == "":  # dispatch
                    if event_id_buf is not None:
                        self.last_id = event_id_buf
                        event_id_buf = None
                    if data:
                        self._on_data("\n".join(data))
                    data = []
                    continue
                if line.startswith(":"):
                    continue
                field, sep, value = line.partition(":")
                if sep and value.startswith(" "):
                    value = value[1:]
                if field == "data":
                    data.append(value)
                elif field == "id":
                    if "\0" not in value:
                        event_id_buf = value
                        self.ids_seen += 1
                elif field == "retry":
                    if value.isdigit():
                        self.retry_ms = int(value)
            if self.read_pause:
                await asyncio.sleep(self.read_pause)

    def _on_data(self, text):
        try:
            m = json.loads(text)
        except ValueError:
            self.note(f"data that is not JSON: {text[:100]!r}")
            return
        if isinstance(m, dict) and m.get("type") == "heartbeat":
            self.heartbeats += 1
            return
        self._message(m)


class StuckSSE:
    """An SSE request on a raw socket that never reads (its answer backs up in the
    server). `close()` leaves (a FIN; `reset=True` for a RST)."""

    def __init__(self, base, tok, channels, since=None, rcvbuf=4096, prefix="/realtime"):
        host, port, path = _http_target(base)
        q = [("channel", c) for c in channels] + ([("since", cursor_text(since))] if since else []) + [("token", tok)]
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        self.sock.settimeout(15)
        self.sock.connect((host, port))
        self.sock.sendall((f"GET {path}{prefix}/sse?{urllib.parse.urlencode(q)} HTTP/1.1\r\nHost: {host}:{port}\r\n"
                           "Accept: text/event-stream\r\nConnection: close\r\n\r\n").encode())

    def close(self, reset=False):
        if reset:
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
        self.sock.close()


# --------------------------------------------------------------------------- long-poll


class PollClient(Client):
    """Long-polls GET {prefix}/events?channel=…&since=CURSOR&limit=L&wait=W. A page with
    events or `hasMore` is followed at once with the returned cursor; an empty page was
    the wait. Connection errors and 5xx are retried after `error_delay` s."""

    kind = "poll"

    def __init__(self, base, tok, channels, since=None, wait=5, limit=100, error_delay=0.5, read_pause=0.0,
                 name=None, prefix="/realtime"):
        super().__init__(channels, since, name)
        self.host, self.port, self.path = _http_target(base)
        self.prefix, self.tok = prefix, tok
        self.wait, self.limit, self.error_delay, self.read_pause = wait, limit, error_delay, read_pause
        self.cursor = cursor_text(self.start_pos)
        self.requests = 0

    async def run(self):
        while not self._stopping:
            await self._wait_unpaused()
            q = [("channel", c) for c in self.channels] + [("since", self.cursor), ("limit", str(self.limit)),
                                                           ("wait", str(self.wait))]
            target = f"{self.path}{self.prefix}/events?{urllib.parse.urlencode(q)}"
            try:
                status, body = await self._get(target, self.wait + 30)
            except (OSError, asyncio.TimeoutError, asyncio.IncompleteReadError, ValueError) as e:
                self.statuses.append(type(e).__name__)
                self.note(f"request failed: {e!r}")
                await asyncio.sleep(self.error_delay)
                continue
            self.requests += 1
            if status != 200:
                self.statuses.append(status)
                self.note(f"answer {status}: {body[:200]!r}")
                if 400 <= status < 500 and status != 429:
                    self._stopping = True
                    return
                await asyncio.sleep(self.error_delay)
                continue
            try:
                page = json.loads(body)
            except ValueError:
                self.statuses.append("bad json")
                await asyncio.sleep(self.error_delay)
                continue
            for m in page.get("events", []):
                self._message(m)
            if page.get("cursor"):
                # the cursor is the truth; it may only move forward
                self.cursor = page["cursor"]
            if self.read_pause:
                await asyncio.sleep(self.read_pause)

    async def _get(self, target, timeout):
        self.connects += 1
        reader, writer = await _open(self.host, self.port)
        try:
            writer.write((f"GET {target} HTTP/1.1\r\nHost: {self.host}:{self.port}\r\n"
                          f"Authorization: Bearer {self.tok}\r\nConnection: close\r\n\r\n").encode())
            await writer.drain()
            status, headers = await _read_head(reader, timeout)
            body = _Body(reader, headers)
            n = int(headers["content-length"]) if "content-length" in headers and not body.chunked else None
            out = bytearray()
            while n is None or len(out) < n:
                chunk = await asyncio.wait_for(body.read(1 << 20), timeout)
                if not chunk:
                    break
                out += chunk
            if n is not None and len(out) < n:
                raise asyncio.IncompleteReadError(bytes(out), n)
            return status, bytes(out)
        finally:
            writer.transport.abort()


# --------------------------------------------------------------------------- WebSocket


class WSClient(Client):
    """A WebSocket client that resumes: on open, `subscribe` each channel with `since` =
    the last seq it got; after any close (or a failed connect), again after
    `reconnect_delay` s. `read_pause` s after each message slows it down."""

    kind = "ws"

    def __init__(self, url, tok, channels, since=None, read_pause=0.0, reconnect_delay=0.3, max_size=None,
                 name=None, open_timeout=30):
        super().__init__(channels, since, name)
        self.url = f"{url}{'&' if '?' in url else '?'}token={urllib.parse.quote(tok)}"
        self.read_pause, self.reconnect_delay, self.max_size = read_pause, reconnect_delay, max_size
        self.open_timeout = open_timeout
        self.closes = []    # (code, reason) of each close
        self.subscribed = {}  # channel -> seq of the last `subscribed`
        self.ws = None

    async def run(self):
        import websockets
        while not self._stopping:
            await self._wait_unpaused()
            try:
                ws = await asyncio.wait_for(
                    websockets.connect(self.url, max_size=self.max_size, ping_interval=None, close_timeout=2,
                                       open_timeout=None), self.open_timeout)
            except (OSError, asyncio.TimeoutError, websockets.exceptions.WebSocketException) as e:
                self.statuses.append(type(e).__name__ + (f" {e.status_code}" if hasattr(e, "status_code") else ""))
                self.note(f"connect failed: {e!r}")
                await asyncio.sleep(self.reconnect_delay)
                continue
            self.ws = ws
            self.connects += 1
            try:
                for c in self.channels:
                    await ws.send(json.dumps({"type": "subscribe", "channel": c, "since": self.pos[c]}))
                async for raw in ws:
                    m = json.loads(raw)
                    if isinstance(m, dict) and m.get("type") == "subscribed":
                        self.subscribed[m.get("channel")] = m.get("seq")
                    self._message(m)
                    if self.read_pause:
                        await asyncio.sleep(self.read_pause)
                    await self._wait_unpaused()
            except (OSError, asyncio.TimeoutError, websockets.exceptions.WebSocketException) as e:
                self.note(f"connection ended: {e!r}")
            finally:
                self.ws = None
                code, reason = ws.close_code, ws.close_reason
                self.closes.append((code, reason))
                self.note(f"closed {code} {reason!r}")
                ws.transport.abort() if ws.transport else None
            if not self._stopping:
                await asyncio.sleep(self.reconnect_delay)

    def drop(self):
        """Ends the connection without a close frame; it resumes."""
        if self.ws and self.ws.transport:
            self.ws.transport.abort()

    def close_codes(self):
        return [c for c, _ in self.closes]

    def summary(self):
        return super().summary() + f", closes {self.closes[-3:]}"


async def ws_churn(url, tok, channels, n, since=0, drop_ratio=0.5, stay=(0.0, 1.0), stats=None):
    """Opens n WebSockets at once; each subscribes to `channels` (from `since`: a number,
    or None for "now"), reads for a random time in `stay`, then leaves: a share
    `drop_ratio` without a close frame (the socket just goes), the rest with a close.
    Returns stats: opened, failed, dropped, closed, messages."""
    import websockets
    st = stats if stats is not None else {}
    for k in ("opened", "failed", "dropped", "closed", "messages"):
        st.setdefault(k, 0)
    full = f"{url}{'&' if '?' in url else '?'}token={urllib.parse.quote(tok)}"

    async def one(i):
        try:
            ws = await asyncio.wait_for(websockets.connect(full, max_size=None, ping_interval=None, close_timeout=2,
                                                           open_timeout=None), 30)
        except Exception:
            st["failed"] += 1
            return
        st["opened"] += 1
        try:
            for c in channels:
                m = {"type": "subscribe", "channel": c}
                if since is not None:
                    m["since"] = since
                await ws.send(json.dumps(m))
            end = time.time() + random.uniform(*stay)
            while time.time() < end:
                try:
                    await asyncio.wait_for(ws.recv(), max(0.01, end - time.time()))
                    st["messages"] += 1
                except asyncio.TimeoutError:
                    break
        except Exception as e:
            k = f"ended by {type(e).__name__}"
            st[k] = st.get(k, 0) + 1
        if random.random() < drop_ratio:
            ws.transport.abort()
            st["dropped"] += 1
        else:
            try:
                await asyncio.wait_for(ws.close(), 5)
            except Exception:
                ws.transport.abort()
            st["closed"] += 1

    await asyncio.gather(*(one(i) for i in range(n)))
    return st


def ws_frame(payload, opcode=1, fin=True):
    """One masked client frame (RFC 6455 §5.2)."""
    if isinstance(payload, str):
        payload = payload.encode()
    head = bytes([(0x80 if fin else 0) | opcode])
    n = len(payload)
    if n < 126:
        head += bytes([0x80 | n])
    elif n < 65536:
        head += bytes([0x80 | 126]) + n.to_bytes(2, "big")
    else:
        head += bytes([0x80 | 127]) + n.to_bytes(8, "big")
    mask = os.urandom(4)
    return head + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(payload))


class RawWS:
    """A WebSocket on a plain blocking socket, for clients that misbehave: it may never
    read (`send` only), flood pings, and leave without a close frame (`drop`).
    url: ws://host:port/path (token added)."""

    def __init__(self, url, tok, rcvbuf=None, timeout=15):
        u = urllib.parse.urlparse(url)
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        if rcvbuf:
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        self.sock.settimeout(timeout)
        self.sock.connect((u.hostname, u.port or 80))
        key = __import__("base64").b64encode(os.urandom(16)).decode()
        path = f"{u.path}?{u.query + '&' if u.query else ''}token={urllib.parse.quote(tok)}"
        self.sock.sendall((f"GET {path} HTTP/1.1\r\nHost: {u.hostname}:{u.port}\r\nUpgrade: websocket\r\n"
                           f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n"
                           f"Origin: http://{u.hostname}:{u.port}\r\n\r\n").encode())
        head = b""
        while b"\r\n\r\n" not in head:
            b = self.sock.recv(1)  # byte by byte: nothing after the head is taken
            if not b:
                break
            head += b
        self.status = int(head.split()[1]) if len(head.split()) > 1 else 0

    def send(self, text, opcode=1):
        self.sock.sendall(ws_frame(text, opcode))

    def subscribe(self, channel, since=0):
        self.send(json.dumps({"type": "subscribe", "channel": channel, "since": since}))

    def drop(self, reset=True):
        """Leaves with no close frame: a RST (reset=True) or a FIN."""
        try:
            if reset:
                self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
            self.sock.close()
        except OSError:
            pass


# --------------------------------------------------------------------------- checking


def log_seqs(tenant, channel, env=None):
    out = psql(f"SELECT seq FROM realtime.realtime_events_log WHERE tenant_id = '{tenant}' "
               f"AND channel = '{channel}' ORDER BY seq", env)
    return [int(x) for x in out.split()] if out else []


def pruned_through(tenant, channel, env=None):
    out = psql(f"SELECT coalesce(max(pruned_through), 0) FROM realtime.realtime_channels "
               f"WHERE tenant_id = '{tenant}' AND channel_name = '{channel}'", env)
    return int(out or 0)


def compare(got, expected, gaps=(), pruned=0):
    """Problems (list of text, empty = fine) of a delivered sequence against the log's.

    got: seqs in arrival order; expected: the log's seqs after the client's start, in
    order; gaps: (from, to) gap messages of this channel; pruned: the channel's
    pruned_through (a gap may only cover seqs at or below it)."""
    problems = []
    exp_set = set(expected)
    seen, dups, extra = set(), [], []
    for s in got:
        if s in seen:
            dups.append(s)
        seen.add(s)
        if s not in exp_set:
            extra.append(s)
    covered = set()
    for f, t in gaps:
        if not (isinstance(f, int) and isinstance(t, int)) or t > pruned:
            problems.append(f"gap {f}..{t} although retention pruned only through {pruned}")
        else:
            covered.update(range(f, t + 1))
    missing = [s for s in expected if s not in seen and s not in covered]
    disorder = [(a, b) for a, b in zip(got, got[1:]) if b <= a]
    if missing:
        problems.append(f"{len(missing)} missing: {_ranges(missing)}")
    if dups:
        problems.append(f"{len(dups)} duplicated: {_ranges(sorted(set(dups)))}")
    if disorder:
        problems.append(f"{len(disorder)} out of order, first {disorder[:3]}")
    if extra:
        problems.append(f"{len(extra)} not in the log (or before the start): {_ranges(sorted(set(extra)))}")
    return problems


def _ranges(seqs, limit=8):
    out, i = [], 0
    while i < len(seqs) and len(out) < limit:
        j = i
        while j + 1 < len(seqs) and seqs[j + 1] == seqs[j] + 1:
            j += 1
        out.append(str(seqs[i]) if i == j else f"{seqs[i]}-{seqs[j]}")
        i = j + 1
    return ",".join(out) + ("…" if i < len(seqs) else "")


def check(client, tenant, env=None, logs=None):
    """Problems of one client over all its channels: its deliveries against the log."""
    problems = []
    for ch in client.channels:
        logs_ch = (logs or {}).get(ch)
        if logs_ch is None:
            logs_ch = log_seqs(tenant, ch, env)
        start = client.start_pos[ch]
        expected = [s for s in logs_ch if s > start]
        gaps = [(f, t) for c, f, t in client.gaps if c == ch]
        pruned = pruned_through(tenant, ch, env) if gaps else 0
        for p in compare(client.got[ch], expected, gaps, pruned):
            problems.append(f"{client.name} {ch}: {p}")
    return problems


def check_all(clients, tenant, env=None):
    """Problems of many clients (the log of each channel read once)."""
    logs = {}
    for c in clients:
        for ch in c.channels:
            if ch not in logs:
                logs[ch] = log_seqs(tenant, ch, env)
    out = []
    for c in clients:
        out += check(c, tenant, env, logs)
    return out


async def wait_until(pred, timeout, step=0.1):
    end = time.time() + timeout
    while time.time() < end:
        if pred():
            return True
        await asyncio.sleep(step)
    return pred()


async def wait_delivered(clients, last, stall=30, cap=300):
    """Waits until every client reached last[channel] on each of its channels, or until
    none of the unfinished ones made progress for `stall` s (a stream that stopped for
    good; the bound is generous: a busy machine is slow, not silent for that long), or
    `cap` s in all. Returns whether all arrived."""
    end = time.time() + cap
    def progress():
        return sum(c.count() for c in clients) + sum(c.connects for c in clients)
    mark, since = progress(), time.time()
    while time.time() < end:
        if all(c.reached({k: v for k, v in last.items() if k in c.pos}) for c in clients):
            return True
        p = progress()
        if p != mark:
            mark, since = p, time.time()
        elif time.time() - since > stall:
            break
        await asyncio.sleep(0.2)
    return all(c.reached({k: v for k, v in last.items() if k in c.pos}) for c in clients)


def last_seqs(tenant, channels, env=None):
    """Each channel's last committed seq (from the log)."""
    out = {}
    for ch in channels:
        s = psql(f"SELECT coalesce(max(seq), 0) FROM realtime.realtime_events_log "
                 f"WHERE tenant_id = '{tenant}' AND channel = '{ch}'", env)
        out[ch] = int(s or 0)
    return out


def hub_activity(samples=5, env=None):
    """What pgcast's sessions are running, sampled `samples` times 0.2 s apart: a hub
    stuck re-reading the log shows `realtime.read` (or its SELECT) in every sample."""
    out = []
    for _ in range(samples):
        out.append(psql("SELECT coalesce(string_agg(application_name || ': ' || left(regexp_replace(query, '\\s+', ' ', "
                        "'g'), 110), ' | '), '') FROM pg_stat_activity WHERE state = 'active' "
                        "AND pid <> pg_backend_pid() AND backend_type = 'client backend'", env))
        time.sleep(0.2)
    busy = sum(1 for x in out if "realtime.read" in x or "gap_to, event_type" in x)
    return f"log reads running in {busy} of {samples} samples; e.g. {next((x for x in out if x), '(idle)')}"


def sanitizer_reports(paths):
    """Lines of sanitizer reports (ASan, UBSan, glibc heap checks) in the given logs."""
    pats = ("ERROR: AddressSanitizer", "ERROR: LeakSanitizer", "runtime error:", "SUMMARY: UndefinedBehavior",
            "double free or corruption", "malloc(): ", "free(): invalid", "corrupted size vs. prev_size")
    hits = []
    for p in paths:
        try:
            with open(p, errors="replace") as f:
                for line in f:
                    if any(x in line for x in pats):
                        hits.append(f"{os.path.basename(p)}: {line.strip()[:200]}")
        except OSError:
            pass
    return hits


def sanitizer_excerpt(paths, limit=60):
    """The first sanitizer report in the given logs: its stack lines (#N ...), the
    freed-by/allocated-by headers and the SUMMARY, at most `limit` lines."""
    keep = ("ERROR: ", "runtime error:", "    #", "freed by thread", "previously allocated by", "SUMMARY:",
            "READ of size", "WRITE of size", "double free", "is located")
    for p in paths:
        try:
            with open(p, errors="replace") as f:
                lines = f.read().splitlines()
        except OSError:
            continue
        for i, line in enumerate(lines):
            if "ERROR: AddressSanitizer" in line or "runtime error:" in line or "double free or corruption" in line:
                out = [f"{os.path.basename(p)}:"]
                for x in lines[i:]:
                    if any(k in x for k in keep):
                        out.append(x.strip()[:200])
                    if len(out) >= limit or x.startswith("SUMMARY:") or "SUMMARY:" in x:
                        break
                return "\n".join(out)
    return ""


def random_name(prefix):
    return f"{prefix}{os.getpid()}{random.randrange(1000, 9999)}"
