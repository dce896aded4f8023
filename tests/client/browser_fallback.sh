#!/bin/bash
# The client's transport choice in headless Chromium against real deployments:
#  - shared hosting (Apache, plain CGI, no WebSocket sidecar: {prefix}/ws answers 404):
#    while SSE delivers, status says connected via sse (never "reconnecting"), the
#    WebSocket is not retried at the reconnect pace, every event arrives once, in order;
#    subscribe() after the WebSocket failed, and transports ['sse','poll'] with
#    connect-then-subscribe, use SSE (no polling); presence goes over HTTP;
#  - lighttpd with the sidecar: no throwaway SSE request while the WebSocket works;
#    polling without `since` starts live (the retained history is not delivered as new);
#    a token function renews the WebSocket's token in-band before its exp.
source "$PGCAST_ROOT/tests/lib/tap.sh"
source "$PGCAST_ROOT/tests/lib/webserver.sh"
web_init
pgcast_config_add "cgi_poll_interval_ms = 200"
lighttpd_start || { web_logs; exit 1; }
apache_start cgi || { web_logs; exit 1; }
cp "$PGCAST_ROOT/client/pgcast.js" "$WEB_DIR/www/pgcast.js"
for who in a b c d e; do
    export "TOKEN_$who=$(mint "{\"sub\":\"user-$who\",\"tenant\":\"t1\",\"exp\":\"+3600\",\"channels\":[\"project:*\",\"run:*\"],\"publish\":[\"project:*\"]}")"
done
export LIGHTTPD_URL APACHE_URL WEB_DIR TEST_JWT_SECRET
/usr/bin/python3 - <<'PY'
import os, subprocess, sys, time
sys.path.insert(0, os.path.join(os.environ["PGCAST_ROOT"], "tests", "client"))
import harness
from harness import Browser, ok, publish, log_seqs, write_harness, js

write_harness(os.path.join(os.environ["WEB_DIR"], "www", "harness.html"))
cgi, lt = os.environ["APACHE_URL"], os.environ["LIGHTTPD_URL"]
tok = lambda who: os.environ[f"TOKEN_{who}"]

def page(b, base):
    p = b.open(f"{base}/harness.html")
    if not p.wait_for("window.ready === true", 20):
        raise RuntimeError("the harness page did not load")
    return p

with Browser() as b:
    # --- shared hosting: no WebSocket endpoint ---
    pa = page(b, cgi)
    pa.eval(f"window.rt = make({{ token: {js(tok('a'))} }}); rt.connect(); rt.watch('project:cgi'); true")
    ok(pa.wait_for("rt.status === 'connected' && rt.transport === 'sse'", 30),
       "shared hosting: the page connects via sse", pa.eval("rt.statuses"))
    start = time.time()
    for i in range(20):
        publish("t1", "project:cgi")
        time.sleep(1)
    want = log_seqs("t1", "project:cgi")
    pa.wait_for(f"rt.received['project:cgi'].length >= {len(want)}", 20)
    time.sleep(0.5)
    statuses = pa.eval("rt.statuses")
    after = statuses[statuses.index("connected/sse"):] if "connected/sse" in statuses else statuses
    ok(all(s == "connected/sse" for s in after) and pa.eval("rt.status") == "connected",
       "while SSE delivers the status says connected via sse, never reconnecting", statuses)
    ws = pa.eval("counts.ws.length")
    ok(ws <= 2, f"the WebSocket endpoint answering 404 is not retried at the reconnect pace ({ws} attempts in {time.time() - start:.0f} s)",
       pa.eval("counts.ws"))
    got = pa.eval("rt.received['project:cgi']")
    ok(got == want and len(want) == 20, "every event arrives over SSE once, in order (compared with the event log)", (got, want))
    pa.eval("rt.presence('project:cgi').join({ who: 'a' }); true")
    ok(pa.wait_for("rt.presence('project:cgi').list().some((m) => m.who === 'a')", 30),
       "presence over HTTP while SSE delivers: the page's member appears in the list", (pa.eval("rt.presence('project:cgi').list()"), pa.eval("rt.errors")))

    # subscribe() after the WebSocket failed
    pb = page(b, cgi)
    pb.eval(f"window.rt = make({{ token: {js(tok('b'))} }}); rt.connect(); true")
    ok(pb.wait_for("rt.status === 'connected' && counts.ws.length >= 1", 30),
       "shared hosting: connected with nothing subscribed once the WebSocket failed", pb.eval("rt.statuses"))
    pb.eval("rt.watch('project:late'); true")
    ok(pb.wait_for("rt.transport === 'sse'", 20), "a subscription made after the WebSocket failed uses SSE",
       (pb.eval("rt.transport"), pb.eval("rt.statuses")))
    publish("t1", "project:late", 3)
    pb.wait_for("rt.received['project:late'].length >= 3", 15)
    ok(pb.eval("rt.received['project:late']") == log_seqs("t1", "project:late"), "and receives every event once, in order",
       pb.eval("rt.received['project:late']"))
    polls = pb.eval("counts.fetch.filter((u) => u.includes('/events')).length")
    ok(polls == 0, "without polling", pb.eval("counts.fetch"))

    # transports ['sse', 'poll'], connect then subscribe
    pc = page(b, cgi)
    pc.eval(f"window.rt = make({{ token: {js(tok('c'))}, transports: ['sse', 'poll'] }}); rt.connect(); rt.watch('project:ssepoll'); true")
    ok(pc.wait_for("rt.status === 'connected' && rt.transport === 'sse'", 30),
       "transports ['sse','poll'] with connect-then-subscribe use SSE", pc.eval("rt.statuses"))
    publish("t1", "project:ssepoll", 3)
    pc.wait_for("rt.received['project:ssepoll'].length >= 3", 15)
    ok(pc.eval("rt.received['project:ssepoll']") == log_seqs("t1", "project:ssepoll")
       and pc.eval("counts.fetch.filter((u) => u.includes('/events')).length") == 0,
       "and receive every event over SSE, without polling", (pc.eval("rt.received"), pc.eval("counts.fetch")))
    for p in (pa, pb, pc):
        p.eval("rt.disconnect(); true")

    # --- lighttpd with the sidecar ---
    pe = page(b, lt)
    pe.eval(f"window.rt = make({{ token: {js(tok('e'))} }}); rt.connect(); rt.watch('project:ws'); true")
    ok(pe.wait_for("rt.status === 'connected' && rt.transport === 'websocket'", 30), "with the sidecar the page connects over WebSocket",
       pe.eval("rt.statuses"))
    # the channel starts live: published once the page has its starting position
    pe.wait_for("rt.channels.get('project:ws') && rt.channels.get('project:ws').seq !== null", 15)
    publish("t1", "project:ws", 3)
    pe.wait_for("rt.received['project:ws'].length >= 3", 15)
    time.sleep(2)
    ok(pe.eval("rt.received['project:ws']") == log_seqs("t1", "project:ws"), "and receives every event")
    ok(pe.eval("counts.es.length") == 0 and pe.eval("counts.fetch.filter((u) => u.includes('/sse')).length") == 0,
       "no throwaway /realtime/sse request while the WebSocket works", (pe.eval("counts.es"), pe.eval("rt.statuses")))

    # a token function: the WebSocket's token is renewed in-band before its exp
    pf = page(b, lt)
    mint = lambda exp: subprocess.run(["/usr/bin/python3", os.path.join(os.environ["PGCAST_ROOT"], "scripts", "jwt.py"), os.environ["TEST_JWT_SECRET"],
                                       '{"sub":"user-f","tenant":"t1","exp":"+%d","channels":["project:*"]}' % exp],
                                      check=True, capture_output=True, text=True).stdout.strip()
    os.environ["TOKEN_SHORT"], os.environ["TOKEN_LONG"] = mint(8), mint(3600)
    pf.eval(f"window.t0 = Date.now(); window.rt = make({{ token: () => Date.now() - t0 < 2000 ? {js(os.environ['TOKEN_SHORT'])} : {js(os.environ['TOKEN_LONG'])}, renewBeforeMs: 5000 }}); rt.connect(); rt.watch('project:renew'); true")
    ok(pf.wait_for("rt.status === 'connected' && rt.transport === 'websocket'", 30), "a page with a short-lived token connects over WebSocket")
    time.sleep(11)  # past the first token's exp
    publish("t1", "project:renew", 2)
    pf.wait_for("rt.received['project:renew'].length >= 2", 15)
    ok(pf.eval("counts.ws.length") == 1 and pf.eval("rt.transport") == "websocket"
       and pf.eval("rt.received['project:renew']") == log_seqs("t1", "project:renew"),
       "its token is renewed in-band before exp: the same WebSocket goes on delivering",
       (pf.eval("counts.ws.length"), pf.eval("rt.statuses"), pf.eval("rt.errors")))

    # polling without since starts live
    publish("t1", "run:old", 20)
    pd = page(b, lt)
    pd.eval(f"window.rt = make({{ token: {js(tok('d'))}, transports: ['poll'], pollSilenceMs: 300 }}); rt.connect(); rt.watch('run:old'); true")
    ok(pd.wait_for("rt.status === 'connected' && rt.transport === 'poll'", 30), "a polling page connects via poll", pd.eval("rt.statuses"))
    # its starting position is the channel's current one (a first poll asks for it)
    pd.wait_for("rt.channels.get('run:old') && rt.channels.get('run:old').seq !== null", 15)
    publish("t1", "run:old", 5)
    pd.wait_for("rt.received['run:old'].length >= 5", 15)
    time.sleep(1)
    got = pd.eval("rt.received['run:old']")
    ok(got == log_seqs("t1", "run:old", after=20),
       "polling without since starts live: only the 5 new events, none of the 20 retained ones", got)
sys.exit(1 if harness.failed else 0)
PY
rc=$?
[ $rc = 0 ] || web_logs
exit $rc
