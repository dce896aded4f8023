#!/usr/bin/python3
"""capacity.py BASE_URL LABEL CAP: the site's share for streams (site_max_streams = CAP)
through a running Apache. With CAP streams open: the next stream is told to come back
later in a way EventSource honours (200 text/event-stream, retry:, a "busy" message, the
end), a long-poll gets 503 + Retry-After, the static page and /health still answer;
once a stream ends a new one gets in; a killed (-9) stream process frees its slot; the
npm eventsource package and Chromium's EventSource come back by themselves and then
receive what was published, compared with the event log. Env: ES_MODULE (the npm
eventsource module), KILL_CONFIG (the config path that marks this site's CGI processes
in their environment; empty: not a CGI site)."""
import json, os, signal, subprocess, sys, threading, time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(os.environ["PGCAST_ROOT"], "tests", "lib"))
from rt import Tap, Stream, http, log_seqs, publish, token  # noqa: E402

BASE, LABEL, CAP = sys.argv[1], sys.argv[2], int(sys.argv[3])
t = Tap(LABEL)
tok = token()
ch = f"app:cap{os.getpid()}"


def is_busy(s):
    busy = [d for d in s.data("error") if d.get("code") == "busy"]
    return (s.status == 200 and s.headers.get("content-type", "").startswith("text/event-stream")
            and s.retry is not None and busy and s.closed and s.last_event_id is None)


def open_ok(s):
    return s.status == 200 and s.wait_for(lambda x: x.last_event_id is not None, 15)


streams = [Stream(BASE, f"channel={ch}&token={tok}") for _ in range(CAP)]
t.ok(all(open_ok(s) for s in streams), f"{CAP} streams open (the site's share)",
     [(s.status, s.buf[:80]) for s in streams])
extra = Stream(BASE, f"channel={ch}&token={tok}")
extra.wait_for(lambda x: x.closed, 15)
t.ok(is_busy(extra), "the next stream: 200 text/event-stream with retry:, a busy message and its end, no id:",
     f"{extra.status} {extra.headers} retry={extra.retry} events={extra.events} closed={extra.closed}")
busy = extra.data("error")[0] if extra.data("error") else {}
t.ok(isinstance(busy.get("retryMs"), int) and busy["retryMs"] == extra.retry, "its retryMs is the retry: it sets",
     busy)
t0 = time.time()
st, hdrs, _ = http(BASE, "GET", "/index.html", timeout=10)
t.ok(st == 200, "the static page answers while the share is taken", st)
t.note(f"static page answered in {time.time() - t0:.3f} s")
st, _, body = http(BASE, "GET", "/realtime/health", timeout=10)
t.ok(st == 200, "/health answers while the share is taken", f"{st} {body}")
st, hdrs, body = http(BASE, "GET", f"/realtime/events?channel={ch}&since={ch}=0&wait=10", tok=tok, timeout=20)
t.ok(st == 503 and hdrs.get("Retry-After", "").isdigit() and isinstance(body, dict)
     and body.get("error", {}).get("code") == "busy", "a long-poll is answered 503 busy with Retry-After",
     f"{st} {hdrs.get('Retry-After')} {body}")
st, _, body = http(BASE, "GET", f"/realtime/events?channel={ch}&since={ch}=0", tok=tok)
t.ok(st == 200, "a poll that does not wait still answers", f"{st} {body}")
st, _, body = publish(BASE, tok, ch, 1)
t.ok(st == 201, "publishing still works", f"{st} {body}")

def get_in(tries=40):
    """A stream that got in (its starting cursor came), trying every 0.5 s; None."""
    for _ in range(tries):
        s = Stream(BASE, f"channel={ch}&token={tok}")
        s.wait_for(lambda x: x.closed or x.last_event_id is not None, 10)
        if not s.closed and s.last_event_id is not None:
            return s
        s.close()
        time.sleep(0.5)
    return None


# one stream ends: a new one gets in (the web server notices the departure first)
streams.pop().close()
got_in = get_in()
t.ok(got_in is not None, "once a stream ends, a new one gets in")
if got_in:
    streams.append(got_in)

kill_config = os.environ.get("KILL_CONFIG", "")
if kill_config:
    # this site's stream processes (CGI: their environment names its config)
    def ours():
        pids = []
        for p in os.listdir("/proc"):
            if not p.isdigit():
                continue
            try:
                exe = os.readlink(f"/proc/{p}/exe")
                env = open(f"/proc/{p}/environ", "rb").read().split(b"\0")
            except OSError:
                continue
            if exe.endswith("pgcast-sse.fcgi") and f"PGCAST_CONFIG={kill_config}".encode() in env:
                pids.append(int(p))
        return pids
    victims = ours()
    t.ok(len(victims) == CAP, f"{CAP} stream processes of this site run", victims)
    if victims:
        os.kill(victims[0], signal.SIGKILL)
    got_in = get_in()
    t.ok(got_in is not None, "a stream process killed with -9 gives its slot back: a new stream gets in")
    if got_in:
        streams.append(got_in)
    time.sleep(1)
    for s in streams:  # the killed one's connection has ended
        s.wait_for(lambda x: x.closed, 0.5)
    streams = [s for s in streams if not s.closed]

# real clients come back after "busy" by themselves, and then get what was published
full = Stream(BASE, f"channel={ch}&token={tok}")
full.wait_for(lambda x: x.closed, 10)
t.ok(is_busy(full) or (full.last_event_id is not None), "the share is full again", full.events)
if not full.closed:
    streams.append(full)
clients = []
module = os.environ.get("ES_MODULE")
if module:
    url = f"{BASE}/realtime/sse?channel={ch}&since={ch}=1&token={tok}"
    proc = subprocess.Popen(["node", os.path.join(os.environ["PGCAST_ROOT"], "tests", "sse", "es_client.mjs"),
                             module, url], stdout=subprocess.PIPE, text=True)
    lines = []
    threading.Thread(target=lambda: [lines.append(json.loads(x)) for x in proc.stdout], daemon=True).start()
    clients.append(("npm eventsource", proc, lines))
    proc2 = subprocess.Popen(["node", os.path.join(os.path.dirname(os.path.abspath(__file__)), "pgcast_client.mjs"),
                              module, BASE, ch, tok], stdout=subprocess.PIPE, text=True)
    lines2 = []
    threading.Thread(target=lambda: [lines2.append(json.loads(x)) for x in proc2.stdout], daemon=True).start()
    clients.append(("pgcast.js", proc2, lines2))
page = None
try:
    from browser import Browser
    br = Browser()
    with open(os.path.join(os.environ["WWW_DIR"], "busy.html"), "w") as f:
        f.write(f"""<!doctype html><title>busy</title><script>
window.seqs = []; window.busy = 0; window.opens = 0;
const es = new EventSource('/realtime/sse?channel={ch}&since={ch}=1&token={tok}');
es.onopen = () => {{ window.opens++; }};
es.onmessage = (e) => {{ const m = JSON.parse(e.data);
  if (m.type === 'error' && m.code === 'busy') window.busy++;
  if (m.seq) window.seqs.push(m.seq); }};
</script>""")
    page = br.open(f"{BASE}/busy.html")
    if not page.wait_for("window.seqs !== undefined", 15):
        t.note("the page did not load")
except Exception as e:  # noqa: BLE001
    t.note(f"no browser: {e}")
    br = None


def node_busy():
    return any(m.get("t") == "message" and m.get("type") == "error" for m in clients[0][2]) if clients else True


def page_busy():
    return page is None or (page.eval("window.busy") or 0) >= 1


end = time.time() + 30
while time.time() < end and not (node_busy() and page_busy()):
    time.sleep(0.2)
t.ok(node_busy(), "the npm eventsource client was told busy", clients[0][2] if clients else "")
pj = clients[1][2] if len(clients) > 1 else []
end = time.time() + 20
while clients and time.time() < end and not any(m["t"] == "busy" for m in pj):
    time.sleep(0.2)
t.ok(not clients or any(m["t"] == "busy" for m in pj), "pgcast.js was told busy", pj)
t.ok(page_busy(), "Chromium's EventSource was told busy")
for s in streams[-3:]:  # room for the three clients
    s.close()
for i in (2, 3):
    publish(BASE, tok, ch, i)


def node_seqs():
    return [m["seq"] for m in clients[0][2] if m.get("t") == "message" and m.get("seq")] if clients else [2, 3]


def pj_seqs():
    return [m["seq"] for m in pj if m["t"] == "event"] if clients else [2, 3]


def page_seqs():
    return (page.eval("window.seqs") or []) if page else [2, 3]


end = time.time() + 60
while time.time() < end and not (node_seqs() == [2, 3] and page_seqs() == [2, 3] and pj_seqs() == [2, 3]
                                 and sum(m["t"] == "es" for m in pj) > sum(m["t"] == "busy" for m in pj)):
    time.sleep(0.3)
log = [s for s in log_seqs("t1", ch) if s > 1]
t.ok(node_seqs() == log == [2, 3], "the npm eventsource client came back by itself and got every event once, "
     "in order (the event log)", f"{node_seqs()} log {log}")
t.ok(page_seqs() == log == [2, 3], "Chromium's EventSource came back by itself and got every event once, in order",
     f"{page_seqs()} log {log} opens {page.eval('window.opens') if page else ''} busy {page.eval('window.busy') if page else ''}")
if clients:
    t.ok(pj_seqs() == log == [2, 3], "pgcast.js got every event once, in order (the event log)", f"{pj} log {log}")
    t.ok(not [m for m in pj if m["t"] == "error" and m.get("code") == "busy"], "pgcast.js reports no error for busy",
         pj)
    t.ok(sum(m["t"] == "es" for m in pj) > sum(m["t"] == "busy" for m in pj) >= 1,
         "pgcast.js opened its stream again after busy (and it stayed open)", pj)
for _, proc, _ in clients:
    proc.kill()
    proc.wait()
if br:
    br.close()
for s in streams:
    s.close()
sys.exit(1 if t.failed else 0)
