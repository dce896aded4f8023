#!/usr/bin/python3
"""Connections that close while their database calls wait or run. For a while, clients
connect, subscribe, join presence, publish, ask presence.get and close at once (half
without reading anything, half after one reply), while the database stalls on and off
(presence joins wait on an advisory lock the test takes and releases). The sidecar
(ASan build) must not touch a closed connection when a reply comes: it ends cleanly, every
join was followed by its leave (no member left), every job finished, the gauges are 0,
and the events log holds each publish once (no request ran twice)."""
import asyncio, json, os, subprocess, sys, time

sys.path.insert(0, os.path.join(os.environ["PGCAST_ROOT"], "tests/lib"))
from wstest import connect, metrics, note, ok, psql, start_sidecar, stop_sidecar, token  # noqa: E402
import wstest  # noqa: E402

DURATION = 12
CLIENTS = 16
GATE = 4243


def install_gate():
    psql(f"""
CREATE FUNCTION public.pgcast_test_gate() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.channel LIKE 'room:churn%' THEN PERFORM pg_advisory_xact_lock_shared({GATE}); END IF;
    RETURN NEW;
END $$;
CREATE TRIGGER pgcast_test_gate BEFORE INSERT ON realtime.realtime_presence
    FOR EACH ROW EXECUTE FUNCTION public.pgcast_test_gate();""")


async def gate_toggler(stop):
    """Takes and releases the gate every 0.5 s until stop is set."""
    p = await asyncio.create_subprocess_exec("psql", "-qXAt", "-v", "ON_ERROR_STOP=1", stdin=subprocess.PIPE,
                                             stdout=subprocess.DEVNULL)
    held = False
    while not stop.is_set():
        p.stdin.write(f"SELECT pg_advisory_{'un' if held else ''}lock({GATE});\n".encode())
        await p.stdin.drain()
        held = not held
        await asyncio.sleep(0.5)
    p.stdin.write(b"\\q\n")
    await p.stdin.drain()
    p.stdin.close()
    await p.wait()


async def client(port, k, stop, counts):
    pid = os.getpid()
    i = 0
    while not stop.is_set():
        i += 1
        room = f"room:churn{pid}-{k % 4}"
        try:
            ws, _ = await connect(port, token(sub=f"c{k}-{i}"))
            await ws.send(json.dumps({"type": "subscribe", "channel": room}))
            await ws.send(json.dumps({"type": "subscribe", "channel": f"project:churn{pid}"}))
            await ws.send(json.dumps({"type": "presence.join", "channel": room, "payload": {"i": i}}))
            await ws.send(json.dumps({"type": "publish", "channel": f"project:churn{pid}", "event": f"c{k}.{i}",
                                      "payload": {}, "requestId": i}))
            await ws.send(json.dumps({"type": "presence.get", "channel": room}))
            if i % 2:
                try:
                    await asyncio.wait_for(ws.recv(), 0.3)
                except asyncio.TimeoutError:
                    pass
                await ws.close()
            else:
                ws.transport.abort()  # gone without a close frame
            counts["sessions"] += 1
        except Exception as e:  # noqa: BLE001
            counts["errors"] += 1
            note(f"client {k}: {type(e).__name__}: {e}")
            await asyncio.sleep(0.2)


async def main():
    install_gate()
    proc, port = start_sidecar({"PGCAST_WS_DB_PENDING": "8", "PGCAST_CLIENT_RATE": "1000"})
    stop = asyncio.Event()
    counts = {"sessions": 0, "errors": 0}
    tasks = [asyncio.ensure_future(gate_toggler(stop))]
    tasks += [asyncio.ensure_future(client(port, k, stop, counts)) for k in range(CLIENTS)]
    await asyncio.sleep(DURATION)
    stop.set()
    await asyncio.gather(*tasks)
    note(f"{counts['sessions']} connections opened and closed, {counts['errors']} client errors")
    ok(counts["sessions"] >= CLIENTS * 2 and counts["errors"] == 0, "clients connected, sent and left throughout",
       counts)

    pid = os.getpid()
    end = time.time() + 60
    while time.time() < end:
        m = metrics(port)
        members = psql(f"SELECT count(*) FROM realtime.realtime_presence WHERE channel LIKE 'room:churn{pid}-%'")
        if m["pgcast_ws_db_jobs"] == 0 and m["pgcast_ws_connections"] == 0 and members == "0":
            break
        await asyncio.sleep(0.2)
    ok(m["pgcast_ws_db_jobs"] == 0, "every job finished", m)
    ok(m["pgcast_ws_connections"] == 0 and m["pgcast_ws_subscriptions"] == 0,
       "no connection and no subscription is left counted", m)
    ok(members == "0", "every join was followed by its leave: no member is left", members)
    dups = psql(f"SELECT count(*) - count(DISTINCT event_type) FROM realtime.realtime_events_log "
                f"WHERE channel = 'project:churn{pid}'")
    n = psql(f"SELECT count(*) FROM realtime.realtime_events_log WHERE channel = 'project:churn{pid}'")
    note(f"{n} events published by connections that closed at once")
    ok(dups == "0" and int(n) > 0, "each publish ran once", dups)
    stop_sidecar(proc)


asyncio.run(main())
print(f"1..{wstest.n}")
sys.exit(1 if wstest.failed else 0)
