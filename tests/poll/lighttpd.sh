#!/bin/bash
# The polling API through real lighttpd (FastCGI, bin-path): events, paging, 304,
# long-poll (and 500 waiters on one publish), publish errors, tenants, presence.
source "$PGCAST_ROOT/tests/lib/tap.sh"
source "$PGCAST_ROOT/tests/lib/webserver.sh"
web_init
lighttpd_start || { web_logs; exit 1; }
/usr/bin/python3 "$PGCAST_ROOT/tests/poll/poll_checks.py" "$LIGHTTPD_URL" lighttpd "${POLL_WAITERS:-500}"
rc=$?
[ $rc = 0 ] || web_logs
exit $rc
