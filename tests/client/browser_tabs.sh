#!/bin/bash
# One connection per browser: three Chromium tabs of one origin with the same token share
# one WebSocket (the leader tab holds it, elected with Web Locks); each tab keeps its own
# subscriptions and presence. The leader tab is closed while events are being published,
# then the next leader is frozen (page lifecycle) and woken again: every remaining tab
# ends with every event once, in order (compared with realtime_events_log), and the
# sidecar sees one connection (its /metrics) before and after each hand-over.
source "$PGCAST_ROOT/tests/lib/tap.sh"
source "$PGCAST_ROOT/tests/lib/webserver.sh"
web_init
lighttpd_start || { web_logs; exit 1; }
cp "$PGCAST_ROOT/client/pgcast.js" "$WEB_DIR/www/pgcast.js"
export TOKEN=$(mint '{"sub":"alice","name":"Alice","tenant":"t1","exp":"+3600","channels":["project:*"],"publish":["project:*"]}')
export LIGHTTPD_URL WEB_DIR WS_PORT
/usr/bin/python3 - <<'PY'
import os, sys, threading, time, urllib.request
sys.path.insert(0, os.path.join(os.environ["PGCAST_ROOT"], "tests", "client"))
import harness
from harness import Browser, ok, publish, log_seqs, write_harness, js

write_harness(os.path.join(os.environ["WEB_DIR"], "www", "harness.html"))
base, token = os.environ["LIGHTTPD_URL"], os.environ["TOKEN"]
CH = "project:tabs"

def ws_connections():
    text = urllib.request.urlopen(f"http://127.0.0.1:{os.environ['WS_PORT']}/metrics", timeout=5).read().decode()
    for line in text.splitlines():
        if line.startswith("pgcast_ws_connections"):
            return int(float(line.split()[-1]))
    return None

def wait(cond, timeout=30):
    end = time.time() + timeout
    while time.time() < end:
        if cond():
            return True
        time.sleep(0.2)
    return cond()

class Publisher(threading.Thread):
    """Publishes one event every 50 ms until stopped."""
    def __init__(self):
        super().__init__(daemon=True)
        self.stop = threading.Event()
        self.count = 0
    def run(self):
        while not self.stop.is_set():
            publish("t1", CH)
            self.count += 1
            time.sleep(0.05)

with Browser() as b:
    tabs = []
    for i in range(3):
        p = b.open(f"{base}/harness.html")
        ok(p.wait_for("window.ready === true", 20), f"tab {i + 1} loads the client") or sys.exit(1)
        p.eval(f"window.rt = make({{ token: {js(token)} }}); rt.connect(); rt.watch({js(CH)}); rt.presence({js(CH)}); true")
        tabs.append(p)
    ok(all(p.wait_for("rt.status === 'connected' && rt.transport === 'websocket'", 30) for p in tabs),
       "the three tabs are connected over WebSocket", [p.eval("rt.statuses") for p in tabs])
    roles = lambda ps: [str(p.eval("rt.role")) for p in ps]
    ok(wait(lambda: sorted(roles(tabs)) == ["follower", "follower", "leader"]), "one tab leads, two follow", roles(tabs))
    ok(wait(lambda: ws_connections() == 1), "the sidecar sees one connection for the three tabs", ws_connections())

    leader = next((p for p in tabs if p.eval("rt.role") == "leader"), None)
    if leader is None:
        sys.exit(1)
    followers = [p for p in tabs if p is not leader]
    # each tab its own subscriptions: only the first follower follows project:only
    followers[0].eval("rt.watch('project:only'); true")
    # started live: published once the tab has its starting position (through the leader)
    followers[0].wait_for("rt.channels.get('project:only') && rt.channels.get('project:only').seq !== null", 15)
    publish("t1", "project:only", 2)
    ok(followers[0].wait_for("rt.received['project:only'] && rt.received['project:only'].length === 2", 15)
       and leader.eval("rt.received['project:only'] === undefined") and followers[1].eval("rt.received['project:only'] === undefined"),
       "a channel one follower subscribes reaches that tab only", [p.eval("rt.received") for p in tabs])
    # presence: a follower joins; every tab sees the member
    followers[1].eval(f"rt.presence({js(CH)}).join({{ tab: 3 }}); true")
    ok(all(p.wait_for(f"rt.presence({js(CH)}).list().some((m) => m.tab === 3)", 15) for p in tabs),
       "a follower's presence is seen by every tab", [p.eval(f"rt.presence({js(CH)}).list()") for p in tabs])

    # close the leader mid-stream
    pub = Publisher()
    pub.start()
    time.sleep(1.5)
    leader.call("Page.close")
    b.pages.remove(leader)
    time.sleep(2.5)
    ok(wait(lambda: sorted(roles(followers)) == ["follower", "leader"]), "closing the leader tab: another tab leads", roles(followers))
    time.sleep(1)

    # freeze the new leader (a sleeping tab), then wake it
    second = next((p for p in followers if p.eval("rt.role") == "leader"), None)
    if second is None:
        sys.exit(1)
    other = next(p for p in followers if p is not second)
    frozen = True
    try:
        second.call("Page.setWebLifecycleState", state="frozen")
    except RuntimeError as e:
        frozen = False
        print(f"# could not freeze the tab: {e}")
    if frozen:
        ok(wait(lambda: other.eval("rt.role") == "leader"), "a frozen leader hands over: the other tab leads", other.eval("rt.role"))
        time.sleep(2)
        second.call("Page.setWebLifecycleState", state="active")
        ok(second.wait_for("window.lifecycle.join() === 'freeze,resume'", 15), "the frozen tab saw freeze and resume",
           second.eval("window.lifecycle"))
    time.sleep(1.5)
    pub.stop.set()
    pub.join()
    want = log_seqs("t1", CH)
    for i, p in enumerate(followers):
        p.wait_for(f"rt.received[{js(CH)}].length >= {len(want)}", 30)
    time.sleep(1)
    for i, p in enumerate(followers):
        got = p.eval(f"rt.received[{js(CH)}]")
        dup = len(got) - len(set(got))
        ok(got == want, f"tab {i + 1} of the remaining two has every one of the {len(want)} events once, in order "
           f"across the hand-overs", f"len={len(got)} dup={dup} missing={sorted(set(want) - set(got))[:10]} "
           f"order={[x for k, x in enumerate(got) if k and x <= got[k - 1]][:10]}")
    ok(sorted(roles(followers)) == ["follower", "leader"], "one leader after the hand-overs", roles(followers))
    ok(wait(lambda: ws_connections() == 1), "the sidecar sees one connection again", ws_connections())
    ok(all(p.wait_for(f"rt.presence({js(CH)}).list().some((m) => m.tab === 3)", 20) for p in followers),
       "the follower's presence survived the hand-overs", [p.eval(f"rt.presence({js(CH)}).list()") for p in followers])
sys.exit(1 if harness.failed else 0)
PY
rc=$?
[ $rc = 0 ] || web_logs
exit $rc
