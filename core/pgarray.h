/* PostgreSQL array literals ("{\"a\",\"b\",NULL}") built as text, so a batch of values
 * goes to the server as one parameter ($1::text[], $1::bigint[]). Elements are quoted
 * and escaped: any text is safe. */
#ifndef PGCAST_PGARRAY_H
#define PGCAST_PGARRAY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "strutil.h"

/* The literal so far in p (malloc'd; the caller frees it). */
typedef pgc_buf pgc_arr;

/* A text element; NULL for s gives SQL NULL. */
void pgc_arr_text(pgc_arr *b, const char *s);
/* A bigint element, or NULL. */
void pgc_arr_int(pgc_arr *b, int64_t v, bool null);
/* Closes the literal ("{}" when empty): the text, or NULL when memory ran out. */
const char *pgc_arr_end(pgc_arr *b);

#endif
