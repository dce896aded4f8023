#!/bin/bash
# Many publishers on one channel, some sleeping inside their transaction before commit and
# some rolling back, while a reader tails the log by position: the reader must end with
# exactly the committed events, seq 1..N, no gap, no duplicate, in order. Then publishers
# on different channels must not wait for each other.
source "$(dirname "$0")/../lib/tap.sh"
work=$(mktemp -d "$PGCAST_TEST_WORK/conc.XXXX")
trap 'kill $(jobs -p) 2>/dev/null; wait 2>/dev/null' EXIT

PUBLISHERS=10 TXNS=30
: >"$work/expected"
for w in $(seq 1 $PUBLISHERS); do
    {
        for i in $(seq 1 $TXNS); do
            echo "BEGIN;"
            echo "SELECT realtime.publish('t1', 'project:race', 'race', '{\"w\": $w, \"i\": $i}');"
            (( (w + i) % 3 == 0 )) && echo "SELECT pg_sleep(0.0$(( (w * i) % 4 + 1 )));"
            if (( (w * 7 + i) % 4 == 0 )); then
                echo "ROLLBACK;"
            else
                echo "COMMIT;"
                echo "$w $i" >>"$work/expected"
            fi
        done
    } >"$work/pub$w.sql"
done

for w in $(seq 1 $PUBLISHERS); do
    psql -qXAt -v ON_ERROR_STOP=1 -f "$work/pub$w.sql" >/dev/null 2>"$work/pub$w.err" &
done
pubs=$(jobs -p)

# The reader: from its last position, again and again, until the publishers are done
# and one more read finds nothing new.
last=0
: >"$work/read"
read_once() {
    psql -qXAt -F ' ' -c "SELECT seq, (payload::jsonb)->>'w', (payload::jsonb)->>'i' FROM realtime.read('t1', ARRAY['project:race'], ARRAY[$last]::bigint[], 50)" >"$work/batch" || return 1
    if [ -s "$work/batch" ]; then
        cat "$work/batch" >>"$work/read"
        last=$(tail -n1 "$work/batch" | cut -d' ' -f1)
    fi
}
reads=0
while kill -0 $pubs 2>/dev/null; do read_once; reads=$((reads + 1)); done
wait $pubs
pub_failed=$(cat "$work"/pub*.err | grep -c ERROR)
is "every publisher ran without error" "$pub_failed" 0
while read_once && [ -s "$work/batch" ]; do :; done
ok_if "the reader read while publishing ($reads reads)" test "$reads" -gt 5

n=$(wc -l <"$work/expected")
is "the reader got as many events as were committed" "$(wc -l <"$work/read")" "$n"
is "seqs are 1..N in order, no gap, no duplicate" "$(cut -d' ' -f1 "$work/read" | tr '\n' ' ')" "$(seq 1 "$n" | tr '\n' ' ')"
is "exactly the committed events (none of the rolled back)" \
   "$(cut -d' ' -f2,3 "$work/read" | sort)" "$(sort "$work/expected")"
is "the channel counter equals the number of committed events" \
   "$(psql_q "SELECT last_seq FROM realtime.realtime_channels WHERE tenant_id='t1' AND channel_name='project:race'")" "$n"

# A transaction holding channel A open does not block a publish to channel B. The holder
# commits once the checks are done (a row in held_release, 60 s at most), and they start
# once it has published (it is then in its wait loop: pg_stat_activity says so).
psql_q "CREATE TABLE held_release (done bool)" >/dev/null
psql -qXAt -c "BEGIN; SELECT realtime.publish('t1','project:held','x','{}');
    DO \$\$ BEGIN FOR i IN 1..600 LOOP EXIT WHEN EXISTS (SELECT FROM held_release); PERFORM pg_sleep(0.1); END LOOP; END \$\$;
    COMMIT;" >/dev/null &
holder=$!
for _ in $(seq 1 300); do
    [ "$(psql_q "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND query LIKE '%held_release%' AND query NOT LIKE '%pg_stat_activity%' AND wait_event = 'PgSleep'")" = 1 ] && break
    sleep 0.1
done
out=$(psql -qXAt -c "SET lock_timeout = '200ms'; SELECT realtime.publish('t1','project:free','x','{}')" 2>&1)
is "a publish to another channel does not wait for an open publisher" "$out" 1
out=$(psql -qXAt -c "SET lock_timeout = '200ms'; SELECT realtime.publish('t1','project:held','x','{}')" 2>&1)
like "a publish to the same channel waits for it (serialised, gap-free)" "$out" "lock timeout"
psql_q "INSERT INTO held_release VALUES (true)" >/dev/null
wait $holder
is "after the holder commits, the same channel continues at seq 2" \
   "$(psql_q "SELECT realtime.publish('t1','project:held','x','{}')")" 2
tap_done
