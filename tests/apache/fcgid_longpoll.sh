#!/bin/bash
# mod_fcgid with the shipped pgcast-fcgid.conf (issue: 40 concurrent long-polls took
# 8-20 s because mod_fcgid throttles spawning): 40 long-polls all wait promptly and all
# answer promptly after a publish. Prints the times.
source "$PGCAST_ROOT/tests/lib/tap.sh"
source "$PGCAST_ROOT/tests/lib/webserver.sh"
source "$PGCAST_ROOT/tests/apache/common.bash"
web_init
APACHE_SITE_CONF=$(fcgid_enabled_conf)
apache_start fcgid || { web_logs; exit 1; }
APACHE_ERROR_LOG="$WEB_DIR/log/apache-error.log" /usr/bin/python3 "$PGCAST_ROOT/tests/apache/fcgid_longpoll.py" "$APACHE_URL" 40 || { web_logs; exit 1; }
