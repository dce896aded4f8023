/* Channel names (SPEC §2) and token patterns (SPEC §3). */
#include "channel.h"

#include <string.h>

/* Explicit ranges, not isalnum(): the grammar must not depend on the locale. */
static bool channel_char(unsigned char ch)
{
    return (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
           ch == '_' || ch == '.' || ch == ':' || ch == '@' || ch == '/' || ch == '-';
}

bool pgc_channel_valid(const char *name)
{
    if (!name)
        return false;
    size_t i = 0;
    for (; name[i]; i++) {
        if (i >= PGC_CHANNEL_MAX || !channel_char((unsigned char)name[i]))
            return false;
    }
    return i > 0;
}

size_t pgc_channel_type(const char *name, char *out, size_t outlen)
{
    size_t len = name ? strcspn(name, ":.") : 0;
    if (out && outlen > 0) {
        size_t n = len < outlen - 1 ? len : outlen - 1;
        if (n)
            memcpy(out, name, n);
        out[n] = '\0';
    }
    return len;
}

/* Matches pattern against channel, "{sub}" standing for sub; a '*' that ends the pattern
 * matches any rest (also none). Walks both strings: no expansion buffer to size. */
bool pgc_pattern_match(const char *pattern, const char *channel, const char *sub)
{
    static const char SUB[] = "{sub}";
    const size_t sublen_tag = sizeof SUB - 1;
    if (!pattern || !pgc_channel_valid(channel))
        return false;
    const char *p = pattern, *c = channel;
    while (*p) {
        if (p[0] == '*' && p[1] == '\0')
            return true;
        if (strncmp(p, SUB, sublen_tag) == 0) {
            /* An empty sub would turn "user:{sub}" into "user:": match nothing instead. */
            if (!sub || !*sub)
                return false;
            size_t n = strlen(sub);
            if (strncmp(c, sub, n) != 0)
                return false;
            p += sublen_tag;
            c += n;
            continue;
        }
        if (*p != *c)
            return false;
        p++;
        c++;
    }
    return *c == '\0';
}
