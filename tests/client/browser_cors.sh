#!/bin/bash
# A page on another origin (its own little web server) uses a deployment through the
# client's baseUrl: WebSocket, SSE (token in the query), polling and publish (token in
# the Authorization header, after a CORS preflight), HTTP presence, and cookies' mode
# (credentials: 'include'). The deployment allows the page's origin (allowed_origins).
# The HTTP checks need the server's CORS support: when the deployment does not answer a
# preflight for the page's origin they are reported as skipped (TAP "# SKIP").
source "$PGCAST_ROOT/tests/lib/tap.sh"
source "$PGCAST_ROOT/tests/lib/webserver.sh"
web_init
PAGE_PORT=$("$PGCAST_ROOT/scripts/free-port.sh")
export PAGE_ORIGIN="http://127.0.0.1:$PAGE_PORT"
# only a build that knows the key may be given it (unknown keys stop the handlers)
if grep -aq allowed_origins "$PGCAST_BIN/pgcast-poll.fcgi"; then
    pgcast_config_add "allowed_origins = $PAGE_ORIGIN"
fi
lighttpd_start || { web_logs; exit 1; }
mkdir -p "$WEB_DIR/page"
cp "$PGCAST_ROOT/client/pgcast.js" "$WEB_DIR/page/pgcast.js"
/usr/bin/python3 -m http.server "$PAGE_PORT" --bind 127.0.0.1 --directory "$WEB_DIR/page" >"$WEB_DIR/log/page-server.log" 2>&1 &
_web_pids+=($!)
_wait_port "$PAGE_PORT" || { echo "# the page's web server did not start"; exit 1; }
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
    time.sleep(0.5)
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
    if not cors:
        for c in checks:
            skip(c, "the deployment does not answer the CORS preflight yet")
        sys.exit(1 if harness.failed else 0)

    p.eval(f"window.s = make({{ baseUrl: {js(deploy)}, token: {js(token)}, share: false, transports: ['sse'] }}); s.connect(); s.watch('project:xo-sse'); true")
    p.wait_for("s.status === 'connected' && s.transport === 'sse'", 30)
    time.sleep(0.5)
    publish("t1", "project:xo-sse", 3)
    p.wait_for("s.received['project:xo-sse'].length >= 3", 15)
    ok(p.eval("s.transport") == "sse" and p.eval("s.received['project:xo-sse']") == log_seqs("t1", "project:xo-sse"), checks[0],
       (p.eval("s.statuses"), p.eval("s.received"), p.eval("s.errors")))
    seq = p.eval("s.publish('project:xo-sse', 'test.tick', { from: 'page' }).then((n) => n, (e) => 'error: ' + e.message)")
    ok(seq == 4, checks[1], seq)
    p.eval("s.disconnect(); true")

    p.eval(f"window.q = make({{ baseUrl: {js(deploy)}, token: {js(token)}, share: false, transports: ['poll'], pollSilenceMs: 300 }}); q.connect(); q.watch('project:xo-poll'); true")
    p.wait_for("q.status === 'connected' && q.transport === 'poll'", 30)
    time.sleep(0.5)
    publish("t1", "project:xo-poll", 3)
    p.wait_for("q.received['project:xo-poll'].length >= 3", 15)
    ok(p.eval("q.received['project:xo-poll']") == log_seqs("t1", "project:xo-poll"), checks[2], (p.eval("q.statuses"), p.eval("q.errors")))
    p.eval("q.presence('project:xo-poll').join({ page: 'other-origin' }); true")
    ok(p.wait_for("q.presence('project:xo-poll').list().some((m) => m.page === 'other-origin')", 30), checks[3],
       (p.eval("q.presence('project:xo-poll').list()"), p.eval("q.errors")))
    p.eval("q.disconnect(); true")

    p.eval(f"window.c = make({{ baseUrl: {js(deploy)}, token: {js(token)}, share: false, transports: ['sse'], credentials: 'include' }}); c.connect(); c.watch('project:xo-cred'); true")
    p.wait_for("c.status === 'connected' && c.transport === 'sse'", 30)
    time.sleep(0.5)
    publish("t1", "project:xo-cred", 2)
    p.wait_for("c.received['project:xo-cred'].length >= 2", 15)
    ok(p.eval("c.received['project:xo-cred']") == log_seqs("t1", "project:xo-cred"), checks[4], (p.eval("c.statuses"), p.eval("c.errors")))
sys.exit(1 if harness.failed else 0)
PY
rc=$?
[ $rc = 0 ] || web_logs
exit $rc
