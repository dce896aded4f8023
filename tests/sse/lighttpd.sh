#!/bin/bash
# SSE through real lighttpd with the shipped lighttpd-conf/pgcast.conf (FastCGI, bin-path):
# headers, no buffering, errors, resume, tenants, heartbeats and config changes, and
# a client that stops reading (only it is ended; the client that reads resumes like a
# browser if the burst ends it at its own bound, and must never sit silent on an open
# stream), 1,000 concurrent streams whose count returns to zero.
source "$PGCAST_ROOT/tests/lib/tap.sh"
source "$PGCAST_ROOT/tests/lib/webserver.sh"
web_init
# a queue small enough for the slow-client check to overflow it quickly
pgcast_config_add "queue_bytes = 2MiB"
lighttpd_start || { web_logs; exit 1; }
SSE_HEARTBEATS=1 SSE_SLOW=1 /usr/bin/python3 "$PGCAST_ROOT/tests/sse/sse_checks.py" "$LIGHTTPD_URL" lighttpd "${SSE_STREAMS:-1000}"
rc=$?
[ $rc = 0 ] || web_logs
exit $rc
