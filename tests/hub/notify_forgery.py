#!/usr/bin/python3
"""NOTIFY carries nothing a role without grants can use: notify_forgery.py BASE_URL FORGER.

Run by tests/hub/notify_forgery.sh once lighttpd (SSE handler) and the sidecar behind it
run. FORGER is a role with LOGIN and no grant at all (it can connect: PUBLIC has CONNECT
on the test database). Through the real servers:

- it LISTENs on realtime_events and realtime_presence while an event is published and a
  member joins: the notifications name no tenant, channel, type, payload or member;
- it sends forged events (the old header+body format, with an SSE id line and duplicate
  JSON keys in the body; a wake-up with the channel's real tag, learnt by listening, and
  a seq that is not committed yet; garbage) and forged presence (an old-format join, the
  real presence tag with a replayed and with made-up ids): an SSE stream and a WebSocket
  subscribed to the targeted channel receive none of it;
- then the genuine events, including the one whose seq the forgery claimed, arrive on
  both exactly once, in order, equal to realtime_events_log; the genuine join came once.
"""
import asyncio, json, os, re, subprocess, sys, time, urllib.parse

import websockets

sys.path.insert(0, os.path.join(os.environ["PGCAST_ROOT"], "scripts"))
sys.path.insert(0, os.path.join(os.environ["PGCAST_ROOT"], "tests/lib"))
import tap  # noqa: E402
from tap import ok  # noqa: E402
from jwt import mint  # noqa: E402

BASE, FORGER = sys.argv[1], sys.argv[2]
HOST, PORT = urllib.parse.urlparse(BASE).hostname, urllib.parse.urlparse(BASE).port
SECRET = "pgcast-test-secret"
TENANT = f"tenant-hidden-{os.getpid()}"
CH = "project:forge-target"


def psql(sql, user=None):
    cmd = ["psql", "-qXAt", "-v", "ON_ERROR_STOP=1"] + (["-U", user] if user else []) + ["-c", sql]
    return subprocess.run(cmd, check=True, capture_output=True, text=True).stdout.strip()


def token(sub, name):
    return mint(SECRET, {"sub": sub, "name": name, "tenant": TENANT, "exp": "+600", "channels": ["project:*"]})


def dq(text):
    """A dollar-quoted SQL literal."""
    assert "$forge$" not in text
    return f"$forge${text}$forge$"


class Listener:
    """psql as FORGER, LISTENing; notifications are printed after each statement it runs."""

    def __init__(self):
        self.p = subprocess.Popen(["psql", "-qXAt", "-U", FORGER], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                  stderr=subprocess.STDOUT, text=True)
        self.out = ""
        self.marks = 0
        self.send("LISTEN realtime_events; LISTEN realtime_presence;")

    def send(self, sql):
        """Runs sql, then two marks: what was received before the first is printed before
        the second (psql prints notifications after the result of a statement)."""
        self.marks += 1
        mark = f"mark-{self.marks}-"
        self.p.stdin.write(f"{sql}\nSELECT '{mark}a';\nSELECT '{mark}b';\n")
        self.p.stdin.flush()
        while True:
            line = self.p.stdout.readline()
            if not line or line.strip() == mark + "b":
                break
            if line.strip() != mark + "a":
                self.out += line

    def notifications(self):
        """(channel, payload) in order. Payloads may span lines (the old format)."""
        return re.findall(r'Asynchronous notification "([a-z_]+)" with payload "(.*?)" received from server process',
                          self.out, re.S)

    def close(self):
        self.p.stdin.close()
        self.p.wait(timeout=30)


class SSE:
    """An SSE stream; keeps every block as sent (id lines and data lines)."""

    async def open(self, query):
        self.r, self.w = await asyncio.open_connection(HOST, PORT)
        self.w.write(f"GET /realtime/sse?{query} HTTP/1.0\r\nHost: {HOST}:{PORT}\r\n"
                     "Accept: text/event-stream\r\n\r\n".encode())
        await self.w.drain()
        self.buf = b""
        while b"\r\n\r\n" not in self.buf:
            chunk = await asyncio.wait_for(self.r.read(65536), 10)
            if not chunk:
                break
            self.buf += chunk
        head, _, self.buf = self.buf.partition(b"\r\n\r\n")
        self.status = int(head.split()[1])
        self.ids, self.data, self.raw = [], [], []

    async def pump(self, secs):
        end = time.time() + secs
        while time.time() < end:
            try:
                chunk = await asyncio.wait_for(self.r.read(65536), max(0.05, end - time.time()))
            except asyncio.TimeoutError:
                break
            if not chunk:
                break
            self.buf += chunk
            while b"\n\n" in self.buf:
                block, _, self.buf = self.buf.partition(b"\n\n")
                text = block.decode()
                self.raw.append(text)
                for line in text.split("\n"):
                    if line.startswith("id: "):
                        self.ids.append(line[4:])
                    elif line.startswith("data: "):
                        try:
                            self.data.append(json.loads(line[6:]))
                        except ValueError:
                            self.data.append({"type": "(not JSON)", "raw": line[6:]})

    def messages(self):
        return [d for d in self.data if d.get("type") != "heartbeat"]

    def seqs(self):
        return [d["seq"] for d in self.messages() if "seq" in d]


class WS:
    async def open(self, sub, name):
        self.ws = await websockets.connect(f"ws://{HOST}:{PORT}/realtime/ws?token={token(sub, name)}", max_size=None)
        self.hello = json.loads(await self.ws.recv())
        self.msgs = []

    async def send(self, obj):
        await self.ws.send(json.dumps(obj))

    async def pump(self, secs):
        end = time.time() + secs
        while time.time() < end:
            try:
                m = await asyncio.wait_for(self.ws.recv(), max(0.05, end - time.time()))
            except asyncio.TimeoutError:
                break
            try:
                self.msgs.append(json.loads(m))
            except ValueError:
                self.msgs.append({"type": "(not JSON)", "raw": m})

    async def until(self, pred, secs=15):
        end = time.time() + secs
        while time.time() < end:
            if any(pred(m) for m in self.msgs):
                return True
            await self.pump(0.2)
        return any(pred(m) for m in self.msgs)

    def messages(self):
        return [m for m in self.msgs if m.get("type") not in ("heartbeat", "pong")]


async def pump_all(secs, *clients):
    await asyncio.gather(*(c.pump(secs) for c in clients))


async def wait_sse(sse, pred, secs=15):
    end = time.time() + secs
    while time.time() < end and not pred():
        await sse.pump(0.2)
    return pred()


def log_rows():
    rows = psql(f"SELECT json_agg(json_build_object('seq', seq, 'type', event_type, 'payload', event_data) ORDER BY seq) "
                f"FROM realtime.realtime_events_log WHERE tenant_id = '{TENANT}' AND channel = '{CH}'")
    return json.loads(rows) if rows else []


def publish(etype, payload):
    return int(psql(f"SELECT realtime.publish('{TENANT}', '{CH}', '{etype}', {dq(json.dumps(payload))}::jsonb)"))


async def main():
    sse = SSE()
    await sse.open(f"channel={CH}&token={token('reader', 'Reader')}")
    ok(sse.status == 200, "an SSE stream is open on the targeted channel", sse.status)
    a = WS()
    await a.open("watcher", "Watcher")
    await a.send({"type": "subscribe", "channel": CH})
    ok(await a.until(lambda m: m.get("type") == "subscribed"), "a WebSocket is subscribed to it", a.msgs)
    await sse.pump(0.5)

    # --- what a role without grants reads by listening
    lis = Listener()
    seq1 = publish("genuine.one", {"secret": "payload-one-XYZ"})
    b = WS()
    await b.open("u-hidden-bob", "Bob-hidden-name")
    await b.send({"type": "subscribe", "channel": CH})
    await b.until(lambda m: m.get("type") == "subscribed")
    await b.send({"type": "presence.join", "channel": CH, "payload": {"note": "presence-secret-QQQ"}})
    joined = await a.until(lambda m: m.get("type") == "presence.join")
    ok(seq1 == 1 and joined, "a genuine event is published and a member joins", a.msgs)
    await asyncio.sleep(0.5)
    lis.send("SELECT 1;")
    notes = lis.notifications()
    ev = [p for c, p in notes if c == "realtime_events"]
    pr = [p for c, p in notes if c == "realtime_presence"]
    ok(len(ev) >= 1 and len(pr) >= 1, "the listener without grants got the wake-ups", lis.out)
    leaked = [s for s in (TENANT, CH, "forge-target", "genuine.one", "payload-one-XYZ", "Bob-hidden-name",
                          "presence-secret-QQQ", "u-hidden-bob", "presence.join") if s in lis.out]
    ok(not leaked, "they name no tenant, channel, event type, payload or member", leaked)
    ok(all(re.fullmatch(r"[0-9a-f]{32} [0-9]+", p) for _, p in notes),
       "each is an opaque tag and a number", notes)
    tag_ev = ev[-1].split()[0] if ev and re.fullmatch(r"[0-9a-f]{32} [0-9]+", ev[-1]) else "0" * 32
    pres = pr[-1].split() if pr and re.fullmatch(r"[0-9a-f]{32} [0-9]+", pr[-1]) else ["1" * 32, "1"]
    tag_pr, pres_id = pres[0], int(pres[1])

    ok(await wait_sse(sse, lambda: len([d for d in sse.messages() if d.get("type") == "presence.join"]) >= 1
                      and 1 in [d.get("seq") for d in sse.messages()]),
       "the SSE stream got the genuine event and the join", sse.messages())

    # --- forgeries, all as the role without grants
    now_ms = int(time.time() * 1000)
    xss = '<img src=x onerror=alert(1)>'
    forged_events = [
        # the old format: header, newline, body; the body spliced raw used to reach clients
        json.dumps({"t": TENANT, "c": CH, "s": 2, "ms": now_ms, "e": "forged.type"}) + "\n" +
        '{"seq":"' + xss + '","forged":true}',
        json.dumps({"t": TENANT, "c": CH, "s": 3, "ms": now_ms, "e": "forged.inject"}) + "\n" +
        '{"x":1}\n\nid: ' + CH + '=999\ndata: {"type":"forged.sse","seq":999}',
        # duplicate keys
        '{"t":"' + TENANT + '","c":"' + CH + '","s":2,"s":4,"ms":1,"e":"forged.dup","e":"x"}\n{"a":1,"a":"' + xss + '"}',
        # the channel's real tag (learnt by listening) with seqs not committed yet
        f"{tag_ev} 2", f"{tag_ev} 3", f"{tag_ev} 999999", f"{tag_ev} 9223372036854775807",
        f"{tag_ev} 2 extra", f"{tag_ev.upper()} 2", f"{tag_ev}  2", f"{tag_ev} -1", f"{tag_ev} 0",
        f"{tag_ev} 99999999999999999999",
        # garbage
        "", "zzz", "'" * 200, "x" * 7000, '{"t":' * 500, "\u00e9\u00e8 2",
    ]
    forged_presence = [
        json.dumps({"t": TENANT, "c": CH, "m": {"type": "presence.join", "channel": CH, "payload": {
            "userId": "mallory", "name": xss, "connectionId": "forged-conn", "joinedAt": 1, "lastSeen": 1}}}),
        json.dumps({"t": TENANT, "c": CH, "m": {"type": "presence.leave", "channel": CH, "payload": {
            "userId": "u-hidden-bob", "connectionId": b.hello.get("connectionId", "x")}}}),
        f"{tag_pr} {pres_id}",                      # a replay of the genuine join
        f"{tag_ev} {pres_id}",                      # the same id under another tag
    ] + [f"{tag_pr} {i}" for i in range(1, pres_id + 20)] + ["", "garbage", f"{tag_pr} x"]
    sql = ";".join([f"SELECT pg_notify('realtime_events', {dq(p)})" for p in forged_events] +
                   [f"SELECT pg_notify('realtime_presence', {dq(p)})" for p in forged_presence])
    try:
        psql(sql, user=FORGER)
        sent = True
    except subprocess.CalledProcessError as e:
        sent = False
        print("#", e.stderr)
    ok(sent, f"the role without grants sent {len(forged_events)} forged event and "
             f"{len(forged_presence)} forged presence notifications")

    before_sse, before_ws = len(sse.messages()), len(a.messages())
    await pump_all(3, sse, a)
    new_sse, new_ws = sse.messages()[before_sse:], a.messages()[before_ws:]
    ok(not new_sse, "the SSE stream received nothing forged", new_sse)
    ok(not new_ws, "the WebSocket received nothing forged", new_ws)

    # --- the genuine events that follow, the one at the claimed seq included
    seq2 = publish("genuine.two", {"n": 2, "text": "second"})
    seq3 = publish("genuine.three", {"n": 3})
    ok(seq2 == 2 and seq3 == 3, "the next genuine events are seq 2 and 3", (seq2, seq3))
    got_ws = await a.until(lambda m: m.get("seq") == 3 and m.get("type") == "genuine.three")
    got_sse = await wait_sse(sse, lambda: any(d.get("seq") == 3 for d in sse.messages()))
    await pump_all(1.5, sse, a)
    want = [{"type": r["type"], "channel": CH, "seq": r["seq"], "payload": r["payload"]} for r in log_rows()]

    def events(msgs):
        return [{k: m[k] for k in ("type", "channel", "seq", "payload") if k in m} for m in msgs
                if m.get("type") not in ("subscribed", "presence.join", "presence.leave", "presence.update")]

    ok(got_sse and events(sse.messages()) == want,
       "SSE: exactly the events of realtime_events_log, each once, in order (seq 2 too)",
       {"got": events(sse.messages()), "log": want})
    ok(got_ws and events(a.messages()) == want,
       "WebSocket: exactly the events of realtime_events_log, each once, in order (seq 2 too)",
       {"got": events(a.messages()), "log": want})
    ids = [int(i.split("=")[1]) if re.fullmatch(re.escape(CH) + r"=[0-9]+", i) else -1 for i in sse.ids]
    ok(ids and all(0 <= x <= 3 for x in ids) and ids == sorted(ids) and {1, 2, 3} <= set(ids),
       "SSE id lines are the genuine cursors only (nothing injected, no seq 999)", sse.ids)
    ok(all(xss not in r and "forged" not in r and "mallory" not in r for r in sse.raw),
       "no forged bytes anywhere in the SSE stream", [r for r in sse.raw if "forged" in r or xss in r])

    joins_ws = [m for m in a.messages() if m.get("type") in ("presence.join", "presence.leave")]
    joins_sse = [d for d in sse.messages() if d.get("type") in ("presence.join", "presence.leave")]
    ok(len(joins_ws) == 1 and joins_ws[0]["payload"].get("userId") == "u-hidden-bob"
       and joins_ws[0]["payload"].get("note") == "presence-secret-QQQ",
       "WebSocket: the genuine join once, no forged join or leave, no replay", joins_ws)
    ok(len(joins_sse) == 1 and joins_sse[0]["payload"].get("userId") == "u-hidden-bob",
       "SSE: the genuine join once, no forged join or leave, no replay", joins_sse)

    # a new secret (realtime.rotate_secret, as the owner): the processes tag again
    psql("SELECT realtime.rotate_secret()")
    await asyncio.sleep(1)
    seq4 = publish("genuine.four", {"n": 4})
    got = await a.until(lambda m: m.get("seq") == 4) and await wait_sse(sse, lambda: 4 in sse.seqs())
    ok(seq4 == 4 and got and [m.get("seq") for m in a.messages() if "seq" in m][-2:] == [3, 4],
       "after the secret is rotated, the next event arrives on both, once", a.messages()[-3:])

    # the genuine presence still flows after all that
    await b.send({"type": "presence.leave", "channel": CH})
    ok(await a.until(lambda m: m.get("type") == "presence.leave"), "a genuine leave still arrives", a.msgs[-5:])
    lis.close()
    await a.ws.close()
    await b.ws.close()
    sse.w.close()


asyncio.run(main())
tap.T.exit()
