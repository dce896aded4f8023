#!/bin/sh
# The system part of `make install` (as root, no DESTDIR): the pgcast system user the
# units run as (systemd-sysusers with the installed sysusers.d file, else useradd), and
# the configuration made readable by that group only (it holds the database password and
# the token secret): root:pgcast 0640 (a configuration the admin had is left as it is,
# except that its group becomes pgcast when it was root's, so the units can read it).
#   scripts/install-system.sh SYSUSERS_FILE CONFIG_FILE
set -eu
sysusers=$1 conf=$2
if ! getent passwd pgcast >/dev/null; then
    if command -v systemd-sysusers >/dev/null 2>&1; then
        systemd-sysusers "$sysusers"
    else
        useradd --system --user-group --home-dir /nonexistent --no-create-home \
            --shell /usr/sbin/nologin --comment "pgcast realtime server" pgcast
    fi
    echo "created the system user pgcast"
fi
getent group pgcast >/dev/null || { echo "$0: no group pgcast" >&2; exit 1; }
if [ "$(stat -c %G "$conf")" = root ]; then
    chgrp pgcast "$conf"
    chmod g+r,o-rwx "$conf"
fi
ls -l "$conf"
