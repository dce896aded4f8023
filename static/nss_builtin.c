/*
 * The self-contained programs (`make static`) carry glibc inside them, and with it the
 * "files" and "dns" lookups of host names and the "files" lookup of users. Left to
 * itself, glibc would follow the host's /etc/nsswitch.conf and load whatever other
 * modules it names (systemd's resolve or myhostname, sss, ldap) from the host, built
 * for another glibc than the one inside the program. Before main, the lookups are set
 * to what the program has: /etc/hosts, then DNS (/etc/resolv.conf); users from
 * /etc/passwd (libpq asks for the current user only when database_url names none).
 */
#include <nss.h>

static void __attribute__((constructor)) nss_builtin_only(void)
{
    /* the return values only say "out of memory", before main: nothing to do about it */
    (void)__nss_configure_lookup("hosts", "files dns");
    (void)__nss_configure_lookup("passwd", "files");
    (void)__nss_configure_lookup("group", "files");
}
