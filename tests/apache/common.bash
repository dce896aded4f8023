# What tests/apache/*.sh share (source after tests/lib/tap.sh and tests/lib/webserver.sh;
# not named .sh: tests/run.sh runs every .sh as a test).

# Debian's mod_fcgid as a2enmod enables it (fcgid.load + fcgid.conf: the module and
# "AddHandler fcgid-script .fcgi" for every .fcgi), its state in the test's dir.
# Call after web_init.
fcgid_enabled_conf() {
    mkdir -p "$WEB_DIR/run/fcgid" && chmod 0777 "$WEB_DIR/run/fcgid"
    cat <<EOT
LoadModule fcgid_module /usr/lib/apache2/modules/mod_fcgid.so
FcgidIPCDir "$WEB_DIR/run/fcgid"
FcgidProcessTableFile "$WEB_DIR/run/fcgid_shm"
FcgidConnectTimeout 20
AddHandler fcgid-script .fcgi
EOT
}

# A static page for the site (the capacity checks ask for it).
static_page() { mkdir -p "$WEB_DIR/www"; echo '<!doctype html><title>site</title><p>static page' >"$WEB_DIR/www/index.html"; }
