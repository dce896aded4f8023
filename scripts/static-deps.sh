#!/bin/bash
# The static archives `make static` needs beyond the -dev packages: libpq.a (libpq-dev)
# calls into libpgcommon and libpgport, which Debian ships only in
# postgresql-server-dev-N (with a large compiler toolchain as dependencies). Its package
# of the installed libpq-dev's version is downloaded (apt-get download: no install, no
# dependencies) and the two *_shlib.a archives taken out of it into DIR.
#   scripts/static-deps.sh DIR
set -euo pipefail
dir=$1
[ -f "$dir/libpgcommon_shlib.a" ] && [ -f "$dir/libpgport_shlib.a" ] && exit 0
ver=$(dpkg-query -W -f='${Version}' libpq-dev)
major=${ver%%.*}
mkdir -p "$dir/deb"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
chmod 0777 "$tmp"
fetch() { ( cd "$tmp" && apt-get download -q "postgresql-server-dev-$major=$ver" >/dev/null 2>&1 ); }
# a fresh container has no package lists yet: read them once (as root), then again
if ! fetch && ! { [ "$(id -u)" = 0 ] && apt-get update -q >/dev/null 2>&1 && fetch; }; then
    echo "static-deps: could not download postgresql-server-dev-$major=$ver (apt-get update?)" >&2
    exit 1
fi
dpkg-deb -x "$tmp"/postgresql-server-dev-*.deb "$tmp/x"
cp "$tmp/x/usr/lib/postgresql/$major/lib/libpgcommon_shlib.a" "$tmp/x/usr/lib/postgresql/$major/lib/libpgport_shlib.a" "$dir/"
