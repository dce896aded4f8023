#!/usr/bin/python3
"""smoke.py BASE_URL LABEL: health, publish, poll, long-poll and SSE (with a resume)
through a running web server; what the clients received is compared with the event log.
Prints TAP lines; exits 1 when a check failed."""
import os, sys, threading, time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from rt import Tap, Stream, http, log_seqs, publish, token  # noqa: E402

BASE, LABEL = sys.argv[1], sys.argv[2]
t = Tap(LABEL)
tok = token()
ch = f"app:smoke{os.getpid()}"

st, _, body = http(BASE, "GET", "/realtime/health")
t.ok(st == 200 and isinstance(body, dict) and body.get("status") == "ok", "health answers 200 ok", f"{st} {body}")

st, _, body = publish(BASE, tok, ch, 1)
t.ok(st == 201 and isinstance(body, dict) and body.get("seq") == 1, "publish answers 201 with seq 1", f"{st} {body}")

st, _, body = http(BASE, "GET", f"/realtime/events?channel={ch}&since={ch}=0", tok=tok)
got = [e.get("seq") for e in body.get("events", [])] if isinstance(body, dict) else body
t.ok(st == 200 and got == [1], "poll returns the published event", f"{st} {got}")

# long-poll: waits, a publish wakes it
res = {}


def longpoll():
    t0 = time.time()
    res["st"], _, res["body"] = http(BASE, "GET", f"/realtime/events?channel={ch}&since={ch}=1&wait=20", tok=tok)
    res["secs"] = time.time() - t0


th = threading.Thread(target=longpoll)
th.start()
time.sleep(1.5)
t0 = time.time()
publish(BASE, tok, ch, 2)
th.join(30)
body = res.get("body")
got = [e.get("seq") for e in body.get("events", [])] if isinstance(body, dict) else body
t.ok(res.get("st") == 200 and got == [2], "a waiting long-poll returns the event published meanwhile",
     f"{res.get('st')} {got}")
t.note(f"long-poll answered {time.time() - t0:.2f} s after the publish")

# SSE: the stream's start, live events, then a resume with Last-Event-ID
s = Stream(BASE, f"channel={ch}&token={tok}")
t.ok(s.status == 200 and s.headers.get("content-type", "").startswith("text/event-stream"),
     "SSE answers 200 text/event-stream", f"{s.status} {s.headers}")
t.ok(s.wait_for(lambda x: x.last_event_id is not None, 10), "the stream's starting cursor arrives",
     s.buf[:200])
for i in (3, 4):
    publish(BASE, tok, ch, i)
t.ok(s.wait_for(lambda x: x.seqs() == [3, 4], 15), "published events arrive on the open stream", s.seqs())
resume_from = s.last_event_id
s.close()
publish(BASE, tok, ch, 5)
r = Stream(BASE, f"channel={ch}&token={tok}", {"Last-Event-ID": resume_from or ""})
publish(BASE, tok, ch, 6)
t.ok(r.wait_for(lambda x: x.seqs() == [5, 6], 15), "a resumed stream gets the missed event, then live ones",
     r.seqs())
r.close()
log = log_seqs("t1", ch)
t.ok(log == [1, 2, 3, 4, 5, 6] and [1] + [2] + s.seqs() + r.seqs() == log,
     "what the clients received is the event log, in order, nothing missing or twice", f"{log}")
sys.exit(1 if t.failed else 0)
