#!/bin/bash
# The shared-hosting drop-in folder (issue 13 items 4, 6, 7), set up by following
# docs/shared-hosting.md literally (its "# hosting:..." shell blocks run as written,
# with HOME the test account's), in a real Apache whose vhost gives the account
# "AllowOverride FileInfo AuthConfig Limit Options=ExecCGI,Indexes": with mod_cgid
# (event MPM), with mod_cgi (prefork MPM), and with only mod_fcgid at the host defaults
# (FcgidOutputBufferSize 64 KiB, FcgidIOTimeout 40). The programs are the self-contained
# ones of `make static`.
#   HOSTING_VARIANTS="cgid fcgid" tests/run.sh tests/hosting/htaccess   (default: all three)
source "$PGCAST_ROOT/tests/lib/tap.sh"
source "$PGCAST_ROOT/tests/lib/webserver.sh"
cd "$PGCAST_ROOT" || exit 1
make --no-print-directory -s static >"$PGCAST_TEST_WORK/make-static.log" 2>&1 ||
    { echo "not ok 1 - make static"; tail -20 "$PGCAST_TEST_WORK/make-static.log" | sed 's/^/# /'; exit 1; }
rc=0

for variant in ${HOSTING_VARIANTS:-cgid cgi fcgid}; do
    web_init
    source "$PGCAST_ROOT/tests/hosting/lib.sh"
    # step 3 of the page: upload, the two configuration lines, the permissions
    (export HOME=$HOSTING_HOME; cd "$PGCAST_ROOT" && set -e && eval "$(hosting_doc_block upload)") ||
        { echo "not ok - [$variant] the upload block of docs/shared-hosting.md ran"; rc=1; continue; }
    conf=$HOSTING_HOME/public_html/realtime/pgcast.conf
    db=$(grep '^database_url' "$PGCAST_TEST_CONFIG")
    sed -i "s|^database_url = .*|$db|; s|^jwt_secret = .*|jwt_secret = $TEST_JWT_SECRET|" "$conf"
    (export HOME=$HOSTING_HOME; set -e; eval "$(hosting_doc_block permissions)") ||
        { echo "not ok - [$variant] the permissions block ran"; rc=1; continue; }
    if [ "$(id -u)" = 0 ]; then # Apache runs the programs as www-data: no suexec here
        (export HOME=$HOSTING_HOME; set -e; eval "$(hosting_doc_block permissions-no-suexec)") ||
            { echo "not ok - [$variant] the permissions-no-suexec block ran"; rc=1; continue; }
    fi
    is "[$variant] the configuration is not readable by other accounts" "$(stat -c %A "$conf" | cut -c8-10)" "---"
    hosting_apache_start "$variant" || { web_logs; rc=1; continue; }
    mode=cgi
    [ "$variant" = fcgid ] && mode=fcgid
    /usr/bin/python3 "$PGCAST_ROOT/tests/hosting/hosting_checks.py" "$HOSTING_URL" "$variant" "$mode" || rc=1
    ok_if "[$variant] no warning about a readable configuration in the error log" \
        bash -c "! grep -q 'readable by every account' '$WEB_DIR/log/apache-error.log'"
    [ $rc = 0 ] || web_logs
    web_stop_all
done

# The warning when the configuration is readable by everyone (the programs run directly)
web_init
source "$PGCAST_ROOT/tests/hosting/lib.sh"
cp -r build/static/realtime "$HOSTING_HOME/public_html/realtime"
chmod 0644 "$HOSTING_HOME/public_html/realtime/pgcast.conf"
err=$(env -i GATEWAY_INTERFACE=CGI/1.1 REQUEST_METHOD=GET REQUEST_URI=/realtime/health \
    "$HOSTING_HOME/public_html/realtime/pgcast-poll.fcgi" 2>&1 >/dev/null </dev/null)
like "a configuration readable by every account is warned about at start" "$err" \
    "pgcast.conf is readable by every account on this machine \(mode 644\).*chmod 600"
[ $rc = 0 ] && tap_done
exit 1
