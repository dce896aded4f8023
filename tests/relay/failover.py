#!/usr/bin/python3
"""failover.sh's client side.

Listening connections are told apart in pg_stat_activity by application_name: a hub
that LISTENs on its own connection is 'pgcast-hub', one whose wake-ups come through the
relay 'pgcast-hub-relayed' (it keeps its connection for log reads, without LISTEN), the
relay is 'pgcast-relay'."""
import asyncio, glob, os, select, signal, socket, subprocess, sys, time

sys.path.insert(0, os.path.join(os.environ["PGCAST_ROOT"], "tests", "lib"))
import resume_clients as rc  # noqa: E402

ROOT = os.environ["PGCAST_ROOT"]
BIN = os.environ.get("PGCAST_BIN", os.path.join(ROOT, "build/asan/bin"))
BASE, WEB = os.environ["LIGHTTPD_URL"], os.environ["WEB_DIR"]
WS_URL = f"ws://127.0.0.1:{os.environ['WS_PORT']}/ws"
SOCK = os.environ["RELAY_SOCKET"]
NHUBS = int(os.environ["HUB_PROCESSES"])
TENANT = "t1"
t = rc.Tap("relay")


def sessions():
    """{application_name: count} of this database's pgcast hub and relay sessions."""
    out = rc.psql("SELECT application_name, count(*) FROM pg_stat_activity WHERE datname = current_database() "
                  "AND application_name IN ('pgcast-hub', 'pgcast-hub-relayed', 'pgcast-relay') "
                  "GROUP BY 1 ORDER BY 1")
    return {a: int(n) for a, n in (line.split("|") for line in out.splitlines() if line)}


def listeners(s):
    return s.get("pgcast-hub", 0) + s.get("pgcast-relay", 0)


async def wait_sessions(pred, timeout):
    end = time.time() + timeout
    while time.time() < end:
        s = sessions()
        if pred(s):
            return True, s
        await asyncio.sleep(0.2)
    s = sessions()
    return pred(s), s


def start_relay():
    log = open(os.path.join(WEB, "log", "pgcast-relay.log"), "a")
    env = dict(os.environ, PGCAST_CONFIG=os.path.join(WEB, "pgcast.conf"))
    p = subprocess.Popen([os.path.join(BIN, "pgcast-relay"), "--socket", SOCK], stdout=log, stderr=log, env=env)
    return p


async def main():
    ok, s = await wait_sessions(lambda s: s.get("pgcast-hub-relayed", 0) == NHUBS and listeners(s) == 1, 60)
    t.ok(ok, f"{NHUBS} hub processes and the relay: ONE listening connection for the host", s)
    mode = os.stat(SOCK).st_mode & 0o777
    t.ok(mode & 0o007 == 0, f"the relay's socket is not open to others (mode {mode:o})")

    tok = rc.token()
    chans = [rc.random_name("project:relayA"), rc.random_name("project:relayB")]
    for ch in chans:
        await rc.apsql(rc.publish_sql(TENANT, ch, 20))
    since = {c: 5 for c in chans}
    clients = ([rc.SSEClient(BASE, tok, chans, since=since, name=f"sse{i}") for i in range(3)] +
               [rc.PollClient(BASE, tok, chans, since=since, wait=5, name=f"poll{i}") for i in range(3)] +
               [rc.WSClient(WS_URL, tok, chans, since=since, name=f"ws{i}") for i in range(3)])
    for c in clients:
        c.start()
    await rc.wait_delivered(clients, rc.last_seqs(TENANT, chans), stall=30, cap=60)

    # a burst on both channels; the relay is killed in the middle of it
    pubs = [asyncio.ensure_future(rc.apsql(rc.steady_publish_sql(TENANT, ch, 400, 0.01, batch=2))) for ch in chans]
    await asyncio.sleep(2)
    os.kill(int(os.environ["RELAY_PID"]), signal.SIGKILL)
    killed = time.time()
    t.note(f"relay killed (kill -9) at {rc.last_seqs(TENANT, chans)}")
    ok, s = await wait_sessions(lambda s: s.get("pgcast-hub", 0) == NHUBS and s.get("pgcast-hub-relayed", 0) == 0, 30)
    t.ok(ok, f"without the relay every process LISTENs on its own ({time.time() - killed:.1f} s)", s)
    await asyncio.sleep(1)
    relay = start_relay()
    try:
        started = time.time()
        ok, s = await wait_sessions(lambda s: s.get("pgcast-hub-relayed", 0) == NHUBS and listeners(s) == 1, 60)
        t.ok(ok, f"the relay started again: the processes move back to it, one LISTEN "
                 f"({time.time() - started:.1f} s)", s)
        second = start_relay()
        try:
            rc2 = second.wait(30)
        except subprocess.TimeoutExpired:
            second.kill()
            rc2 = second.wait()
        t.ok(rc2 != 0 and relay.poll() is None and os.path.exists(SOCK),
             f"a second relay on the same socket refuses to start (exit {rc2}); the first serves on")
        for p in pubs:
            await p
        final = rc.last_seqs(TENANT, chans)
        ok = await rc.wait_delivered(clients, final, stall=30, cap=180)
        t.ok(ok, "every client reached the last event", "\n".join(c.summary() for c in clients))
        # one more burst through the restarted relay, without a fault
        await rc.apsql(rc.steady_publish_sql(TENANT, chans[0], 50, 0.01))
        final = rc.last_seqs(TENANT, chans)
        ok = await rc.wait_delivered(clients, final, stall=30, cap=120)
        t.ok(ok, "events after the relay's restart reach every client", "\n".join(c.summary() for c in clients))
        for c in clients:
            await c.stop()
        problems = rc.check_all(clients, TENANT)
        t.ok(not problems, "SSE, long-poll and WebSocket clients: exactly the logged events, in order, across "
                           "the kill and the restart", "\n".join(problems[:20]))

        # a process that connects and never reads: the relay drops it at relay_client_buffer
        stuck = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        stuck.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        stuck.connect(SOCK)
        stuck.sendall(b"A 1\nH\n")  # every notification, and hello
        await rc.apsql(rc.publish_sql(TENANT, chans[1], 30000))
        # without reading a byte: does the relay hang up? (POLLRDHUP shows it with data unread)
        po = select.poll()
        po.register(stuck, select.POLLRDHUP)
        hung_up = any(ev & select.POLLRDHUP for _, ev in po.poll(60000))
        stuck.settimeout(10)
        got, eof = 0, False
        try:
            while True:
                b = stuck.recv(65536)
                if not b:
                    eof = True
                    break
                got += len(b)
        except (socket.timeout, OSError):
            pass
        stuck.close()
        logtext = open(os.path.join(WEB, "log", "pgcast-relay.log"), errors="replace").read()
        # held for it: relay_client_buffer (64 KiB here) in the relay, the rest in the kernel's
        # socket buffers (accounted to the relay's send buffer, wmem_default)
        wmem = int(open("/proc/sys/net/core/wmem_default").read())
        t.ok(hung_up and eof and got <= 2 * wmem + 64 * 1024 and "relay_client_buffer reached" in logtext,
             f"a process that does not read is dropped at relay_client_buffer ({got} bytes were held for it, "
             f"wmem_default {wmem})")
        ok, s = await wait_sessions(lambda s: s.get("pgcast-hub-relayed", 0) == NHUBS and listeners(s) == 1, 10)
        t.ok(ok and relay.poll() is None, "the relay serves the others on", s)
    finally:
        relay.terminate()
        try:
            relay.wait(10)
        except subprocess.TimeoutExpired:
            relay.kill()
            relay.wait()
    t.ok(not os.path.exists(SOCK), "the relay removes its socket on SIGTERM")
    hits = rc.sanitizer_reports(glob.glob(os.path.join(WEB, "log", "*")))
    t.ok(not hits, "no sanitizer report in the servers' logs", "\n".join(hits[:5]))

asyncio.run(main())
t.exit()
