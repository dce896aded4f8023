#!/bin/bash
# A runtime role that cannot read realtime.realtime_secret (a grant missing): the
# processes say so and keep delivering, every wake-up read as "read every channel";
# forged notifications still deliver nothing (the log is what is delivered).
source "$PGCAST_ROOT/tests/lib/tap.sh"
source "$PGCAST_ROOT/tests/lib/webserver.sh"
# privileges on a table belong to this test's database only
psql_q "REVOKE SELECT ON realtime.realtime_secret FROM pgcast_runtime" >/dev/null
web_init
lighttpd_start || { web_logs; exit 1; }
tok=$(mint '{"sub":"u1","tenant":"t1","exp":"+600","channels":["project:*"]}')
out="$WEB_DIR/stream.out"
curl -sN --max-time 60 "$LIGHTTPD_URL/realtime/sse?channel=project:ns&token=$tok" >"$out" &
curl_pid=$!
for _ in $(seq 1 300); do grep -q '^id: ' "$out" 2>/dev/null && break; sleep 0.1; done
psql_q "SELECT pg_notify('realtime_events', json_build_object('t','t1','c','project:ns','s',1,'ms',0,'e','forged')::text || E'\n' || '{\"forged\":1}')" >/dev/null
sleep 1
psql_q "SELECT realtime.publish('t1', 'project:ns', 'genuine', '{\"n\": 1}')" >/dev/null
psql_q "SELECT realtime.publish('t1', 'project:ns', 'genuine', '{\"n\": 2}')" >/dev/null
for _ in $(seq 1 300); do grep -q '"seq":2' "$out" && break; sleep 0.1; done
kill $curl_pid 2>/dev/null; wait $curl_pid 2>/dev/null
like "without the secret the stream still gets the events" "$(grep -c '"type":"genuine"' "$out")" '^2$'
ok_if "and nothing forged" test "$(grep -c forged "$out")" = 0
like "the handler says why it is slower" "$(cat "$WEB_DIR"/log/* 2>/dev/null)" "cannot read realtime.realtime_secret"
tap_done
