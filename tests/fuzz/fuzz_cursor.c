/* libFuzzer: cursor parsing never crashes, and what it accepts formats back byte for byte. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "cursor.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *text = malloc(size + 1);
    if (!text)
        return 0;
    memcpy(text, data, size);
    text[size] = '\0';
    pgc_cursor c;
    pgc_cursor_init(&c);
    char err[128];
    if (pgc_cursor_parse(&c, text, 64, err, sizeof err) == 0) {
        for (size_t i = 0; i < c.n; i++)
            if (!pgc_channel_valid(c.v[i].channel) || c.v[i].seq < 0)
                abort();
        char *s = pgc_cursor_format(&c);
        if (!s || strcmp(s, text) != 0) /* canonical form: parse . format is the identity */
            abort();
        free(s);
    } else if (c.n != 0) {
        abort(); /* an error leaves the cursor empty */
    }
    pgc_cursor_free(&c);
    free(text);
    return 0;
}
