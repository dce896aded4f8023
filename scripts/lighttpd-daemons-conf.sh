#!/bin/sh
# Prints lighttpd-conf/pgcast.conf for handlers that run on their own (systemd units
# pgcast-sse.socket/pgcast-poll.socket, spawn-fcgi, --listen) instead of being started by
# lighttpd: each FastCGI host's "bin-path"/"socket" become "host"/"port" taken from
#   var.pgcast_sse_host, var.pgcast_sse_port, var.pgcast_poll_host, var.pgcast_poll_port
# Everything else (timeouts, body limits, streaming, the WebSocket proxy) is the same file.
# Fails when the file no longer has the shape this expects, so the two never drift apart.
#   scripts/lighttpd-daemons-conf.sh lighttpd-conf/pgcast.conf > pgcast-daemons.conf
set -eu
src=${1:-lighttpd-conf/pgcast.conf}
out=$(awk '
    # the first comment block tells how to include the file for lighttpd-started handlers
    head == 0 && /^#/ { next }
    { head = 1 }
    /"bin-path"[ \t]*=>.*pgcast-sse\.fcgi"/  { sub(/"bin-path".*/, "\"host\" => var.pgcast_sse_host, \"port\" => var.pgcast_sse_port,"); n++ }
    /"bin-path"[ \t]*=>.*pgcast-poll\.fcgi"/ { sub(/"bin-path".*/, "\"host\" => var.pgcast_poll_host, \"port\" => var.pgcast_poll_port,"); n++ }
    /"socket"[ \t]*=>/ || /"bin-environment"[ \t]*=>/ || /"max-procs"[ \t]*=>/ { next }
    { print }
    END { if (n != 2) exit 3 }
' "$src") || { echo "$0: $src: expected one bin-path for pgcast-sse.fcgi and one for pgcast-poll.fcgi" >&2; exit 1; }
if printf '%s\n' "$out" | grep -v '^[ \t]*#' | grep -q '"bin-path"\|pgcast_bindir\|pgcast_rundir\|pgcast_config'; then
    echo "$0: $src: a setting for lighttpd-started handlers is left; update this script" >&2
    exit 1
fi
cat <<'HEAD'
# Generated from lighttpd-conf/pgcast.conf by scripts/lighttpd-daemons-conf.sh: the same
# settings, for FastCGI handlers that run as daemons (the pgcast-sse and pgcast-poll
# systemd units) rather than being started by lighttpd. Set before including it:
#   var.pgcast_sse_host / var.pgcast_sse_port     where pgcast-sse.fcgi accepts
#   var.pgcast_poll_host / var.pgcast_poll_port   where pgcast-poll.fcgi accepts
#   var.pgcast_ws_host / var.pgcast_ws_port       where pgcast-ws listens
#
HEAD
printf '%s\n' "$out"
