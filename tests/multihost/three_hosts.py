#!/usr/bin/python3
"""three_hosts.sh's side in the database's namespace: starts each host's servers
(tests/lib/netns_host.sh) and clients (agent.py) in its namespace, publishes from SQL,
runs the faults and checks what every client got against realtime_events_log.

Timeline (fractions of MH_DURATION seconds of load):
  all along  SQL publishes (1-3 events a transaction) and POST publishes on every host;
             on every host SSE, long-poll, WebSocket (direct to the sidecar and through
             lighttpd) clients that resume as real ones do
  35%        kill -9 of host 1's sidecar
  50%        host 1's sidecar starts again on the same port (as its supervisor would)
  60%        kill -9 of host 2's relay (when the hosts run pgcast-relay): its processes
             LISTEN on their own
  75%        host 2's relay starts again: its processes move back to it
Then publishing stops and every client must reach each channel's last seq.

MH_HOSTSPEC: one host a line, "NAMESPACE|DB_ADDRESS|DATABASE_URL"."""
import asyncio
import glob
import json
import os
import random
import subprocess
import sys
import time

sys.path.insert(0, os.path.join(os.environ["PGCAST_ROOT"], "tests", "lib"))
import resume_clients as rc  # noqa: E402

ROOT = os.environ["PGCAST_ROOT"]
PGPORT = os.environ["PGPORT"]
DURATION = float(os.environ.get("MH_DURATION", 16))
PER_KIND = int(os.environ.get("MH_PER_KIND", 1))
SQL_INTERVAL = float(os.environ.get("MH_SQL_INTERVAL", 0.1))
POST_INTERVAL = float(os.environ.get("MH_POST_INTERVAL", 0.25))
TENANT = "t1"
t = rc.Tap("multihost")
t0 = time.time()


def note(text):
    t.note(f"{time.time() - t0:6.1f} s  {text}")


class Host:
    def __init__(self, i, spec):
        self.i = i
        self.name = f"host{i}"
        self.ns, self.db_addr, self.dburl = spec.split("|")
        self.ctl = self.agent = None
        self.url = self.ws_port = self.web_dir = None
        self.relay = False

    async def start(self):
        self.ctl = await asyncio.create_subprocess_exec(
            "ip", "netns", "exec", self.ns, "bash", os.path.join(ROOT, "tests/lib/netns_host.sh"), self.name,
            self.dburl, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
            stderr=open(os.path.join(os.environ["PGCAST_TEST_WORK"], f"mh-{self.ns}.err"), "w"))
        line = (await asyncio.wait_for(self.ctl.stdout.readline(), 90)).decode().split()
        if not line or line[0] != "ready":
            raise RuntimeError(f"{self.name}: servers did not start: {line}")
        _, self.url, self.ws_port, self.web_dir, relay = line
        self.relay = relay == "yes"

    async def command(self, cmd, timeout=60):
        self.ctl.stdin.write((cmd + "\n").encode())
        await self.ctl.stdin.drain()
        return (await asyncio.wait_for(self.ctl.stdout.readline(), timeout)).decode().split()

    async def start_agent(self, channels, since):
        conf = {"name": self.name, "base": self.url, "ws_port": int(self.ws_port), "channels": channels,
                "since": since, "per_kind": PER_KIND, "post_interval": POST_INTERVAL}
        self.agent = await asyncio.create_subprocess_exec(
            "ip", "netns", "exec", self.ns, "/usr/bin/python3", os.path.join(ROOT, "tests/multihost/agent.py"),
            json.dumps(conf), stdin=subprocess.PIPE, stdout=subprocess.PIPE,
            stderr=open(os.path.join(os.environ["PGCAST_TEST_WORK"], f"mh-{self.ns}-agent.err"), "w"),
            limit=1 << 26)
        if json.loads(await asyncio.wait_for(self.agent.stdout.readline(), 60)) != "ready":
            raise RuntimeError(f"{self.name}: clients did not start")

    async def ask(self, obj, timeout):
        self.agent.stdin.write((json.dumps(obj) + "\n").encode())
        await self.agent.stdin.drain()
        line = await asyncio.wait_for(self.agent.stdout.readline(), timeout)
        if not line:
            raise RuntimeError(f"{self.name}: the clients' process ended")
        return json.loads(line)

    async def stop(self):
        for p, quit_ in ((self.agent, None), (self.ctl, b"quit\n")):
            if p is None or p.returncode is not None:
                continue
            try:
                if quit_:
                    p.stdin.write(quit_)
                    await p.stdin.drain()
                p.stdin.close()
                await asyncio.wait_for(p.wait(), 30)
            except (Exception, asyncio.TimeoutError):
                p.kill()
                await p.wait()


def hub_modes():
    """Connections of the test's database by pgcast role: pgcast-relay (a host's one
    LISTEN), pgcast-hub (a process LISTENing on its own), pgcast-hub-relayed."""
    out = rc.psql("SELECT application_name, count(*) FROM pg_stat_activity WHERE datname = current_database() "
                  "AND application_name LIKE 'pgcast-%' GROUP BY 1")
    modes = {"pgcast-relay": 0, "pgcast-hub": 0, "pgcast-hub-relayed": 0}
    for line in out.splitlines():
        k, _, v = line.partition("|")
        modes[k] = int(v)
    return modes


async def wait_modes(pred, timeout):
    end = time.time() + timeout
    while True:
        m = hub_modes()
        if pred(m) or time.time() > end:
            return pred(m), m
        await asyncio.sleep(0.2)


def db_connections(addr):
    """Connections established to PostgreSQL through one host's veth address."""
    out = subprocess.run(["ss", "-Htn", "state", "established", "src", addr, "sport", "=", f":{PGPORT}"],
                         capture_output=True, text=True).stdout
    return len([x for x in out.splitlines() if x.strip()])


async def sql_publisher(chans, stop, stats):
    while not stop.is_set():
        try:
            await rc.apsql(rc.publish_sql(TENANT, random.choice(chans), random.randint(1, 3)))
            stats["txns"] += 1
        except RuntimeError:
            stats["failed"] += 1
        await asyncio.sleep(SQL_INTERVAL * random.uniform(0.5, 1.5))


async def main():
    hosts = [Host(i, s) for i, s in enumerate(os.environ["MH_HOSTSPEC"].split("\n")) if s]
    try:
        await run(hosts)
    finally:
        await asyncio.gather(*(h.stop() for h in hosts), return_exceptions=True)


async def run(hosts):
    try:
        await asyncio.gather(*(h.start() for h in hosts))
    except (RuntimeError, asyncio.TimeoutError) as e:
        t.ok(False, f"{len(hosts)} hosts start lighttpd, both handlers and the sidecar in their namespaces", e)
        for h in hosts:
            err = os.path.join(os.environ["PGCAST_TEST_WORK"], f"mh-{h.ns}.err")
            t.note(open(err).read()[-3000:] if os.path.exists(err) else "")
        return
    t.ok(True, f"{len(hosts)} hosts (network namespaces, own loopback) run lighttpd, both handlers and a sidecar",
         "\n".join(f"{h.name}: {h.ns} {h.url} ws {h.ws_port}" for h in hosts))
    chans = [rc.random_name("mh:a"), rc.random_name("mh:b"), rc.random_name("project:c")]
    since = {c: 0 for c in chans}
    await asyncio.gather(*(h.start_agent(chans, since) for h in hosts))
    note(f"{len(hosts)} x {4 * PER_KIND} clients run (sse, poll, ws, ws through lighttpd); channels {chans}")

    stop = asyncio.Event()
    stats = {"txns": 0, "failed": 0}
    pubs = [asyncio.ensure_future(sql_publisher(chans, stop, stats)) for _ in range(2)]

    async def at(frac):
        await asyncio.sleep(max(0.0, t0_load + DURATION * frac - time.time()))

    t0_load = time.time()
    await at(0.2)
    conns = {h.name: db_connections(h.db_addr) for h in hosts}
    note(f"connections to PostgreSQL through each host's veth: {conns}")
    t.ok(all(n >= 3 for n in conns.values()),
         "every host's handlers and sidecar reach PostgreSQL over the host's own veth (3+ connections each)", conns)
    relayed = all(h.relay for h in hosts)
    n = len(hosts)
    if relayed:
        good, m = await wait_modes(lambda m: m["pgcast-relay"] == n and m["pgcast-hub"] == 0, 10)
        t.ok(good, f"one LISTEN connection per host: {n} relays, no process listening on its own", m)
    victim = hosts[1 % len(hosts)]
    await at(0.35)
    before = await victim.command("pids")
    killed = await victim.command("kill-sidecar")
    note(f"{victim.name}: kill -9 of its sidecar ({killed})")
    await at(0.5)
    started = await victim.command("start-sidecar")
    note(f"{victim.name}: sidecar started again ({started})")
    t.ok(started[:1] == ["started"] and started[1:] != before[1:2],
         f"{victim.name}: a new sidecar runs on the same port after the kill -9", f"{before} -> {started}")
    rvictim = hosts[2 % len(hosts)]
    if relayed:
        await at(0.6)
        killed = await rvictim.command("kill-relay")
        note(f"{rvictim.name}: kill -9 of its relay ({killed})")
        good, m = await wait_modes(lambda m: m["pgcast-relay"] == n - 1 and m["pgcast-hub"] >= 3, 10)
        note(f"{rvictim.name}'s processes LISTEN on their own: {m}")
        t.ok(good, f"{rvictim.name}: with its relay killed, its 3 processes LISTEN on their own", m)
        await at(0.75)
        started = await rvictim.command("start-relay")
        note(f"{rvictim.name}: relay started again ({started})")
        good, m = await wait_modes(lambda m: m["pgcast-relay"] == n and m["pgcast-hub"] == 0, 15)
        t.ok(started[:1] == ["started"] and good,
             f"{rvictim.name}: its relay started again, every host is back to one LISTEN connection", (started, m))
    else:
        t.note("the hosts run no pgcast-relay (MH_RELAY=0 or no pgcast-relay in $PGCAST_BIN): no relay fault")
    await at(1.0)
    stop.set()
    await asyncio.gather(*pubs)
    post = await asyncio.gather(*(h.ask({"cmd": "stop_publishing"}, 60) for h in hosts))
    npost = {h.name: sum(len(v) for v in p["published"].values()) for h, p in zip(hosts, post)}
    note(f"published: SQL {stats}, POST {npost} (failed {[p['failed'] for p in post]})")
    t.ok(all(n > 0 for n in npost.values()) and stats["txns"] > 0,
         "events were published from SQL and by POST on every host",
         f"SQL {stats}, POST {npost}, failures {[p['why'] for p in post]}")

    final = rc.last_seqs(TENANT, chans)
    note(f"committed: {final}")
    results = await asyncio.gather(*(h.ask({"cmd": "finish", "final": final, "stall": 30, "cap": 150}, 200)
                                     for h in hosts))
    logs = {c: rc.log_seqs(TENANT, c) for c in chans}
    for h, res in zip(hosts, results):
        for kind in ("sse", "poll", "ws"):
            group = [c for c in res["clients"] if c["kind"] == kind]
            problems = []
            for c in group:
                for ch in c["channels"]:
                    expected = [s for s in logs[ch] if s > c["start"][ch]]
                    gaps = [(f, to) for gc, f, to in c["gaps"] if gc == ch]
                    problems += [f"{c['name']} {ch}: {p}" for p in rc.compare(c["got"][ch], expected, gaps, 0)]
            late = [c["summary"] + " | " + " / ".join(c["log"]) for c in group if not c["reached"]]
            t.ok(not problems and not late,
                 f"{h.name}: {len(group)} {kind} client(s) got exactly the committed events, in order",
                 "\n".join(problems[:8] + late[:4]))
    # what each host published reached the clients of every host (part of the above;
    # said on its own so a failure names the path)
    missing = []
    for h, p in zip(hosts, post):
        for res_h, res in zip(hosts, results):
            for c in res["clients"]:
                for ch, seqs in p["published"].items():
                    lost = set(seqs) - set(c["got"][ch])
                    if lost:
                        missing.append(f"{h.name} -> {c['name']} {ch}: {len(lost)} missing")
    t.ok(not missing, "what was POSTed on each host reached the clients on every host", "\n".join(missing[:8]))
    # publish -> client latency (published_at to arrival; one clock: the hosts share the kernel)
    at_ = {}
    for line in rc.psql("SELECT channel, seq, extract(epoch FROM published_at) FROM realtime.realtime_events_log "
                        "WHERE tenant_id = '" + TENANT + "' AND channel IN (" + ",".join(f"'{c}'" for c in chans) +
                        ")").splitlines():
        ch, seq, ts = line.split("|")
        at_[(ch, int(seq))] = float(ts)
    groups = [("sse", "all hosts", lambda h: True), ("poll", "all hosts", lambda h: True),
              ("ws", f"hosts but {victim.name}", lambda h: h is not victim),
              ("ws", f"{victim.name}, its sidecar killed for a while", lambda h: h is victim)]
    for kind, label, which in groups:
        lat = sorted((a - at_[(ch, seq)]) * 1000 for h, res in zip(hosts, results) if which(h)
                     for c in res["clients"] if c["kind"] == kind
                     for a, ch, seq in c["arrivals"] if (ch, seq) in at_)
        if lat:
            q = lambda f: lat[min(len(lat) - 1, int(len(lat) * f))]
            t.note(f"latency publish->client, {kind}, {label}: p50 {q(0.5):.1f} ms, p99 {q(0.99):.1f} ms, "
                   f"max {lat[-1]:.1f} ms over {len(lat)} deliveries")
    vres = results[hosts.index(victim)]
    ws = [c for c in vres["clients"] if c["kind"] == "ws"]
    t.ok(ws and all(c["connects"] > 1 for c in ws),
         f"{victim.name}: its WebSocket clients reconnected to the same host after the sidecar's kill -9",
         [(c["name"], c["connects"]) for c in ws])
    logs_files = [f for h in hosts for f in glob.glob(os.path.join(h.web_dir, "log", "*"))]
    hits = rc.sanitizer_reports(logs_files)
    t.ok(not hits, "no sanitizer report in any host's server logs", "\n".join(hits[:5]) + "\n" +
         rc.sanitizer_excerpt(logs_files))


asyncio.run(main())
t.exit()
