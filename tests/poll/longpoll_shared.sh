#!/bin/bash
# Long-polls woken by the same publish share one built answer when their tenant, items
# and cursor after them are the same (poll/events.c, the long-poll answer cache): waiters
# on one channel, waiters on that channel and another (a different cursor), HEAD waiters,
# limit=1 waiters and another tenant's waiters on a channel of the same name, all held,
# then two events published in one transaction: every answer holds exactly the events
# after its own cursor (checked against realtime_events_log), its own cursor and an ETag
# that names it, and HEAD the head of the GET answer with the same cursor.
source "$PGCAST_ROOT/tests/lib/tap.sh"
source "$PGCAST_ROOT/tests/lib/webserver.sh"
web_init
lighttpd_start || { web_logs; exit 1; }
export TOKEN1=$(mint '{"sub":"u1","tenant":"t1","exp":"+3600","channels":["project:*"]}')
export TOKEN2=$(mint '{"sub":"u2","tenant":"t2","exp":"+3600","channels":["project:*"]}')
/usr/bin/python3 "$PGCAST_ROOT/tests/poll/longpoll_shared.py" "$LIGHTTPD_URL"
rc=$?
[ $rc = 0 ] || web_logs
exit $rc
