#!/bin/bash
# test: alone (it installs a package into the system: no other test runs beside it)
# The Debian package on this machine (issue 13 item 9; item 8's units, user and include
# paths as packaged): `make deb` builds it and lintian finds no error; dpkg -i installs
# it; it is enabled in the real Apache (a2enconf) and lighttpd (lighty-enable-mod); the
# handlers and the sidecar start from the installed units as systemd would start them
# (tests/package/unit_exec.py: CI has no systemd as PID 1); Apache and lighttpd run on
# free ports with the machine's /etc/apache2 and /etc/lighttpd configuration (never the
# system services); the smoke checks (tests/package/smoke.py) pass through both; then
# `dpkg --purge` leaves nothing behind: no file, conf link, user, group or statoverride.
# The package is purged on any exit. Needs root (it installs a package): skipped without.
# PGCAST_DEB=path/to/pgcast_*.deb tests that package instead of building one.
source "$PGCAST_ROOT/tests/lib/tap.sh"
source "$PGCAST_ROOT/tests/package/units.bash"
set -u
cd "$PGCAST_ROOT" || exit 1

if [ "$(id -u)" != 0 ]; then
    echo "ok 1 # SKIP installing a package needs root"
    exit 0
fi
if [ "$(dpkg-query -W -f='${db:Status-Status}' pgcast 2>/dev/null)" = installed ]; then
    not_ok "pgcast is installed on this machine already: this test installs and purges it (dpkg --purge pgcast first)"
    exit 1
fi
if getent passwd pgcast >/dev/null; then
    not_ok "a user pgcast exists already: the package creates it and its purge removes it (deluser --system pgcast first)"
    exit 1
fi

work=$(mktemp -d "${PGCAST_TEST_WORK:-/tmp}/package.XXXXXX")
chmod 0755 "$work"
mkdir -p "$work/run" "$work/log" "$work/www" "$work/apache"
chmod 0777 "$work/run" "$work/log"
pids=()
policy=/usr/sbin/policy-rc.d
made_policy=0

stop_started() {
    stop_pids "${pids[@]}"
    pids=()
}
cleanup() {
    stop_started
    if dpkg-query -W pgcast >/dev/null 2>&1 && [ -n "$(dpkg-query -W -f='${db:Status-Status}' pgcast)" ] &&
            [ "$(dpkg-query -W -f='${db:Status-Status}' pgcast)" != not-installed ]; then
        dpkg_retry --purge pgcast >>"$work/log/dpkg.log" 2>&1
    fi
    if [ "$made_policy" = 1 ]; then rm -f "$policy"; fi
}
trap cleanup EXIT
trap 'exit 143' TERM INT
logs() { tail -n 30 "$work"/log/* 2>/dev/null | sed 's/^/# /'; }

# dpkg takes a lock that apt of someone else on the machine may hold for a while
dpkg_retry() {
    local i out
    for i in $(seq 1 60); do
        out=$(dpkg "$@" 2>&1) && { echo "$out"; return 0; }
        grep -q "lock" <<<"$out" || { echo "$out"; return 1; }
        sleep 2
    done
    echo "$out"; return 1
}


# ---- build and lint
t0=$(date +%s)
version=$(dpkg-parsechangelog -S Version)
deb="build/deb/pgcast_${version}_$(dpkg --print-architecture).deb"
if [ -n "${PGCAST_DEB:-}" ]; then
    deb=$PGCAST_DEB   # a package built before (CI artifacts): used as it is
    ok "using $deb # SKIP PGCAST_DEB given: not built here"
elif make --no-print-directory deb >"$work/log/make-deb.log" 2>&1 && [ -f "$deb" ]; then
    ok "make deb builds $deb"
else
    not_ok "make deb builds $deb"; tail -n 30 "$work/log/make-deb.log" | sed 's/^/# /'; exit 1
fi
echo "# make deb took $(( $(date +%s) - t0 )) s"
lint=$(lintian --fail-on error --display-info "$deb" 2>&1); lint_rc=$?
grep -E '^[EWI]:' <<<"$lint" | sed 's/^/# lintian: /'
is "lintian reports no error" "$lint_rc $(grep -c '^E:' <<<"$lint")" "0 0"

# ---- install (services must not start: policy-rc.d refuses, as on Debian's buildds)
if [ ! -e "$policy" ]; then
    printf '#!/bin/sh\nexit 101\n' >"$policy" && chmod +x "$policy" && made_policy=1
fi
if dpkg_retry -i "$deb" >"$work/log/dpkg-install.log" 2>&1; then
    ok "dpkg -i installs the package"
else
    not_ok "dpkg -i installs the package"; sed 's/^/# /' "$work/log/dpkg-install.log"; exit 1
fi
dpkg -L pgcast | sort >"$work/files"

pw=$(getent passwd pgcast)
like "the system user pgcast exists (no login, no home)" "$pw" '^pgcast:x:[0-9]{1,3}:[0-9]+:[^:]*:/nonexistent:/usr/sbin/nologin$'
is "/etc/pgcast/pgcast.conf is root:pgcast 0640 (it holds secrets)" "$(stat -c '%U:%G %a' /etc/pgcast/pgcast.conf)" "root:pgcast 640"
conffiles=$(dpkg-query -W -f='${Conffiles}' pgcast | awk '{print $1}' | sort | tr '\n' ' ')
is "conffiles: the pgcast, Apache (and its sizing) and lighttpd configurations" "$conffiles" \
    "/etc/apache2/conf-available/pgcast-capacity.conf /etc/apache2/conf-available/pgcast.conf /etc/lighttpd/conf-available/50-pgcast.conf /etc/pgcast/pgcast.conf "
units=/lib/systemd/system
for u in pgcast-sse.socket pgcast-sse.service pgcast-poll.socket pgcast-poll.service pgcast-ws.service; do
    [ -f "$units/$u" ] || not_ok "unit $u installed"
done
bad=""
for u in pgcast-sse.service pgcast-poll.service pgcast-ws.service; do
    exe=$(sed -n 's/^ExecStart=\([^ ]*\).*/\1/p' "$units/$u")
    [ -x "$exe" ] && grep -qx "User=pgcast" "$units/$u" || bad="$bad $u($exe)"
done
is "the units run installed programs as pgcast" "$bad" ""
if command -v systemd-analyze >/dev/null; then
    out=$(cd "$units" && SYSTEMD_LOG_LEVEL=warning systemd-analyze verify --man=no \
          pgcast-sse.socket pgcast-sse.service pgcast-poll.socket pgcast-poll.service pgcast-ws.service 2>&1 |
          grep -v -e 'Failed to .*connect' -e 'bus' )
    is "systemd-analyze verify finds nothing in the units" "$out" ""
fi

# ---- docs/deploy.md's "Install" names only what the package has
bad=""
for p in $(sed -n '/^## Install/,/^## 1\./p' docs/deploy.md |
           grep -oE '/(usr/bin|usr/share/pgcast|usr/share/doc/pgcast|lib/systemd/system|etc/pgcast|etc/apache2/conf-available|etc/lighttpd/conf-available)[A-Za-z0-9_./-]*[A-Za-z0-9_]' | sort -u); do
    [ -e "$p" ] || bad="$bad $p"
done
is "every path docs/deploy.md's Install names for the package exists" "$bad" ""

# ---- the steps of docs/deploy.md's "Install", in order (ports: free ones, not the defaults)
# 1. configure
read -r sse_port poll_port ws_port apache_port lighttpd_port <<<"$(scripts/free-port.sh 5 | tr '\n' ' ')"
sed -i -e "s|^database_url = .*|database_url = host=127.0.0.1 port=$PGPORT user=${PGCAST_TEST_DB_USER:-postgres} dbname=$PGDATABASE|" \
       -e "s|^jwt_secret = .*|jwt_secret = pgcast-test-secret|" \
       -e "s|^ws_listen = .*|ws_listen = 127.0.0.1:$ws_port|" /etc/pgcast/pgcast.conf
is "editing the configuration keeps it root:pgcast 0640" "$(stat -c '%U:%G %a' /etc/pgcast/pgcast.conf)" "root:pgcast 640"
# 2. the database: schema and the runtime role's grants
if PGCAST_CONFIG= PGCAST_DATABASE_URL="${PGCAST_TEST_OWNER_URL:-}" /usr/bin/pgcast-migrate --quiet \
        --runtime-role pgcast_runtime --publisher-role pgcast_publisher >"$work/log/migrate.log" 2>&1; then
    ok "pgcast-migrate --runtime-role --publisher-role (installed) runs"
else
    not_ok "pgcast-migrate --runtime-role --publisher-role (installed) runs"; sed 's/^/# /' "$work/log/migrate.log"
fi
# 3. the handlers and the sidecar, as their units start them
units_start "$units" "$work/log" "$sse_port" "$poll_port" "$ws_port"
users=$(for p in "${pids[@]}"; do ps -o user=,comm= -p "$p"; done | sort | tr -s ' ' | tr '\n' ';')
is "the handlers and the sidecar run from the units, as pgcast" "$units_up $users" \
    "1 pgcast pgcast-poll.fcg;pgcast pgcast-sse.fcgi;pgcast pgcast-ws;"

# 4. enable it in the web servers (their addresses moved to the free ports)
sed -i -e "s|127.0.0.1:9001|127.0.0.1:$sse_port|" -e "s|127.0.0.1:9002|127.0.0.1:$poll_port|" \
       -e "s|127.0.0.1:8081|127.0.0.1:$ws_port|" /etc/apache2/conf-available/pgcast.conf
sed -i -e "s|= 9001|= $sse_port|" -e "s|= 9002|= $poll_port|" -e "s|= 8081|= $ws_port|" \
    /etc/lighttpd/conf-available/50-pgcast.conf
a2enconf -q pgcast >"$work/log/a2enconf.log" 2>&1
is "a2enconf pgcast enables it" "$(readlink /etc/apache2/conf-enabled/pgcast.conf)" "../conf-available/pgcast.conf"
a2enconf -q pgcast-capacity >>"$work/log/a2enconf.log" 2>&1
is "a2enconf pgcast-capacity enables the sizing (Apache below runs with it)" \
    "$(readlink /etc/apache2/conf-enabled/pgcast-capacity.conf)" "../conf-available/pgcast-capacity.conf"
lighty-enable-mod pgcast >"$work/log/lighty-enable-mod.log" 2>&1
is "lighty-enable-mod pgcast enables it" "$(readlink /etc/lighttpd/conf-enabled/50-pgcast.conf)" \
    "../conf-available/50-pgcast.conf"

# ---- Apache: the machine's modules and conf-enabled/, on a free port
cat >"$work/apache.conf" <<EOT
ServerRoot "/etc/apache2"
ServerName 127.0.0.1
Listen 127.0.0.1:$apache_port
PidFile "$work/run/apache.pid"
DefaultRuntimeDir "$work/run"
Mutex file:$work/run default
ErrorLog "$work/log/apache-error.log"
LogLevel warn
LogFormat "%v:%p %h %l %u %t \"%r\" %>s %O" vhost_combined
User www-data
Group www-data
IncludeOptional mods-enabled/*.load
IncludeOptional mods-enabled/*.conf
<IfModule fcgid_module>
    FcgidIPCDir "$work/run/fcgid"
    FcgidProcessTableFile "$work/run/fcgid_shm"
</IfModule>
IncludeOptional conf-enabled/*.conf
# a site, as sites-enabled/ has them: conf-enabled/ must reach into its virtual host
<VirtualHost 127.0.0.1:$apache_port>
    ServerName site.test
    DocumentRoot "$work/www"
    <Directory "$work/www">
        Require all granted
    </Directory>
</VirtualHost>
EOT
echo ok >"$work/www/index.html"
APACHE_LOG_DIR="$work/log" APACHE_RUN_DIR="$work/run" APACHE_LOCK_DIR="$work/run" \
    apache2 -f "$work/apache.conf" -D FOREGROUND >"$work/log/apache.out" 2>&1 &
pids+=($!)
# ---- lighttpd: Debian's settings and the machine's conf-enabled/, on a free port
cat >"$work/lighttpd.conf" <<EOT
server.modules = ( "mod_indexfile", "mod_access", "mod_alias", "mod_redirect" )
server.document-root = "$work/www"
server.errorlog = "$work/log/lighttpd-error.log"
server.pid-file = "$work/run/lighttpd.pid"
server.username = "www-data"
server.groupname = "www-data"
server.bind = "127.0.0.1"
server.port = $lighttpd_port
index-file.names = ( "index.html" )
include_shell "/usr/share/lighttpd/create-mime.conf.pl"
include "/etc/lighttpd/conf-enabled/*.conf"
server.modules += ( "mod_staticfile" )
EOT
lighttpd -D -f "$work/lighttpd.conf" >"$work/log/lighttpd.out" 2>&1 &
pids+=($!)
wait_port "$apache_port" && a=1 || a=0
wait_port "$lighttpd_port" && l=1 || l=0
is "Apache and lighttpd start with pgcast enabled" "$a $l" "1 1"
is "the sites' own pages still answer" \
    "$(curl -s -m 10 "http://127.0.0.1:$apache_port/") $(curl -s -m 10 "http://127.0.0.1:$lighttpd_port/")" "ok ok"

# 5. check: the smoke checks through both
/usr/bin/python3 tests/package/smoke.py "http://127.0.0.1:$apache_port" apache || logs
/usr/bin/python3 tests/package/smoke.py "http://127.0.0.1:$lighttpd_port" lighttpd || logs
stop_started

# ---- reinstall (as an upgrade does): the admin's configuration and its mode stay
dpkg_retry -i "$deb" >"$work/log/dpkg-reinstall.log" 2>&1
is "dpkg -i again keeps the edited configuration, root:pgcast 0640" \
    "$(grep -c '^jwt_secret = pgcast-test-secret$' /etc/pgcast/pgcast.conf) $(stat -c '%U:%G %a' /etc/pgcast/pgcast.conf)" \
    "1 root:pgcast 640"

# ---- remove: the web servers no longer include what is gone (their conf links go)
if dpkg_retry -r pgcast >"$work/log/dpkg-remove.log" 2>&1; then ok "dpkg -r pgcast"
else not_ok "dpkg -r pgcast"; sed 's/^/# /' "$work/log/dpkg-remove.log"; fi
is "after remove: conf links gone, conffiles kept" \
    "$(ls /etc/apache2/conf-enabled/pgcast.conf /etc/lighttpd/conf-enabled/50-pgcast.conf 2>/dev/null | wc -l) $(ls /etc/pgcast/pgcast.conf /etc/apache2/conf-available/pgcast.conf /etc/lighttpd/conf-available/50-pgcast.conf | wc -l)" \
    "0 3"
if apache2ctl -t >"$work/log/apache2ctl-removed.log" 2>&1 &&
        lighttpd -tt -f /etc/lighttpd/lighttpd.conf >"$work/log/lighttpd-t-removed.log" 2>&1; then
    ok "after remove: the machine's Apache and lighttpd configurations still parse"
else
    not_ok "after remove: the machine's Apache and lighttpd configurations still parse"
    sed 's/^/# /' "$work/log/apache2ctl-removed.log" "$work/log/lighttpd-t-removed.log"
fi

# ---- purge: nothing left
if dpkg_retry --purge pgcast >"$work/log/dpkg-purge.log" 2>&1; then
    ok "dpkg --purge pgcast"
else
    not_ok "dpkg --purge pgcast"; sed 's/^/# /' "$work/log/dpkg-purge.log"
fi
left=""
while read -r f; do
    [ "$f" = /. ] && continue
    [ -e "$f" ] || [ -L "$f" ] || continue
    [ -d "$f" ] && [ -n "$(dpkg -S "$f" 2>/dev/null)" ] && continue   # a directory other packages have
    left="$left $f"
done <"$work/files"
for f in /etc/pgcast /usr/share/pgcast /usr/share/doc/pgcast /etc/apache2/conf-enabled/pgcast.conf \
         /etc/apache2/conf-enabled/pgcast-capacity.conf /etc/apache2/conf-available/pgcast-capacity.conf \
         /etc/lighttpd/conf-enabled/50-pgcast.conf /var/lib/apache2/conf/enabled_by_admin/pgcast \
         /var/lib/apache2/conf/enabled_by_maint/pgcast /var/lib/apache2/conf/disabled_by_maint/pgcast \
         /var/lib/apache2/conf/disabled_by_admin/pgcast; do
    { [ -e "$f" ] || [ -L "$f" ]; } && left="$left $f"
done
is "no file, directory or conf link of pgcast is left" "$left" ""
is "the user and the group pgcast are gone" "$(getent passwd pgcast)$(getent group pgcast)" ""
is "no statoverride is left" "$(dpkg-statoverride --list /etc/pgcast/pgcast.conf)" ""
if apache2ctl -t >"$work/log/apache2ctl.log" 2>&1; then ok "the machine's Apache configuration still parses"
else not_ok "the machine's Apache configuration still parses"; sed 's/^/# /' "$work/log/apache2ctl.log"; fi
tap_done
