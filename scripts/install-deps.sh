#!/bin/sh
# Installs, only when missing, the Debian packages pgcast's build, tests, demo and
# benchmarks need. Fast when everything is present (one dpkg-query call).
set -eu

PKGS="build-essential pkg-config clang libclang-rt-14-dev \
libfcgi-dev libfcgi-bin spawn-fcgi libmicrohttpd-dev libjson-c-dev libpq-dev \
libjwt-dev libssl-dev \
postgresql postgresql-contrib lighttpd apache2 libapache2-mod-fcgid \
curl chromium nodejs python3 python3-websockets procps psmisc iproute2 openssl \
debhelper lintian"
# Benchmarks only: pass --bench to add them.
BENCH_PKGS="wrk nginx libnginx-mod-nchan"

if [ "${1:-}" = "--bench" ]; then PKGS="$PKGS $BENCH_PKGS"; fi

missing=""
for p in $PKGS; do
    st=$(dpkg-query -W -f='${db:Status-Status}' "$p" 2>/dev/null || true)
    [ "$st" = "installed" ] || missing="$missing $p"
done

[ -z "$missing" ] && exit 0

if [ "$(id -u)" != "0" ]; then
    echo "pgcast: these Debian packages are missing:$missing" >&2
    echo "pgcast: run 'sudo apt-get install$missing' (or run make as root) and try again." >&2
    exit 1
fi

echo "pgcast: installing:$missing" >&2
export DEBIAN_FRONTEND=noninteractive
# Servers we install must not start system-wide instances on their default ports:
# pgcast starts private ones on loopback. policy-rc.d refuses service starts during install.
policy=/usr/sbin/policy-rc.d
made_policy=0
if [ ! -e "$policy" ]; then
    printf '#!/bin/sh\nexit 101\n' > "$policy" && chmod +x "$policy" && made_policy=1
fi
# (an if, not &&: a false test as the trap's last command would become the exit status)
cleanup() { if [ "$made_policy" = 1 ]; then rm -f "$policy"; fi; }
trap cleanup EXIT
apt-get update -qq >&2
apt-get install -y -qq --no-install-recommends $missing >&2
