#!/usr/bin/python3
"""Publish and presence while the database is down answer `unavailable` (the client may
retry), never `internal` (a request the database refused): also the first ones, which
run on pooled connections whose server has gone (the database stopped under them). Once
the database is back, publishing works again. The sidecar runs on a private cluster of
its own, stopped and started again (the shared one must not stop under other tests)."""
import asyncio, json, os, shlex, subprocess, sys, time

sys.path.insert(0, os.path.join(os.environ["PGCAST_ROOT"], "tests/lib"))
from wstest import BIN, Reader, connect, note, ok, start_sidecar, stop_sidecar, token  # noqa: E402
import wstest  # noqa: E402

ROOT = os.environ["PGCAST_ROOT"]
CLUSTER = os.path.join(os.environ.get("PGCAST_TEST_WORK", "/tmp"), f"ws-db-down-{os.getpid()}")
N = 6  # connections publishing at once: as many pooled connections as the workers open


def cluster(cmd):
    out = subprocess.run([os.path.join(ROOT, "scripts/pg-cluster.sh"), cmd, CLUSTER], check=True,
                         capture_output=True, text=True).stdout
    env = {}
    for line in out.splitlines():
        for word in shlex.split(line)[1:] if line.startswith("export ") else []:
            k, _, v = word.partition("=")
            env[k] = v
    return env


async def publish_all(readers, channel, tag):
    """Every connection publishes at the same moment; their replies."""
    for i, r in enumerate(readers):
        await r.ws.send(json.dumps({"type": "publish", "channel": channel, "event": "e", "payload": {},
                                    "requestId": f"{tag}{i}"}))
    return [await r.wait(lambda m, rid=f"{tag}{i}": m.get("requestId") == rid, 30) for i, r in enumerate(readers)]


async def main():
    env = cluster("start")
    url = f"host={env['PGHOST']} port={env['PGPORT']} user=postgres dbname=postgres"
    subprocess.run([os.path.join(BIN, "pgcast-migrate"), "--quiet"], check=True,
                   env=dict(os.environ, PGCAST_DATABASE_URL=url))
    proc, port = start_sidecar({"PGCAST_DATABASE_URL": url, "PGCAST_WS_DB_WORKERS": "4"})
    try:
        ch, room = f"project:down{os.getpid()}", f"room:down{os.getpid()}"
        readers = []
        for i in range(N):
            ws, _ = await connect(port, token(sub=f"u{i}"))
            readers.append(Reader(ws))
        a = readers[0]
        await a.ws.send(json.dumps({"type": "subscribe", "channel": room}))
        await a.wait(lambda m: m["type"] == "subscribed")
        got = await publish_all(readers, ch, "up")
        ok(all(m and m["type"] == "published" for m in got), "publishing works (the pool's connections are open)",
           got)

        t = time.time()
        cluster("stop")
        note(f"database stopped in {time.time() - t:.1f} s")
        got = await publish_all(readers, ch, "down")
        codes = [m and m.get("code") for m in got]
        ok(codes == ["unavailable"] * N, "the first publishes after the database stopped answer unavailable", got)
        got = await publish_all(readers, ch, "down2")
        codes = [m and m.get("code") for m in got]
        ok(codes == ["unavailable"] * N, "so do the next ones", got)
        await a.ws.send(json.dumps({"type": "presence.join", "channel": room, "requestId": "j"}))
        m = await a.wait(lambda m: m.get("requestId") == "j", 30)
        ok(m is not None and m.get("code") == "unavailable", "a presence join answers unavailable", m)
        await a.ws.send(json.dumps({"type": "ping", "requestId": "p"}))
        ok(await a.wait(lambda m: m["type"] == "pong", 5) is not None, "the connection stays usable")

        cluster("start")
        end = time.time() + 60
        k = 0
        while time.time() < end:
            k += 1
            await a.ws.send(json.dumps({"type": "publish", "channel": ch, "event": "e", "payload": {},
                                        "requestId": f"again{k}"}))
            m = await a.wait(lambda m, rid=f"again{k}": m.get("requestId") == rid, 30)
            if m and m["type"] == "published":
                break
            await asyncio.sleep(0.5)
        ok(m is not None and m["type"] == "published", "publishing works again once the database is back", m)
        for r in readers:
            await r.close()
        stop_sidecar(proc)
    finally:
        if proc.poll() is None:
            proc.kill()
        subprocess.run([os.path.join(ROOT, "scripts/pg-cluster.sh"), "stop", CLUSTER], capture_output=True)


asyncio.run(main())
print(f"1..{wstest.n}")
sys.exit(1 if wstest.failed else 0)
