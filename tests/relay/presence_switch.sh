#!/bin/bash
# Presence messages across a switch of the wake-up source: the sidecar takes its wake-ups
# from pgcast-relay; the relay is frozen (SIGSTOP) while members join, update and leave
# a channel, then killed (kill -9). The presence wake-ups the frozen relay never
# forwarded are lost; once the sidecar LISTENs on its own it reads the presence rows
# written meanwhile, so a subscriber gets each of those messages exactly once, in order,
# and nothing it had before the freeze a second time. Then the sidecar's own LISTEN
# connection is lost and kept from reconnecting while presence is written: after the
# reconnect those messages come too. Under the sanitizer build.
source "$PGCAST_ROOT/tests/lib/tap.sh"
source "$PGCAST_ROOT/tests/lib/webserver.sh"
web_init
relay_config
relay_start || { echo "not ok 1 - pgcast-relay serves its socket"; web_logs; exit 1; }
ws_start || { web_logs; exit 1; }
export WS_PORT RELAY_PID WEB_DIR
/usr/bin/python3 "$PGCAST_ROOT/tests/relay/presence_switch.py"
rc=$?
# a frozen relay that the test did not get to kill must not outlive it
kill -CONT "$RELAY_PID" 2>/dev/null
[ $rc = 0 ] || web_logs
exit $rc
