#!/bin/bash
# Plain-CGI SSE at the configured limits, under AddressSanitizer: many channels of 200
# bytes without ':' or '.' (each its own channel type) used to overflow fixed stack
# buffers (the heartbeat query's type list, the initial positions' channel list) and to
# truncate the connection-stats channel list. Run as CGI by Apache and directly (a query
# longer than a web server's request line).
source "$PGCAST_ROOT/tests/lib/tap.sh"
source "$PGCAST_ROOT/tests/lib/webserver.sh"
web_init
pgcast_config_add "max_channels = 400"
pgcast_config_add "sse_max_duration_s = 2"
pgcast_config_add "cgi_poll_interval_ms = 200"
apache_start cgi || { web_logs; exit 1; }
TOKEN=$(mint '{"sub":"u1","tenant":"t1","exp":"+3600","channels":["*"]}')

clean() { ! grep -q "Sanitizer" "$1"; }
# N channel names of 200 bytes, no ':' or '.', as a query string
names() { for i in $(seq 1 "$1"); do printf 'c%04d%0195d\n' "$i" 0 | tr 0 x; done; }
query() { names "$1" | sed 's/^/channel=/' | paste -sd '&'; }

# one CGI stream, run directly: stdout, stderr and status in $out.*
run_cgi() { # N
    out="$WEB_DIR/cgi-$1"
    env -i PATH="$PATH" ASAN_OPTIONS="$ASAN_OPTIONS" UBSAN_OPTIONS="$UBSAN_OPTIONS" \
        PGCAST_CONFIG="$PGCAST_TEST_CONFIG" GATEWAY_INTERFACE=CGI/1.1 REQUEST_METHOD=GET \
        SCRIPT_NAME=/realtime/sse REQUEST_URI=/realtime/sse QUERY_STRING="$(query "$1")" \
        HTTP_AUTHORIZATION="Bearer $TOKEN" \
        timeout -k 5 30 "$PGCAST_BIN/pgcast-sse.fcgi" </dev/null >"$out.out" 2>"$out.err"
    echo $? >"$out.rc"
}

for n in 50 300; do
    run_cgi $n
    is "CGI, $n channels of 200 bytes: the stream ran and ended by itself" "$(cat "$out.rc")" 0
    ok_if "CGI, $n channels: no sanitizer report" clean "$out.err"
    [ "$(cat "$out.rc")" = 0 ] || sed 's/^/# /' "$out.err" | head -30
    id=$(grep -m1 '^id: ' "$out.out")
    is "CGI, $n channels: the first id: line positions every channel" \
        "$(echo "${id#id: }" | tr ',' '\n' | grep -c '=0$')" "$n"
done
stats=$(psql_q "SELECT string_agg(length(channel)::text, ',' ORDER BY length(channel)) FROM realtime.realtime_connection_stats WHERE transport = 'sse'")
is "the connection-stats rows name every channel (50 and 300 names of 200 bytes)" "$stats" "$((50 * 201 - 1)),$((300 * 201 - 1))"

# the same through Apache (its request line takes 50 such channels)
code=$(curl -s -o "$WEB_DIR/apache.out" -w '%{http_code}' -m 20 -H "Authorization: Bearer $TOKEN" \
    "$APACHE_URL/realtime/sse?$(query 50)")
is "Apache CGI, 50 channels of 200 bytes: 200" "$code" 200
id=$(grep -m1 '^id: ' "$WEB_DIR/apache.out")
is "Apache CGI: the first id: line positions every channel" "$(echo "${id#id: }" | tr ',' '\n' | grep -c '=0$')" 50
ok_if "Apache CGI: no sanitizer report in its error log" clean "$WEB_DIR/log/apache-error.log"
[ "$_tap_failed" = 0 ] || web_logs
tap_done
