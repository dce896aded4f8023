#!/bin/bash
# Every shipped Apache config on the module combinations Debian gives (issue: configs
# that work whichever of mod_cgi, mod_cgid and mod_fcgid is enabled): health, publish,
# poll, long-poll and SSE with a resume through each, compared with the event log.
#   proxy-fcgi            event MPM, handlers as FastCGI daemons
#   cgi + mod_cgid        event MPM (what a2enmod cgi gives there)
#   cgi + mod_cgi         prefork MPM
#   cgi + fcgid enabled   Debian's fcgid.conf maps every .fcgi to mod_fcgid (and mod_fcgid
#                         passes no SetEnv): the programs must stay on CGI
#   fcgid                 Apache spawns the handlers; its configuration comes without SetEnv
# and a second pgcast config stops Apache with a message instead of being unused.
source "$PGCAST_ROOT/tests/lib/tap.sh"
source "$PGCAST_ROOT/tests/lib/webserver.sh"
source "$PGCAST_ROOT/tests/apache/common.bash"
rc=0
smoke() { # VARIANT LABEL
    if ! apache_start "$1"; then
        echo "not ok - [$2] apache started"; web_logs; rc=1; return
    fi
    /usr/bin/python3 "$PGCAST_ROOT/tests/apache/smoke.py" "$APACHE_URL" "$2" || { rc=1; web_logs; }
    web_stop_all
}

web_init; smoke proxy-fcgi proxy-fcgi
web_init; pgcast_config_add "cgi_poll_interval_ms = 200"; smoke cgi cgi+cgid
web_init; pgcast_config_add "cgi_poll_interval_ms = 200"
APACHE_MPM=prefork APACHE_CGI=cgi smoke cgi cgi+prefork-cgi
web_init; pgcast_config_add "cgi_poll_interval_ms = 200"
APACHE_SITE_CONF=$(fcgid_enabled_conf) smoke cgi cgi+cgid+fcgid-enabled
web_init; pgcast_config_add "cgi_poll_interval_ms = 200"
APACHE_SITE_CONF=$(fcgid_enabled_conf) APACHE_MPM=prefork APACHE_CGI=cgi smoke cgi cgi+prefork-cgi+fcgid-enabled
web_init; APACHE_SITE_CONF=$(fcgid_enabled_conf) smoke fcgid fcgid

# two pgcast configs: Apache refuses to start and says why
web_init
cat >"$WEB_DIR/two.conf" <<EOT
ServerRoot "$WEB_DIR"
Listen 127.0.0.1:1
LoadModule mpm_event_module /usr/lib/apache2/modules/mod_mpm_event.so
LoadModule authz_core_module /usr/lib/apache2/modules/mod_authz_core.so
LoadModule alias_module /usr/lib/apache2/modules/mod_alias.so
LoadModule env_module /usr/lib/apache2/modules/mod_env.so
LoadModule mime_module /usr/lib/apache2/modules/mod_mime.so
$(fcgid_enabled_conf)
Define PGCAST_BINDIR "$PGCAST_BIN"
Define PGCAST_CONFIG "$PGCAST_TEST_CONFIG"
Define PGCAST_SSE_ADDR 127.0.0.1:1
Define PGCAST_POLL_ADDR 127.0.0.1:2
Define PGCAST_WS_ADDR 127.0.0.1:3
Include "$PGCAST_ROOT/apache-conf/pgcast-proxy-fcgi.conf"
Include "$PGCAST_ROOT/apache-conf/pgcast-fcgid.conf"
EOT
out=$(apache2 -t -f "$WEB_DIR/two.conf" 2>&1)
if [ $? -ne 0 ] && grep -q "include only one pgcast Apache config" <<<"$out"; then
    echo "ok - two pgcast configs: Apache refuses to start and names them"
else
    echo "not ok - two pgcast configs: Apache refuses to start and names them"; echo "$out" | sed 's/^/#   /'; rc=1
fi
exit $rc
