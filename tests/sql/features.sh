#!/bin/bash
# Publish inside the caller's transaction, NOTIFY after commit only, 1 MiB payloads,
# the entity trigger, retention pruning, atomic migrations.
source "$(dirname "$0")/../lib/tap.sh"
work=$(mktemp -d "$PGCAST_TEST_WORK/feat.XXXX")

# --- transactions and wake-ups
# psql prints notifications after each statement it runs: listen, wait (until the two
# committed events are in the log, 60 s at most), one more statement. The publishes start
# once the listener is in its wait (pg_stat_activity), so it listened before them.
printf '%s\n' 'LISTEN realtime_events;' \
    "DO \$\$ BEGIN FOR i IN 1..600 LOOP EXIT WHEN (SELECT count(*) FROM realtime.realtime_events_log WHERE channel = 'project:tx') >= 2; PERFORM pg_sleep(0.1); END LOOP; END \$\$;" \
    'SELECT 1;' | psql -qXAt >"$work/listen" 2>&1 &
listener=$!
for _ in $(seq 1 300); do
    [ "$(psql_q "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND query LIKE 'DO%project:tx%' AND wait_event = 'PgSleep'")" = 1 ] && break
    sleep 0.1
done
psql -qXAt -c "BEGIN; SELECT realtime.publish('t1','project:tx','a','{\"n\":1}'); ROLLBACK;" >/dev/null
is "a rolled-back publish leaves no event" "$(psql_q "SELECT count(*) FROM realtime.realtime_events_log WHERE channel='project:tx'")" 0
is "and gives its seq back" "$(psql_q "SELECT realtime.publish('t1','project:tx','b','{\"n\":2}')")" 1
big=$(psql_q "SELECT realtime.publish('t1','project:tx','big', jsonb_build_object('pad', repeat('y', 1048576)))")
is "a 1 MiB payload publishes" "$big" 2
wait $listener
notes=$(grep -c 'Asynchronous notification "realtime_events"' "$work/listen")
is "the listener was woken by the two committed events only" "$notes" 2
tag=$(psql_q "SELECT realtime.channel_tag('t1', 'project:tx')")
like "a notification is a wake-up: the channel's tag and the seq" "$(grep -c "with payload \"$tag 1\" received" "$work/listen")$(grep -c "with payload \"$tag 2\" received" "$work/listen")" '^11$'
ok_if "no tenant, channel, type or payload in it" test "$(grep -cE 'project:tx|t1|"n"|yyyy|big' "$work/listen")" = 0
is "the 1 MiB payload round-trips byte for byte through realtime.read" \
   "$(psql_q "SELECT md5(payload) = md5(jsonb_build_object('pad', repeat('y', 1048576))::text) FROM realtime.read('t1', ARRAY['project:tx'], ARRAY[1]::bigint[], 1)")" t

# --- entity trigger
psql_q "CREATE TABLE tasks (id int PRIMARY KEY, ws text, title text);
        CREATE TRIGGER tasks_rt AFTER INSERT OR UPDATE OR DELETE ON tasks
          FOR EACH ROW EXECUTE FUNCTION realtime.entity_trigger('ws', 'Task', 'id', 'id, title');" >/dev/null
psql_q "INSERT INTO tasks VALUES (1, 'w1', 'first'); UPDATE tasks SET title = 'changed' WHERE id = 1; DELETE FROM tasks WHERE id = 1;" >/dev/null
psql -qXAt -c "BEGIN; INSERT INTO tasks VALUES (2, 'w1', 'never'); ROLLBACK;" >/dev/null
is "entity:Task gets created, updated, deleted in order" \
   "$(psql_q "SELECT string_agg(event_type, ',' ORDER BY seq) FROM realtime.realtime_events_log WHERE tenant_id='w1' AND channel='entity:Task'")" \
   "entity:created,entity:updated,entity:deleted"
is "entity:Task:1 gets the same three" \
   "$(psql_q "SELECT string_agg(event_type, ',' ORDER BY seq) FROM realtime.realtime_events_log WHERE tenant_id='w1' AND channel='entity:Task:1'")" \
   "entity:created,entity:updated,entity:deleted"
is "the update carries the new and the old record" \
   "$(psql_q "SELECT event_data->'record'->>'title' || '/' || (event_data->'old_record'->>'title') FROM realtime.realtime_events_log WHERE tenant_id='w1' AND channel='entity:Task:1' AND seq=2")" \
   "changed/first"
is "a rolled-back write publishes nothing" \
   "$(psql_q "SELECT count(*) FROM realtime.realtime_events_log WHERE channel LIKE 'entity:Task:2'")" 0
out=$(psql -qXAt -c "CREATE TABLE notenant (id int); CREATE TRIGGER x AFTER INSERT ON notenant FOR EACH ROW EXECUTE FUNCTION realtime.entity_trigger('ws'); INSERT INTO notenant VALUES (1);" 2>&1)
like "a trigger naming a missing tenant column fails clearly" "$out" "has no column ws"

# only the columns the trigger names are published; a row's data never fails the write
psql_q "CREATE TABLE users (id text PRIMARY KEY, ws text, email text, password_hash text);
        CREATE TRIGGER users_rt AFTER INSERT OR UPDATE ON users
          FOR EACH ROW EXECUTE FUNCTION realtime.entity_trigger('ws', 'User', 'id', '-password_hash');
        CREATE TABLE notes (id int PRIMARY KEY, ws text, body text, secret text);
        CREATE TRIGGER notes_rt AFTER INSERT ON notes
          FOR EACH ROW EXECUTE FUNCTION realtime.entity_trigger('ws', 'Note');" >/dev/null
out=$(psql -qXAt -v ON_ERROR_STOP=1 -c "INSERT INTO users VALUES ('bob+1@x.com', 'w1', 'bob@x.com', 'hash-of-secret')" 2>&1)
is "an id outside the channel grammar does not fail the application's INSERT" "$out" ""
is "its events go to entity:User:{encoded id} (realtime.encode_id)" \
   "$(psql_q "SELECT channel FROM realtime.realtime_events_log WHERE tenant_id='w1' AND channel LIKE 'entity:User:%'")" \
   "entity:User:bob_2B1@x.com"
is "encode_id is one-to-one on the escape character too" "$(psql_q "SELECT realtime.encode_id('a_b') || ' ' || realtime.encode_id('a+b') || ' ' || realtime.encode_id('é')")" \
   "a_5Fb a_2Bb _C3_A9"
is "an excluded column is not published" \
   "$(psql_q "SELECT (event_data->'record') ? 'password_hash' OR event_data::text LIKE '%hash-of-secret%' FROM realtime.realtime_events_log WHERE channel='entity:User'")" f
is "the other columns are" "$(psql_q "SELECT event_data->'record'->>'email' FROM realtime.realtime_events_log WHERE channel='entity:User'")" "bob@x.com"
psql_q "INSERT INTO notes VALUES (1, 'w1', 'text', 's3cret')" >/dev/null
is "without a column list only the id is published" \
   "$(psql_q "SELECT event_data->'record' FROM realtime.realtime_events_log WHERE channel='entity:Note'")" '{"id": 1}'
out=$(psql -qXAt -v ON_ERROR_STOP=1 -c "INSERT INTO notes VALUES (2, NULL, 'no tenant', 'x')" 2>&1)
like "a row without a tenant is written, with a warning, and publishes nothing" \
   "$out|$(psql_q "SELECT count(*) FROM notes WHERE id=2")|$(psql_q "SELECT count(*) FROM realtime.realtime_events_log WHERE event_data->>'id' = '2' AND channel LIKE 'entity:Note%'")" \
   "WARNING: .*nothing published\|1\|0$"
long=$(printf 'x%.0s' $(seq 1 250))
out=$(psql -qXAt -v ON_ERROR_STOP=1 -c "INSERT INTO users VALUES ('$long', 'w1', 'l@x', 'h')" 2>&1)
like "an id too long for a channel is written and published on entity:User only" \
   "$out|$(psql_q "SELECT count(*) FROM realtime.realtime_events_log WHERE channel='entity:User'")" "WARNING: .*id too long.*\|2$"
out=$(psql -qXAt -c "CREATE TABLE bad (id int, ws text); CREATE TRIGGER b AFTER INSERT ON bad FOR EACH ROW EXECUTE FUNCTION realtime.entity_trigger('ws', 'Bad', 'id', 'id,nope'); INSERT INTO bad VALUES (1, 'w1');" 2>&1)
like "a column list naming a missing column fails clearly" "$out" "no column nope to publish"

# --- retention
psql_q "SELECT realtime.publish('t1','project:keep','e', jsonb_build_object('i', g)) FROM generate_series(1,10) g" >/dev/null
psql_q "SELECT realtime.publish('t1','project:few','e', jsonb_build_object('i', g)) FROM generate_series(1,3) g" >/dev/null
psql_q "UPDATE realtime.realtime_events_log SET published_at = now() - interval '2 hours' WHERE channel = 'project:few' AND seq <= 2" >/dev/null
psql -qXAt -c "BEGIN; SELECT realtime.publish('t1','project:busy','e','{}'); SELECT pg_sleep(2); COMMIT;" >/dev/null &
busy=$!
sleep 0.5
psql_q "SELECT realtime.publish('t1','project:busy2','e','{}')" >/dev/null
# (a partition whose time is over may be busy too: prune says so in a NOTICE and goes on)
out=$(psql -qXAt -c "SET statement_timeout = '1s'; SET client_min_messages = warning; SELECT realtime.prune(interval '1 hour', 4)" 2>&1)
like "prune does not wait for a channel a publisher holds" "$out" '^[0-9]+$'
wait $busy
# (a pruned event is gone for every reader at once; its row goes with its partition, 013)
is "count rule: only the newest 4 remain, as a suffix" \
   "$(psql_q "SELECT string_agg(seq::text, ',' ORDER BY seq) FROM realtime.read('t1', ARRAY['project:keep'], ARRAY[0]::bigint[], 100) WHERE kind = 'event'")" "7,8,9,10"
is "pruned_through records the cut" \
   "$(psql_q "SELECT pruned_through FROM realtime.realtime_channels WHERE channel_name='project:keep'")" 6
is "age rule: events older than the age are cut as a prefix" \
   "$(psql_q "SELECT string_agg(seq::text, ',' ORDER BY seq) FROM realtime.read('t1', ARRAY['project:few'], ARRAY[0]::bigint[], 100) WHERE kind = 'event'")" "3"
is "reading from before the cut gives a gap then the rest" \
   "$(psql_q "SELECT string_agg(kind || ':' || seq || coalesce('-' || gap_to, ''), ',') FROM realtime.read('t1', ARRAY['project:keep'], ARRAY[2]::bigint[], 100)")" \
   "gap:3-6,event:7,event:8,event:9,event:10"
is "reading from after the cut gives no gap" \
   "$(psql_q "SELECT string_agg(kind || ':' || seq, ',') FROM realtime.read('t1', ARRAY['project:keep'], ARRAY[8]::bigint[], 100)")" \
   "event:9,event:10"
is "the cursor is unchanged by pruning" "$(psql_q "SELECT realtime.cursor('t1', ARRAY['project:keep'])")" "project:keep=10"
is "publishing continues after the cut" "$(psql_q "SELECT realtime.publish('t1','project:keep','e','{}')")" 11
out=$(psql -qXAt -c "SELECT realtime.prune(NULL, -1)" 2>&1)
like "a negative count is refused" "$out" "must be >= 0"

# --- migrations are atomic
mkdir "$work/sql"
cp "$PGCAST_ROOT"/sql/*.sql "$work/sql/"
printf 'CREATE TABLE realtime.half_done (a int);\nSELECT 1/0;\n' >"$work/sql/999_broken.sql"
out=$(PGCAST_DATABASE_URL="$PGCAST_TEST_OWNER_URL" "$PGCAST_BIN/pgcast-migrate" --dir "$work/sql" 2>&1); rc=$?
ok_if "a failing migration makes pgcast-migrate fail" test "$rc" -ne 0
like "and names the file" "$out" "999_broken.sql failed"
is "nothing of the failed migration remains" "$(psql_q "SELECT to_regclass('realtime.half_done') IS NULL")" t
is "and it is not recorded" "$(psql_q "SELECT count(*) FROM realtime.schema_migrations WHERE name = '999_broken.sql'")" 0
tap_done
