/* libFuzzer: channel grammar, types and patterns. Input: pattern '\n' channel '\n' sub. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "channel.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *buf = malloc(size + 1);
    if (!buf)
        return 0;
    memcpy(buf, data, size);
    buf[size] = '\0';
    char *pattern = buf, *channel = buf, *sub = NULL;
    char *nl = strchr(buf, '\n');
    if (nl) {
        *nl = '\0';
        channel = nl + 1;
        if ((nl = strchr(channel, '\n'))) {
            *nl = '\0';
            sub = nl + 1;
        }
    }
    bool valid = pgc_channel_valid(channel);
    char type[16];
    size_t tl = pgc_channel_type(channel, type, sizeof type);
    if (strlen(type) != (tl < sizeof type ? tl : sizeof type - 1))
        abort();
    bool m = pgc_pattern_match(pattern, channel, sub);
    if (m && !valid)
        abort(); /* a pattern never grants an invalid name */
    /* A plain name (no '*', no "{sub}") matches exactly itself. */
    if (!strchr(pattern, '*') && !strstr(pattern, "{sub}") &&
        m != (valid && strcmp(pattern, channel) == 0))
        abort();
    free(buf);
    return 0;
}
