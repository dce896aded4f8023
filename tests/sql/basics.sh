#!/bin/bash
# SQL API basics: publish, cursor, read, channel and payload validation, migrations.
source "$(dirname "$0")/../lib/tap.sh"

is "first publish on a channel gets seq 1" "$(psql_q "SELECT realtime.publish('t1','project:abc','project.updated','{\"a\":1}')")" 1
is "second publish gets seq 2" "$(psql_q "SELECT realtime.publish('t1','project:abc','project.updated','{\"a\":2}')")" 2
is "another tenant's channel of the same name counts on its own" \
   "$(psql_q "SELECT realtime.publish('t2','project:abc','project.updated','{}')")" 1
is "cursor lists channels in the order asked, 0 for unknown ones" \
   "$(psql_q "SELECT realtime.cursor('t1', ARRAY['user:u1','project:abc'])")" "user:u1=0,project:abc=2"
is "read returns events after a position, in order" \
   "$(psql_q "SELECT string_agg(seq::text || ':' || payload, ' ') FROM realtime.read('t1', ARRAY['project:abc'], ARRAY[0]::bigint[], 10)")" \
   '1:{"a": 1} 2:{"a": 2}'
is "read honours the limit" \
   "$(psql_q "SELECT count(*) FROM realtime.read('t1', ARRAY['project:abc'], ARRAY[0]::bigint[], 1)")" 1
is "channel type and entity id are derived from the name" \
   "$(psql_q "SELECT channel_type || '|' || entity_id FROM realtime.realtime_channels WHERE tenant_id='t1' AND channel_name='project:abc'")" \
   "project|abc"

for bad in "bad channel" "" "semi;colon" "quote'x" "$(printf 'a%.0s' {1..201})" "ünïcode"; do
    out=$(psql -qXAt -c "SELECT realtime.publish('t1', \$\$${bad}\$\$, 'x', '{}')" 2>&1)
    like "channel '${bad:0:20}' is refused with a clear error" "$out" "invalid channel name"
done
ok_if "a 200-byte channel name is accepted" psql_q "SELECT realtime.publish('t1', repeat('a',200), 'x', '{}')" 
out=$(psql -qXAt -c "SELECT realtime.publish('t1','project:abc','x','{not json')" 2>&1)
like "bad JSON is refused" "$out" "invalid input syntax for type json"
out=$(psql -qXAt -c "SELECT realtime.publish('','project:abc','x','{}')" 2>&1)
like "an empty tenant is refused" "$out" "tenant must be"
out=$(psql -qXAt -c "SELECT realtime.publish('t1','project:abc','','{}')" 2>&1)
like "an empty event type is refused" "$out" "event type must be"
is "nothing was written by the refused publishes" \
   "$(psql_q "SELECT count(*) FROM realtime.realtime_events_log WHERE tenant_id='t1' AND channel='project:abc'")" 2
is "the channel counter did not move either" \
   "$(psql_q "SELECT last_seq FROM realtime.realtime_channels WHERE tenant_id='t1' AND channel_name='project:abc'")" 2

out=$(PGCAST_DATABASE_URL="$PGCAST_TEST_OWNER_URL" "$PGCAST_BIN/pgcast-migrate")
like "migrations applied twice are a no-op" "$out" "0 applied"
is "each migration is recorded once" \
   "$(psql_q "SELECT count(*) = count(DISTINCT name) AND count(*) >= 3 FROM realtime.schema_migrations")" t
is "heartbeat config is seeded with the SPEC rows" \
   "$(psql_q "SELECT string_agg(channel_type||'='||heartbeat_interval_ms||'/'||timeout_ms, ',' ORDER BY channel_type) FROM realtime.realtime_heartbeat_config")" \
   "default=30000/90000,organization=60000/180000,project=30000/90000,session=30000/90000,system=60000/180000,user=30000/90000"
is "unknown channel types use the default row" \
   "$(psql_q "SELECT heartbeat_interval_ms FROM realtime.heartbeat_for('widget')")" 30000
tap_done
