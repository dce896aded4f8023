#!/bin/bash
# What SSE streams cost on a shared-hosting account (docs/shared-hosting.md): the drop-in
# folder of `make static` behind Apache with mod_cgid and the account's .htaccess, N
# concurrent streams (BENCH_HOSTING_STREAMS, 20): PostgreSQL connections, processes and
# their memory, and how late an event reaches every stream (cgi_poll_interval_ms 1000).
source "$(dirname "$0")/lib.sh"
N=${BENCH_HOSTING_STREAMS:-20}
make --no-print-directory -s static >/dev/null 2>&1 || { echo "make static failed"; exit 1; }
bench_setup hosting
source tests/lib/hosting.sh
cp -r build/static/realtime "$HOSTING_HOME/public_html/realtime"
conf=$HOSTING_HOME/public_html/realtime/pgcast.conf
sed -i "s|^database_url = .*|database_url = $PGCAST_DATABASE_URL|; s|^jwt_secret = .*|jwt_secret = $TEST_JWT_SECRET|" "$conf"
chmod 0644 "$conf" # the programs run as www-data here (no suexec); a bench, not an account
hosting_apache_start cgid || exit 1
TOKEN=$(mint '{"sub":"b","tenant":"t1","exp":"+3600","channels":["project:*"]}')
before=$(psql -qXAt -c "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'pgcast'")
spids=()
bench_on_exit=stop_streams
stop_streams() { kill "${spids[@]}" 2>/dev/null; }
for i in $(seq 1 "$N"); do
    curl -sN -H "Authorization: Bearer $TOKEN" "$HOSTING_URL/realtime/sse?channel=project:bench" \
        >"$WEB_DIR/s$i.out" 2>/dev/null &
    spids+=($!)
done
for _ in $(seq 1 100); do
    [ "$(grep -l '^id: ' "$WEB_DIR"/s*.out 2>/dev/null | wc -l)" -ge "$N" ] && break
    sleep 0.1
done
sleep 2 # every process's stats row written
conns=$(psql -qXAt -c "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'pgcast'")
pids=$(pgrep -f "public_html/realtime/pgcast-sse.fcgi" | tr '\n' ' ')
nproc=$(echo $pids | wc -w)
rss=$(rss_kb $pids)
lat=()
for k in 1 2 3 4 5; do
    t0=$(date +%s%N)
    psql -qXAt -c "SELECT realtime.publish('t1', 'project:bench', 'e', '{\"k\": $k}')" >/dev/null
    for _ in $(seq 1 300); do
        [ "$(grep -l "\"k\": *$k}" "$WEB_DIR"/s*.out 2>/dev/null | wc -l)" -ge "$N" ] && break
        sleep 0.01
    done
    lat+=($(( ($(date +%s%N) - t0) / 1000000 )))
done
echo "CGI SSE streams open:             $N"
echo "PostgreSQL connections (pgcast):  $((conns - before)) ($(ratio $((conns - before)) "$N") per stream)"
echo "pgcast-sse processes:             $nproc, RSS $((rss / 1024)) MiB in all ($(( rss / (nproc > 0 ? nproc : 1) )) KiB each)"
echo "event to all $N streams, ms:      ${lat[*]} (median $(median "${lat[@]}"); cgi_poll_interval_ms 1000)"
echo "(on a loaded 2-core machine; compare: FastCGI holds any number of streams on 1 LISTEN + a pool of 8)"
