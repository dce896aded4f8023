"""An SSE stream over a raw socket (HTTP/1.0), standard library only: the head, then
events parsed as they arrive, with what a test looks at (status, headers, retry:,
comments, the last id:). For tests that need the bytes as the server sent them."""
import json, select, socket, time, urllib.parse


class Stream:
    def __init__(self, base, query, headers=None, method="GET", prefix="/realtime", timeout=15, rcvbuf=None):
        """rcvbuf: a small receive buffer makes the pace the reader's, not the kernel's (an
        autotuned one takes megabytes before the reader reads any)."""
        u = urllib.parse.urlparse(base)
        path = u.path.rstrip("/") + prefix + "/sse"
        if rcvbuf:
            self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
            self.sock.settimeout(timeout)
            self.sock.connect((u.hostname, u.port))
        else:
            self.sock = socket.create_connection((u.hostname, u.port), timeout=timeout)
        lines = [f"{method} {path}?{query} HTTP/1.0", f"Host: {u.hostname}:{u.port}", "Accept: text/event-stream",
                 "Accept-Encoding: gzip, deflate, br"]
        if method != "GET":
            lines.append("Content-Length: 0")
        lines += [f"{k}: {v}" for k, v in (headers or {}).items()]
        self.sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode())
        self.buf = b""
        self.status, self.headers = 0, {}
        self.events = []  # (id or None, parsed data)
        self.comments = []
        self.retry, self.closed, self.last_event_id = None, False, None
        self._read_head()

    def _read_head(self):
        while b"\r\n\r\n" not in self.buf:
            try:
                chunk = self.sock.recv(65536)
            except OSError:
                chunk = b""
            if not chunk:
                break
            self.buf += chunk
        head, _, self.buf = self.buf.partition(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        self.status = int(lines[0].split()[1]) if lines and len(lines[0].split()) > 1 else 0
        for line in lines[1:]:
            k, _, v = line.partition(":")
            self.headers[k.strip().lower()] = v.strip()
        self.sock.setblocking(False)

    def read_body(self, timeout=5):
        """Everything until the server closes (or timeout): what no event block took."""
        end = time.time() + timeout
        while not self.closed and time.time() < end:
            self.pump(0.2)
        return self.buf

    def pump(self, timeout=0.0):
        """Reads what is there (waiting up to timeout) and parses complete events."""
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
        """Parses the complete blocks in what was read."""
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

    def seqs(self, channel=None):
        return [d["seq"] for _, d in self.events if "seq" in d and (channel is None or d["channel"] == channel)]

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass
        self.closed = True
