#!/bin/bash
# Headless Chromium's own EventSource through lighttpd: the server ends every stream after
# 2 s (sse_max_duration_s) while events keep being published; the browser's reconnects
# with Last-Event-ID must end with every event exactly once, in order.
source "$PGCAST_ROOT/tests/lib/tap.sh"
source "$PGCAST_ROOT/tests/lib/webserver.sh"
web_init
pgcast_config_add "sse_max_duration_s = 2"
pgcast_config_add "sse_retry_ms = 200"
lighttpd_start || { web_logs; exit 1; }
export TOKEN=$(mint '{"sub":"u1","tenant":"t1","exp":"+3600","channels":["project:*"]}')
cat >"$WEB_DIR/www/sse.html" <<EOT
<!doctype html><title>pgcast EventSource</title>
<script>
window.received = []; window.opens = 0; window.errors = 0;
const es = new EventSource('/realtime/sse?channel=project:browser&token=$TOKEN');
es.onopen = () => { window.opens++; };
es.onerror = () => { window.errors++; };
es.onmessage = (e) => { const m = JSON.parse(e.data); if (m.type === 'demo.tick') window.received.push(m.seq); };
</script>
EOT
URL="$LIGHTTPD_URL/sse.html" /usr/bin/python3 - <<'PY'
import os, subprocess, sys, time
sys.path.insert(0, os.path.join(os.environ["PGCAST_ROOT"], "tests", "lib"))
from browser import Browser

n = 0
def ok(cond, what, detail=None):
    global n
    n += 1
    print(f"{'ok' if cond else 'not ok'} {n} - {what}")
    if not cond and detail is not None:
        print(f"#   {detail}")

def publish():
    subprocess.run(["psql", "-qXAt", "-c", "SELECT realtime.publish('t1', 'project:browser', 'demo.tick', '{}')"],
                   check=True, capture_output=True)

with Browser() as b:
    page = b.open(os.environ["URL"])
    ok(page.wait_for("window.opens >= 1", 20), "the page's EventSource connects")
    total = 0
    end = time.time() + 7
    while time.time() < end:
        publish()
        total += 1
        time.sleep(0.1)
    page.wait_for(f"window.received.length >= {total}", 15)
    got = page.eval("window.received")
    opens = page.eval("window.opens")
    ok(opens >= 3, "the server ended the stream and the browser reconnected by itself", f"opens={opens}")
    ok(len(got) == total, f"the browser received all {total} events", f"{len(got)}")
    ok(got == list(range(1, total + 1)), "exactly once each, in order, across the reconnects",
       [x for i, x in enumerate(got) if i == 0 or x != got[i - 1] + 1][:10])
PY
rc=$?
[ $rc = 0 ] || web_logs
exit $rc
