/* Position vectors: "channel=seq,channel=seq" (SPEC §2). Parsed strictly: any bad input
 * is an error with a message for the client, never a crash or a silent reset. */
#ifndef PGCAST_CURSOR_H
#define PGCAST_CURSOR_H

#include <stddef.h>
#include <stdint.h>

#include "channel.h"

typedef struct pgc_cursor_entry {
    char channel[PGC_CHANNEL_MAX + 1];
    int64_t seq; /* last seq seen on the channel; 0 = nothing seen yet */
} pgc_cursor_entry;

typedef struct pgc_cursor {
    size_t n, cap;
    pgc_cursor_entry *v;
} pgc_cursor;

void pgc_cursor_init(pgc_cursor *c);
void pgc_cursor_free(pgc_cursor *c);

/* Parses text (may be empty: an empty cursor). Rejects: bad channel names, a channel
 * twice, seqs that are not plain decimal 0..2^63-1, empty pairs, more than max_entries.
 * Seqs are canonical: no sign, no spaces, no leading zeros ("0" yes, "01" no), so
 * format(parse(text)) == text. Returns 0, or -1 with a message in err. c must be
 * initialised; it is replaced on success, unchanged on error. text NULL is an error. */
int pgc_cursor_parse(pgc_cursor *c, const char *text, size_t max_entries, char *err, size_t errlen);

/* -1 when the channel is not in the cursor. */
int64_t pgc_cursor_get(const pgc_cursor *c, const char *channel);
/* Sets (or appends) channel=seq. Returns 0, -1 on allocation failure or a name that is
 * empty or over PGC_CHANNEL_MAX bytes. */
int pgc_cursor_set(pgc_cursor *c, const char *channel, int64_t seq);

/* "a=1,b=2" in entry order; malloc'd, NULL on allocation failure. */
char *pgc_cursor_format(const pgc_cursor *c);

#endif
