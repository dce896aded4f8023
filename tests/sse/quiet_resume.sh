#!/bin/bash
# A quiet SSE stream resumes where it was: the server ends a stream that carried no event
# (sse_max_duration_s), an event is published while the client waits to reconnect (the
# retry gap), and the client still gets it, exactly once, because the stream carried its
# cursor from the start (an id-only block). Both real clients — headless Chromium's
# EventSource and the npm `eventsource` package — under FastCGI (lighttpd) and plain CGI
# (Apache). Each client's events are compared with realtime_events_log.
source "$PGCAST_ROOT/tests/lib/tap.sh"
source "$PGCAST_ROOT/tests/lib/webserver.sh"
web_init
pgcast_config_add "sse_max_duration_s = 2"
pgcast_config_add "sse_retry_ms = 2500"
pgcast_config_add "cgi_poll_interval_ms = 200"
npm_eventsource || exit 1
lighttpd_start || { web_logs; exit 1; }
apache_start cgi || { web_logs; exit 1; }
export TOKEN=$(mint '{"sub":"u1","tenant":"t1","exp":"+3600","channels":["project:*"]}')
for who in lighttpd apache; do
    cat >"$WEB_DIR/www/quiet-$who.html" <<EOT
<!doctype html><title>quiet stream</title>
<script>
window.received = []; window.opens = 0; window.errors = 0; window.ids = [];
const es = new EventSource('/realtime/sse?channel=project:quiet-$who-browser&token=$TOKEN');
es.onopen = () => { window.opens++; };
es.onerror = () => { window.errors++; };
es.onmessage = (e) => { const m = JSON.parse(e.data); window.ids.push(e.lastEventId);
                        if (m.type === 'demo.tick') window.received.push(m.seq); };
</script>
EOT
done
LIGHTTPD_URL=$LIGHTTPD_URL APACHE_URL=$APACHE_URL \
/usr/bin/python3 - <<'PY'
import json, os, subprocess, sys, threading, time
sys.path.insert(0, os.path.join(os.environ["PGCAST_ROOT"], "tests", "lib"))
from browser import Browser

n = 0
def ok(cond, what, detail=None):
    global n
    n += 1
    print(f"{'ok' if cond else 'not ok'} {n} - {what}", flush=True)
    if not cond and detail is not None:
        print(f"#   {detail}", flush=True)

def psql(sql):
    return subprocess.run(["psql", "-qXAt", "-c", sql], check=True, capture_output=True, text=True).stdout.strip()

def publish(channel):
    psql(f"SELECT realtime.publish('t1', '{channel}', 'demo.tick', '{{}}')")

def logged(channel):
    out = psql(f"SELECT seq FROM realtime.realtime_events_log WHERE tenant_id = 't1' AND channel = '{channel}' ORDER BY seq")
    return [int(x) for x in out.split()] if out else []

class NodeClient:
    def __init__(self, url):
        self.proc = subprocess.Popen(["node", os.path.join(os.environ["PGCAST_ROOT"], "tests", "sse", "es_client.mjs"),
                                      os.environ["ES_MODULE"], url], stdout=subprocess.PIPE, text=True)
        self.opens = self.errors = 0
        self.received, self.ids = [], []
        threading.Thread(target=self.read, daemon=True).start()
    def read(self):
        for line in self.proc.stdout:
            m = json.loads(line)
            if m["t"] == "open": self.opens += 1
            elif m["t"] == "error": self.errors += 1
            elif m["t"] == "message":
                self.ids.append(m["lastEventId"])
                if m["type"] == "demo.tick": self.received.append(m["seq"])
    def state(self):
        return self.opens, self.errors, list(self.received)
    def close(self):
        self.proc.kill(); self.proc.wait()

class PageClient:
    def __init__(self, page):
        self.page = page
    def state(self):
        s = self.page.eval("[window.opens || 0, window.errors || 0, window.received || []]")
        return s[0], s[1], s[2]

token = os.environ["TOKEN"]
with Browser() as b:
    for who, base, mode in (("lighttpd", os.environ["LIGHTTPD_URL"], "FastCGI"), ("apache", os.environ["APACHE_URL"], "CGI")):
        clients = {
            "Chromium EventSource": (PageClient(b.open(f"{base}/quiet-{who}.html")), f"project:quiet-{who}-browser"),
            "npm eventsource": (NodeClient(f"{base}/realtime/sse?channel=project:quiet-{who}-node&token={token}"),
                                f"project:quiet-{who}-node"),
        }
        published = {}
        end = time.time() + 45
        while time.time() < end:
            done = True
            for name, (c, chan) in clients.items():
                opens, errors, got = c.state()
                if name not in published and errors >= 1:
                    publish(chan)  # the stream ended: the client waits sse_retry_ms to reconnect
                    published[name] = opens
                # done once the event came and one more reconnect showed no duplicate
                if not (name in published and len(got) >= 1 and opens >= 3):
                    done = False
            if done:
                break
            time.sleep(0.1)
        for name, (c, chan) in clients.items():
            opens, errors, got = c.state()
            what = f"{mode} ({who}), {name}"
            ok(published.get(name) == 1, f"{what}: published while the client waited to reconnect after a quiet stream",
               f"opens at publish: {published.get(name)}, opens now {opens}, errors {errors}")
            log = logged(chan)
            ok(log == [1] and got == log, f"{what}: the event published in the gap arrived exactly once",
               f"received {got}, log {log}, opens {opens}")
            if isinstance(c, NodeClient):
                c.close()
PY
rc=$?
[ $rc = 0 ] || web_logs
exit $rc
