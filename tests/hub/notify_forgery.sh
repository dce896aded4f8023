#!/bin/bash
# NOTIFY is a wake-up, never data: a role with LOGIN and no grant at all forges events
# and presence with pg_notify and reads what it can by LISTEN, against real lighttpd (SSE
# handler) and the sidecar behind it (tests/hub/notify_forgery.py has the checks).
source "$PGCAST_ROOT/tests/lib/tap.sh"
source "$PGCAST_ROOT/tests/lib/webserver.sh"
forger="forger_$$"
psql -qX -v ON_ERROR_STOP=1 -c "CREATE ROLE $forger LOGIN" >/dev/null || exit 1
trap 'web_stop_all; psql -qX -c "DROP ROLE IF EXISTS $forger" >/dev/null 2>&1' EXIT
web_init
trap 'web_stop_all; psql -qX -c "DROP ROLE IF EXISTS $forger" >/dev/null 2>&1' EXIT
lighttpd_start || { web_logs; exit 1; }
/usr/bin/python3 "$PGCAST_ROOT/tests/hub/notify_forgery.py" "$LIGHTTPD_URL" "$forger"
rc=$?
[ $rc = 0 ] || web_logs
exit $rc
