"""What the tests in tests/apache share: TAP output, tokens, HTTP calls and SSE streams
over raw sockets against one running web server, and the event log to compare with.
Standard library only; psql (PGDATABASE etc. from tests/run.sh) reads the log."""
import json, os, select, socket, subprocess, sys, time, urllib.error, urllib.parse, urllib.request

sys.path.insert(0, os.path.join(os.environ["PGCAST_ROOT"], "scripts"))
from jwt import mint  # noqa: E402

SECRET = "pgcast-test-secret"


class Tap:
    def __init__(self, label):
        self.label, self.n, self.failed = label, 0, 0

    def ok(self, cond, what, detail=""):
        self.n += 1
        print(f"{'ok' if cond else 'not ok'} {self.n} - [{self.label}] {what}")
        if not cond:
            self.failed += 1
            if detail not in (None, ""):
                print("#   " + str(detail).replace("\n", "\n#   "))
        sys.stdout.flush()
        return cond

    def note(self, text):
        print("# " + text)
        sys.stdout.flush()


def token(**claims):
    c = {"sub": "u1", "tenant": "t1", "exp": "+3600", "channels": ["app:*"], "publish": ["app:*"]}
    c.update(claims)
    return mint(SECRET, c)


def psql(sql):
    return subprocess.run(["psql", "-qXAt", "-v", "ON_ERROR_STOP=1", "-c", sql], check=True,
                          capture_output=True, text=True).stdout.strip()


def log_seqs(tenant, channel):
    out = psql(f"SELECT seq FROM realtime.realtime_events_log WHERE tenant_id = '{tenant}' "
               f"AND channel = '{channel}' ORDER BY seq")
    return [int(x) for x in out.split()] if out else []


def http(base, method, path, body=None, tok=None, timeout=30):
    """(status, headers, parsed JSON or text) of one request; never raises for a status."""
    headers = {}
    if tok:
        headers["Authorization"] = "Bearer " + tok
    data = None
    if body is not None:
        data = json.dumps(body).encode()
        headers["Content-Type"] = "application/json"
    req = urllib.request.Request(base + path, data=data, method=method, headers=headers)
    try:
        with urllib.request.urlopen(req, timeout=timeout) as res:
            status, hdrs, raw = res.status, dict(res.headers), res.read()
    except urllib.error.HTTPError as e:
        status, hdrs, raw = e.code, dict(e.headers), e.read()
    except OSError as e:
        return 0, {}, str(e)
    try:
        return status, hdrs, json.loads(raw)
    except ValueError:
        return status, hdrs, raw.decode("utf-8", "replace")


def publish(base, tok, channel, i):
    return http(base, "POST", "/realtime/publish", {"channel": channel, "type": "e", "payload": {"i": i}}, tok)


class Stream:
    """An SSE stream over a raw socket (HTTP/1.0): head, then blocks parsed as they come."""

    def __init__(self, base, query, headers=None):
        u = urllib.parse.urlparse(base)
        self.sock = socket.create_connection((u.hostname, u.port), timeout=15)
        lines = [f"GET /realtime/sse?{query} HTTP/1.0", f"Host: {u.hostname}:{u.port}",
                 "Accept: text/event-stream"] + [f"{k}: {v}" for k, v in (headers or {}).items()]
        self.sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode())
        self.buf, self.raw = b"", b""
        self.status, self.headers, self.events, self.comments = 0, {}, [], []
        self.retry, self.closed, self.last_event_id = None, False, None
        while b"\r\n\r\n" not in self.buf:
            try:
                chunk = self.sock.recv(65536)
            except OSError:
                chunk = b""
            if not chunk:
                break
            self.buf += chunk
        head, _, self.buf = self.buf.partition(b"\r\n\r\n")
        first = head.decode("latin-1").split("\r\n")
        self.status = int(first[0].split()[1]) if first and len(first[0].split()) > 1 else 0
        for line in first[1:]:
            k, _, v = line.partition(":")
            self.headers[k.strip().lower()] = v.strip()
        self.sock.setblocking(False)
        self.parse()

    def pump(self, timeout=0.0):
        if self.closed:
            return
        r, _, _ = select.select([self.sock], [], [], timeout)
        if r:
            try:
                chunk = self.sock.recv(1 << 20)
            except BlockingIOError:
                chunk = None
            except OSError:
                chunk = b""
            if chunk == b"":
                self.closed = True
            elif chunk:
                self.buf += chunk
        self.parse()

    def parse(self):
        while b"\n\n" in self.buf:
            block, _, self.buf = self.buf.partition(b"\n\n")
            eid, data = None, []
            for line in block.decode().split("\n"):
                if line.startswith("id: "):
                    eid = line[4:]
                elif line.startswith("data: "):
                    data.append(line[6:])
                elif line.startswith("retry: "):
                    self.retry = int(line[7:])
                elif line.startswith(":"):
                    self.comments.append(line)
            if eid:
                self.last_event_id = eid
            if data:
                self.events.append((eid, json.loads("\n".join(data))))

    def wait_for(self, pred, timeout=10):
        end = time.time() + timeout
        while time.time() < end:
            if pred(self):
                return True
            if self.closed:
                return pred(self)
            self.pump(0.1)
        return pred(self)

    def data(self, kind=None):
        return [d for _, d in self.events if kind is None or d.get("type") == kind]

    def seqs(self):
        return [d["seq"] for _, d in self.events if "seq" in d]

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass
        self.closed = True
