/* Origin and address lists: parsing, normalising, matching. */
#include "origin.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define ORIGIN_MAX 300

/* scheme://host[:port] -> "scheme://host" or "scheme://host:port" in lower case, the
 * scheme's default port dropped. 0, or -1 when it is not such an origin. */
static int origin_norm(const char *in, size_t len, char *out, size_t outlen)
{
    const char *scheme;
    size_t sl;
    if (len > 7 && strncasecmp(in, "http://", 7) == 0) {
        scheme = "http";
        sl = 7;
    } else if (len > 8 && strncasecmp(in, "https://", 8) == 0) {
        scheme = "https";
        sl = 8;
    } else {
        return -1;
    }
    const char *h = in + sl, *end = in + len;
    const char *hend;
    if (*h == '[') { /* IPv6 literal */
        hend = memchr(h, ']', (size_t)(end - h));
        if (!hend || hend == h + 1)
            return -1;
        for (const char *p = h + 1; p < hend; p++)
            if (!isxdigit((unsigned char)*p) && *p != ':' && *p != '.')
                return -1;
        hend++;
    } else {
        hend = h;
        while (hend < end && (isalnum((unsigned char)*hend) || *hend == '-' || *hend == '.' || *hend == '_'))
            hend++;
        if (hend == h)
            return -1;
    }
    long port = -1;
    if (hend < end) {
        if (*hend != ':' || hend + 1 == end || end - hend > 6)
            return -1;
        port = 0;
        for (const char *p = hend + 1; p < end; p++) {
            if (!isdigit((unsigned char)*p))
                return -1;
            port = port * 10 + (*p - '0');
        }
        if (port < 1 || port > 65535)
            return -1;
        if (port == (scheme[4] == 's' ? 443 : 80))
            port = -1;
    }
    int n = port < 0 ? snprintf(out, outlen, "%s://%.*s", scheme, (int)(hend - h), h)
                     : snprintf(out, outlen, "%s://%.*s:%ld", scheme, (int)(hend - h), h, port);
    if (n < 0 || (size_t)n >= outlen)
        return -1;
    for (char *p = out; *p; p++)
        *p = (char)tolower((unsigned char)*p);
    return 0;
}

/* The next entry of a comma-separated list, spaces trimmed; NULL at the end. */
static const char *next_entry(const char **p, size_t *len)
{
    const char *s = *p;
    while (*s == ' ' || *s == '\t' || *s == ',')
        s++;
    if (!*s)
        return NULL;
    size_t l = strcspn(s, ",");
    *p = s + l;
    while (l && (s[l - 1] == ' ' || s[l - 1] == '\t'))
        l--;
    *len = l;
    return s;
}

int pgc_origin_list_check(const char *list, char *err, size_t errlen)
{
    const char *p = list ? list : "", *e;
    size_t l;
    char norm[ORIGIN_MAX];
    while ((e = next_entry(&p, &l))) {
        if (l == 4 && strncasecmp(e, "self", 4) == 0)
            continue;
        if (origin_norm(e, l, norm, sizeof(norm)) != 0) {
            snprintf(err, errlen, "'%.*s' is not an origin (scheme://host[:port], http or https, no path; or self)",
                     (int)(l > 100 ? 100 : l), e);
            return -1;
        }
    }
    return 0;
}

bool pgc_origin_allowed(const char *list, const char *origin, const char *self_scheme, const char *self_host)
{
    char want[ORIGIN_MAX], cand[ORIGIN_MAX];
    if (!origin || origin_norm(origin, strlen(origin), want, sizeof(want)) != 0)
        return false; /* absent, "null", or malformed */
    const char *p = list ? list : "", *e;
    size_t l;
    while ((e = next_entry(&p, &l))) {
        if (l == 4 && strncasecmp(e, "self", 4) == 0) {
            if (!self_host || !*self_host)
                continue;
            /* without a known scheme, the origin's own (http or https) */
            const char *scheme = self_scheme && *self_scheme ? self_scheme : (want[4] == 's' ? "https" : "http");
            char raw[ORIGIN_MAX];
            int n = snprintf(raw, sizeof(raw), "%s://%s", scheme, self_host);
            if (n > 0 && (size_t)n < sizeof(raw) && origin_norm(raw, (size_t)n, cand, sizeof(cand)) == 0 &&
                strcmp(cand, want) == 0)
                return true;
        } else if (origin_norm(e, l, cand, sizeof(cand)) == 0 && strcmp(cand, want) == 0) {
            return true;
        }
    }
    return false;
}

static int addr_parse(const char *s, size_t l, unsigned char out[16])
{
    char buf[INET6_ADDRSTRLEN + 1];
    if (l == 0 || l >= sizeof(buf))
        return -1;
    memcpy(buf, s, l);
    buf[l] = '\0';
    struct in_addr v4;
    if (inet_pton(AF_INET, buf, &v4) == 1) { /* as IPv4-mapped IPv6 */
        memset(out, 0, 10);
        out[10] = out[11] = 0xff;
        memcpy(out + 12, &v4, 4);
        return 0;
    }
    struct in6_addr v6;
    if (inet_pton(AF_INET6, buf, &v6) == 1) {
        memcpy(out, &v6, 16);
        return 0;
    }
    return -1;
}

int pgc_addr_list_check(const char *list, char *err, size_t errlen)
{
    const char *p = list ? list : "", *e;
    size_t l;
    unsigned char a[16];
    while ((e = next_entry(&p, &l))) {
        if (addr_parse(e, l, a) != 0) {
            snprintf(err, errlen, "'%.*s' is not an IP address", (int)(l > 100 ? 100 : l), e);
            return -1;
        }
    }
    return 0;
}

bool pgc_addr_allowed(const char *list, const char *addr)
{
    unsigned char want[16], a[16];
    if (!addr || addr_parse(addr, strlen(addr), want) != 0)
        return false;
    const char *p = list ? list : "", *e;
    size_t l;
    while ((e = next_entry(&p, &l)))
        if (addr_parse(e, l, a) == 0 && memcmp(a, want, 16) == 0)
            return true;
    return false;
}
