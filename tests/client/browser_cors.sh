#!/bin/bash
# A page on another origin (its own little web server) uses a deployment through the
# client's baseUrl: WebSocket, SSE (token in the query), polling and publish (token in
# the Authorization header, after a CORS preflight), HTTP presence, and cookies' mode
# (credentials: 'include'). The deployment allows the page's origin (allowed_origins).
# The same page served as http://localhost:PORT is another origin, not allowed: its
# WebSocket is refused at the handshake, its fetches fail at the preflight, and nothing
# it sends is published.
source "$PGCAST_ROOT/tests/lib/tap.sh"
source "$PGCAST_ROOT/tests/lib/webserver.sh"
web_init
PAGE_PORT=$("$PGCAST_ROOT/scripts/free-port.sh")
export PAGE_ORIGIN="http://127.0.0.1:$PAGE_PORT"
export REFUSED_ORIGIN="http://localhost:$PAGE_PORT"
pgcast_config_add "allowed_origins = self, $PAGE_ORIGIN"
lighttpd_start || { web_logs; exit 1; }
mkdir -p "$WEB_DIR/page"
cp "$PGCAST_ROOT/client/pgcast.js" "$WEB_DIR/page/pgcast.js"
/usr/bin/python3 -m http.server "$PAGE_PORT" --bind 127.0.0.1 --directory "$WEB_DIR/page" >"$WEB_DIR/log/page-server.log" 2>&1 &
_web_pids+=($!)
wait_port "$PAGE_PORT" || { echo "# the page's web server did not start"; exit 1; }
export TOKEN=$(mint '{"sub":"carol","name":"Carol","tenant":"t1","exp":"+3600","channels":["project:*"],"publish":["project:*"]}')
# Does the deployment answer a CORS preflight for the page's origin?
preflight=$(curl -s -o /dev/null -D - -X OPTIONS "$LIGHTTPD_URL/realtime/events?channel=project:x" \
    -H "Origin: $PAGE_ORIGIN" -H "Access-Control-Request-Method: GET" \
    -H "Access-Control-Request-Headers: authorization" | tr -d '\r')
if grep -qi "^access-control-allow-origin: *$PAGE_ORIGIN" <<<"$preflight"; then export CORS=1; else export CORS=0; fi
echo "# the deployment $([ $CORS = 1 ] && echo answers || echo does not answer) the CORS preflight for $PAGE_ORIGIN"
export LIGHTTPD_URL WEB_DIR
/usr/bin/python3 - <<'PY'
import os, sys, time
sys.path.insert(0, os.path.join(os.environ["PGCAST_ROOT"], "tests", "client"))
import harness
from harness import Browser, ok, skip, publish, log_seqs, write_harness, js

write_harness(os.path.join(os.environ["WEB_DIR"], "page", "harness.html"))
deploy = os.environ["LIGHTTPD_URL"] + "/realtime"
page_url = os.environ["PAGE_ORIGIN"] + "/harness.html"
token, cors = os.environ["TOKEN"], os.environ["CORS"] == "1"

with Browser() as b:
    p = b.open(page_url)
    ok(p.wait_for("window.ready === true", 20) and p.eval("location.origin") != os.environ["LIGHTTPD_URL"],
       "the page loads from another origin than the deployment's", p.eval("location.origin"))
    ok(p.eval(f"new pgcast.PgcastClient({{ baseUrl: {js(deploy)} }}).wsUrl") == deploy.replace("http:", "ws:") + "/ws",
       "the WebSocket URL follows baseUrl's host, not the page's")

    # WebSocket from another origin
    p.eval(f"window.w = make({{ baseUrl: {js(deploy)}, token: {js(token)}, share: false }}); w.connect(); w.watch('project:xo-ws'); true")
    ok(p.wait_for("w.status === 'connected' && w.transport === 'websocket'", 30), "the WebSocket connects to the other origin",
       p.eval("w.statuses"))
    # the channel starts live: published once the client has its starting position
    p.wait_for("w.channels.get('project:xo-ws') && w.channels.get('project:xo-ws').seq !== null", 15)
    publish("t1", "project:xo-ws", 3)
    p.wait_for("w.received['project:xo-ws'].length >= 3", 15)
    ok(p.eval("w.received['project:xo-ws']") == log_seqs("t1", "project:xo-ws"), "and receives every event", p.eval("w.received"))
    p.eval("w.disconnect(); true")

    checks = [
        "SSE from another origin (token in the query) receives every event",
        "publish over HTTP from another origin (Authorization header, preflight) answers its seq",
        "polling from another origin (Authorization header) receives every event",
        "HTTP presence from another origin: join, and the member list",
        "SSE with credentials: 'include' (cookies mode) receives every event",
    ]
    ok(cors, "the deployment answers the CORS preflight for the page's origin")

    p.eval(f"window.s = make({{ baseUrl: {js(deploy)}, token: {js(token)}, share: false, transports: ['sse'] }}); s.connect(); s.watch('project:xo-sse', {{ since: 0 }}); true")
    # (SSE: from position 0 of the fresh channel, read from the log: a stream starting live
    # tells the page its position only with its first event, so nothing says when it has one)
    p.wait_for("s.status === 'connected' && s.transport === 'sse'", 30)
    publish("t1", "project:xo-sse", 3)
    p.wait_for("s.received['project:xo-sse'].length >= 3", 15)
    ok(p.eval("s.transport") == "sse" and p.eval("s.received['project:xo-sse']") == log_seqs("t1", "project:xo-sse"), checks[0],
       (p.eval("s.statuses"), p.eval("s.received"), p.eval("s.errors")))
    seq = p.eval("s.publish('project:xo-sse', 'test.tick', { from: 'page' }).then((n) => n, (e) => 'error: ' + e.message)")
    ok(seq == 4, checks[1], seq)
    p.eval("s.disconnect(); true")

    p.eval(f"window.q = make({{ baseUrl: {js(deploy)}, token: {js(token)}, share: false, transports: ['poll'], pollSilenceMs: 300 }}); q.connect(); q.watch('project:xo-poll'); true")
    p.wait_for("q.status === 'connected' && q.transport === 'poll'", 30)
    p.wait_for("q.channels.get('project:xo-poll') && q.channels.get('project:xo-poll').seq !== null", 15)
    publish("t1", "project:xo-poll", 3)
    p.wait_for("q.received['project:xo-poll'].length >= 3", 15)
    ok(p.eval("q.received['project:xo-poll']") == log_seqs("t1", "project:xo-poll"), checks[2], (p.eval("q.statuses"), p.eval("q.errors")))
    p.eval("q.presence('project:xo-poll').join({ page: 'other-origin' }); true")
    ok(p.wait_for("q.presence('project:xo-poll').list().some((m) => m.page === 'other-origin')", 30), checks[3],
       (p.eval("q.presence('project:xo-poll').list()"), p.eval("q.errors")))
    p.eval("q.disconnect(); true")

    p.eval(f"window.c = make({{ baseUrl: {js(deploy)}, token: {js(token)}, share: false, transports: ['sse'], credentials: 'include' }}); c.connect(); c.watch('project:xo-cred', {{ since: 0 }}); true")
    p.wait_for("c.status === 'connected' && c.transport === 'sse'", 30)
    publish("t1", "project:xo-cred", 2)
    p.wait_for("c.received['project:xo-cred'].length >= 2", 15)
    ok(p.eval("c.received['project:xo-cred']") == log_seqs("t1", "project:xo-cred"), checks[4], (p.eval("c.statuses"), p.eval("c.errors")))
    p.eval("c.disconnect(); true")

    # the same page from an origin that is not allowed
    r = b.open(os.environ["REFUSED_ORIGIN"] + "/harness.html")
    ok(r.wait_for("window.ready === true", 20) and r.eval("location.origin") == os.environ["REFUSED_ORIGIN"],
       "a second page loads from an origin that is not allowed", r.eval("location.origin"))
    ws_url = deploy.replace("http:", "ws:") + "/ws?token=" + token
    r.eval(f"""window.wsr = {{ open: false, closed: false }};
              const sock = new WebSocket({js(ws_url)});
              sock.onopen = () => {{ wsr.open = true; }};
              sock.onclose = (e) => {{ wsr.closed = true; wsr.code = e.code; }}; true""")
    r.wait_for("wsr.closed", 20)
    ok(r.eval("wsr.closed && !wsr.open"), "its WebSocket (token in the query) is refused at the handshake",
       r.eval("wsr"))
    res = r.eval(f"""fetch({js(deploy + '/events?channel=project:xo-refused')},
                          {{ headers: {{ Authorization: 'Bearer ' + {js(token)} }} }})
                     .then((x) => 'status ' + x.status, (e) => 'refused: ' + e.name)""")
    ok(res.startswith("refused"), "its fetch of /events with an Authorization header fails at the preflight", res)
    res = r.eval(f"""fetch({js(deploy + '/publish')}, {{ method: 'POST',
                          headers: {{ Authorization: 'Bearer ' + {js(token)}, 'Content-Type': 'application/json' }},
                          body: JSON.stringify({{ channel: 'project:xo-refused', type: 't', payload: {{}} }}) }})
                     .then((x) => 'status ' + x.status, (e) => 'refused: ' + e.name)""")
    ok(res.startswith("refused"), "its publish fails at the preflight", res)
    res = r.eval(f"""fetch({js(deploy + '/publish')}, {{ method: 'POST', mode: 'no-cors', credentials: 'include',
                          headers: {{ 'Content-Type': 'text/plain' }},
                          body: JSON.stringify({{ channel: 'project:xo-refused', type: 't', payload: {{}} }}) }})
                     .then((x) => 'sent ' + x.type, (e) => 'refused: ' + e.name)""")
    time.sleep(0.5)
    ok(log_seqs("t1", "project:xo-refused") == [], "nothing it sent was published (a no-cors text/plain POST neither)", res)
sys.exit(1 if harness.failed else 0)
PY
rc=$?
[ $rc = 0 ] || web_logs
exit $rc
