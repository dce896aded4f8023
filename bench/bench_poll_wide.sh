#!/bin/bash
# Poll pages through lighttpd + pgcast-poll (the shipped config, release build), with
# ApacheBench (ab -c 16): a one-channel page of 10 small events, and a page of 20
# channels with limit=30 (2,000 events of ~500 bytes spread over the channels), the
# case where each channel used to read `limit` full payloads before the overall limit.
# Requests/s, the median of three runs each. Figures only.
source "$(dirname "$0")/lib.sh"
command -v ab >/dev/null || { echo "ab (apache2-utils) is needed"; exit 1; }
bench_setup pollwide
lighttpd_start || { web_logs; exit 1; }
tok=$(mint '{"sub":"bench","tenant":"bench","exp":"+86400","channels":["bench:*"]}')
psql -qXAt -c "SELECT realtime.publish('bench', 'bench:page', 'e', jsonb_build_object('i', g)) FROM generate_series(1, 10) g" >/dev/null
psql -qXAt -c "SELECT realtime.publish('bench', 'bench:w' || (g % 20), 'e', jsonb_build_object('i', g, 'pad', repeat('q', 500)))
                 FROM generate_series(1, 2000) g" >/dev/null
wide="$LIGHTTPD_URL/realtime/events?limit=30"
for c in $(seq 0 19); do wide="$wide&channel=bench:w$c"; done
rps() { # N URL -> requests/s
    ab -q -n "$1" -c 16 -H "Authorization: Bearer $tok" "$2" 2>&1 | awk '/Requests per second/ {print $4}'
}
median3() { printf '%s\n' "$@" | sort -n | sed -n 2p; }
page=$(median3 "$(rps 3000 "$LIGHTTPD_URL/realtime/events?channel=bench:page&since=bench:page%3D0")" \
               "$(rps 3000 "$LIGHTTPD_URL/realtime/events?channel=bench:page&since=bench:page%3D0")" \
               "$(rps 3000 "$LIGHTTPD_URL/realtime/events?channel=bench:page&since=bench:page%3D0")")
wide_rps=$(median3 "$(rps 1500 "$wide")" "$(rps 1500 "$wide")" "$(rps 1500 "$wide")")
echo "one channel, 10 events:           $page requests/s"
echo "20 channels, limit=30 (30 events): $wide_rps requests/s"
