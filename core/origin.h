/* Origins (SPEC §3). allowed_origins is a comma-separated list of exact origins,
 * scheme://host[:port] (http or https, no path), and the word "self": the origin the
 * request was addressed to (its scheme and Host). Origins compare case-insensitively,
 * with a scheme's default port (80, 443) the same as no port. */
#ifndef PGCAST_ORIGIN_H
#define PGCAST_ORIGIN_H

#include <stdbool.h>
#include <stddef.h>

/* 0 when every entry of list is "self" or a well-formed origin; -1 with the bad entry
 * named in err. "*" is refused: credentials are never granted to every site. */
int pgc_origin_list_check(const char *list, char *err, size_t errlen);

/* Whether origin (an Origin header's value) is in list. "self" matches
 * self_scheme://self_host; with self_scheme NULL (a server that cannot tell the scheme
 * the client used) either http or https. self_host may be NULL (no "self" then). */
bool pgc_origin_allowed(const char *list, const char *origin, const char *self_scheme, const char *self_host);

/* A comma-separated list of IP addresses (IPv4 or IPv6, exact), "" for none: 0, or -1
 * with the bad entry named in err. */
int pgc_addr_list_check(const char *list, char *err, size_t errlen);
/* Whether the textual address addr (as inet_ntop writes it; IPv4-mapped IPv6 counts as
 * its IPv4 address) is in list. */
bool pgc_addr_allowed(const char *list, const char *addr);

#endif
