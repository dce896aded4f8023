#!/usr/bin/python3
"""Client messages through Python's websockets library (a client we did not write):
pong with the same timestamp, an error with its code for each bad input, connection kept."""
import asyncio, json, os, subprocess, sys

import websockets

ROOT = os.environ.get("PGCAST_ROOT", os.getcwd())
BIN = os.environ.get("PGCAST_BIN", os.path.join(ROOT, "build/asan/bin"))
sys.path.insert(0, os.path.join(ROOT, "scripts"))
from jwt import mint  # noqa: E402

SECRET = "ws-test-secret"
n = failed = 0


def ok(cond, what):
    global n, failed
    n += 1
    print(("ok" if cond else "not ok"), n, "-", what, flush=True)
    failed += 0 if cond else 1


async def main(port):
    token = mint(SECRET, {"sub": "u1", "tenant": "t1", "channels": ["*"], "exp": "+600"})
    url = f"ws://127.0.0.1:{port}/ws"
    for _ in range(400):  # until the sidecar listens (20 s: a sanitizer build on a busy machine)
        try:
            # The header argument was renamed in websockets 14; Debian ships an older one.
            hdr = {"Authorization": f"Bearer {token}"}
            kw = {"additional_headers": hdr} if int(websockets.__version__.split(".")[0]) >= 14 \
                else {"extra_headers": hdr}
            ws = await websockets.connect(url, **kw)
            break
        except OSError:
            await asyncio.sleep(0.05)
    try:
        ok(json.loads(await ws.recv())["type"] == "connected", "connected through websockets")
        await ws.send(json.dumps({"type": "ping", "timestamp": 1234567, "requestId": "p"}))
        ok(json.loads(await ws.recv()) == {"type": "pong", "timestamp": 1234567, "requestId": "p"},
           "pong echoes timestamp and requestId")
        cases = [
            ("{not json", "invalid_json", None),
            ('[1,2]', "invalid_json", None),
            ('{"type":"dance","requestId":"r1"}', "unknown_type", "r1"),
            ('{"channel":"project:a"}', "missing_field", None),
            ('{"type":"subscribe","requestId":2}', "missing_field", 2),
            ('{"type":"subscribe","channel":"no spaces allowed"}', "bad_channel", None),
            ('{"type":"publish","channel":"project:a","payload":{}}', "missing_field", None),
        ]
        for text, code, rid in cases:
            await ws.send(text)
            m = json.loads(await ws.recv())
            ok(m.get("type") == "error" and m.get("code") == code and m.get("requestId") == rid
               and isinstance(m.get("message"), str), f"{text} -> error {code}")
        await ws.send(json.dumps({"type": "ping"}))
        ok(json.loads(await ws.recv())["type"] == "pong", "connection kept after the errors")
    finally:
        await ws.close()


port = int(subprocess.check_output([os.path.join(ROOT, "scripts/free-port.sh")]).strip())
env = dict(os.environ, PGCAST_JWT_SECRET=SECRET)
proc = subprocess.Popen([os.path.join(BIN, "pgcast-ws"), "--listen", f"127.0.0.1:{port}"], env=env,
                        stderr=subprocess.DEVNULL)
try:
    asyncio.run(asyncio.wait_for(main(port), 60))
except Exception as e:  # a hang or a crash is a failure, not a traceback without TAP
    ok(False, f"flow finished ({e!r})")
finally:
    proc.terminate()
    try:
        ok(proc.wait(timeout=10) == 0, "sidecar exits 0 on SIGTERM")
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
        ok(False, "sidecar exits on SIGTERM")
print(f"1..{n}")
sys.exit(1 if failed else 0)
