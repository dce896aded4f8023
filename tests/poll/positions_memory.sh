#!/bin/bash
# Conditional polls answered from the positions the poll process knows (its hub keeps
# them current from NOTIFY; a sync barrier on the LISTEN connection per batch): ~2,000
# polls from 4 workers while events are published cause almost no positions queries
# (realtime.positions_of calls, pg_stat_user_functions), and never a wrong 304 — no
# poll sent after a publish's commit answers 304 for a cursor before it, also while the
# hub's LISTEN connection is terminated mid-run, and while the secret is rotated. Every
# event received is checked against realtime_events_log (missing, duplicated, out of
# order all fail). Through lighttpd.
source "$PGCAST_ROOT/tests/lib/tap.sh"
source "$PGCAST_ROOT/tests/lib/webserver.sh"
web_init
psql_q "ALTER DATABASE \"$PGDATABASE\" SET track_functions = 'pl'" >/dev/null
lighttpd_start || { web_logs; exit 1; }
export TOKEN=$(mint '{"sub":"u1","tenant":"t1","exp":"+3600","channels":["project:*"]}')
/usr/bin/python3 "$PGCAST_ROOT/tests/poll/positions_memory.py" "$LIGHTTPD_URL" "${POLL_MEMORY_POLLS:-2000}"
rc=$?
[ $rc = 0 ] || web_logs
exit $rc
