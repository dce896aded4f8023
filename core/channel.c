/* Channel names and token patterns. */
#include "channel.h"

#include <string.h>

static bool channel_char(unsigned char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' ||
           c == '.' || c == ':' || c == '@' || c == '/' || c == '-';
}

bool pgc_channel_valid(const char *name)
{
    if (!name)
        return false;
    size_t i = 0;
    for (; name[i]; i++)
        if (i >= PGC_CHANNEL_MAX || !channel_char((unsigned char)name[i]))
            return false;
    return i > 0;
}

size_t pgc_channel_type(const char *name, char *out, size_t outlen)
{
    size_t n = strcspn(name, ":.");
    if (outlen == 0)
        return n;
    size_t copy = n < outlen - 1 ? n : outlen - 1;
    memcpy(out, name, copy);
    out[copy] = '\0';
    return n;
}

/* Compares pattern[0..plen) with text, expanding {sub}. With prefix=true, text only has
 * to start with the expansion. */
static bool match_expanded(const char *pattern, size_t plen, const char *text, const char *sub, bool prefix)
{
    static const char token[] = "{sub}";
    const size_t tlen = sizeof(token) - 1;
    size_t p = 0;
    while (p < plen) {
        if (plen - p >= tlen && memcmp(pattern + p, token, tlen) == 0) {
            if (!sub || !*sub)
                return false;
            size_t slen = strlen(sub);
            if (strncmp(text, sub, slen) != 0)
                return false;
            text += slen;
            p += tlen;
            continue;
        }
        if (*text != pattern[p])
            return false;
        text++;
        p++;
    }
    return prefix || *text == '\0';
}

bool pgc_pattern_match(const char *pattern, const char *channel, const char *sub)
{
    /* A pattern grants valid names only ("a b*" must not match "a b c"). */
    if (!pattern || !*pattern || !pgc_channel_valid(channel))
        return false;
    size_t plen = strlen(pattern);
    if (pattern[plen - 1] == '*')
        return match_expanded(pattern, plen - 1, channel, sub, true);
    return match_expanded(pattern, plen, channel, sub, false);
}
