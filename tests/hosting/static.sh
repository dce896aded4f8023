#!/bin/bash
# Self-contained CGI programs (`make static`, issue 13 item 5): they must run on a host
# that has none of pgcast's libraries. Checked here: ldd finds no shared library at all;
# the programs answer CGI requests (health, a poll with events, an SSE stream) inside a
# root made by the test that holds only the programs, their configuration and /etc/hosts
# (no libc, no loader, no libpq, json-c, libfcgi, OpenSSL), talking to the test's
# PostgreSQL over TCP as "localhost"; and the token unit tests pass against the libjwt
# stand-in those programs use (static/jwt_openssl.c).
source "$PGCAST_ROOT/tests/lib/tap.sh"
source "$PGCAST_ROOT/tests/lib/webserver.sh"
cd "$PGCAST_ROOT" || exit 1
make_static || exit 1
S=$STATIC_OUT

for p in pgcast-sse.fcgi pgcast-poll.fcgi pgcast-migrate; do
    libs=$(ldd "$S/$p" 2>&1 | grep -v 'not a dynamic executable' | grep -Ev '^\s*(linux-vdso|libc\.so|/lib64/ld-linux|ld-linux)')
    is "$p: ldd lists no shared library" "$libs" ""
    is "$p: no NEEDED entry (readelf -d)" "$(readelf -d "$S/$p" 2>/dev/null | grep -c NEEDED)" 0
done

web_init
root=$(mktemp -d "$PGCAST_TEST_WORK/root.XXXXXX")
mkdir -p "$root/site/realtime" "$root/etc" "$root/tmp"
chmod 1777 "$root/tmp"
cp -p "$S/realtime/pgcast-sse.fcgi" "$S/realtime/pgcast-poll.fcgi" "$root/site/realtime/"
printf '127.0.0.1 localhost\n::1 localhost\n' >"$root/etc/hosts"
# a host whose nsswitch.conf names modules the program does not have: they must not be
# looked for (a host's own modules are built for another glibc); /etc/hosts is used
printf 'hosts: pgcastmissing\npasswd: pgcastmissing\n' >"$root/etc/nsswitch.conf"
# the configuration next to the programs (found through SCRIPT_FILENAME: no /proc here),
# the database by name (resolved from /etc/hosts)
sed "s/host=127.0.0.1/host=localhost/" "$PGCAST_TEST_CONFIG" >"$root/site/realtime/pgcast.conf"
chmod 0600 "$root/site/realtime/pgcast.conf"
is "the root holds nothing but the programs, their configuration, /etc/hosts and /etc/nsswitch.conf" \
    "$(cd "$root" && find . -type f | sort | tr '\n' ' ')" \
    "./etc/hosts ./etc/nsswitch.conf ./site/realtime/pgcast-poll.fcgi ./site/realtime/pgcast-sse.fcgi ./site/realtime/pgcast.conf "

# chroot needs root; otherwise a user namespace maps us to root in it
jail=("$(command -v chroot)" "$root")
[ "$(id -u)" = 0 ] || jail=("$(command -v unshare)" -r "$(command -v chroot)" "$root")
"${jail[@]}" /site/realtime/pgcast-poll.fcgi --version >/dev/null 2>&1 ||
    { echo "not ok - cannot chroot here (needs root or user namespaces)"; exit 1; }

# cgi PROGRAM URI QUERY: one CGI request in the root; the answer in $out
cgi() {
    out=$(env -i GATEWAY_INTERFACE=CGI/1.1 REQUEST_METHOD=GET SERVER_SOFTWARE=Apache \
        SCRIPT_NAME="$2" SCRIPT_FILENAME="/site/realtime/$1" REQUEST_URI="$2?$3" QUERY_STRING="$3" HTTP_AUTHORIZATION="Bearer $TOKEN" \
        PGCAST_SSE_MAX_DURATION_S=3 PGCAST_CGI_POLL_INTERVAL_MS=200 \
        timeout -k 5 30 "${jail[@]}" "/site/realtime/$1" </dev/null 2>"$PGCAST_TEST_WORK/cgi.err")
}
TOKEN=$(mint '{"sub":"u1","tenant":"t1","exp":"+3600","channels":["project:*"]}')

cgi pgcast-poll.fcgi /realtime/health ""
like "health in the bare root: 200, the database reached (localhost from /etc/hosts, whatever nsswitch.conf says)" "$out" 'Status: 200.*"database": *"ok"|Status: 200.*"status": *"ok"'
[[ "$out" == *"Status: 200"* ]] || { echo "# $out"; sed 's/^/# /' "$PGCAST_TEST_WORK/cgi.err"; }

for i in 1 2 3; do psql_q "SELECT realtime.publish('t1', 'project:static', 'e', jsonb_build_object('i', $i))" >/dev/null; done
want=$(psql_q "SELECT string_agg(seq::text || ':' || (event_data->>'i'), ' ' ORDER BY seq) FROM realtime.realtime_events_log
               WHERE tenant_id = 't1' AND channel = 'project:static'")
cgi pgcast-poll.fcgi /realtime/events "channel=project:static&since=project:static=0"
got=$(sed -n '/^\r\?$/,$p' <<<"$out" | python3 -c '
import json, sys
body = json.loads(sys.stdin.read())
print(" ".join("%s:%s" % (e["seq"], e["payload"]["i"]) for e in body["events"]))' 2>&1)
is "a poll in the bare root returns the log's events, in order, none missing or repeated" "$got" "$want"

cgi pgcast-sse.fcgi /realtime/sse "channel=project:static&since=project:static=1"
got=$(grep '^data: ' <<<"$out" | python3 -c '
import json, sys
print(" ".join("%s:%s" % (m["seq"], m["payload"]["i"]) for m in (json.loads(l[6:]) for l in sys.stdin) if "seq" in m and m.get("type") == "e"))' 2>&1)
is "an SSE stream in the bare root resumes after seq 1 with the log's events" "$got" "$(cut -d' ' -f2- <<<"$want")"
like "the SSE stream ended by itself (sse_max_duration_s) with its cursor" "$(grep '^id: ' <<<"$out" | tail -1)" '^id: project:static=3'
# without sse_max_duration_s a CGI stream ends after 240 s (Apache's Timeout is 300)
out=$(env -i GATEWAY_INTERFACE=CGI/1.1 REQUEST_METHOD=GET SCRIPT_FILENAME=/site/realtime/pgcast-sse.fcgi \
    REQUEST_URI="/realtime/sse" QUERY_STRING="channel=project:static" HTTP_AUTHORIZATION="Bearer $TOKEN" \
    PGCAST_LOG_LEVEL=debug timeout 3 "${jail[@]}" /site/realtime/pgcast-sse.fcgi 2>&1 >/dev/null </dev/null)
like "a CGI stream ends after 240 s by default (under Apache's Timeout 300)" "$out" "stream open: .*ends after 240 s"
ok_if "no error in the programs' output" bash -c "! grep -Ei 'error|sanitizer' '$PGCAST_TEST_WORK/cgi.err'"

# pgcast-migrate in the bare root (how docs/shared-hosting.md has the schema made)
cp -p "$S/pgcast-migrate" "$root/site/"
db="host=localhost port=$PGPORT user=postgres dbname=$PGDATABASE" # as the database's owner, over TCP
st=$(env -i PGCAST_DATABASE_URL="$db" timeout 30 "${jail[@]}" /site/pgcast-migrate --status 2>&1)
like "pgcast-migrate --status in the bare root lists the applied migrations" "$st" "001.*applied|applied.*001"
rm -f "$root/site/pgcast-migrate"

# The token tests against the stand-in: token.c and static/jwt_openssl.c built with the
# stand-in's functions renamed, so the test's own signing still uses libjwt.
tdir=$(mktemp -d "$PGCAST_TEST_WORK/tok.XXXXXX")
ren="-Djwt_decode=pgcs_jwt_decode -Djwt_free=pgcs_jwt_free -Djwt_get_alg=pgcs_jwt_get_alg \
     -Djwt_get_grants_json=pgcs_jwt_get_grants_json -Djwt_str_alg=pgcs_jwt_str_alg"
cf="-std=c11 -D_GNU_SOURCE -pthread -Icore -Ifcgi $(pkg-config --cflags json-c libpq)"
built=1
# shellcheck disable=SC2086
for t in test_token test_token_claims; do
    cc $cf $ren -c core/token.c -o "$tdir/token.o" &&
        cc $cf $ren -c static/jwt_openssl.c -o "$tdir/jwt.o" &&
        cc $cf -c "tests/unit/$t.c" -o "$tdir/$t.o" &&
        cc -pthread -o "$tdir/$t" "$tdir/$t.o" "$tdir/token.o" "$tdir/jwt.o" build/release/libpgcast-core.a \
            $(pkg-config --libs libpq json-c libjwt libcrypto) 2>"$tdir/cc.err" || { built=0; cat "$tdir/cc.err"; }
    [ $built = 1 ] || break
    res=$(cd "$tdir" && "./$t")
    total=$(grep -cE '^(not )?ok ' <<<"$res")
    bad=$(grep -E '^not ok ' <<<"$res")
    is "$t ($total checks) passes against static/jwt_openssl.c" "$bad" ""
    [ "$total" -gt 10 ] || not_ok "$t ran its checks ($total)"
done
[ $built = 1 ] || not_ok "the token tests build against static/jwt_openssl.c"
tap_done
