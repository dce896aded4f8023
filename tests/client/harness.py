"""Helpers for the client's Chromium tests (tests/client/browser_*.sh): TAP lines,
publishing with psql, the event log, and a page that loads the client with counters on
WebSocket, EventSource and fetch.

    from harness import ok, publish, log_seqs, write_harness
"""
import json, os, subprocess, sys

sys.path.insert(0, os.path.join(os.environ["PGCAST_ROOT"], "tests", "lib"))
from browser import Browser  # noqa: E402,F401

_n = 0
failed = 0


def ok(cond, what, detail=None):
    global _n, failed
    _n += 1
    print(f"{'ok' if cond else 'not ok'} {_n} - {what}", flush=True)
    if not cond:
        failed += 1
        if detail is not None:
            print(f"#   {str(detail)[:600]}", flush=True)
    return cond


def skip(what, why):
    global _n
    _n += 1
    print(f"ok {_n} # SKIP {what}: {why}", flush=True)


def psql(sql):
    return subprocess.run(["psql", "-qXAt", "-v", "ON_ERROR_STOP=1", "-c", sql],
                          check=True, capture_output=True, text=True).stdout.strip()


def publish(tenant, channel, k=1, type_="test.tick"):
    for _ in range(k):
        psql(f"SELECT realtime.publish('{tenant}', '{channel}', '{type_}', '{{}}')")


def log_seqs(tenant, channel, after=0):
    out = psql(f"SELECT seq FROM realtime.realtime_events_log WHERE tenant_id = '{tenant}' "
               f"AND channel = '{channel}' AND seq > {after} ORDER BY seq")
    return [int(x) for x in out.split()] if out else []


HARNESS = """<!doctype html><meta charset="utf-8"><title>pgcast client test</title>
<script>
// counters: every WebSocket, EventSource and fetch the page makes
window.counts = { ws: [], es: [], fetch: [] };
window.lifecycle = [];
for (const e of ['freeze', 'resume']) document.addEventListener(e, () => window.lifecycle.push(e));
const WS = window.WebSocket;
window.WebSocket = function (url, p) { window.counts.ws.push(String(url)); return new WS(url, p); };
window.WebSocket.prototype = WS.prototype;
Object.assign(window.WebSocket, { CONNECTING: 0, OPEN: 1, CLOSING: 2, CLOSED: 3 });
const ES = window.EventSource;
window.EventSource = function (url, init) { window.counts.es.push(String(url)); return new ES(url, init); };
window.EventSource.prototype = ES.prototype;
const F = window.fetch.bind(window);
window.fetch = (url, init) => { window.counts.fetch.push(String(url)); return F(url, init); };
</script>
<script type="module">
import * as pgcast from '%(module)s';
window.pgcast = pgcast;
// a client whose status changes and received events are recorded for the test
window.make = (opts) => {
  const rt = new pgcast.PgcastClient(opts);
  rt.statuses = [];
  rt.received = {};
  rt.errors = [];
  rt.on('status', (s, t) => rt.statuses.push(t ? s + '/' + t : s));
  rt.on('error', (e) => rt.errors.push(String(e && e.message || e)));
  rt.watch = (channel, opt) => {
    rt.received[channel] = rt.received[channel] || [];
    return rt.subscribe(channel, (m) => rt.received[channel].push(m.type === 'gap' ? 'gap' : m.seq), opt || {});
  };
  return rt;
};
window.ready = true;
</script>
"""


def write_harness(path, module="/pgcast.js"):
    with open(path, "w") as f:
        f.write(HARNESS % {"module": module})


def js(value):
    return json.dumps(value)
