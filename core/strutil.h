/* Small string helpers shared by the core and the handlers. */
#ifndef PGCAST_STRUTIL_H
#define PGCAST_STRUTIL_H

#include <stdbool.h>
#include <stddef.h>

/* strdup that passes NULL through; sets *oom (never clears it) when allocation fails,
 * so a series of copies is checked once. */
char *pgc_strdup_opt(const char *s, bool *oom);

/* A growing NUL-terminated byte string. An allocation failure sets oom and drops the rest,
 * so a series of appends is checked once. */
typedef struct pgc_buf {
    char *p; /* malloc'd; the owner frees it */
    size_t len, cap;
    bool oom;
} pgc_buf;

void pgc_buf_put(pgc_buf *b, const char *s, size_t n);

#endif
