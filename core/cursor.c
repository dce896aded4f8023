/* Cursor text: "channel=seq,channel=seq". Strict: every malformed input is an error. */
#include "cursor.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void pgc_cursor_init(pgc_cursor *c) { memset(c, 0, sizeof(*c)); }

void pgc_cursor_free(pgc_cursor *c)
{
    free(c->v);
    pgc_cursor_init(c);
}

int64_t pgc_cursor_get(const pgc_cursor *c, const char *channel)
{
    for (size_t i = 0; i < c->n; i++)
        if (strcmp(c->v[i].channel, channel) == 0)
            return c->v[i].seq;
    return -1;
}

int pgc_cursor_set(pgc_cursor *c, const char *channel, int64_t seq)
{
    for (size_t i = 0; i < c->n; i++) {
        if (strcmp(c->v[i].channel, channel) == 0) {
            c->v[i].seq = seq;
            return 0;
        }
    }
    size_t len = strlen(channel);
    if (len == 0 || len > PGC_CHANNEL_MAX) /* "=1" would not parse back */
        return -1;
    if (c->n == c->cap) {
        size_t cap = c->cap ? c->cap * 2 : 4;
        pgc_cursor_entry *v = realloc(c->v, cap * sizeof(*v));
        if (!v)
            return -1;
        c->v = v;
        c->cap = cap;
    }
    snprintf(c->v[c->n].channel, sizeof(c->v[c->n].channel), "%s", channel);
    c->v[c->n].seq = seq;
    c->n++;
    return 0;
}

/* Plain decimal, 1-19 digits, no sign, no leading zero (except "0"), <= INT64_MAX. */
static int parse_seq(const char *s, size_t len, int64_t *out)
{
    if (len == 0 || len > 19 || (len > 1 && s[0] == '0'))
        return -1;
    uint64_t v = 0;
    for (size_t i = 0; i < len; i++) {
        if (s[i] < '0' || s[i] > '9')
            return -1;
        v = v * 10 + (uint64_t)(s[i] - '0');
    }
    if (v > (uint64_t)INT64_MAX)
        return -1;
    *out = (int64_t)v;
    return 0;
}

int pgc_cursor_parse(pgc_cursor *c, const char *text, size_t max_entries, char *err, size_t errlen)
{
    pgc_cursor out;
    pgc_cursor_init(&out);
    if (!text) {
        snprintf(err, errlen, "cursor is missing");
        return -1;
    }
    const char *p = text;
    while (*p) {
        const char *end = strchr(p, ',');
        size_t len = end ? (size_t)(end - p) : strlen(p);
        const char *eq = memchr(p, '=', len);
        char name[PGC_CHANNEL_MAX + 1];
        int64_t seq;
        if (len == 0) {
            snprintf(err, errlen, "cursor has an empty entry");
            goto fail;
        }
        if (!eq) {
            snprintf(err, errlen, "cursor entry %.40s has no '='", p);
            goto fail;
        }
        size_t nlen = (size_t)(eq - p);
        if (nlen == 0 || nlen > PGC_CHANNEL_MAX) {
            snprintf(err, errlen, "cursor entry has a bad channel name");
            goto fail;
        }
        memcpy(name, p, nlen);
        name[nlen] = '\0';
        if (!pgc_channel_valid(name)) {
            snprintf(err, errlen, "cursor has an invalid channel name");
            goto fail;
        }
        if (parse_seq(eq + 1, len - nlen - 1, &seq) != 0) {
            snprintf(err, errlen, "cursor position of %s is not a number 0..2^63-1", name);
            goto fail;
        }
        if (pgc_cursor_get(&out, name) >= 0) {
            snprintf(err, errlen, "cursor names channel %s twice", name);
            goto fail;
        }
        if (out.n >= max_entries) {
            snprintf(err, errlen, "cursor has more than %zu channels", max_entries);
            goto fail;
        }
        if (pgc_cursor_set(&out, name, seq) != 0) {
            snprintf(err, errlen, "out of memory");
            goto fail;
        }
        if (!end)
            break;
        p = end + 1;
        if (!*p) {
            snprintf(err, errlen, "cursor ends with ','");
            goto fail;
        }
    }
    pgc_cursor_free(c);
    *c = out;
    return 0;
fail:
    pgc_cursor_free(&out);
    return -1;
}

char *pgc_cursor_format(const pgc_cursor *c)
{
    size_t cap = 1;
    for (size_t i = 0; i < c->n; i++)
        cap += strlen(c->v[i].channel) + 22;
    char *s = malloc(cap);
    if (!s)
        return NULL;
    size_t len = 0;
    s[0] = '\0';
    for (size_t i = 0; i < c->n; i++) {
        int w = snprintf(s + len, cap - len, "%s%s=%lld", i ? "," : "", c->v[i].channel,
                         (long long)c->v[i].seq);
        if (w < 0 || (size_t)w >= cap - len) {
            free(s);
            return NULL;
        }
        len += (size_t)w;
    }
    return s;
}
