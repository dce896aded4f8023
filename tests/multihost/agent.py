#!/usr/bin/python3
"""The clients of one host of the multi-host test, run inside that host's network
namespace (ip netns exec NS python3 agent.py CONFIG_JSON): resuming clients of every
transport (tests/lib/resume_clients.py) against the host's own lighttpd and sidecar, and
a publisher that POSTs {prefix}/publish to the same host.

CONFIG_JSON: {"name", "base" (lighttpd URL), "ws_port", "channels", "since" {ch: seq},
"per_kind" (clients of each kind), "post_interval" (s between POSTs; 0 = none)}.

Prints "ready" once the clients run, then obeys JSON commands on stdin, one a line, and
answers each with one JSON line on stdout:
  {"cmd": "stop_publishing"}  -> {"published": {ch: [seq, ...]}, "failed": N}
  {"cmd": "finish", "final": {ch: seq}, "stall": S, "cap": S}
      waits until every client reached `final` (resume_clients.wait_delivered), stops
      them -> {"arrived": bool, "clients": [{name, kind, channels, start, got, gaps,
      connects, summary}]}
"""
import asyncio
import json
import os
import random
import sys

sys.path.insert(0, os.path.join(os.environ["PGCAST_ROOT"], "tests", "lib"))
import resume_clients as rc  # noqa: E402

cfg = json.loads(sys.argv[1])
BASE = cfg["base"]
HOST, PORT, _ = rc._http_target(BASE)
TOK = rc.token(channels=("*",), publish=("*",), sub=f"mh-{cfg['name']}")
published = {c: [] for c in cfg["channels"]}
failed = {"n": 0, "why": []}


def log(text):
    print(f"[{cfg['name']}] {text}", file=sys.stderr, flush=True)


async def post_publish(channel, i):
    body = json.dumps({"channel": channel, "type": "post", "payload": {"host": cfg["name"], "i": i}}).encode()
    reader, writer = await rc._open(HOST, PORT)
    try:
        writer.write((f"POST /realtime/publish HTTP/1.1\r\nHost: {HOST}:{PORT}\r\nAuthorization: Bearer {TOK}\r\n"
                      f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\nConnection: close\r\n\r\n"
                      ).encode() + body)
        await writer.drain()
        status, headers = await rc._read_head(reader, 30)
        data = await asyncio.wait_for(reader.read(65536), 30)
        return status, data
    finally:
        writer.transport.abort()


async def publisher(stop):
    i = 0
    while not stop.is_set() and cfg["post_interval"] > 0:
        i += 1
        ch = random.choice(cfg["channels"])
        try:
            status, data = await post_publish(ch, i)
            if status == 201:
                published[ch].append(int(json.loads(data)["seq"]))
            else:
                failed["n"] += 1
                failed["why"].append(f"{status} {data[:100]!r}")
        except (OSError, asyncio.TimeoutError, asyncio.IncompleteReadError, ValueError, KeyError) as e:
            failed["n"] += 1  # whatever committed is in the log; the checks read the log
            failed["why"].append(repr(e))
        await asyncio.sleep(cfg["post_interval"] * random.uniform(0.5, 1.5))


def reply(obj):
    sys.stdout.write(json.dumps(obj) + "\n")
    sys.stdout.flush()


async def main():
    chans, since, n = cfg["channels"], cfg["since"], cfg["per_kind"]
    ws_direct = f"ws://127.0.0.1:{cfg['ws_port']}/ws"
    ws_proxied = BASE.replace("http://", "ws://") + "/realtime/ws"
    tok = rc.token(sub=f"mh-{cfg['name']}")
    name = cfg["name"]
    clients = []
    for i in range(n):
        clients.append(rc.SSEClient(BASE, tok, chans, since=since, name=f"{name}-sse{i}"))
        clients.append(rc.PollClient(BASE, tok, chans, since=since, wait=5, limit=random.choice([20, 100]),
                                     name=f"{name}-poll{i}"))
        clients.append(rc.WSClient(ws_direct, tok, chans, since=since, name=f"{name}-ws{i}"))
        clients.append(rc.WSClient(ws_proxied, tok, chans, since=since, name=f"{name}-wsproxied{i}"))
    for c in clients:
        c.start()
    stop = asyncio.Event()
    pub = asyncio.ensure_future(publisher(stop))
    loop = asyncio.get_running_loop()
    stdin = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(stdin), sys.stdin)
    reply("ready")
    while True:
        line = await stdin.readline()
        if not line:
            break
        cmd = json.loads(line)
        if cmd["cmd"] == "stop_publishing":
            stop.set()
            await pub
            reply({"published": published, "failed": failed["n"], "why": failed["why"][:5]})
        elif cmd["cmd"] == "finish":
            final = cmd["final"]
            arrived = await rc.wait_delivered(clients, final, stall=cmd.get("stall", 30), cap=cmd.get("cap", 120))
            for c in clients:
                await c.stop()
            reply({"arrived": arrived, "clients": [
                {"name": c.name, "kind": c.kind, "channels": c.channels, "start": c.start_pos, "got": c.got,
                 "gaps": c.gaps, "connects": c.connects, "reached": c.reached(final), "summary": c.summary(),
                 "log": c.log[-8:], "arrivals": c.arrivals} for c in clients]})
            break
    stop.set()


asyncio.run(main())
