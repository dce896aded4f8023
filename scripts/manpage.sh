#!/bin/sh
# Prints a man page (section 1) for a pgcast program from its own --help, so the two
# never disagree:  scripts/manpage.sh PROGRAM "one-line description" VERSION > NAME.1
set -eu
prog=$1 desc=$2 version=$3
name=$(basename "$prog")
help=$("$prog" --help 2>&1) || true
[ -n "$help" ] || { echo "$0: $prog --help printed nothing" >&2; exit 1; }
upper=$(echo "$name" | tr 'a-z' 'A-Z')
cat <<EOT
.TH "$upper" 1 "" "pgcast $version" "pgcast"
.SH NAME
$name \\- $desc
.SH DESCRIPTION
The text of \\fB$name \\-\\-help\\fR:
.PP
.nf
EOT
# troff: backslashes escaped, a leading dot or quote made literal
printf '%s\n' "$help" | sed -e 's/\\/\\e/g' -e "s/^\\([.']\\)/\\\\\\&\\1/"
cat <<EOT
.fi
.SH FILES
/etc/pgcast/pgcast.conf (PGCAST_CONFIG names another; every key can also be set as PGCAST_<KEY>)
.SH SEE ALSO
The pgcast documentation: deploy.md, operations.md, protocol.md, security.md in
/usr/share/doc/pgcast (or PREFIX/share/doc/pgcast).
EOT
