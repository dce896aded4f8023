#!/usr/bin/python3
"""Raw-socket RFC 6455 checks against bin/pgcast-ws: handshake refusals before the
upgrade, masking, UTF-8, size limit, fragmentation, ping/pong, close handshake, every
other frame the protocol refuses, frames split and frames batched."""
import base64, json, os, socket, struct, subprocess, sys, time

ROOT = os.environ.get("PGCAST_ROOT", os.getcwd())
BIN = os.environ.get("PGCAST_BIN", os.path.join(ROOT, "build/asan/bin"))
sys.path.insert(0, os.path.join(ROOT, "scripts"))
sys.path.insert(0, os.path.join(ROOT, "tests/lib"))
from jwt import mint  # noqa: E402
from wsframes import Reader, frame  # noqa: E402

SECRET = "ws-test-secret"
n = 0
failed = 0


def ok(cond, what):
    global n, failed
    n += 1
    print(("ok" if cond else "not ok"), n, "-", what, flush=True)
    if not cond:
        failed += 1


port = int(subprocess.check_output([os.path.join(ROOT, "scripts/free-port.sh")]).strip())
env = dict(os.environ, PGCAST_JWT_SECRET=SECRET, PGCAST_MAX_MESSAGE_BYTES="65536")
proc = subprocess.Popen([os.path.join(BIN, "pgcast-ws"), "--listen", f"127.0.0.1:{port}"], env=env)
TOKEN = mint(SECRET, {"sub": "u1", "tenant": "t1", "channels": ["*"], "exp": "+600"})


def connect():
    for _ in range(400):  # until the sidecar listens (20 s: a sanitizer build on a busy machine)
        try:
            s = socket.create_connection(("127.0.0.1", port), timeout=5)
            return s
        except OSError:
            time.sleep(0.05)
    raise RuntimeError("sidecar did not start")


def http(raw):
    s = connect()
    s.sendall(raw)
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = s.recv(4096)
        if not chunk:
            break
        data += chunk
    return s, data


def handshake(token=TOKEN):
    key = base64.b64encode(os.urandom(16)).decode()
    req = (f"GET /ws?token={token} HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
           f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n").encode()
    s, data = http(req)
    return s, data, key


def opened():
    s, data, key = handshake()
    head, _, rest = data.partition(b"\r\n\r\n")
    r = Reader(s, rest)
    op, msg = r.frame()  # the connected message
    return s, r, head, op, msg


def close_code(r):
    while True:
        op, p = r.frame()
        if op == 8:
            return struct.unpack("!H", p[:2])[0] if len(p) >= 2 else None


try:
    s, r, head, op, msg = opened()
    ok(head.startswith(b"HTTP/1.1 101"), "handshake answered 101")
    ok(op == 1 and json.loads(msg)["type"] == "connected", "connected message first")
    s.close()

    s, data = http(b"hello there, no http here\r\n\r\n")
    ok(data.startswith(b"HTTP/1.1 400"), "garbage before the handshake -> 400")
    s.close()
    # A request line MHD cannot even split is dropped without an answer: never a 101.
    s, data = http(b"\x16\x03\x01\x00garbage\r\n\r\n")
    ok(b"101" not in data, "binary garbage -> connection closed, no upgrade")
    s.close()

    s, data, _ = handshake(token="nope")
    ok(b" 401 " in data.split(b"\r\n")[0], "bad token -> 401 before the upgrade")
    s.close()
    s, data, _ = handshake(token="")
    ok(b" 401 " in data.split(b"\r\n")[0], "no token -> 401 before the upgrade")
    s.close()

    s, data = http(b"GET /ws HTTP/1.1\r\nHost: x\r\n\r\n")
    ok(b" 426 " in data.split(b"\r\n")[0], "no Upgrade header -> 426")
    s.close()

    s, r, *_ = opened()
    s.sendall(frame(1, b'{"type":"ping"}', mask=False))
    ok(close_code(r) == 1002, "unmasked client frame -> close 1002")
    s.close()

    s, r, *_ = opened()
    s.sendall(frame(1, b'{"type":"\xff\xfe"}'))
    ok(close_code(r) == 1007, "invalid UTF-8 text -> close 1007")
    s.close()

    s, r, *_ = opened()
    s.sendall(frame(1, b"x" * 70000))
    ok(close_code(r) == 1009, "message over the limit -> close 1009")
    s.close()

    s, r, *_ = opened()
    s.sendall(frame(1, b'{"type":', fin=False) + frame(9, b"mid") + frame(0, b'"ping","requestId":', fin=False)
              + frame(0, b'"r7"}'))
    got = {}
    for _ in range(2):
        op, p = r.frame()
        got[op] = p
    ok(got.get(10) == b"mid", "ping between fragments answered with the same payload")
    ok(1 in got and json.loads(got[1]) == {"type": "pong", "requestId": "r7"}, "fragmented message reassembled")
    s.sendall(frame(9, b"payload-123"))
    op, p = r.frame()
    ok(op == 10 and p == b"payload-123", "ping payload echoed in the pong")
    s.sendall(frame(8, struct.pack("!H", 1000) + b"bye"))
    op, p = r.frame()
    ok(op == 8 and struct.unpack("!H", p[:2])[0] == 1000, "close handshake answered")
    s.close()

    # the rest of RFC 6455's refusals, each on its own connection
    refusals = [
        (bytes([0xC1, 0x80]) + b"\0\0\0\0", 1002, "a reserved bit set (no extension agreed)"),
        (frame(3, b"x"), 1002, "an unknown opcode"),
        (frame(0, b"x"), 1002, "a continuation with no message begun"),
        (frame(1, b"{", fin=False) + frame(1, b"}"), 1002, "a new message inside a fragmented one"),
        (frame(9, b"p" * 126), 1002, "a control frame over 125 bytes"),
        (frame(9, b"p", fin=False), 1002, "a fragmented control frame"),
        (frame(8, b"\x03"), 1002, "a close frame with a one-byte body"),
        (frame(8, struct.pack("!H", 1005)), 1002, "close code 1005, which must not be sent"),
        (frame(8, struct.pack("!H", 1000) + b"\xff"), 1007, "a close reason that is not UTF-8"),
        (frame(2, b"\x01\x02"), 1003, "a binary message"),
        (frame(1, b'{"a":"\xe2\x82', fin=False) + frame(0, b'\xacx"}'), None, "UTF-8 split across fragments"),
    ]
    for raw, code, what in refusals:
        s, r, *_ = opened()
        s.sendall(raw)
        if code is None:  # valid: the message is parsed (and refused as JSON, connection kept)
            op, p = r.frame()
            ok(op == 1 and json.loads(p)["type"] == "error", f"{what}: accepted, answered")
        else:
            ok(close_code(r) == code, f"{what} -> close {code}")
        s.close()

    # a frame cut into single bytes, and many messages in one segment
    s, r, *_ = opened()
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    for b in frame(1, b'{"type":"ping","timestamp":41}'):
        s.send(bytes([b]))
        time.sleep(0.002)
    op, p = r.frame()
    ok(op == 1 and json.loads(p) == {"type": "pong", "timestamp": 41}, "a frame arriving byte by byte is parsed")
    s.sendall(b"".join(frame(1, json.dumps({"type": "ping", "timestamp": i}).encode()) for i in range(20)))
    got = [json.loads(r.frame()[1])["timestamp"] for _ in range(20)]
    ok(got == list(range(20)), "20 messages in one segment: 20 answers, in order")
    big = json.dumps({"type": "ping", "timestamp": 7, "pad": "x" * 60000}).encode()
    s.sendall(frame(1, big))
    op, p = r.frame()
    ok(op == 1 and json.loads(p) == {"type": "pong", "timestamp": 7}, "a 60 kB message (16-bit length form, many segments) is parsed")
    s.close()

    s, r, *_ = opened()
    proc.terminate()
    ok(close_code(r) == 1001, "SIGTERM closes clients with 1001")
    s.close()
    ok(proc.wait(timeout=10) == 0, "exits 0 after SIGTERM")
finally:
    if proc.poll() is None:
        proc.kill()
        proc.wait()
print(f"1..{n}")
sys.exit(1 if failed else 0)
