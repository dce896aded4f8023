/* PostgreSQL array literals built as text, for one-statement batches ($1::text[]). */
#include "pgarray.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void arr_put(pgc_arr *b, const char *s, size_t n)
{
    if (b->oom)
        return;
    if (b->len + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 256;
        while (b->len + n + 1 > cap)
            cap *= 2;
        char *p = realloc(b->p, cap);
        if (!p) {
            b->oom = true;
            return;
        }
        b->p = p;
        b->cap = cap;
    }
    memcpy(b->p + b->len, s, n);
    b->len += n;
    b->p[b->len] = '\0';
}

static void arr_sep(pgc_arr *b) { arr_put(b, b->len ? "," : "{", 1); }

void pgc_arr_text(pgc_arr *b, const char *s)
{
    arr_sep(b);
    if (!s) {
        arr_put(b, "NULL", 4);
        return;
    }
    arr_put(b, "\"", 1);
    for (; *s; s++) {
        if (*s == '"' || *s == '\\')
            arr_put(b, "\\", 1);
        arr_put(b, s, 1);
    }
    arr_put(b, "\"", 1);
}

void pgc_arr_int(pgc_arr *b, int64_t v, bool null)
{
    char tmp[32];
    arr_sep(b);
    int n = null ? snprintf(tmp, sizeof(tmp), "NULL") : snprintf(tmp, sizeof(tmp), "%" PRId64, v);
    arr_put(b, tmp, (size_t)n);
}

const char *pgc_arr_end(pgc_arr *b)
{
    if (!b->len)
        arr_put(b, "{", 1);
    arr_put(b, "}", 1);
    return b->oom ? NULL : b->p;
}
