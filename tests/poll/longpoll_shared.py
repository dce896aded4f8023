"""Long-polls woken by one publish, with the same and with different keys of the shared
answer (tests/poll/longpoll_shared.sh); every answer checked against the log."""
import json, os, select, socket, sys, time, urllib.parse

sys.path.insert(0, os.path.join(os.environ["PGCAST_ROOT"], "tests/lib"))
from tap import T, ok, psql  # noqa: E402

base = sys.argv[1]
u = urllib.parse.urlparse(base)
tok = {"t1": os.environ["TOKEN1"], "t2": os.environ["TOKEN2"]}
a, b = "project:shared-a", "project:shared-b"
q = urllib.parse.quote


def publish(tenant, chans):
    """One transaction, one event per channel given (in order)."""
    return psql("SELECT string_agg(realtime.publish('%s', c, 'e', jsonb_build_object('c', c))::text, ',' ORDER BY o) "
                "FROM unnest(ARRAY[%s]) WITH ORDINALITY AS x(c, o)" % (tenant, ",".join(f"'{c}'" for c in chans)))


def log(tenant, ch, after):
    rows = psql(f"SELECT seq FROM realtime.realtime_events_log WHERE tenant_id = '{tenant}' AND channel = '{ch}' "
                f"AND seq > {after} ORDER BY seq")
    return [int(r) for r in rows.split()] if rows else []


# something in the log first, so the cursors are not all at 0
publish("t1", [a, b])
publish("t2", [a])
groups = [  # name, tenant, method, channels, limit
    ("a", "t1", "GET", [a], 100),
    ("a+b", "t1", "GET", [a, b], 100),
    ("b+a", "t1", "GET", [b, a], 100),
    ("a HEAD", "t1", "HEAD", [a], 100),
    ("a limit=1", "t1", "GET", [a], 1),
    ("t2 a", "t2", "GET", [a], 100),
]
PER = 25
since = {("t1", a): 1, ("t1", b): 1, ("t2", a): 1}
waiters = []
for name, tenant, method, chans, limit in groups:
    cur = ",".join(f"{c}={since[(tenant, c)]}" for c in chans)
    path = ("/realtime/events?" + "&".join(f"channel={q(c)}" for c in chans) +
            f"&since={q(cur)}&limit={limit}&wait=60")
    for _ in range(PER):
        s = socket.create_connection((u.hostname, u.port), timeout=60)
        s.sendall(f"{method} {path} HTTP/1.0\r\nHost: {u.hostname}\r\nAuthorization: Bearer {tok[tenant]}\r\n\r\n"
                  .encode())
        waiters.append((name, tenant, method, chans, limit, s))
time.sleep(2)
ready = select.select([w[5] for w in waiters], [], [], 0)[0]
ok(not ready, "every waiter waits before the publish", len(ready))
# two events of channel a and one of b in one transaction for t1; one for t2's a
publish("t1", [a, a, b])
publish("t2", [a])


def read_all(s):
    data = b""
    s.settimeout(60)
    while True:
        chunk = s.recv(65536)
        if not chunk:
            return data
        data += chunk


bad, etags, get_heads = [], {}, {}
answers = []
for name, tenant, method, chans, limit, s in waiters:
    raw = read_all(s)
    s.close()
    head, _, body = raw.partition(b"\r\n\r\n")
    lines = head.decode().split("\r\n")
    hdr = {k.lower(): v for k, v in (ln.split(": ", 1) for ln in lines[1:] if ": " in ln)}
    answers.append((name, tenant, method, chans, limit, lines[0], hdr, body))
for name, tenant, method, chans, limit, status, hdr, body in answers:
    if " 200 " not in status + " ":
        bad.append((name, "status", status))
        continue
    if method == "HEAD":
        continue
    page = json.loads(body)
    # the events after the waiter's cursor, in order, none twice, none missing before the
    # last one it got, at most limit; its cursor: every channel, in request order
    got = [(e["channel"], e["seq"]) for e in page["events"]]
    want_all = [(c, s) for c in chans for s in log(tenant, c, since[(tenant, c)])]
    last = {c: since[(tenant, c)] for c in chans}
    for c, s in got:
        last[c] = s
    exp_cur = ",".join(f"{c}={last[c]}" for c in chans)
    per_ch_ok = all([s for c2, s in got if c2 == c] == log(tenant, c, since[(tenant, c)])[:len([1 for c2, _ in got if c2 == c])]
                    for c in chans)
    if not got or len(got) > limit or not per_ch_ok or not set(got) <= set(want_all) or page["cursor"] != exp_cur \
            or int(hdr.get("content-length", -1)) != len(body):
        bad.append((name, page, exp_cur, hdr.get("content-length"), len(body)))
        continue
    etags.setdefault((tenant, page["cursor"]), set()).add(hdr.get("etag"))
    get_heads[(tenant, page["cursor"])] = (hdr.get("etag"), hdr.get("content-length"))
ok(not bad, f"every one of the {len(answers)} answers holds the events after its own cursor, and that cursor",
   bad[:3])
ok(all(len(v) == 1 for v in etags.values()) and len({next(iter(v)) for v in etags.values()}) == len(etags),
   "answers with the same tenant and cursor have one ETag, different ones differ", etags)
ok(len({k[1] for k in etags if k[0] == "t1"}) >= 3, "the t1 groups' cursors differ (one channel, two, two in the "
   "other order)", sorted(etags))
heads = [(hdr, body) for name, tenant, method, chans, limit, status, hdr, body in answers if method == "HEAD"]
# a HEAD waiter's answer names its cursor only through its ETag: it must be one a GET
# waiter of the same channel and tenant got, with that answer's Content-Length
same = {v for k, v in get_heads.items() if k[0] == "t1" and k[1].count(",") == 0}
ok(heads and all(body == b"" and (hdr.get("etag"), hdr.get("content-length")) in same for hdr, body in heads),
   "HEAD waiters get the head of a GET answer of theirs: its ETag and Content-Length, no body",
   [(h.get("etag"), h.get("content-length"), len(b_)) for h, b_ in heads[:3]] + [sorted(same)])
T.exit()
