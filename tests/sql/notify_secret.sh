#!/bin/bash
# The key of the wake-up tags (migration 011): the owner and the runtime roles read it;
# a publisher and a role without grants read neither it nor the presence rows, and
# cannot compute a tag; publishing and presence work all the same (SECURITY DEFINER).
source "$(dirname "$0")/../lib/tap.sh"
u=$$
as() { local role=$1; shift; psql -qXAt -U "$role" -v ON_ERROR_STOP=1 -c "$1" 2>&1; }
psql_q "CREATE ROLE nogrant_$u LOGIN; CREATE ROLE pub_$u LOGIN IN ROLE pgcast_publisher;
        CREATE ROLE app_$u LOGIN IN ROLE pgcast_runtime" >/dev/null

is "one secret of 32 bytes" "$(psql_q "SELECT count(*), min(octet_length(secret)) FROM realtime.realtime_secret")" "1|32"
like "a role without grants cannot read the secret" "$(as nogrant_$u "SELECT secret FROM realtime.realtime_secret")" "permission denied"
like "a publisher cannot read the secret" "$(as pub_$u "SELECT secret FROM realtime.realtime_secret")" "permission denied"
like "nor compute a tag" "$(as pub_$u "SELECT realtime.channel_tag('t1', 'project:a')")" "permission denied"
like "nor read presence messages" "$(as pub_$u "SELECT count(*) FROM realtime.realtime_presence_events")" "permission denied"
like "a publisher still publishes (publish reads the secret as the owner)" "$(as pub_$u "SELECT realtime.publish('t1','project:sec','e','{}')")" "^1$"
like "the runtime role reads the secret" "$(as app_$u "SELECT octet_length(secret) FROM realtime.realtime_secret")" "^32$"
like "and the presence messages its joins write" \
     "$(as app_$u "SELECT realtime.presence_join('t1','project:sec','c1','sub:u','u',NULL,'{}') IS NOT NULL; SELECT count(*) FROM realtime.realtime_presence_events WHERE channel = 'project:sec'")" "^t
1$"
like "but cannot write the secret" "$(as app_$u "SELECT realtime.rotate_secret()")" "permission denied"
like "nor presence messages of its own" "$(as app_$u "INSERT INTO realtime.realtime_presence_events (tenant_id, channel, message) VALUES ('t1','project:sec','{}')")" "permission denied"
old=$(psql_q "SELECT realtime.channel_tag('t1', 'project:sec')")
psql_q "SELECT realtime.rotate_secret()" >/dev/null
like "the owner rotates it: tags change" "$(psql_q "SELECT realtime.channel_tag('t1', 'project:sec') <> '$old'")" "^t$"
like "a tag is 32 hex digits" "$old" "^[0-9a-f]{32}$"
psql_q "UPDATE realtime.realtime_presence_events SET created_at = now() - interval '6 minutes'" >/dev/null
psql_q "SELECT realtime.presence_expire()" >/dev/null
is "presence messages older than five minutes are removed by presence_expire" "$(psql_q "SELECT count(*) FROM realtime.realtime_presence_events")" 0

psql_q "DROP OWNED BY nogrant_$u, pub_$u, app_$u; DROP ROLE nogrant_$u, pub_$u, app_$u" >/dev/null 2>&1
tap_done
