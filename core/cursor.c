/* Position vectors "channel=seq,..." (SPEC §2), parsed strictly.
 *
 * A seq is canonical decimal: digits only, no sign, no spaces, no leading zeros ("0" is
 * fine, "01" is refused), at most INT64_MAX. Being canonical makes format(parse(x)) == x,
 * so a cursor the server hands out is byte-identical when it comes back (ETags, ids). */
#include "cursor.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void pgc_cursor_init(pgc_cursor *c)
{
    c->n = c->cap = 0;
    c->v = NULL;
}

void pgc_cursor_free(pgc_cursor *c)
{
    free(c->v);
    pgc_cursor_init(c);
}

static int find(const pgc_cursor *c, const char *channel, size_t len)
{
    for (size_t i = 0; i < c->n; i++) {
        if (strncmp(c->v[i].channel, channel, len) == 0 && c->v[i].channel[len] == '\0')
            return (int)i;
    }
    return -1;
}

static int reserve(pgc_cursor *c, size_t want)
{
    if (want <= c->cap)
        return 0;
    size_t cap = c->cap ? c->cap * 2 : 8;
    while (cap < want)
        cap *= 2;
    pgc_cursor_entry *v = realloc(c->v, cap * sizeof *v);
    if (!v)
        return -1;
    c->v = v;
    c->cap = cap;
    return 0;
}

/* s[0..len) as a canonical decimal in 0..INT64_MAX; -1 if it is not one. */
static int64_t parse_seq(const char *s, size_t len)
{
    if (len == 0 || len > 19 || (len > 1 && s[0] == '0'))
        return -1;
    uint64_t v = 0;
    for (size_t i = 0; i < len; i++) {
        if (s[i] < '0' || s[i] > '9')
            return -1;
        v = v * 10 + (uint64_t)(s[i] - '0'); /* 19 digits fit in uint64_t */
    }
    return v > (uint64_t)INT64_MAX ? -1 : (int64_t)v;
}

static int fail(char *err, size_t errlen, size_t entry, const char *what)
{
    if (err && errlen)
        snprintf(err, errlen, "bad cursor: entry %zu: %s", entry, what);
    return -1;
}

int pgc_cursor_parse(pgc_cursor *c, const char *text, size_t max_entries, char *err, size_t errlen)
{
    pgc_cursor out;
    pgc_cursor_init(&out);
    const char *p = text ? text : "";
    size_t entry = 0;
    int rc = 0;
    while (*p) {
        entry++;
        if (entry > max_entries) {
            if (err && errlen)
                snprintf(err, errlen, "bad cursor: more than %zu channels", max_entries);
            rc = -1;
            break;
        }
        size_t pair = strcspn(p, ",");
        const char *eq = memchr(p, '=', pair);
        if (pair == 0) {
            rc = fail(err, errlen, entry, "empty pair");
            break;
        }
        if (!eq) {
            rc = fail(err, errlen, entry, "expected channel=seq");
            break;
        }
        size_t nlen = (size_t)(eq - p);
        const char *num = eq + 1;
        size_t numlen = pair - nlen - 1;
        if (nlen == 0) {
            rc = fail(err, errlen, entry, "empty channel name");
            break;
        }
        if (nlen > PGC_CHANNEL_MAX) {
            rc = fail(err, errlen, entry, "channel name longer than 200 bytes");
            break;
        }
        char name[PGC_CHANNEL_MAX + 1];
        memcpy(name, p, nlen);
        name[nlen] = '\0';
        if (!pgc_channel_valid(name)) {
            rc = fail(err, errlen, entry, "channel name has characters outside [A-Za-z0-9_.:@/-]");
            break;
        }
        int64_t seq = parse_seq(num, numlen);
        if (seq < 0) {
            rc = fail(err, errlen, entry,
                      "seq is not a plain decimal number in 0..9223372036854775807");
            break;
        }
        if (find(&out, name, nlen) >= 0) {
            rc = fail(err, errlen, entry, "channel appears twice");
            break;
        }
        if (pgc_cursor_set(&out, name, seq) != 0) {
            rc = fail(err, errlen, entry, "out of memory");
            break;
        }
        p += pair;
        if (*p == ',') {
            p++;
            if (!*p) { /* "a=1," */
                rc = fail(err, errlen, entry + 1, "empty pair (trailing comma)");
                break;
            }
        }
    }
    pgc_cursor_free(c);
    if (rc != 0) {
        pgc_cursor_free(&out); /* on error c is left empty, never half-filled */
        return -1;
    }
    *c = out;
    return 0;
}

int64_t pgc_cursor_get(const pgc_cursor *c, const char *channel)
{
    int i = channel ? find(c, channel, strlen(channel)) : -1;
    return i < 0 ? -1 : c->v[i].seq;
}

int pgc_cursor_set(pgc_cursor *c, const char *channel, int64_t seq)
{
    size_t len = channel ? strlen(channel) : 0;
    if (len == 0 || len > PGC_CHANNEL_MAX)
        return -1;
    int i = find(c, channel, len);
    if (i >= 0) {
        c->v[i].seq = seq;
        return 0;
    }
    if (reserve(c, c->n + 1) != 0)
        return -1;
    memcpy(c->v[c->n].channel, channel, len + 1);
    c->v[c->n].seq = seq;
    c->n++;
    return 0;
}

char *pgc_cursor_format(const pgc_cursor *c)
{
    size_t cap = 1;
    for (size_t i = 0; i < c->n; i++)
        cap += strlen(c->v[i].channel) + 1 /* = */ + 20 /* -9223372036854775808 */ + 1 /* , */;
    char *s = malloc(cap);
    if (!s)
        return NULL;
    size_t off = 0;
    s[0] = '\0';
    for (size_t i = 0; i < c->n; i++) {
        int w = snprintf(s + off, cap - off, "%s%s=%" PRId64, i ? "," : "", c->v[i].channel,
                         c->v[i].seq);
        if (w < 0 || (size_t)w >= cap - off) { /* cannot happen: cap is an upper bound */
            free(s);
            return NULL;
        }
        off += (size_t)w;
    }
    return s;
}
