#!/bin/bash
# The same polling checks through real Apache: mod_proxy_fcgi (handlers as FastCGI
# daemons) and plain CGI (shared hosting) must answer the same requests the same way.
source "$PGCAST_ROOT/tests/lib/tap.sh"
source "$PGCAST_ROOT/tests/lib/webserver.sh"
rc=0
web_init
apache_start proxy-fcgi || { web_logs; exit 1; }
/usr/bin/python3 "$PGCAST_ROOT/tests/poll/poll_checks.py" "$APACHE_URL" apache-proxy-fcgi || { rc=1; web_logs; }
web_stop_all
web_init
pgcast_config_add "cgi_poll_interval_ms = 200"
apache_start cgi || { web_logs; exit 1; }
/usr/bin/python3 "$PGCAST_ROOT/tests/poll/poll_checks.py" "$APACHE_URL" apache-cgi || { rc=1; web_logs; }
exit $rc
