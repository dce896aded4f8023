#!/bin/bash
# SSE through real Apache with the shipped configs: mod_proxy_fcgi (the handler as a
# FastCGI daemon) and plain CGI (shared hosting: no LISTEN, the log is polled).
source "$PGCAST_ROOT/tests/lib/tap.sh"
source "$PGCAST_ROOT/tests/lib/webserver.sh"
web_init
rc=0
apache_start proxy-fcgi || { web_logs; exit 1; }
/usr/bin/python3 "$PGCAST_ROOT/tests/sse/sse_checks.py" "$APACHE_URL" apache-proxy-fcgi 50 || { rc=1; web_logs; }
web_stop_all
web_init
pgcast_config_add "cgi_poll_interval_ms = 200"
apache_start cgi || { web_logs; exit 1; }
/usr/bin/python3 "$PGCAST_ROOT/tests/sse/sse_checks.py" "$APACHE_URL" apache-cgi 20 || rc=1
[ $rc = 0 ] || web_logs
exit $rc
