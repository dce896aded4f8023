/* PostgreSQL array literals built as text, for one-statement batches ($1::text[]). */
#include "pgarray.h"

#include <inttypes.h>
#include <stdio.h>

static void arr_sep(pgc_arr *b) { pgc_buf_put(b, b->len ? "," : "{", 1); }

void pgc_arr_text(pgc_arr *b, const char *s)
{
    arr_sep(b);
    if (!s) {
        pgc_buf_put(b, "NULL", 4);
        return;
    }
    pgc_buf_put(b, "\"", 1);
    for (; *s; s++) {
        if (*s == '"' || *s == '\\')
            pgc_buf_put(b, "\\", 1);
        pgc_buf_put(b, s, 1);
    }
    pgc_buf_put(b, "\"", 1);
}

void pgc_arr_int(pgc_arr *b, int64_t v, bool null)
{
    char tmp[32];
    arr_sep(b);
    int n = null ? snprintf(tmp, sizeof(tmp), "NULL") : snprintf(tmp, sizeof(tmp), "%" PRId64, v);
    pgc_buf_put(b, tmp, (size_t)n);
}

const char *pgc_arr_end(pgc_arr *b)
{
    if (!b->len)
        pgc_buf_put(b, "{", 1);
    pgc_buf_put(b, "}", 1);
    return b->oom ? NULL : b->p;
}
