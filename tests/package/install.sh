#!/bin/bash
# test: alone (it creates a system user and runs installed units: no other test beside it)
# make install (issue 13 item 8): everything an install needs lands where docs/deploy.md
# says, with PREFIX and DESTDIR honoured: the programs, the migrations, client/pgcast.js
# with its types and React entry under share, the units (sidecar; SSE and poll handlers
# with socket activation) naming the installed programs, the sysusers.d file, the Apache
# and lighttpd configurations, /etc/pgcast/pgcast.conf (0640, never overwritten), docs.
# Then a real install as root (PREFIX and SYSCONFDIR in a temporary folder, nothing
# written under /usr/local or /etc): the pgcast user is created, the configuration is
# root:pgcast 0640, the handlers and the sidecar start from the installed units as that
# user, and lighttpd with the installed conf-available file serves the smoke checks.
source "$PGCAST_ROOT/tests/lib/tap.sh"
source "$PGCAST_ROOT/tests/package/units.bash"
set -u
cd "$PGCAST_ROOT" || exit 1
work=$(mktemp -d "${PGCAST_TEST_WORK:-/tmp}/install.XXXXXX")
chmod 0755 "$work"
mkdir -p "$work/log" "$work/run" "$work/www"
chmod 0777 "$work/log" "$work/run"
pids=()
made_user=0
cleanup() {
    stop_pids "${pids[@]}"
    if [ "$made_user" = 1 ]; then
        userdel pgcast 2>/dev/null
        groupdel pgcast 2>/dev/null
    fi
}
trap cleanup EXIT
trap 'exit 143' TERM INT

# ---- staged: make install DESTDIR=... (PREFIX /usr/local, the default)
D="$work/stage"
if make --no-print-directory install DESTDIR="$D" >"$work/log/make-install.log" 2>&1; then
    ok "make install DESTDIR=... PREFIX=/usr/local"
else
    not_ok "make install DESTDIR=... PREFIX=/usr/local"; tail -n 30 "$work/log/make-install.log" | sed 's/^/# /'; exit 1
fi
missing=""
for f in usr/local/bin/pgcast-sse.fcgi usr/local/bin/pgcast-poll.fcgi usr/local/bin/pgcast-ws \
         usr/local/bin/pgcast-migrate usr/local/share/pgcast/sql/001_schema.sql \
         usr/local/share/pgcast/client/pgcast.js usr/local/share/pgcast/client/pgcast.d.ts \
         usr/local/share/pgcast/client/react.js usr/local/share/pgcast/client/react.d.ts \
         usr/local/share/pgcast/client/package.json usr/local/share/pgcast/pgcast.conf.example \
         usr/local/share/pgcast/apache-conf/pgcast-proxy-fcgi.conf usr/local/share/pgcast/lighttpd-conf/pgcast.conf \
         usr/local/share/pgcast/lighttpd-conf/pgcast-daemons.conf usr/local/share/doc/pgcast/deploy.md \
         usr/local/lib/systemd/system/pgcast-ws.service usr/local/lib/systemd/system/pgcast-sse.socket \
         usr/local/lib/systemd/system/pgcast-sse.service usr/local/lib/systemd/system/pgcast-poll.socket \
         usr/local/lib/systemd/system/pgcast-poll.service usr/local/lib/sysusers.d/pgcast.conf \
         etc/pgcast/pgcast.conf etc/apache2/conf-available/pgcast.conf etc/apache2/conf-available/pgcast-capacity.conf \
         etc/lighttpd/conf-available/50-pgcast.conf; do
    [ -f "$D/$f" ] || missing="$missing $f"
done
is "programs, migrations, client (+ types, React entry), units, sysusers, configs, docs installed" "$missing" ""
is "the programs are executable" "$(stat -c %a "$D"/usr/local/bin/pgcast-* | sort -u | tr '\n' ' ')" "755 "
is "/etc/pgcast/pgcast.conf is 0640" "$(stat -c %a "$D/etc/pgcast/pgcast.conf")" 640
execs=$(sed -n 's/^ExecStart=//p' "$D"/usr/local/lib/systemd/system/*.service | sort | tr '\n' ' ')
is "the units start the installed programs" "$execs" \
    "/usr/local/bin/pgcast-poll.fcgi /usr/local/bin/pgcast-relay /usr/local/bin/pgcast-sse.fcgi /usr/local/bin/pgcast-ws "
is "no placeholder is left in what was installed" "$(grep -rl '@[a-z]*dir@' "$D" | sed "s|$D||")" ""
# every path that docs/deploy.md names under /usr/local, and every file the installed
# web-server configurations include, exists in the install
bad=""
for p in $(grep -o '/usr/local/[A-Za-z0-9_./-]*[A-Za-z0-9_]' docs/deploy.md | sort -u); do
    [ -e "$D$p" ] || bad="$bad deploy.md:$p"
done
for p in $(sed -n 's/^[[:space:]]*[Ii]nclude[[:space:]]*"\{0,1\}\([^" ]*\)"\{0,1\}.*/\1/p' \
           "$D/etc/apache2/conf-available/pgcast.conf" "$D/etc/lighttpd/conf-available/50-pgcast.conf"); do
    [ -e "$D$p" ] || bad="$bad conf-available:$p"
done
is "the include paths of docs/deploy.md and of the conf-available files exist in the install" "$bad" ""
echo "# edited by the admin" >>"$D/etc/pgcast/pgcast.conf"
make --no-print-directory install DESTDIR="$D" >"$work/log/make-install-2.log" 2>&1
is "a second make install keeps the admin's configuration" "$(tail -n 1 "$D/etc/pgcast/pgcast.conf")" "# edited by the admin"

make --no-print-directory uninstall DESTDIR="$D" >"$work/log/make-uninstall.log" 2>&1
is "make uninstall leaves only the configuration" "$(cd "$D" && find . -type f | sort | tr '\n' ' ')" \
    "./etc/pgcast/pgcast.conf "

# ---- real: as root, no DESTDIR (PREFIX and SYSCONFDIR in the test's folder)
if [ "$(id -u)" != 0 ]; then
    echo "ok $((_tap_n + 1)) # SKIP the system part of make install needs root"
    tap_done
fi
if getent passwd pgcast >/dev/null; then
    not_ok "a user pgcast exists already: this test checks that make install creates it"
    tap_done
fi
P="$work/prefix" E="$work/etc"
mkdir -p "$E/apache2" "$E/lighttpd"   # as where the servers are installed
if make --no-print-directory install PREFIX="$P" SYSCONFDIR="$E" >"$work/log/make-install-root.log" 2>&1; then
    ok "make install as root"
else
    not_ok "make install as root"; tail -n 30 "$work/log/make-install-root.log" | sed 's/^/# /'
fi
getent passwd pgcast >/dev/null && made_user=1
like "it created the system user pgcast" "$(getent passwd pgcast)" '^pgcast:x:[0-9]{1,3}:[0-9]+:[^:]*:/nonexistent:/usr/sbin/nologin$'
is "the configuration is root:pgcast 0640" "$(stat -c '%U:%G %a' "$E/pgcast/pgcast.conf")" "root:pgcast 640"

read -r sse_port poll_port ws_port http_port <<<"$(scripts/free-port.sh 4 | tr '\n' ' ')"
sed -i -e "s|^database_url = .*|database_url = host=127.0.0.1 port=$PGPORT user=${PGCAST_TEST_DB_USER:-postgres} dbname=$PGDATABASE|" \
       -e "s|^jwt_secret = .*|jwt_secret = pgcast-test-secret|" \
       -e "s|^ws_listen = .*|ws_listen = 127.0.0.1:$ws_port|" "$E/pgcast/pgcast.conf"
sed -i -e "s|= 9001|= $sse_port|" -e "s|= 9002|= $poll_port|" -e "s|= 8081|= $ws_port|" "$E/lighttpd/conf-available/50-pgcast.conf"
units="$P/lib/systemd/system"
units_start "$units" "$work/log" "$sse_port" "$poll_port" "$ws_port"
users=$(for p in "${pids[@]}"; do ps -o user= -p "$p"; done | sort -u | tr -d ' \n')
is "the handlers and the sidecar start from the installed units, as pgcast" "$units_up $users" "1 pgcast"
cat >"$work/lighttpd.conf" <<EOT
server.modules = ( "mod_indexfile", "mod_access", "mod_alias", "mod_redirect" )
server.document-root = "$work/www"
server.errorlog = "$work/log/lighttpd-error.log"
server.pid-file = "$work/run/lighttpd.pid"
server.bind = "127.0.0.1"
server.port = $http_port
$([ "$(id -u)" = 0 ] && printf 'server.username = "www-data"\nserver.groupname = "www-data"')
include "$E/lighttpd/conf-available/50-pgcast.conf"
EOT
lighttpd -D -f "$work/lighttpd.conf" >"$work/log/lighttpd.out" 2>&1 &
pids+=($!)
if wait_port "$http_port"; then ok "lighttpd starts with the installed conf-available file"
else not_ok "lighttpd starts with the installed conf-available file"; tail -n 20 "$work"/log/* | sed 's/^/# /'; fi
/usr/bin/python3 tests/package/smoke.py "http://127.0.0.1:$http_port" make-install-lighttpd ||
    tail -n 20 "$work"/log/* | sed 's/^/# /'
tap_done
