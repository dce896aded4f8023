#!/bin/bash
# Plain-CGI SSE ends at once on SIGTERM (what Apache's mod_cgi(d) and lighttpd send when
# a client leaves or a timeout hits), and a client that leaves an Apache CGI stream is
# noticed within one heartbeat interval (keepalive comments, every 5 s by default, make Apache write to it).
source "$PGCAST_ROOT/tests/lib/tap.sh"
source "$PGCAST_ROOT/tests/lib/webserver.sh"
web_init
pgcast_config_add "cgi_poll_interval_ms = 200"
apache_start cgi || { web_logs; exit 1; }
TOKEN=$(mint '{"sub":"u1","tenant":"t1","exp":"+3600","channels":["project:*"]}')
open_rows() { psql_q "SELECT count(*) FROM realtime.realtime_connection_stats WHERE transport = 'sse' AND disconnected_at IS NULL"; }
now_ms() { date +%s%3N; }

# 1. SIGTERM to a CGI stream (run directly, as the web server runs it)
out="$WEB_DIR/cgi-term"
env -i PATH="$PATH" ASAN_OPTIONS="$ASAN_OPTIONS" PGCAST_CONFIG="$PGCAST_TEST_CONFIG" GATEWAY_INTERFACE=CGI/1.1 \
    REQUEST_METHOD=GET REQUEST_URI=/realtime/sse QUERY_STRING="channel=project:term" \
    HTTP_AUTHORIZATION="Bearer $TOKEN" \
    timeout -k 2 30 "$PGCAST_BIN/pgcast-sse.fcgi" </dev/null >"$out.out" 2>"$out.err" &
pid=$!
for _ in $(seq 1 300); do grep -q '^id: ' "$out.out" 2>/dev/null && break; sleep 0.1; done
ok_if "a CGI stream started (its cursor came first)" grep -q '^id: project:term=0' "$out.out"
t0=$(now_ms)
kill -TERM $pid
wait $pid
rc=$?
el=$(( $(now_ms) - t0 ))
echo "# a CGI stream ended ${el} ms after SIGTERM (status $rc)"
# (at once: before any heartbeat or timeout, 30 s; 10 s leaves a busy machine room for
# the last writes and the sanitizer's exit checks)
ok_if "a CGI stream ends at once on SIGTERM (${el} ms, under 10 s)" [ "$el" -lt 10000 -a "$rc" = 0 ]
like "with a last message telling the client to reconnect" "$(grep '^data: ' "$out.out" | tail -1)" '"code":"shutdown"'

# 2. a client that leaves an Apache CGI stream (heartbeats every 30 s)
curl -s -N -m 60 -H "Authorization: Bearer $TOKEN" "$APACHE_URL/realtime/sse?channel=project:leave" >"$WEB_DIR/leave.out" &
cpid=$!
for _ in $(seq 1 300); do [ "$(open_rows)" = 1 ] && break; sleep 0.1; done
is "the stream is open (its connection-stats row)" "$(open_rows)" 1
sleep 1
t0=$(now_ms)
kill -TERM $cpid; wait $cpid 2>/dev/null
for _ in $(seq 1 400); do [ "$(open_rows)" = 0 ] && break; sleep 0.1; done
el=$(( $(now_ms) - t0 ))
echo "# the CGI stream noticed its client left after ${el} ms (heartbeat 30000 ms, keepalive 5000 ms, the default)"
ok_if "a client that left is noticed within one heartbeat interval (${el} ms, under 20 s)" [ "$(open_rows)" = 0 -a "$el" -lt 20000 ]
[ "$_tap_failed" = 0 ] || web_logs
tap_done
