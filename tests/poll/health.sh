#!/bin/bash
# /health flips to 503 when the database stops and back to 200 when it starts again.
# A private cluster of its own: the shared one must not stop under the other tests.
source "$PGCAST_ROOT/tests/lib/tap.sh"
source "$PGCAST_ROOT/tests/lib/webserver.sh"
dir="$PGCAST_TEST_WORK/health-pg"
eval "$("$PGCAST_ROOT/scripts/pg-cluster.sh" start "$dir")" || exit 1
export PGCAST_DATABASE_URL="host=127.0.0.1 port=$PGPORT user=postgres dbname=postgres"
"$PGCAST_BIN/pgcast-migrate" --quiet || exit 1
web_init
trap 'web_stop_all; "$PGCAST_ROOT/scripts/pg-cluster.sh" stop "$dir" >/dev/null 2>&1' EXIT
lighttpd_start || { web_logs; exit 1; }
status() { curl -s -o /dev/null -w '%{http_code}' -m 10 "$LIGHTTPD_URL/realtime/health"; }
is "health is 200 while the database runs" "$(status)" 200
like "with database ok" "$(curl -s "$LIGHTTPD_URL/realtime/health")" '"database":"ok"'
"$PGCAST_ROOT/scripts/pg-cluster.sh" stop "$dir"
is "health is 503 once the database stopped" "$(status)" 503
like "saying the database is unreachable" "$(curl -s "$LIGHTTPD_URL/realtime/health")" '"database":"unreachable"'
"$PGCAST_ROOT/scripts/pg-cluster.sh" start "$dir" >/dev/null
is "health is 200 again once it is back" "$(status)" 200
tap_done
