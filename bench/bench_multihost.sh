#!/bin/bash
# The multi-host test (tests/multihost/three_hosts.sh) at full size, release build, on a
# private cluster: BENCH_HOSTS hosts (3), each a network namespace with lighttpd, both
# handlers and the sidecar, BENCH_PER_KIND resuming clients of each kind per host (4:
# SSE, long-poll, WebSocket direct, WebSocket through lighttpd), events published from SQL
# (2 publishers, about 2 x 1/BENCH_SQL_INTERVAL transactions/s of 1-3 events) and by POST on
# every host, for BENCH_SECONDS (60), one host's sidecar killed with kill -9 at 35% and
# started again at 50%. Prints the test's verdicts (every client got exactly the committed
# events, in order) and publish->client latency per transport across hosts. Needs root.
source "$(dirname "$0")/lib.sh"
bench_setup multihost
echo "Multi-host: ${BENCH_HOSTS:-3} hosts x $((4 * ${BENCH_PER_KIND:-4})) clients, ${BENCH_SECONDS:-60}s, $(nproc) cores, load average $(cut -d' ' -f1-3 /proc/loadavg)"
MH_HOSTS=${BENCH_HOSTS:-3} MH_DURATION=${BENCH_SECONDS:-60} MH_PER_KIND=${BENCH_PER_KIND:-4} \
    MH_SQL_INTERVAL=${BENCH_SQL_INTERVAL:-0.04} MH_POST_INTERVAL=${BENCH_POST_INTERVAL:-0.1} \
    bash tests/multihost/three_hosts.sh
