/* Small string helpers shared by the core and the handlers. */
#ifndef PGCAST_STRUTIL_H
#define PGCAST_STRUTIL_H

#include <stdbool.h>

/* strdup that passes NULL through; sets *oom (never clears it) when allocation fails,
 * so a series of copies is checked once. */
char *pgc_strdup_opt(const char *s, bool *oom);

#endif
