#!/usr/bin/python3
"""Poll pages bounded in bytes: page_bounds.py BASE_URL HANDLER_PID PAGE_BYTES

Four clients poll limit=1000 from since=0 at once over ~60 MB of events (1 MB events
among small ones, on two channels) and follow the cursors until an empty page. Every
page stays within PAGE_BYTES plus one event; every event is reached exactly once, in
order (compared with realtime_events_log); the handler's peak RSS grows by a bounded
amount, printed. Prints TAP lines.
"""
import http.client, json, os, sys, threading, urllib.parse

sys.path.insert(0, os.path.join(os.environ["PGCAST_ROOT"], "scripts"))
sys.path.insert(0, os.path.join(os.environ["PGCAST_ROOT"], "tests/lib"))
import tap  # noqa: E402
from tap import ok, psql  # noqa: E402
from jwt import mint  # noqa: E402

BASE, PID, PAGE_BYTES = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
U = urllib.parse.urlparse(BASE)
RUN = f"pages{os.getpid()}"
CH = [f"project:{RUN}-a", f"project:{RUN}-b"]
BIG = 1000000


def hwm_kib():
    with open(f"/proc/{PID}/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    return 0


TOKEN = mint("pgcast-test-secret", {"sub": "u1", "tenant": "t1", "exp": "+3600", "channels": ["project:*"]})


def poll(since):
    q = "&".join(f"channel={urllib.parse.quote(c, safe='')}" for c in CH) + "&limit=1000"
    if since:
        q += "&since=" + urllib.parse.quote(since, safe="")
    conn = http.client.HTTPConnection(U.hostname, U.port, timeout=120)
    conn.request("GET", f"/realtime/events?{q}", headers={"Authorization": f"Bearer {TOKEN}"})
    r = conn.getresponse()
    body = r.read()
    conn.close()
    return r.status, body


# 60 events of 1 MB and 600 small ones, interleaved on two channels
for k in range(60):
    ch = CH[k % 2]
    psql(f"SELECT realtime.publish('t1', '{ch}', 'big', jsonb_build_object('k', {k}, 'pad', repeat('z', {BIG})))")
    psql(f"SELECT realtime.publish('t1', '{CH[(k + 1) % 2]}', 'small', jsonb_build_object('k', {k}, 'g', g)) "
         "FROM generate_series(1, 10) g")
want = {c: [int(x) for x in psql(f"SELECT string_agg(seq::text, ',' ORDER BY seq) FROM realtime.realtime_events_log "
                                 f"WHERE tenant_id = 't1' AND channel = '{c}'").split(",")] for c in CH}
total = sum(int(psql(f"SELECT sum(octet_length(event_data::text)) FROM realtime.realtime_events_log "
                     f"WHERE tenant_id = 't1' AND channel = '{c}'")) for c in CH)
status, _ = poll(None)  # warm-up: the handler's pool, plans, token cache (a first page)
ok(status == 200, "a first poll answers 200")
before = hwm_kib()

results = [None] * 4


def client(i):
    got = {c: [] for c in CH}
    pages, biggest, since, errors = 0, 0, None, []
    while pages < 1000:
        status, body = poll(since)
        if status != 200:
            errors.append(f"status {status}: {body[:200]!r}")
            break
        pages += 1
        biggest = max(biggest, len(body))
        page = json.loads(body)
        for e in page["events"]:
            got[e["channel"]].append(e["seq"])
        if not page["events"]:
            break
        since = page["cursor"]
    results[i] = (got, pages, biggest, errors)


threads = [threading.Thread(target=client, args=(i,)) for i in range(4)]
for t in threads:
    t.start()
for t in threads:
    t.join()
after = hwm_kib()

for i, (got, pages, biggest, errors) in enumerate(results):
    ok(not errors and all(got[c] == want[c] for c in CH),
       f"client {i + 1}: every event reached once, in order, by following cursors ({pages} pages)",
       f"errors {errors}; got {[len(got[c]) for c in CH]} want {[len(want[c]) for c in CH]}")
    ok(biggest <= PAGE_BYTES + BIG + 64 * 1024,
       f"client {i + 1}: no page over the page bound plus one event ({biggest} bytes, bound {PAGE_BYTES})")
grow_mib = (after - before) / 1024
print(f"# 4 clients x {total / 1048576:.0f} MiB of payloads, page bound {PAGE_BYTES / 1048576:.1f} MiB: "
      f"the poll handler's peak RSS grew by {grow_mib:.1f} MiB ({before / 1024:.0f} -> {after / 1024:.0f} MiB)")
bound = float(os.environ.get("PAGE_RSS_BOUND_MIB", "120"))
ok(grow_mib < bound, f"the handler's peak RSS grew by less than {bound:.0f} MiB ({grow_mib:.1f} MiB)")
tap.T.exit()
