# A shared-hosting account for tests (tests/hosting/): source after tests/lib/webserver.sh
# and web_init.
#
#   hosting_doc_block NAME         prints the shell block of docs/shared-hosting.md whose
#                                  first line is "# hosting:NAME"
#   hosting_apache_start MODULE    Apache as a host sets it up: cgid (event MPM), cgi
#                                  (prefork MPM) or fcgid (only mod_fcgid, with its
#                                  defaults and Debian's "AddHandler fcgid-script .fcgi";
#                                  FcgidIOTimeout $HOSTING_FCGID_IO_TIMEOUT, 40 unless set)
#                                  or cgid-fcgid (both, as Debian with mod_fcgid installed)
#                                  -> $HOSTING_URL; the account's web root is
#                                  $HOSTING_HOME/public_html, its vhost allows .htaccess
#                                  only "AllowOverride FileInfo AuthConfig Limit
#                                  Options=ExecCGI,Indexes"
HOSTING_HOME=$WEB_DIR/home
mkdir -p "$HOSTING_HOME/public_html"
chmod 0755 "$HOSTING_HOME" "$HOSTING_HOME/public_html"

hosting_doc_block() {
    local block
    block=$(awk -v want="# hosting:$1" '
        { line = $0; sub(/^[ \t]+/, "", line) }  # blocks inside list items are indented
        line ~ /^```/ { if (inblock) { if (keep) exit; inblock = 0; next } inblock = 1; first = 1; next }
        inblock && first { first = 0; if (line == want) { keep = 1; next } }
        inblock && keep { print line }' "$PGCAST_ROOT/docs/shared-hosting.md")
    [ -n "$block" ] || { echo "docs/shared-hosting.md has no block '# hosting:$1'" >&2; return 1; }
    printf '%s\n' "$block"
}

hosting_apache_start() {
    local module=$1 port mods=/usr/lib/apache2/modules user="" mpm=event load
    port=$("$PGCAST_ROOT/scripts/free-port.sh")
    [ "$(id -u)" = 0 ] && user="User www-data
Group www-data"
    case $module in
        fcgid-pad) module=fcgid ;;
    esac
    case $module in
        cgid) load="LoadModule cgid_module $mods/mod_cgid.so
ScriptSock \"$WEB_DIR/run/cgid.sock\"" ;;
        cgi) mpm=prefork; load="LoadModule cgi_module $mods/mod_cgi.so" ;;
        cgid-fcgid|fcgid) mkdir -p "$WEB_DIR/run/fcgid"; chmod 0777 "$WEB_DIR/run/fcgid"
            load="LoadModule fcgid_module $mods/mod_fcgid.so
FcgidIPCDir \"$WEB_DIR/run/fcgid\"
FcgidProcessTableFile \"$WEB_DIR/run/fcgid_shm\"
# Debian's fcgid.conf
FcgidConnectTimeout 20
AddHandler fcgid-script .fcgi
# a host's defaults (written out: these are mod_fcgid's own)
FcgidIOTimeout ${HOSTING_FCGID_IO_TIMEOUT:-40}
FcgidOutputBufferSize 65536
FcgidBusyTimeout 300"
            [ "$module" = cgid-fcgid ] && load="$load
LoadModule cgid_module $mods/mod_cgid.so
ScriptSock \"$WEB_DIR/run/cgid.sock\""
            ;;
    esac
    mkdir -p "$WEB_DIR/apache"
    cat >"$WEB_DIR/hosting-apache.conf" <<EOT
ServerRoot "$WEB_DIR/apache"
ServerName 127.0.0.1
Listen 127.0.0.1:$port
PidFile "$WEB_DIR/run/apache.pid"
ErrorLog "$WEB_DIR/log/apache-error.log"
LogLevel warn
# no Mutex line: Debian's default (process-shared pthread mutexes), as a host has it;
# file (fcntl) locks make mod_fcgid end Apache children on false deadlocks under load
DefaultRuntimeDir "$WEB_DIR/run"
Timeout 300
LoadModule mpm_${mpm}_module $mods/mod_mpm_${mpm}.so
LoadModule authz_core_module $mods/mod_authz_core.so
LoadModule mime_module $mods/mod_mime.so
LoadModule env_module $mods/mod_env.so
LoadModule rewrite_module $mods/mod_rewrite.so
LoadModule dir_module $mods/mod_dir.so
LoadModule autoindex_module $mods/mod_autoindex.so
$load
TypesConfig /etc/mime.types
$user
AccessFileName .htaccess
<Directory />
    AllowOverride None
    Require all denied
</Directory>
<FilesMatch "^\.ht">
    Require all denied
</FilesMatch>
DocumentRoot "$HOSTING_HOME/public_html"
<Directory "$HOSTING_HOME/public_html">
    Options Indexes FollowSymLinks
    AllowOverride FileInfo AuthConfig Limit Options=ExecCGI,Indexes
    Require all granted
</Directory>
EOT
    # a session of its own: prefork's parent signals its whole process group on stop
    setsid apache2 -f "$WEB_DIR/hosting-apache.conf" -D FOREGROUND >"$WEB_DIR/log/apache.out" 2>&1 &
    _web_pids+=($!)
    if ! wait_port "$port"; then
        echo "# apache did not start:"; sed 's/^/# /' "$WEB_DIR/log/apache.out" "$WEB_DIR/log/apache-error.log" 2>/dev/null
        return 1
    fi
    HOSTING_URL="http://127.0.0.1:$port"
}
