#!/bin/bash
# The shared-hosting drop-in folder (issue 13 items 4, 6, 7), set up by following
# docs/shared-hosting.md literally (its "# hosting:..." shell blocks run as written,
# with HOME the test account's), in a real Apache whose vhost gives the account
# "AllowOverride FileInfo AuthConfig Limit Options=ExecCGI,Indexes": with mod_cgid
# (event MPM), with mod_cgi (prefork MPM), with mod_cgid next to mod_fcgid and its
# host-wide "AddHandler fcgid-script .fcgi" (Debian once libapache2-mod-fcgid is
# installed: the folder's programs must still run as CGI), and with only mod_fcgid at the
# host defaults
# (FcgidOutputBufferSize 64 KiB, FcgidIOTimeout 40). The programs are the self-contained
# ones of `make static`.
# This file runs cgid, cgi and cgid-fcgid; tests/hosting/fcgid.sh runs it with HOSTING_VARIANTS="fcgid
# fcgid-pad" (each under a minute).
source "$PGCAST_ROOT/tests/lib/tap.sh"
source "$PGCAST_ROOT/tests/lib/webserver.sh"
cd "$PGCAST_ROOT" || exit 1
make_static || exit 1
rc=0

# pgcast.js in Chromium on the mod_fcgid account (the stream is held back): it gives SSE
# up after sseSilenceMs and long-polls; every event arrives once, in order.
browser_falls_back() {
    cp "$PGCAST_ROOT/client/pgcast.js" "$HOSTING_HOME/public_html/pgcast.js"
    TOKEN_B=$(mint '{"sub":"u2","tenant":"t1","exp":"+3600","channels":["project:*"]}') \
        HOSTING_URL=$HOSTING_URL HOSTING_WWW=$HOSTING_HOME/public_html /usr/bin/python3 - <<'PY'
import os, sys, time
sys.path.insert(0, os.path.join(os.environ["PGCAST_ROOT"], "tests", "client"))
import harness
from harness import Browser, ok, publish, log_seqs, write_harness, js
harness._n = 100  # after the other checks' numbers
write_harness(os.path.join(os.environ["HOSTING_WWW"], "harness.html"))
with Browser() as b:
    p = b.open(os.environ["HOSTING_URL"] + "/harness.html")
    if not p.wait_for("window.ready === true", 20):
        raise SystemExit("the harness page did not load")
    p.eval(f"window.rt = make({{ token: {js(os.environ['TOKEN_B'])}, transports: ['sse', 'poll'], "
           "sseSilenceMs: 3000 }); rt.watch('project:fcgidpage'); rt.connect(); true")
    ok(p.wait_for("rt.transport === 'poll' && rt.status === 'connected'", 30),
       "[fcgid] pgcast.js gives the held-back SSE stream up and long-polls", (p.eval("rt.statuses"), p.eval("counts.es")))
    publish("t1", "project:fcgidpage", 5)
    want = log_seqs("t1", "project:fcgidpage")
    p.wait_for(f"rt.received['project:fcgidpage'].length >= {len(want)}", 30)
    got = p.eval("rt.received['project:fcgidpage']")
    ok(got == want and len(want) == 5, "[fcgid] every event arrives by long-polling once, in order (the event log's)",
       (got, want))
    ok(any("wait=20" in u for u in p.eval("counts.fetch")), "[fcgid] the polls are long-polls (wait=20)",
       p.eval("counts.fetch")[-3:])
sys.exit(1 if harness.failed else 0)
PY
}

for variant in ${HOSTING_VARIANTS:-cgid cgi cgid-fcgid}; do
    web_init
    source "$PGCAST_ROOT/tests/lib/hosting.sh"
    # step 3 of the page: upload, the two configuration lines, the permissions
    (export HOME=$HOSTING_HOME; cd "$PGCAST_ROOT" && set -e && b=$(hosting_doc_block upload) && eval "$b") ||
        { echo "not ok - [$variant] the upload block of docs/shared-hosting.md ran"; rc=1; continue; }
    conf=$HOSTING_HOME/public_html/realtime/pgcast.conf
    db=$(grep '^database_url' "$PGCAST_TEST_CONFIG")
    sed -i "s|^database_url = .*|$db|; s|^jwt_secret = .*|jwt_secret = $TEST_JWT_SECRET|" "$conf"
    (export HOME=$HOSTING_HOME; set -e; b=$(hosting_doc_block permissions) && eval "$b") ||
        { echo "not ok - [$variant] the permissions block ran"; rc=1; continue; }
    if [ "$(id -u)" = 0 ]; then # Apache runs the programs as www-data: no suexec here
        (export HOME=$HOSTING_HOME; set -e; b=$(hosting_doc_block permissions-no-suexec) && eval "$b") ||
            { echo "not ok - [$variant] the permissions-no-suexec block ran"; rc=1; continue; }
    fi
    is "[$variant] the configuration is not readable by other accounts" "$(stat -c %A "$conf" | cut -c8-10)" "---"
    mode=cgi
    HOSTING_FCGID_IO_TIMEOUT=40
    case $variant in
        fcgid) mode=fcgid ;;
        fcgid-pad) mode=fcgid-pad
            # the page's step for hosts with only mod_fcgid
            (export HOME=$HOSTING_HOME; set -e; b=$(hosting_doc_block fcgid-padding) && eval "$b") ||
                { echo "not ok - [$variant] the fcgid-padding block ran"; rc=1; continue; }
            # FcgidIOTimeout and the heartbeat cap scaled down 10:1 (40 s -> 4 s would be too
            # tight on a busy machine: 10 s and 4 s), keepalive comments off, and a channel
            # type whose heartbeat (60 s) is past the timeout: only the cap keeps it up
            HOSTING_FCGID_IO_TIMEOUT=10
            printf 'sse_keepalive_ms = 0\nsse_heartbeat_max_ms = 4000\n' >>"$conf"
            psql_q "UPDATE realtime.realtime_heartbeat_config SET heartbeat_interval_ms = 60000 WHERE channel_type = 'project'"
            ;;
    esac
    cp -p "$conf" "$conf~" # what an editor leaves behind
    hosting_apache_start "$variant" || { web_logs; rc=1; continue; }
    /usr/bin/python3 "$PGCAST_ROOT/tests/hosting/hosting_checks.py" "$HOSTING_URL" "$variant" "$mode" || rc=1
    [ "$variant" = fcgid ] && { browser_falls_back || rc=1; }
    ok_if "[$variant] no warning about a readable configuration in the error log" \
        bash -c "! grep -q 'readable by every account' '$WEB_DIR/log/apache-error.log'"
    [ $rc = 0 ] || web_logs
    web_stop_all
done

# The warning when the configuration is readable by everyone (the programs run directly)
[ -n "${HOSTING_VARIANTS:-}" ] && { [ $rc = 0 ] && tap_done; exit 1; }
web_init
source "$PGCAST_ROOT/tests/lib/hosting.sh"
cp -r "$STATIC_OUT/realtime" "$HOSTING_HOME/public_html/realtime"
chmod 0644 "$HOSTING_HOME/public_html/realtime/pgcast.conf"
err=$(env -i GATEWAY_INTERFACE=CGI/1.1 REQUEST_METHOD=GET REQUEST_URI=/realtime/health \
    "$HOSTING_HOME/public_html/realtime/pgcast-poll.fcgi" 2>&1 >/dev/null </dev/null)
like "a configuration readable by every account is warned about at start" "$err" \
    "pgcast.conf is readable by every account on this machine \(mode 644\).*chmod 600"
[ $rc = 0 ] && tap_done
exit 1
