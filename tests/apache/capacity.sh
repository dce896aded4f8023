#!/bin/bash
# The site's share for streams (issue: the site stops at 150 streams): with
# site_max_streams = 5, the 6th stream is told to come back later (EventSource and
# Chromium honour it and come back), long-polls get 503 + Retry-After, the static page
# and /health answer, a stream that ends (or whose process is killed with -9) frees its
# slot. Plain CGI (one process per stream: the count is shared across processes) and
# mod_proxy_fcgi (the SSE and poll daemons share the count).
source "$PGCAST_ROOT/tests/lib/tap.sh"
source "$PGCAST_ROOT/tests/lib/webserver.sh"
source "$PGCAST_ROOT/tests/apache/common.bash"
npm_eventsource || exit 1
rc=0
for variant in ${CAPACITY_VARIANTS:-cgi proxy-fcgi}; do
    web_init
    pgcast_config_add "site_max_streams = 5"
    pgcast_config_add "site_busy_retry_s = 2"
    pgcast_config_add "cgi_poll_interval_ms = 200"
    pgcast_config_add "sse_keepalive_ms = 500"
    static_page
    apache_start $variant || { web_logs; exit 1; }
    kill_config=""
    [ $variant = cgi ] && kill_config=$PGCAST_TEST_CONFIG
    WWW_DIR="$WEB_DIR/www" KILL_CONFIG=$kill_config \
        /usr/bin/python3 "$PGCAST_ROOT/tests/apache/capacity.py" "$APACHE_URL" "$variant" 5 || { rc=1; web_logs; }
    web_stop_all
done
exit $rc
