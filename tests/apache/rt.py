"""What the tests in tests/apache share: TAP output, tokens, HTTP calls and SSE streams
over raw sockets against one running web server, and the event log to compare with.
Standard library only; psql (PGDATABASE etc. from tests/run.sh) reads the log."""
import json, os, sys, urllib.error, urllib.parse, urllib.request

sys.path.insert(0, os.path.join(os.environ["PGCAST_ROOT"], "scripts"))
from jwt import mint  # noqa: E402
sys.path.insert(0, os.path.join(os.environ["PGCAST_ROOT"], "tests/lib"))
from sse_raw import Stream  # noqa: E402,F401  (re-exported)
from tap import Tap, psql  # noqa: E402,F401  (re-exported)

SECRET = "pgcast-test-secret"


def token(**claims):
    c = {"sub": "u1", "tenant": "t1", "exp": "+3600", "channels": ["app:*"], "publish": ["app:*"]}
    c.update(claims)
    return mint(SECRET, c)


def log_seqs(tenant, channel):
    out = psql(f"SELECT seq FROM realtime.realtime_events_log WHERE tenant_id = '{tenant}' "
               f"AND channel = '{channel}' ORDER BY seq")
    return [int(x) for x in out.split()] if out else []


def http(base, method, path, body=None, tok=None, timeout=30):
    """(status, headers, parsed JSON or text) of one request; never raises for a status."""
    headers = {}
    if tok:
        headers["Authorization"] = "Bearer " + tok
    data = None
    if body is not None:
        data = json.dumps(body).encode()
        headers["Content-Type"] = "application/json"
    req = urllib.request.Request(base + path, data=data, method=method, headers=headers)
    try:
        with urllib.request.urlopen(req, timeout=timeout) as res:
            status, hdrs, raw = res.status, dict(res.headers), res.read()
    except urllib.error.HTTPError as e:
        status, hdrs, raw = e.code, dict(e.headers), e.read()
    except OSError as e:
        return 0, {}, str(e)
    try:
        return status, hdrs, json.loads(raw)
    except ValueError:
        return status, hdrs, raw.decode("utf-8", "replace")


def publish(base, tok, channel, i):
    return http(base, "POST", "/realtime/publish", {"channel": channel, "type": "e", "payload": {"i": i}}, tok)
