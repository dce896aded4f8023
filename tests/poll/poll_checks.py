#!/usr/bin/python3
"""Polling API checks against a running web server: poll_checks.py BASE_URL LABEL [WAITERS].

Run by tests/poll/*.sh once they started a server; prints TAP lines."""
import base64, concurrent.futures, json, os, socket, sys, threading, time, urllib.error, urllib.parse, urllib.request

sys.path.insert(0, os.path.join(os.environ["PGCAST_ROOT"], "scripts"))
sys.path.insert(0, os.path.join(os.environ["PGCAST_ROOT"], "tests/lib"))
import tap  # noqa: E402
from tap import ok, psql  # noqa: E402
from jwt import mint  # noqa: E402

BASE, LABEL = sys.argv[1].rstrip("/"), sys.argv[2]
WAITERS = int(sys.argv[3]) if len(sys.argv) > 3 else 0
SECRET = "pgcast-test-secret"
RUN = f"{LABEL.replace('-', '')}{os.getpid()}"


def token(**claims):
    c = {"sub": "u1", "name": "Ann", "tenant": "t1", "exp": "+3600", "channels": ["project:*", "wait:*"],
         "publish": ["project:*", "wait:*"]}
    c.update(claims)
    return mint(SECRET, c)


def http(method, path, body=None, tok=None, headers=None, timeout=30):
    h = dict(headers or {})
    if tok:
        h["Authorization"] = f"Bearer {tok}"
    data = body if isinstance(body, bytes) else (json.dumps(body).encode() if body is not None else None)
    if data is not None:
        h["Content-Type"] = "application/json"
    req = urllib.request.Request(BASE + path, data=data, method=method, headers=h)
    try:
        with urllib.request.urlopen(req, timeout=timeout) as res:
            raw = res.read()
            return res.status, dict(res.headers), json.loads(raw) if raw else None
    except urllib.error.HTTPError as e:
        raw = e.read()
        try:
            parsed = json.loads(raw) if raw else None
        except ValueError:
            parsed = raw
        return e.code, dict(e.headers), parsed


def events(query, tok=None, headers=None, timeout=30):
    return http("GET", f"/realtime/events?{query}", tok=tok or token(), headers=headers, timeout=timeout)


def publish(tenant, channel, count=1, etype="e"):
    return int(psql(f"SELECT max(realtime.publish('{tenant}', '{channel}', '{etype}', jsonb_build_object('i', g))) "
                    f"FROM generate_series(1, {count}) g"))


def log_count():
    return int(psql("SELECT count(*) FROM realtime.realtime_events_log"))


def q(s):
    return urllib.parse.quote(s, safe="")


def check_events():
    a, b = f"project:{RUN}a", f"project:{RUN}b"
    publish("t1", a, 3)
    st, hd, body = events(f"channel={a}")
    ok(st == 200 and [e["seq"] for e in body["events"]] == [1, 2, 3] and body["cursor"] == f"{a}=3",
       "events of one channel from the start, in order, with the cursor", (st, body))
    ok(body["events"][0] == {"type": "e", "channel": a, "seq": 1, "payload": {"i": 1},
                             "timestamp": body["events"][0]["timestamp"]}, "each is the SPEC envelope", body)
    ok(hd.get("ETag", "").startswith('W/"'), "the answer has an ETag", hd)
    publish("t1", b, 2)
    publish("t1", a, 1)
    st, _, body = events(f"channel={a}&channel={b}&since={q(a + '=3')}")
    ok(st == 200 and [(e["channel"][-1], e["seq"]) for e in body["events"]] == [("b", 1), ("b", 2), ("a", 4)],
       "several channels after a cursor: publish order", body)
    ok(body["cursor"] == f"{a}=4,{b}=2", "cursor of several channels", body["cursor"])
    st, _, body = events("", tok=None) if False else http("GET", f"/realtime/events/{q(b)}?since={q(b + '=1')}",
                                                        tok=token())
    ok(st == 200 and [e["seq"] for e in body["events"]] == [2], "GET /events/{channel}", body)

    # paging with limit until the cursor stops moving
    c = f"project:{RUN}page"
    publish("t1", c, 25)
    cursor, seen, pages = "", [], 0
    while pages < 10:
        st, _, body = events(f"channel={c}&limit=10" + (f"&since={q(cursor)}" if cursor else ""))
        pages += 1
        if st != 200 or body["cursor"] == cursor:
            break
        seen += [e["seq"] for e in body["events"]]
        cursor = body["cursor"]
    ok(seen == list(range(1, 26)) and pages == 4, "limit pages through everything, then the cursor stops moving",
       (pages, seen))

    # 304
    st, hd, body = events(f"channel={c}&since={q(cursor)}")
    etag = hd.get("ETag")
    st2, hd2, _ = events(f"channel={c}&since={q(cursor)}", headers={"If-None-Match": etag})
    ok(st2 == 304 and hd2.get("ETag") == etag, "304 with If-None-Match when nothing is new", (st2, hd2))
    publish("t1", c, 1)
    st3, _, body3 = events(f"channel={c}&since={q(cursor)}", headers={"If-None-Match": etag})
    ok(st3 == 200 and [e["seq"] for e in body3["events"]] == [26], "200 with the new event once there is one",
       (st3, body3))

    # limit=0: only the current position (how a client starts polling live)
    fresh = f"project:{RUN}never"
    st, _, body = events(f"channel={c}&channel={fresh}&limit=0")
    ok(st == 200 and body == {"events": [], "cursor": f"{c}=26,{fresh}=0"},
       "limit=0 answers no events and the channels' current cursor", (st, body))

    # retention gap
    g = f"project:{RUN}gap"
    publish("t1", g, 6)
    psql("SELECT realtime.prune(NULL, 2)")
    st, _, body = events(f"channel={g}&since={q(g + '=1')}")
    ok(st == 200 and body["events"][0] == {"type": "gap", "channel": g, "from": 2, "to": 4}
       and [e.get("seq") for e in body["events"][1:]] == [5, 6], "a pruned position answers a gap first", body)


def check_long_poll():
    ch = f"wait:{RUN}"
    publish("t1", ch, 1)
    res = {}

    def waiter():
        t0 = time.time()
        res["r"] = events(f"channel={ch}&since={q(ch + '=1')}&wait=20", timeout=40)
        res["t"] = time.time() - t0

    th = threading.Thread(target=waiter)
    th.start()
    time.sleep(1.0)
    ok(th.is_alive(), "a long-poll with nothing new waits")
    publish("t1", ch, 1)
    th.join(30)
    st, _, body = res.get("r", (0, {}, {}))
    ok(st == 200 and [e["seq"] for e in body["events"]] == [2] and res["t"] < 15,
       "it returns with the event published meanwhile (well before its deadline)", (st, body, res.get("t")))
    t0 = time.time()
    st, _, body = events(f"channel={ch}&since={q(ch + '=2')}&wait=1")
    el = time.time() - t0
    ok(st == 200 and body["events"] == [] and body["cursor"] == f"{ch}=2" and el >= 0.9,
       "at the deadline it answers empty with the same cursor", (st, body, el))
    # a token valid for 4 to 5 s more: the request reaches the handler before its exp on a
    # busy machine too; it ends then, well before the 20 s wait
    t0 = time.time()
    st, _, body = events(f"channel={ch}&since={q(ch + '=2')}&wait=20", tok=token(exp="+5"), timeout=40)
    el = time.time() - t0
    ok(st == 200 and body["events"] == [] and el < 15,
       "a long-poll ends by its token's exp, not after the whole wait", (st, body, el))


def check_many_waiters(count):
    ch = f"wait:{RUN}many"
    publish("t1", ch, 1)
    tok = token()
    host, port = urllib.parse.urlparse(BASE).hostname, urllib.parse.urlparse(BASE).port
    path = urllib.parse.urlparse(BASE).path.rstrip("/")
    socks = []
    for _ in range(count):
        s = socket.create_connection((host, port), timeout=60)
        s.sendall(f"GET {path}/realtime/events?channel={ch}&since={q(ch + '=1')}&wait=25 HTTP/1.0\r\n"
                  f"Host: {host}\r\nAuthorization: Bearer {tok}\r\n\r\n".encode())
        socks.append(s)
    time.sleep(2.0)
    publish("t1", ch, 1)

    def read_all(s):
        data = b""
        while True:
            chunk = s.recv(65536)
            if not chunk:
                return data
            data += chunk

    with concurrent.futures.ThreadPoolExecutor(64) as ex:
        answers = list(ex.map(read_all, socks))
    good = sum(1 for a in answers if b" 200 " in a.split(b"\r\n", 1)[0] and b'"seq":2' in a)
    ok(good == count, f"{count} concurrent long-polls all return on one publish", good)
    for s in socks:
        s.close()


def check_publish():
    ch = f"project:{RUN}pub"
    st, _, body = http("POST", "/realtime/publish", {"channel": ch, "type": "t.x", "payload": {"a": [1, "b"]}},
                       tok=token())
    ok(st == 201 and body == {"channel": ch, "seq": 1}, "publish answers 201 with the seq", (st, body))
    st, _, body = events(f"channel={ch}")
    ok(st == 200 and body["events"][0]["payload"] == {"a": [1, "b"]} and body["events"][0]["type"] == "t.x",
       "what was published reads back through polling", body)
    before = log_count()
    bad = [
        ({"channel": ch, "type": "x"}, token(publish=[]), 403, "forbidden", "no publish pattern"),
        ({"channel": f"secret:{RUN}", "type": "x"}, token(), 403, "forbidden", "channel outside the patterns"),
        ({"channel": "bad channel", "type": "x"}, token(), 400, "bad_channel", "bad channel name"),
        ({"type": "x"}, token(), 400, "missing_field", "missing channel"),
        ({"channel": ch}, token(), 400, "missing_field", "missing type"),
        ({"channel": ch, "type": 5}, token(), 400, "missing_field", "type not a string"),
        (b"{not json", token(), 400, "invalid_json", "malformed JSON"),
        (b"[1,2]", token(), 400, "invalid_json", "not an object"),
        (b'{"channel":"' + ch.encode() + b'","type":"x","payload":"' + b"y" * (1 << 20) + b'"}', token(), 413,
         "too_large", "a body over 1 MiB"),
        ({"channel": ch, "type": "x"}, None, 401, "unauthorized", "no token"),
        ({"channel": ch, "type": "x"}, token(exp="-5"), 401, "invalid_token", "expired token"),
    ]
    for body, tok, status, code, what in bad:
        st, hd, got = http("POST", "/realtime/publish", body, tok=tok)
        ok(st == status and isinstance(got, dict) and got.get("error", {}).get("code") == code,
           f"publish refused: {what} -> {status} {code}", (st, got if not isinstance(got, bytes) else got[:100]))
    ok(log_count() == before, "nothing was written by any refused publish", (before, log_count()))
    st, hd, body = http("GET", "/realtime/publish", tok=token())
    ok(st == 405 and "POST" in hd.get("Allow", "") and body["error"]["code"] == "method_not_allowed",
       "GET /publish is 405 with Allow: POST", (st, hd.get("Allow"), body))
    st, hd, body = http("POST", f"/realtime/events?channel={ch}", {}, tok=token())
    ok(st == 405 and hd.get("Allow") == "GET, HEAD", "POST /events is 405 with Allow: GET, HEAD", (st, hd.get("Allow")))
    for query, code in ((f"channel={ch}&since=zz", "bad_cursor"), (f"channel={ch}&limit=abc", "bad_request"),
                        (f"channel={ch}&wait=-1", "bad_request"), ("channel=bad%20name", "bad_channel"),
                        ("", "missing_channel")):
        st, _, body = events(query)
        ok(st == 400 and body["error"]["code"] == code, f"events refused: {query or 'no channel'} -> 400 {code}",
           (st, body))
    st, _, body = http("GET", "/realtime/nothing-here", tok=token())
    ok(st == 404 and body["error"]["code"] == "not_found", "unknown endpoint is a JSON 404", (st, body))


def check_tenants():
    ch = f"project:{RUN}iso"
    publish("t1", ch, 2)
    other = token(tenant="t2", sub="u9")
    st, _, body = events(f"channel={ch}", tok=other)
    ok(st == 200 and body["events"] == [], "tenant B's token never sees tenant A's events", body)
    http("POST", "/realtime/presence", {"channel": ch, "action": "join", "data": {}}, tok=token())
    st, _, body = http("GET", f"/realtime/presence?channel={q(ch)}", tok=other)
    ok(st == 200 and body["members"] == [], "nor tenant A's presence", body)
    st, _, body = http("POST", "/realtime/publish", {"channel": ch, "type": "x", "tenant": "t1"}, tok=other)
    ok(st == 201 and int(psql(f"SELECT last_seq FROM realtime.realtime_channels WHERE tenant_id='t1' "
                              f"AND channel_name='{ch}'")) == 2, "a tenant in the body is ignored: B publishes to B",
       (st, body))


def check_presence():
    ch = f"project:{RUN}pres"
    st, _, body = http("POST", "/realtime/presence", {"channel": ch, "action": "join", "data": {"color": "red"}},
                       tok=token())
    m = body["members"][0] if st == 200 and body.get("members") else {}
    ok(st == 200 and m.get("userId") == "u1" and m.get("name") == "Ann" and m.get("color") == "red"
       and m.get("connectionId") == "poll:u1:default" and isinstance(m.get("joinedAt"), int),
       "join makes the polling client a member", (st, body))
    http("POST", "/realtime/presence", {"channel": ch, "action": "join", "connectionId": "tab2"},
         tok=token(sub="u2", name="Bob"))
    st, _, body = http("GET", f"/realtime/presence?channel={q(ch)}", tok=token())
    ok(st == 200 and sorted(x["userId"] for x in body["members"]) == ["u1", "u2"], "GET lists every member", body)
    st, _, body = http("POST", "/realtime/presence", {"channel": ch, "action": "heartbeat"}, tok=token())
    ok(st == 200, "heartbeat keeps a member", (st, body))
    st, _, body = http("POST", "/realtime/presence", {"channel": ch, "action": "leave"}, tok=token())
    ok(st == 200 and [x["userId"] for x in body["members"]] == ["u2"], "leave removes it", body)
    st, _, body = http("POST", "/realtime/presence", {"channel": ch, "action": "heartbeat"}, tok=token())
    ok(st == 404 and body["error"]["code"] == "not_present", "heartbeat after leaving says to join again", (st, body))
    st, _, body = http("POST", "/realtime/presence", {"channel": ch, "action": "dance"}, tok=token())
    ok(st == 400 and body["error"]["code"] == "bad_action", "unknown action refused", (st, body))
    psql(f"UPDATE realtime.realtime_presence SET expires_at = now() - interval '1 second' "
         f"WHERE channel = '{ch}'")
    st, _, body = http("GET", f"/realtime/presence?channel={q(ch)}", tok=token())
    ok(st == 200 and body["members"] == [], "members past their timeout are gone", body)


def check_sse_readback():
    ch = f"project:{RUN}sse"
    host, port = urllib.parse.urlparse(BASE).hostname, urllib.parse.urlparse(BASE).port
    s = socket.create_connection((host, port), timeout=10)
    s.sendall(f"GET /realtime/sse?channel={ch}&token={token()} HTTP/1.0\r\nHost: x\r\n\r\n".encode())
    buf = b""
    while b"retry:" not in buf:
        buf += s.recv(4096)
    time.sleep(0.5)
    http("POST", "/realtime/publish", {"channel": ch, "type": "via.poll", "payload": {"z": 1}}, tok=token())
    end = time.time() + 10
    while b"via.poll" not in buf and time.time() < end:
        s.settimeout(max(0.1, end - time.time()))
        try:
            chunk = s.recv(4096)
        except socket.timeout:
            break
        if not chunk:
            break
        buf += chunk
    s.close()
    ok(b'"type":"via.poll"' in buf and f"id: {ch}=1".encode() in buf,
       "an event published through /publish arrives on an open SSE stream", buf[-300:])


def check_token_reuse():
    """Accepted tokens are remembered by their text: what must still be refused is."""
    ch = f"project:{RUN}tok"
    publish("t1", ch, 1)
    # valid for a few seconds (whole seconds: 5 to 6 from now), so that both requests are
    # answered before its exp on a busy machine too (a CGI request starts a process)
    short = token(exp="+6")
    claims = short.split(".")[1]
    exp = json.loads(base64.urlsafe_b64decode(claims + "=" * (-len(claims) % 4)))["exp"]
    first, again = events(f"channel={ch}", tok=short)[0], events(f"channel={ch}", tok=short)[0]
    ok(first == 200 and again == 200, "a token is accepted, and accepted again", (first, again))
    head, claims, sig = short.split(".")
    k = len(sig) // 2
    forged_sig = f"{head}.{claims}.{sig[:k]}{'B' if sig[k] == 'A' else 'A'}{sig[k + 1:]}"
    st, _, body = events(f"channel={ch}", tok=forged_sig)
    ok(st == 401 and body["error"]["code"] == "invalid_token",
       "the accepted token with one signature character changed is refused", (st, body))
    raw = json.loads(base64.urlsafe_b64decode(claims + "=" * (-len(claims) % 4)))
    raw["tenant"] = "t2"
    forged_claims = base64.urlsafe_b64encode(json.dumps(raw).encode()).rstrip(b"=").decode()
    st, _, body = events(f"channel={ch}", tok=f"{head}.{forged_claims}.{sig}")
    ok(st == 401 and body["error"]["code"] == "invalid_token",
       "its signature on other claims (another tenant) is refused", (st, body))
    time.sleep(max(0.0, exp + 0.1 - time.time()))  # its exp has passed (the handlers compare whole seconds)
    st, _, body = events(f"channel={ch}", tok=short)
    ok(st == 401 and "expired" in body["error"]["message"], "once its exp has passed it is refused", (st, body))


def check_concurrent_checks():
    """Concurrent requests share change checks: each still gets its own answer."""
    odd = 't"q\\,{x} y'  # a tenant with what is special in an array literal
    chans = [f"project:{RUN}cc{i}" for i in range(4)]
    heads = {}
    for t in ("t1", odd):
        for i, ch in enumerate(chans):
            heads[(t, ch)] = publish(t, ch, 1 + i + (3 if t == odd else 0))
    toks = {"t1": token(), odd: token(tenant=odd)}
    cases = []
    for t in ("t1", odd):
        for i, ch in enumerate(chans):
            other = chans[(i + 1) % len(chans)]
            at_head = f"{ch}={heads[(t, ch)]},{other}={heads[(t, other)]}"
            st, hd, _ = events(f"channel={ch}&channel={other}&since={q(at_head)}", tok=toks[t])
            cases.append((t, f"channel={ch}&channel={other}&since={q(at_head)}", hd.get("ETag", ""), 304, None))
            behind = f"{ch}={heads[(t, ch)]},{other}={heads[(t, other)] - 1}"
            cases.append((t, f"channel={ch}&channel={other}&since={q(behind)}", hd.get("ETag", ""), 200,
                          [heads[(t, other)]]))

    def run(case):
        t, query, etag, want, seqs = case
        st, _, body = events(query, tok=toks[t], headers={"If-None-Match": etag})
        return st == want and (seqs is None or [e["seq"] for e in body["events"]] == seqs), (case[:4], st, body)

    with concurrent.futures.ThreadPoolExecutor(32) as ex:
        results = list(ex.map(run, cases * 8))
    bad = [r[1] for r in results if not r[0]]
    ok(not bad, f"{len(results)} concurrent requests over two tenants: 304 at the head, the missing event "
       "behind it, each", bad[:3])

    def fresh(i):
        ch = f"project:{RUN}fresh{i}"
        publish("t1", ch, 1)
        wrong = []
        for _ in range(4):
            st, hd, body = events(f"channel={ch}&since={q(ch + '=0')}")
            cursor, etag = body.get("cursor", ""), hd.get("ETag", "")
            st_h, _, _ = events(f"channel={ch}&since={q(cursor)}", headers={"If-None-Match": etag})
            st_p, _, pub = http("POST", "/realtime/publish", {"channel": ch, "type": "f"}, tok=token())
            st_a, _, after = events(f"channel={ch}&since={q(cursor)}", headers={"If-None-Match": etag})
            if st_h != 304 or st_p != 201 or st_a != 200 or [e["seq"] for e in after["events"]] != [pub["seq"]]:
                wrong.append((ch, st_h, st_p, st_a, after))
        return wrong

    with concurrent.futures.ThreadPoolExecutor(12) as ex:
        wrong = [w for ws in ex.map(fresh, range(12)) for w in ws]
    ok(not wrong, "a publish answered 201 is never followed by a 304 for the cursor before it (12 clients at once)",
       wrong[:3])


def check_health():
    st, _, body = http("GET", "/realtime/health")
    ok(st == 200 and body == {"status": "ok", "database": "ok"}, "health is 200 with the database ok", (st, body))


if __name__ == "__main__":
    check_health()
    check_events()
    check_long_poll()
    check_publish()
    check_tenants()
    check_presence()
    check_sse_readback()
    check_token_reuse()
    check_concurrent_checks()
    if WAITERS:
        check_many_waiters(WAITERS)
    tap.T.exit()
