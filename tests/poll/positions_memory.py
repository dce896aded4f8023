"""Conditional polls from memory (tests/poll/positions_memory.sh).

Four workers poll /realtime/events with If-None-Match: * from the cursor they last
reached (a 304 means "nothing after it"), while a publisher commits events to the same
channels. Each publish's commit time is taken when psql has answered it; each poll's
send time just before its request. A 304 for cursor C of channel X sent after a publish
of X with seq > C had committed is a wrong 304. Mid-run the hub's LISTEN connection is
terminated and an event published at once: polls must still see it."""
import http.client, os, subprocess, sys, threading, time, urllib.parse

base, total = sys.argv[1], int(sys.argv[2])
token = os.environ["TOKEN"]
CHANNELS = [f"project:pm-{i}" for i in range(4)]
WORKERS = 4

sys.path.insert(0, os.path.join(os.environ["PGCAST_ROOT"], "tests/lib"))
from tap import T, ok, psql  # noqa: E402

class Publisher:
    """One psql session; publish() returns when the commit is done."""
    def __init__(self):
        self.p = subprocess.Popen(["psql", "-qXAt", "-v", "ON_ERROR_STOP=1"], stdin=subprocess.PIPE,
                                  stdout=subprocess.PIPE, text=True)
        self.lock = threading.Lock()
        self.done = []  # (channel, seq, commit time)
        self.i = 0

    def publish(self, ch):
        with self.lock:
            self.i += 1
            self.p.stdin.write(f"SELECT realtime.publish('t1', '{ch}', 'pm', jsonb_build_object('i', {self.i}));\n")
            self.p.stdin.flush()
            seq = int(self.p.stdout.readline())
            t = time.monotonic()
            self.done.append((ch, seq, t))
            return seq, t

    def close(self):
        self.p.stdin.close()
        self.p.wait()

u = urllib.parse.urlparse(base)
def get(conn, ch, cur):
    q = f"/realtime/events?channel={ch}&since={urllib.parse.quote(f'{ch}={cur}')}"
    conn.request("GET", q, headers={"Authorization": "Bearer " + token, "If-None-Match": "*"})
    r = conn.getresponse()
    return r.status, r.read()

pub = Publisher()
for ch in CHANNELS:
    pub.publish(ch)

received = {ch: [] for ch in CHANNELS}  # each worker's list per channel
errors = []
lock = threading.Lock()

def worker(w, count, records, stop):
    import json
    conn = http.client.HTTPConnection(u.hostname, u.port, timeout=30)
    pos = {ch: 0 for ch in CHANNELS}
    mine = {ch: [] for ch in CHANNELS}
    k = w
    while not stop.is_set():
        with lock:
            count[0] += 1
        ch = CHANNELS[k % len(CHANNELS)]
        k += 1
        t = time.monotonic()
        try:
            st, body = get(conn, ch, pos[ch])
        except (OSError, http.client.HTTPException) as e:
            errors.append(f"worker {w}: {e}")
            conn.close()
            conn = http.client.HTTPConnection(u.hostname, u.port, timeout=30)
            continue
        records.append((ch, pos[ch], t, st))
        if st == 200:
            page = json.loads(body)
            for e in page["events"]:
                mine[ch].append((e["seq"], e["payload"]["i"] if isinstance(e.get("payload"), dict) else None))
            new = int(page["cursor"].split("=")[-1])
            if page["events"] and new != page["events"][-1]["seq"]:
                errors.append(f"{ch}: cursor {new} after events ending {page['events'][-1]['seq']}")
            pos[ch] = new
        elif st != 304:
            errors.append(f"{ch}: status {st}: {body[:200]!r}")
    conn.close()
    with lock:
        for ch in CHANNELS:
            received[ch].append(mine[ch])

def publisher(stop):
    i = 0
    while not stop.is_set():
        pub.publish(CHANNELS[i % len(CHANNELS)])
        i += 1
        time.sleep(0.01)

def run(total, mid=None):
    """About total polls from WORKERS workers from cursor 0, events published meanwhile;
    mid() runs once half of them are done, and total/2 more follow its end. Returns the
    polls and mid's result."""
    count, records, stop = [0], [], threading.Event()
    threads = [threading.Thread(target=worker, args=(w, count, records, stop)) for w in range(WORKERS)]
    t0 = time.monotonic()
    for t in threads:
        t.start()
    pt = threading.Thread(target=publisher, args=(stop,))
    pt.start()
    def until(m):
        while count[0] < m and all(t.is_alive() for t in threads):
            time.sleep(0.01)
    res = None
    if mid:
        until(total // 2)
        res = mid()
        until(count[0] + total // 2)
    else:
        until(total)
    stop.set()
    for t in threads + [pt]:
        t.join()
    n304 = sum(1 for r in records if r[3] == 304)
    print(f"# {len(records)} polls in {time.monotonic() - t0:.1f} s ({n304} answered 304, "
          f"{sum(1 for r in records if r[3] == 200)} 200); {len(pub.done)} publishes so far")
    return records, res

def probe(ch, seq):
    """One conditional poll, sent now, from the cursor just before seq: (status, seqs)."""
    import json
    c = http.client.HTTPConnection(u.hostname, u.port, timeout=30)
    try:
        st, body = get(c, ch, seq - 1)
    finally:
        c.close()
    return st, [e["seq"] for e in json.loads(body)["events"]] if st == 200 else body[:200]

def wrong_304(records):
    """304s for cursor C sent after a publish of seq > C on the channel had committed."""
    commits = {ch: sorted((seq, t) for c, seq, t in pub.done if c == ch) for ch in CHANNELS}
    wrong = []
    for ch, cur, t, st in records:
        if st != 304:
            continue
        for seq, tc in commits[ch]:
            if seq > cur and tc < t:
                wrong.append((ch, cur, seq, round(t - tc, 4)))
                break
    return wrong

def calls_settled():
    """realtime.positions_of calls so far: backends report function statistics when idle."""
    time.sleep(11)
    return int(psql("SELECT coalesce(sum(calls), 0) FROM pg_stat_user_functions "
                    "WHERE schemaname = 'realtime' AND funcname = 'positions_of'"))

def xact():
    return int(psql("SELECT xact_commit FROM pg_stat_database WHERE datname = current_database()"))

# warm-up: one poll per channel learns its position
c = http.client.HTTPConnection(u.hostname, u.port, timeout=30)
for ch in CHANNELS:
    get(c, ch, 0)
c.close()
calls0, xact0 = calls_settled(), xact()
records, _ = run(total)
calls = calls_settled() - calls0
xact1 = xact()
n304 = sum(1 for r in records if r[3] == 304)
ok(not errors and len(records) >= total, f"{len(records)} conditional polls answered, no error", errors[:5])
wrong = wrong_304(records)
ok(not wrong, f"no 304 for a cursor behind a committed publish ({n304} checked)",
   f"{len(wrong)} wrong: (channel, cursor, committed seq, sent after commit by s) {wrong[:5]}")
print(f"# realtime.positions_of calls during the run: {calls}; transactions committed in the database: "
      f"{xact1 - xact0} (the publishes, the log reads of the 200s, the sync barriers: one per batch "
      f"of polls, at most every 2 ms, and the handlers' own bookkeeping)")
ok(calls <= max(20, total // 100),
   f"conditional polls cost almost no positions queries ({calls} for {len(records)} polls)")

# the hub's LISTEN connection goes mid-run; an event is published right after, and a
# poll from the cursor before it is sent at once (workers' polls sent after the commit
# from a cursor before it are checked too; on a slow machine they may all have been sent
# before psql answered, so the probe is what makes the check always have a sample)
def drop():
    killed = psql("SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                  "WHERE application_name = 'pgcast-hub' AND datname = current_database()")
    seq, t = pub.publish(CHANNELS[0])
    return killed, seq, t, probe(CHANNELS[0], seq)
records, (killed, drop_seq, drop_t, (pst, pseqs)) = run(total // 2, drop)
wrong = wrong_304(records)
ok(not errors and not wrong, f"LISTEN connection terminated mid-run: no error, no wrong 304 "
   f"({sum(1 for r in records if r[3] == 304)} checked)", (errors[:5], wrong[:5]))
after = [r for r in records if r[0] == CHANNELS[0] and r[2] > drop_t and r[1] < drop_seq]
ok(killed != "0" and pst == 200 and drop_seq in pseqs and all(r[3] == 200 for r in after),
   f"every poll sent after the event published then, from a cursor before it, answered it "
   f"(the probe and {len(after)} workers' polls)", (killed, pst, pseqs, after[:5]))

# the secret rotates mid-run (every process tags channels anew); an event published right after
def rotate():
    psql("SELECT realtime.rotate_secret()")
    seq, t = pub.publish(CHANNELS[1])
    return seq, t, probe(CHANNELS[1], seq)
records, (rot_seq, rot_t, (pst, pseqs)) = run(total // 2, rotate)
wrong = wrong_304(records)
after = [r for r in records if r[0] == CHANNELS[1] and r[2] > rot_t and r[1] < rot_seq]
ok(not errors and not wrong and pst == 200 and rot_seq in pseqs and all(r[3] == 200 for r in after),
   f"secret rotated mid-run: no error, no wrong 304 ({sum(1 for r in records if r[3] == 304)} checked), "
   f"the event published then answered (the probe and {len(after)} workers' polls)",
   (errors[:5], wrong[:5], pst, pseqs, after[:5]))
pub.close()

# what each worker received, per channel, against the log: in order, no gap, no duplicate
log = {}
for line in psql("SELECT channel, seq, event_data->>'i' FROM realtime.realtime_events_log "
                 "WHERE tenant_id = 't1' ORDER BY channel, seq").splitlines():
    ch, seq, i = line.split("|")
    log.setdefault(ch, []).append((int(seq), int(i)))
bad = []
for ch in CHANNELS:
    for got in received[ch]:
        if got != log.get(ch, [])[:len(got)]:
            bad.append((ch, got[:5], log.get(ch, [])[:5]))
ok(not bad, "every worker's events per channel match realtime_events_log (order, no gap, no duplicate)",
   bad[:3])

T.exit()
