/* Channel names (SPEC §2) and the patterns of tokens (SPEC §3). */
#ifndef PGCAST_CHANNEL_H
#define PGCAST_CHANNEL_H

#include <stdbool.h>
#include <stddef.h>

#define PGC_CHANNEL_MAX 200 /* bytes */

/* 1–200 bytes of [A-Za-z0-9_.:@/-]. */
bool pgc_channel_valid(const char *name);

/* The part before the first ':' or '.' ("project:abc" -> "project"), copied into out
 * (NUL-terminated, truncated to outlen-1). Returns its length. */
size_t pgc_channel_type(const char *name, char *out, size_t outlen);

/* A pattern is an exact name, or a prefix ending in '*'; "{sub}" inside it stands for
 * the token's sub (sub may be NULL: then a pattern containing {sub} matches nothing). */
bool pgc_pattern_match(const char *pattern, const char *channel, const char *sub);

#endif
