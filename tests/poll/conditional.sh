#!/bin/bash
# Conditional requests and HEAD on /events and /sse (RFC 9110): If-None-Match compared
# weakly ("W/" or not), "*", lists; a long-poll with a matching tag waits for a change and
# answers 304 only at its deadline; HEAD answers what GET would, without a body. Under
# FastCGI (lighttpd) and plain CGI (Apache).
source "$PGCAST_ROOT/tests/lib/tap.sh"
source "$PGCAST_ROOT/tests/lib/webserver.sh"
web_init
pgcast_config_add "cgi_poll_interval_ms = 200"
lighttpd_start || { web_logs; exit 1; }
apache_start cgi || { web_logs; exit 1; }
export TOKEN=$(mint '{"sub":"u1","tenant":"t1","exp":"+3600","channels":["project:*"]}')
LIGHTTPD_URL=$LIGHTTPD_URL APACHE_URL=$APACHE_URL /usr/bin/python3 - <<'PY'
import http.client, os, subprocess, threading, time, urllib.parse

n = 0
def ok(cond, what, detail=None):
    global n
    n += 1
    print(f"{'ok' if cond else 'not ok'} {n} - {what}", flush=True)
    if not cond and detail is not None:
        print(f"#   {detail}", flush=True)

def publish(channel):
    return subprocess.run(["psql", "-qXAt", "-c", f"SELECT realtime.publish('t1', '{channel}', 'demo.tick', '{{}}')"],
                          check=True, capture_output=True, text=True).stdout.strip()

def request(base, method, path, headers=None, timeout=30):
    u = urllib.parse.urlparse(base)
    c = http.client.HTTPConnection(u.hostname, u.port, timeout=timeout)
    h = {"Authorization": "Bearer " + os.environ["TOKEN"]}
    h.update(headers or {})
    t0 = time.time()
    c.request(method, path, headers=h)
    r = c.getresponse()
    body = r.read()
    el = time.time() - t0
    c.close()
    return r.status, {k.lower(): v for k, v in r.getheaders()}, body, el

for who, base, mode in (("lighttpd", os.environ["LIGHTTPD_URL"], "FastCGI"), ("apache", os.environ["APACHE_URL"], "CGI")):
    ch = f"project:cond-{who}"
    publish(ch)
    q = f"/realtime/events?channel={ch}&since={urllib.parse.quote(ch + '=1')}"
    st, hd, body, _ = request(base, "GET", q)
    etag = hd.get("etag", "")
    ok(st == 200 and etag.startswith('W/"'), f"[{mode}] an empty page at the head has a weak ETag", (st, etag))
    strong = etag[2:]
    for what, inm in (("the same weak tag", etag), ("the tag without W/", strong), ("*", "*"),
                      ("a list holding the tag", f'"0000", {etag} , "ffff"')):
        st, hd, body, _ = request(base, "GET", q, {"If-None-Match": inm})
        ok(st == 304 and hd.get("etag") == etag and body == b"",
           f"[{mode}] If-None-Match with {what}: 304 with the ETag, no body", (st, hd.get("etag"), body[:80]))
    st, _, body, _ = request(base, "GET", q, {"If-None-Match": '"0000000000000000"'})
    ok(st == 200 and b'"events":[]' in body, f"[{mode}] another tag: 200 with the page", (st, body[:80]))
    # a long-poll with a matching tag waits: 304 only at its deadline
    st, hd, body, el = request(base, "GET", q + "&wait=3", {"If-None-Match": etag})
    print(f"# [{mode}] wait=3 with a matching tag answered {st} after {el:.2f} s")
    ok(st == 304 and el >= 2.5, f"[{mode}] wait=3 with a matching tag waits for a change, 304 at the deadline",
       (st, round(el, 2)))
    # ... and answers the change when one comes
    threading.Timer(1.0, publish, (ch,)).start()
    st, hd, body, el = request(base, "GET", q + "&wait=10", {"If-None-Match": etag})
    print(f"# [{mode}] wait=10 with a matching tag, publish after 1 s: {st} after {el:.2f} s")
    ok(st == 200 and b'"seq":2' in body and 0.8 <= el < 9 and hd.get("etag") != etag,
       f"[{mode}] wait=10 with a matching tag answers the event published meanwhile", (st, round(el, 2), body[:120]))
    # HEAD: GET's status and headers, no body
    q2 = f"/realtime/events?channel={ch}&since={urllib.parse.quote(ch + '=0')}"
    gst, ghd, gbody, _ = request(base, "GET", q2)
    hst, hhd, hbody, _ = request(base, "HEAD", q2)
    # (Apache may send a CGI answer chunked, without Content-Length: compare it where given)
    same = all(hhd.get(k) == ghd.get(k) for k in ("content-type", "etag", "cache-control"))
    same = same and all(int(h["content-length"]) == len(gbody) for h in (ghd, hhd) if "content-length" in h)
    ok(hst == gst == 200 and same and hbody == b"" and len(gbody) > 20,
       f"[{mode}] HEAD /events: GET's status and headers, no body", (hst, gst, hhd, ghd))
    q3 = f"/realtime/events?channel={ch}&since={urllib.parse.quote(ch + '=2')}"  # the head now
    etag3 = request(base, "GET", q3)[1].get("etag", "")
    st, hd, body, _ = request(base, "HEAD", q3, {"If-None-Match": etag3})
    ok(st == 304 and body == b"", f"[{mode}] HEAD /events with a matching tag: 304", (st, body[:80]))
    st, hd, body, el = request(base, "HEAD", f"/realtime/sse?channel={ch}", timeout=10)
    ok(st == 200 and hd.get("content-type", "").startswith("text/event-stream") and body == b"" and el < 5,
       f"[{mode}] HEAD /sse: 200 text/event-stream, no body, no stream", (st, hd, body[:80], round(el, 2)))
    st, hd, body, _ = request(base, "HEAD", f"/realtime/sse?channel=bad%20name")
    ok(st == 400 and body == b"", f"[{mode}] HEAD /sse with a bad channel: GET's 400, no body", (st, body[:80]))
PY
rc=$?
[ $rc = 0 ] || web_logs
exit $rc
