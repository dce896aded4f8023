#!/bin/bash
# Capacity of a site: how many SSE streams, and how many WebSockets proxied to the
# sidecar, Apache with the shipped configs (pgcast-proxy-fcgi.conf + pgcast-capacity.conf)
# and lighttpd with the shipped config hold while the site's static page still answers
# in < 100 ms. For each offered number of clients (bench/loadgen.c holding them open):
# how many are held, the static page's and /health's median and slowest answer of 10 (curl) while
# they are held; "page < 100 ms" judges the median (one slow answer on a busy machine is
# noise; the slowest is printed too). Under Apache, streams beyond pgcast's share (PGCAST_SITE_MAX_STREAMS
# in pgcast-capacity.conf) are told to come back later: the share caps the SSE figure
# and keeps the workers left for the page.
#   BENCH_CAP_SSE   offered SSE streams     (default "200 600 1000 1400")
#   BENCH_CAP_WS    offered WebSockets      (default "200 600 1000 1400")
#   BENCH_CAP_HOLD  seconds each level is held (default 12)
#   BENCH_CAP_SERVERS  which setups run (default "stock apache lighttpd")
#   BENCH_CAP_DEFAULT  SSE streams offered to Debian's stock MPM (150 workers) with
#                   pgcast's automatic share ("stock-auto") and without a share
#                   ("stock-0", the site before the share)  (default "160 300")
source "$(dirname "$0")/lib.sh"
sse_levels=${BENCH_CAP_SSE:-200 600 1000 1400}
ws_levels=${BENCH_CAP_WS:-200 600 1000 1400}
hold=${BENCH_CAP_HOLD:-12}
LOADGEN=build/release/bench/loadgen
bench_setup capacity
tok=$(mint '{"sub":"bench","tenant":"bench","exp":"+86400","channels":["bench:*"]}')
pgcast_config_add "ws_max_conns_per_ip = 0"
static_page() { mkdir -p "$WEB_DIR/www"; echo '<!doctype html><title>static</title><p>static page' >"$WEB_DIR/www/index.html"; }
static_page

answers() { # URL -> "MEDIAN SLOWEST" of 10 answers in ms ("timeout" past 5 s or on an error)
    local t all=()
    for _ in $(seq 1 10); do
        t=$(curl -s -o /dev/null -m 5 -w '%{http_code} %{time_total}' "$1") || { echo "timeout timeout"; return; }
        [ "${t%% *}" = 200 ] || { echo "status-${t%% *} -"; return; }
        all+=("$(awk -v s="${t#* }" 'BEGIN { printf "%d", s * 1000 }')")
        sleep 0.2
    done
    printf '%s\n' "${all[@]}" | sort -n | awk '{ v[NR] = $1 } END { print v[int((NR + 1) / 2)], v[NR] }'
}

level() { # SERVER URL KIND N
    local server=$1 url=$2 kind=$3 n=$4 port=${2##*:} args static health held
    if [ "$kind" = sse ]; then args=(127.0.0.1 "$port" "/realtime/sse?channel=bench:cap&token=$tok")
    else args=(--ws --subscribe bench:cap 127.0.0.1 "$port" "/realtime/ws?token=$tok"); fi
    nice $LOADGEN "${args[@]}" "$n" "$hold" 0 idle >"$PGCAST_TEST_WORK/cap.out" 2>&1 &
    local lg=$!
    sleep $(( hold / 2 ))
    read -r static static_max <<<"$(answers "$url/index.html")"
    read -r health health_max <<<"$(answers "$url/realtime/health")"
    wait $lg
    # SSE: streams still open at the end; WebSocket: upgraded (the rest were refused or
    # never answered)
    if [ "$kind" = sse ]; then held=$(grep -o 'streams=[0-9]*' "$PGCAST_TEST_WORK/cap.out" | cut -d= -f2)
    else held=$(grep -o 'ready open=[0-9]*' "$PGCAST_TEST_WORK/cap.out" | cut -d= -f2); fi
    local okmark="yes"
    [[ "$static" =~ ^[0-9]+$ ]] && [ "$static" -lt 100 ] || okmark="NO"
    printf '%-10s %-4s offered %5d held %5s   static page median %5s ms (slowest %5s)   /health median %5s ms (slowest %5s)   page < 100 ms: %s\n' \
        "$server" "$kind" "$n" "${held:-?}" "$static" "$static_max" "$health" "$health_max" "$okmark"
    # the departures reach the servers (Apache notices a stream's at its next keepalive)
    for _ in $(seq 1 60); do
        [ "$(psql -qXAt -c "SELECT count(*) FROM realtime.realtime_connection_stats WHERE disconnected_at IS NULL")" = 0 ] && break
        sleep 0.5
    done
    sleep 2
}

echo "Capacity benchmark: $(nproc) cores, load generator on the same machine (nice), hold ${hold}s per level"
echo
# Debian's stock event MPM (150 workers) with pgcast's automatic share (100 under Apache),
# then without any share (site_max_streams = 0): what the site did before
servers=${BENCH_CAP_SERVERS:-stock apache lighttpd}
for share in auto 0; do
    [[ " $servers " == *" stock "* ]] || break
    [ $share = 0 ] && pgcast_config_add "site_max_streams = 0"
    APACHE_SITE_CONF="Include /etc/apache2/mods-available/mpm_event.conf" apache_start proxy-fcgi || { web_logs; exit 1; }
    for n in ${BENCH_CAP_DEFAULT:-160 300}; do level "stock-$share" "$APACHE_URL" sse "$n"; done
    web_stop_all
    web_init
    pgcast_config_add "ws_max_conns_per_ip = 0"
    static_page
done
if [[ " $servers " == *" apache "* ]]; then
    APACHE_SITE_CONF="Include \"$PGCAST_ROOT/apache-conf/pgcast-capacity.conf\"" apache_start proxy-fcgi || { web_logs; exit 1; }
    for n in $sse_levels; do level apache "$APACHE_URL" sse "$n"; done
    for n in $ws_levels; do level apache "$APACHE_URL" ws "$n"; done
    web_stop_all
    web_init
    pgcast_config_add "ws_max_conns_per_ip = 0"
    static_page
fi
if [[ " $servers " == *" lighttpd "* ]]; then
    lighttpd_start || { web_logs; exit 1; }
    for n in $sse_levels; do level lighttpd "$LIGHTTPD_URL" sse "$n"; done
    for n in $ws_levels; do level lighttpd "$LIGHTTPD_URL" ws "$n"; done
fi
echo
echo "Apache: pgcast-capacity.conf gives 1024 workers, pgcast a share of 640 SSE streams + long-polls (beyond it"
echo "streams are told to come back later) and proxied WebSockets at most 16 per child (256; beyond, 503 after 2 s)."
echo "held: SSE streams still open at the end (the others were told to come back later), WebSockets upgraded."
