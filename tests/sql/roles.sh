#!/bin/bash
# Least privilege as shipped (migration 010, pgcast-migrate --runtime-role/--publisher-role):
# a role without grants can do nothing in schema realtime; a publisher can only publish
# (inside its own transaction), a limited one only to its tenants; the runtime role reads
# but cannot write events except through publish; one bad row does not stop pruning.
source "$(dirname "$0")/../lib/tap.sh"
u=$$
as() { local role=$1; shift; psql -qXAt -U "$role" -v ON_ERROR_STOP=1 -c "$1" 2>&1; }
psql_q "CREATE ROLE nogrant_$u LOGIN; CREATE ROLE pub_$u LOGIN IN ROLE pgcast_publisher;
        CREATE ROLE app_$u LOGIN IN ROLE pgcast_runtime" >/dev/null

like "a role without grants cannot publish" "$(as nogrant_$u "SELECT realtime.publish('t1','project:a','e','{}')")" "permission denied for schema realtime"
like "nor read the log" "$(as nogrant_$u "SELECT count(*) FROM realtime.realtime_events_log")" "permission denied"

is "a publisher publishes" "$(as pub_$u "SELECT realtime.publish('t1','project:a','e','{\"n\":1}')")" "1"
is "inside its own transaction: a rollback publishes nothing" \
   "$(as pub_$u "BEGIN; SELECT realtime.publish('t1','project:a','e','{}'); ROLLBACK;" >/dev/null; psql_q "SELECT last_seq FROM realtime.realtime_channels WHERE tenant_id='t1' AND channel_name='project:a'")" "1"
like "a publisher cannot read the log" "$(as pub_$u "SELECT count(*) FROM realtime.realtime_events_log")" "permission denied"
like "nor insert raw log rows" "$(as pub_$u "INSERT INTO realtime.realtime_events_log (tenant_id, channel, seq, event_type, event_data) VALUES ('t2','project:x',99,'e','{}')")" "permission denied"
like "nor rewrite a channel's position" "$(as pub_$u "UPDATE realtime.realtime_channels SET last_seq = 0")" "permission denied"
like "nor call the other functions (read)" "$(as pub_$u "SELECT count(*) FROM realtime.read('t1', ARRAY['project:a'], ARRAY[0]::bigint[], 10)")" "permission denied"
like "nor list channels through cursor()" "$(as pub_$u "SELECT realtime.cursor('t1', ARRAY['project:a'])")" "permission denied"
like "nor join presence" "$(as pub_$u "SELECT realtime.presence_join('t1','project:a','c','sub:u','u',NULL,'{}')")" "permission denied"
is "publish is SECURITY DEFINER with its search_path pinned" \
   "$(psql_q "SELECT prosecdef, proconfig::text FROM pg_proc WHERE oid = 'realtime.publish(text,text,text,jsonb)'::regprocedure")" \
   "t|{\"search_path=pg_catalog, pg_temp\"}"

# a publisher limited to tenant t1
PGCAST_DATABASE_URL= "$PGCAST_BIN/pgcast-migrate" --quiet --publisher-role lim_$u --tenants t1,t3 >/dev/null
psql_q "CREATE ROLE limuser_$u LOGIN IN ROLE lim_$u" >/dev/null
like "a publisher limited to t1,t3 publishes to t1" "$(as limuser_$u "SELECT realtime.publish('t1','project:lim','e','{}')")" "^[0-9]+$"
like "and is refused for t2, with the reason" "$(as limuser_$u "SELECT realtime.publish('t2','project:lim','e','{}')")" "may not publish to tenant 't2'"
is "nothing reached t2" "$(psql_q "SELECT count(*) FROM realtime.realtime_events_log WHERE tenant_id='t2'")" 0
like "the unlimited publisher still publishes anywhere" "$(as pub_$u "SELECT realtime.publish('t2','project:any','e','{}')")" "^[0-9]+$"

# the runtime role: reads, presence, stats; no raw writes of events
like "the runtime role reads the log" "$(as app_$u "SELECT count(*) FROM realtime.read('t1', ARRAY['project:a'], ARRAY[0]::bigint[], 10)")" "^1$"
like "and publishes through publish" "$(as app_$u "SELECT realtime.publish('t1','project:a','e','{}')")" "^2$"
like "but cannot insert log rows itself" "$(as app_$u "INSERT INTO realtime.realtime_events_log (tenant_id, channel, seq, event_type, event_data) VALUES ('t2','project:x',99,'e','{}')")" "permission denied"
like "it runs presence and prunes" "$(as app_$u "SELECT realtime.presence_join('t1','project:a','c1','sub:u','u',NULL,'{}') IS NOT NULL, realtime.prune(interval '1 hour', 1000)")" "^t\|[0-9]+$"

# one bad row (written by a role with raw rights) does not stop pruning for everyone
psql_q "SELECT realtime.publish('t9','project:p' || g % 2,'e','{}') FROM generate_series(1,10) g" >/dev/null
# (the age is 0: every event committed before prune's statement is past it; rows are not
# dated back, which would need a partition for the past, and those go once empty)
psql_q "INSERT INTO realtime.realtime_events_log (tenant_id, channel, seq, event_type, event_data)
        VALUES ('t9','project:p0',999,'e','{}');
        UPDATE realtime.realtime_channels SET config = '{\"retention_count\":\"abc\"}' WHERE tenant_id='t9' AND channel_name='project:p1'" >/dev/null
out=$(psql -qXAt -c "SELECT realtime.prune(interval '0 seconds', 1000)" 2>&1)
like "prune succeeds past a log row above its channel's last_seq and a bad config" "$out" "^[0-9]+$"
is "both channels were pruned" "$(psql_q "SELECT string_agg(channel_name || '=' || pruned_through, ',' ORDER BY channel_name) FROM realtime.realtime_channels WHERE tenant_id='t9'")" "project:p0=5,project:p1=5"

psql_q "DROP OWNED BY nogrant_$u, pub_$u, app_$u, limuser_$u, lim_$u; DROP ROLE nogrant_$u, pub_$u, app_$u, limuser_$u; DROP ROLE lim_$u" >/dev/null 2>&1
tap_done
