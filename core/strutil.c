#include "strutil.h"

#include <stdlib.h>
#include <string.h>

char *pgc_strdup_opt(const char *s, bool *oom)
{
    if (!s)
        return NULL;
    char *d = strdup(s);
    if (!d)
        *oom = true;
    return d;
}
