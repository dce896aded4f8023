#!/bin/bash
# A poll page is bounded in bytes (poll_page_bytes): it ends early with its cursor, every
# event is reached by following cursors, and four concurrent limit=1000&since=0 polls
# over ~60 MB of events grow the poll handler by a bounded amount (peak RSS, printed).
# Through real lighttpd.
source "$PGCAST_ROOT/tests/lib/tap.sh"
source "$PGCAST_ROOT/tests/lib/webserver.sh"
web_init
page_bytes=$((2 * 1024 * 1024))
pgcast_config_add "poll_page_bytes = $page_bytes"
# what is measured is pgcast's memory: keep AddressSanitizer's quarantine of freed
# blocks (256 MiB by default) out of the handler's RSS
export ASAN_OPTIONS="${ASAN_OPTIONS:+$ASAN_OPTIONS:}quarantine_size_mb=4"
lighttpd_start || { web_logs; exit 1; }
# the poll handler lighttpd spawned for this server
pid=""
for _ in $(seq 1 100); do
    pid=$(pgrep -f "^$PGCAST_BIN/pgcast-poll.fcgi" | while read -r p; do
        grep -qz "PGCAST_CONFIG=$PGCAST_TEST_CONFIG" "/proc/$p/environ" 2>/dev/null && echo "$p"; done | head -1)
    [ -n "$pid" ] && break
    curl -s -o /dev/null "$LIGHTTPD_URL/realtime/health"
    sleep 0.1
done
[ -n "$pid" ] || { echo "not ok 1 - the poll handler's process was not found"; web_logs; exit 1; }
/usr/bin/python3 "$PGCAST_ROOT/tests/poll/page_bounds.py" "$LIGHTTPD_URL" "$pid" "$page_bytes"
rc=$?
[ $rc = 0 ] || web_logs
exit $rc
