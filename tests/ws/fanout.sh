#!/bin/bash
# Fan-out under load, through the benchmark's load generator (bench/loadgen.c --subscribe,
# raw RFC 6455 with masked frames): 1,000 connections on one channel while events are
# published by SQL one transaction at a time. Every connection must get every event —
# the hub wakes connections while the loop is still writing to the ones it woke before,
# which once lost the rest of a batch. Counts, not timings, are checked.
source "$PGCAST_ROOT/tests/lib/tap.sh"
source "$PGCAST_ROOT/tests/lib/webserver.sh"
web_init
ws_start || { web_logs; exit 1; }
tok=$(mint '{"sub":"fan","tenant":"t1","exp":"+600","channels":["fan:*"]}')
loadgen=$PGCAST_ROOT/build/release/bench/loadgen  # make test builds both; the client need not be slow
[ -x "$loadgen" ] || loadgen=$PGCAST_ROOT/build/asan/bench/loadgen
out=$(LOADGEN_GRACE_S=60 "$loadgen" --subscribe fan:all 127.0.0.1 "$WS_PORT" \
    "/ws?token=$tok" 1000 3 100 pg "$PGCAST_DATABASE_URL" t1 fan:all)
echo "$out" | sed 's/^/# /'
like "1000 connections open and subscribed" "$out" "ready open=1000 subscribed=1000"
like "300 events published" "$out" "published=300 "
like "every connection got every event: 300,000 deliveries, none lost" "$out" "deliveries=300000 expected=300000"
like "no connection was dropped" "$out" "streams=1000 "
tap_done
