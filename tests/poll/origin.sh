#!/bin/bash
# Origin rules and CORS (SPEC §3) through real lighttpd and Apache (mod_proxy_fcgi, and
# the sidecar behind each): the token cookie only from allowed origins, POST bodies only
# as application/json, every WebSocket upgrade's Origin checked, preflights answered.
source "$PGCAST_ROOT/tests/lib/tap.sh"
source "$PGCAST_ROOT/tests/lib/webserver.sh"
ALLOWED="http://app.example:8443"
web_init
pgcast_config_add "allowed_origins = self, $ALLOWED"
lighttpd_start || { web_logs; exit 1; }
/usr/bin/python3 "$PGCAST_ROOT/tests/poll/origin_checks.py" "$LIGHTTPD_URL" lighttpd "$ALLOWED"
rc=$?
[ $rc = 0 ] || web_logs
web_stop_all
web_init
pgcast_config_add "allowed_origins = self, $ALLOWED"
apache_start proxy-fcgi || { web_logs; exit 1; }
/usr/bin/python3 "$PGCAST_ROOT/tests/poll/origin_checks.py" "$APACHE_URL" apache "$ALLOWED"
rc2=$?
[ $rc2 = 0 ] || web_logs
[ $rc = 0 ] && [ $rc2 = 0 ]
