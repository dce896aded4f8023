#!/bin/bash
# Stress under the sanitizer build (build/asan/bin): about two minutes of SSE, long-poll
# and WebSocket clients that resume (some reading slowly), connection churn, clients that
# stop reading, ping floods, one restart of the database and a SIGTERM to each FastCGI
# handler (lighttpd starts it again), while events are published. Every delivered
# sequence is checked against realtime_events_log (exactly the committed events, in
# order) and no server log may hold a sanitizer report.
#
# The database restart needs a PostgreSQL cluster of the test's own (the shared one of
# tests/run.sh must not restart under the other tests).
source "$PGCAST_ROOT/tests/lib/tap.sh"
source "$PGCAST_ROOT/tests/lib/webserver.sh"
PG_DIR="$PGCAST_TEST_WORK/stress-pg"
stop_cluster() { "$PGCAST_ROOT/scripts/pg-cluster.sh" stop "$PG_DIR" >/dev/null 2>&1; }
trap stop_cluster EXIT
eval "$("$PGCAST_ROOT/scripts/pg-cluster.sh" start "$PG_DIR")" || { echo "not ok 1 - own PostgreSQL cluster starts"; exit 1; }
psql -qX -v ON_ERROR_STOP=1 -c "CREATE DATABASE stress" >/dev/null || exit 1
export PGDATABASE=stress
export PGCAST_DATABASE_URL="host=127.0.0.1 port=$PGPORT user=postgres dbname=stress"
"$PGCAST_BIN/pgcast-migrate" --quiet || { echo "not ok 1 - migrations"; exit 1; }
web_init
trap 'web_stop_all; stop_cluster' EXIT
pgcast_config_add "sse_retry_ms = 300"
pgcast_config_add "retention_max_events = 10000000"
lighttpd_start || { web_logs; exit 1; }
export LIGHTTPD_URL WS_PORT WS_PID WEB_DIR PG_DIR
/usr/bin/python3 "$PGCAST_ROOT/tests/delivery/stress.py"
rc=$?
[ $rc = 0 ] || web_logs
exit $rc
