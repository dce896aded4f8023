#!/bin/bash
# realtime.read with a byte budget (migration 008): events stop once their payloads
# reach it, at least one event whatever its size, gaps first, publish order across
# channels; the four-argument form answers as before.
source "$(dirname "$0")/../lib/tap.sh"
rows() { psql_q "SELECT string_agg(kind || ':' || channel || ':' || seq || coalesce('-' || gap_to, ''), ',')
                   FROM realtime.read($1)"; }
# a: payloads of ~1000 bytes; b: small; published interleaved
psql_q "SELECT realtime.publish('tb', CASE WHEN g % 2 = 0 THEN 'project:a' ELSE 'project:b' END, 'e',
               CASE WHEN g % 2 = 0 THEN jsonb_build_object('g', g, 'pad', repeat('p', 1000))
                    ELSE jsonb_build_object('g', g) END)
          FROM generate_series(0, 9) g" >/dev/null
all="event:project:a:1,event:project:b:1,event:project:a:2,event:project:b:2,event:project:a:3,event:project:b:3,event:project:a:4,event:project:b:4,event:project:a:5,event:project:b:5"
is "no byte bound (0): publish order across channels, up to the limit" \
   "$(rows "'tb', ARRAY['project:a','project:b'], ARRAY[0,0]::bigint[], 100, 0")" "$all"
is "the four-argument form answers the same" \
   "$(rows "'tb', ARRAY['project:a','project:b'], ARRAY[0,0]::bigint[], 100")" "$all"
is "a budget of 1 byte still returns one event" \
   "$(rows "'tb', ARRAY['project:a','project:b'], ARRAY[0,0]::bigint[], 100, 1")" "event:project:a:1"
is "events stop once their payloads reach the budget (2,000 bytes: three events, the third crossing it)" \
   "$(rows "'tb', ARRAY['project:a','project:b'], ARRAY[0,0]::bigint[], 100, 2000")" \
   "event:project:a:1,event:project:b:1,event:project:a:2"
is "the limit still applies within the budget" \
   "$(rows "'tb', ARRAY['project:a','project:b'], ARRAY[2,0]::bigint[], 2, 1000000")" \
   "event:project:b:1,event:project:b:2"
is "payloads come back whole and in order" \
   "$(psql_q "SELECT string_agg((payload::jsonb->>'g'), ',') FROM realtime.read('tb', ARRAY['project:a','project:b'], ARRAY[0,0]::bigint[], 100, 0)")" \
   "0,1,2,3,4,5,6,7,8,9"
is "publish records each payload's text length" \
   "$(psql_q "SELECT bool_and(payload_bytes = octet_length(event_data::text)) FROM realtime.realtime_events_log WHERE tenant_id = 'tb'")" t
psql_q "UPDATE realtime.realtime_events_log SET payload_bytes = NULL WHERE tenant_id = 'tb' AND seq <= 2" >/dev/null
is "rows without a recorded length (published before 008) are measured as well" \
   "$(rows "'tb', ARRAY['project:a','project:b'], ARRAY[0,0]::bigint[], 100, 2000")" \
   "event:project:a:1,event:project:b:1,event:project:a:2"
psql_q "SELECT realtime.prune(interval '100 years', 2)" >/dev/null
is "a gap comes first, whatever the budget" \
   "$(rows "'tb', ARRAY['project:a','project:b'], ARRAY[0,0]::bigint[], 100, 1")" \
   "gap:project:a:1-3,gap:project:b:1-3,event:project:a:4"
is "nothing after the end" "$(rows "'tb', ARRAY['project:a'], ARRAY[5]::bigint[], 100, 10")" ""
tap_done
