#!/bin/bash
# Many long-polls held on one channel, then one publish, through lighttpd: every waiter
# answers the event (checked against realtime_events_log) from the hub's one read, every
# waiter's connection-stats row is closed, and holding them costs pgcast-poll almost no
# CPU (it used to compare every stats row with every other each second, and to scan
# every stream's due time every 50 ms: CPU per second grew with the square of the
# waiters). The CPU bound is generous (4 ms/s per 1,000 waiters: about what a busy
# machine measures times 1.5, what an idle one does times 5, and well under the quadratic
# cost's 28 ms/s at 4,000), CPU time not wall time, measured over 10 s.
source "$PGCAST_ROOT/tests/lib/tap.sh"
source "$PGCAST_ROOT/tests/lib/webserver.sh"
web_init
lighttpd_start || { web_logs; exit 1; }
export TOKEN=$(mint '{"sub":"u1","tenant":"t1","exp":"+3600","channels":["project:*"]}')
POLL_PID=$(lighttpd_handler_pid pgcast-poll.fcgi)
export POLL_PID
/usr/bin/python3 "$PGCAST_ROOT/tests/poll/longpoll_held.py" "$LIGHTTPD_URL" "${POLL_HELD_WAITERS:-4000}"
rc=$?
[ $rc = 0 ] || web_logs
exit $rc
