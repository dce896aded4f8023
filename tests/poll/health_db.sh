#!/bin/bash
# The poll handler and a database that misbehaves (a private cluster of its own):
# - frozen (every server process SIGSTOPped): /health answers 503 within a bound instead
#   of hanging until the database wakes up;
# - pgcast's backends terminated (pg_terminate_backend) while the database stays up: no
#   request fails for the stale pooled connections.
# Long-polls also leave a connection-stats row (transport long-poll).
source "$PGCAST_ROOT/tests/lib/tap.sh"
source "$PGCAST_ROOT/tests/lib/webserver.sh"
dir="$PGCAST_TEST_WORK/health-db-pg"
eval "$("$PGCAST_ROOT/scripts/pg-cluster.sh" start "$dir")" || exit 1
export PGCAST_DATABASE_URL="host=127.0.0.1 port=$PGPORT user=postgres dbname=postgres"
"$PGCAST_BIN/pgcast-migrate" --quiet || exit 1
web_init
pm=$(head -1 "$dir/data/postmaster.pid")
thaw() { kill -CONT "$pm" $(pgrep -P "$pm") 2>/dev/null; }
trap 'thaw; web_stop_all; "$PGCAST_ROOT/scripts/pg-cluster.sh" stop "$dir" >/dev/null 2>&1' EXIT
lighttpd_start || { web_logs; exit 1; }
TOKEN=$(mint '{"sub":"u1","tenant":"t1","exp":"+3600","channels":["project:*"]}')
health() { curl -s -o /dev/null -w '%{http_code} %{time_total}' -m 20 "$LIGHTTPD_URL/realtime/health"; }
poll() { curl -s -o /dev/null -w '%{http_code}' -m 12 -H "Authorization: Bearer $TOKEN" "$LIGHTTPD_URL/realtime/events?channel=project:h$1"; }

read -r code _ <<<"$(health)"
is "health is 200 while the database runs" "$code" 200

# frozen database
kill -STOP "$pm" $(pgrep -P "$pm")
read -r code secs <<<"$(health)"
thaw
echo "# health with the database frozen: $code after $secs s"
is "health with the database frozen: 503" "$code" 503
# (its budget is 2 s, 4 s when it must connect: 8 s leaves room for a busy machine, and a
# hanging request would last until curl gives up at 20 s)
ok_if "within 8 s, not hanging (took $secs s)" awk -v s="$secs" 'BEGIN { exit !(s < 8) }'
for _ in $(seq 1 60); do read -r code _ <<<"$(health)"; [ "$code" = 200 ] && break; sleep 0.5; done
is "health is 200 again once the database runs again" "$code" 200

# several pooled connections, then their backends terminated
pids=(); for i in $(seq 1 16); do poll "$i" >/dev/null & pids+=($!); done; wait "${pids[@]}"
for i in $(seq 1 8); do poll "$i" >/dev/null; done
n=$(psql -qXAt -c "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE application_name = 'pgcast'")
echo "# terminated $n pooled backends"
ok_if "the handler had pooled connections ($n)" [ "$n" -ge 1 ]
sleep 0.5
codes=$(for i in $(seq 1 12); do poll "$i"; echo; done | sort | uniq -c | tr -s ' ' | paste -sd ';')
is "after pg_terminate_backend, every request is answered (no 503 per stale connection)" "$codes" " 12 200"
read -r code _ <<<"$(health)"
is "health is 200 at once too" "$code" 200

# long-polls leave a connection-stats row
curl -s -o /dev/null -m 12 -H "Authorization: Bearer $TOKEN" "$LIGHTTPD_URL/realtime/events?channel=project:lp&since=project:lp=0&wait=1"
(sleep 1; psql -qXAt -c "SELECT realtime.publish('t1', 'project:lp', 'demo.tick', '{}')" >/dev/null) &
pub=$!
body=$(curl -s -m 12 -H "Authorization: Bearer $TOKEN" "$LIGHTTPD_URL/realtime/events?channel=project:lp&since=project:lp=0&wait=10")
wait $pub
like "a long-poll answered by a publish" "$body" '"seq":1'
# stats are written every second (in batches): until both rows are there and closed, 20 s at most
for _ in $(seq 1 40); do
    rows=$(psql -qXAt -c "SELECT tenant_id, user_id, channel, message_count, disconnect_reason IS NOT NULL FROM realtime.realtime_connection_stats WHERE transport = 'long-poll' ORDER BY id" | paste -sd ';')
    [ "$rows" = "t1|u1|project:lp|0|t;t1|u1|project:lp|1|t" ] && break
    sleep 0.5
done
is "each long-poll has a closed connection-stats row with its messages" "$rows" "t1|u1|project:lp|0|t;t1|u1|project:lp|1|t"
[ "$_tap_failed" = 0 ] || web_logs
tap_done
