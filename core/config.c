/* Configuration: defaults, then a "key = value" file, then PGCAST_<KEY> variables.
 * One table describes every key, so the file and the environment share one parser. */
#include "config.h"

#include <ctype.h>
#include <errno.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "log.h"

enum kind { K_STR, K_BOOL, K_INT, K_SIZE, K_LEVEL, K_ALG, K_HOSTPORT };

struct key {
    const char *name;
    enum kind kind;
    size_t off;
    long long min, max; /* K_INT, K_SIZE */
    const char *def;    /* default, as text, parsed like any value */
};

#define F(field) offsetof(pgc_config, field)
#define GIB (1024LL * 1024 * 1024)

static const struct key KEYS[] = {
    {"database_url", K_STR, F(database_url), 0, 0, ""},
    {"jwt_alg", K_ALG, F(jwt_alg), 0, 0, "HS256"},
    {"jwt_secret", K_STR, F(jwt_secret), 0, 0, ""},
    {"jwt_public_key", K_STR, F(jwt_public_key), 0, 0, ""},
    {"jwt_require_exp", K_BOOL, F(jwt_require_exp), 0, 0, "true"},
    {"token_cookie", K_STR, F(token_cookie), 0, 0, "pgcast_token"},
    {"anonymous", K_BOOL, F(anonymous), 0, 0, "false"},
    {"anonymous_tenant", K_STR, F(anonymous_tenant), 0, 0, "anonymous"},
    {"anonymous_channels", K_STR, F(anonymous_channels), 0, 0, "public:*"},
    {"anonymous_publish", K_STR, F(anonymous_publish), 0, 0, ""},
    {"max_channels", K_INT, F(max_channels), 1, 10000, "50"},
    {"max_message_bytes", K_SIZE, F(max_message_bytes), 1, GIB, "1MiB"},
    {"client_rate", K_INT, F(client_rate), 1, 1000000, "100"},
    {"queue_events", K_INT, F(queue_events), 1, 10000000, "1024"},
    {"queue_bytes", K_SIZE, F(queue_bytes), 1024, 16 * GIB, "8MiB"},
    {"sse_max_duration_s", K_INT, F(sse_max_duration_s), 0, INT_MAX, "0"},
    {"sse_retry_ms", K_INT, F(sse_retry_ms), 0, 3600000, "3000"},
    {"cgi_poll_interval_ms", K_INT, F(cgi_poll_interval_ms), 10, 60000, "1000"},
    {"poll_max_wait_s", K_INT, F(poll_max_wait_s), 0, 3600, "25"},
    {"poll_max_limit", K_INT, F(poll_max_limit), 1, 100000, "1000"},
    {"retention_max_age_s", K_INT, F(retention_max_age_s), 0, INT_MAX, "604800"},
    {"retention_max_events", K_INT, F(retention_max_events), 0, INT_MAX, "10000"},
    {"prune_interval_s", K_INT, F(prune_interval_s), 1, 86400, "60"},
    {"log_level", K_LEVEL, F(log_level), 0, 0, "info"},
    {"ws_listen", K_HOSTPORT, F(ws_listen), 0, 0, "127.0.0.1:8081"},
    {"http_port", K_INT, F(http_port), 1, 65535, "8080"},
    {"ws_port", K_INT, F(ws_port), 1, 65535, "8081"},
};
#define NKEYS (sizeof KEYS / sizeof *KEYS)

static int errf(char *err, size_t errlen, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static int errf(char *err, size_t errlen, const char *fmt, ...)
{
    if (err && errlen) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(err, errlen, fmt, ap);
        va_end(ap);
    }
    return -1;
}

/* Strict decimal with an optional binary suffix (sizes only). */
static int parse_number(const char *s, bool suffixes, long long *out)
{
    if (!isdigit((unsigned char)s[0]))
        return -1;
    errno = 0;
    char *end;
    long long v = strtoll(s, &end, 10);
    if (errno == ERANGE)
        return -1;
    long long mul = 1;
    if (*end && suffixes) {
        static const struct { const char *sfx; long long mul; } S[] = {
            {"B", 1},           {"K", 1024},        {"KiB", 1024},      {"M", 1024 * 1024},
            {"MiB", 1024 * 1024}, {"G", GIB},       {"GiB", GIB},
        };
        mul = 0;
        for (size_t i = 0; i < sizeof S / sizeof *S; i++)
            if (strcmp(end, S[i].sfx) == 0)
                mul = S[i].mul;
        if (!mul)
            return -1;
        end += strlen(end);
    }
    if (*end || v > LLONG_MAX / mul)
        return -1;
    *out = v * mul;
    return 0;
}

static int parse_bool(const char *s, bool *out)
{
    static const char *yes[] = {"true", "yes", "on", "1"}, *no[] = {"false", "no", "off", "0"};
    for (size_t i = 0; i < 4; i++) {
        if (strcasecmp(s, yes[i]) == 0)
            return *out = true, 0;
        if (strcasecmp(s, no[i]) == 0)
            return *out = false, 0;
    }
    return -1;
}

static int set_str(pgc_config *cfg, const struct key *k, const char *value)
{
    char **slot = (char **)((char *)cfg + k->off);
    char *copy = strdup(value);
    if (!copy)
        return -1;
    free(*slot);
    *slot = copy;
    return 0;
}

/* Applies one value; where says where it came from ("file:line" or "PGCAST_X"). */
static int apply(pgc_config *cfg, const struct key *k, const char *value, const char *where,
                 char *err, size_t errlen)
{
    char *base = (char *)cfg + k->off;
    long long n;
    bool b;
    switch (k->kind) {
    case K_STR:
        break;
    case K_BOOL:
        if (parse_bool(value, &b) != 0)
            return errf(err, errlen, "%s: %s: \"%s\" is not a boolean (true/false/yes/no/on/off/1/0)",
                        where, k->name, value);
        *(bool *)base = b;
        return 0;
    case K_INT:
    case K_SIZE:
        if (parse_number(value, k->kind == K_SIZE, &n) != 0)
            return errf(err, errlen, "%s: %s: \"%s\" is not a %s", where, k->name, value,
                        k->kind == K_SIZE ? "size (bytes, or with K/KiB/M/MiB/G/GiB)"
                                          : "whole number");
        if (n < k->min || n > k->max)
            return errf(err, errlen, "%s: %s: %lld is out of range %lld..%lld", where, k->name,
                        n, k->min, k->max);
        if (k->kind == K_INT)
            *(int *)base = (int)n;
        else
            *(size_t *)base = (size_t)n;
        return 0;
    case K_LEVEL: {
        int lv = pgc_log_level_parse(value);
        if (lv < 0)
            return errf(err, errlen, "%s: %s: \"%s\" is not one of error, warn, info, debug",
                        where, k->name, value);
        *(int *)base = lv;
        return 0;
    }
    case K_ALG:
        if (strcmp(value, "HS256") && strcmp(value, "RS256") && strcmp(value, "ES256"))
            return errf(err, errlen, "%s: %s: \"%s\" is not one of HS256, RS256, ES256", where,
                        k->name, value);
        break;
    case K_HOSTPORT: {
        const char *colon = strrchr(value, ':');
        if (!colon || colon == value || parse_number(colon + 1, false, &n) != 0 || n < 1 ||
            n > 65535)
            return errf(err, errlen, "%s: %s: \"%s\" is not HOST:PORT", where, k->name, value);
        break;
    }
    }
    if (set_str(cfg, k, value) != 0)
        return errf(err, errlen, "%s: %s: out of memory", where, k->name);
    return 0;
}

static const struct key *find_key(const char *name)
{
    for (size_t i = 0; i < NKEYS; i++)
        if (strcmp(KEYS[i].name, name) == 0)
            return &KEYS[i];
    return NULL;
}

static char *trim(char *s)
{
    while (isspace((unsigned char)*s))
        s++;
    size_t n = strlen(s);
    while (n && isspace((unsigned char)s[n - 1]))
        s[--n] = '\0';
    return s;
}

static int load_file(pgc_config *cfg, const char *path, char *err, size_t errlen)
{
    FILE *f = fopen(path, "r");
    if (!f)
        return errf(err, errlen, "%s: cannot open: %s", path, strerror(errno));
    char *line = NULL;
    size_t cap = 0;
    int lineno = 0, rc = 0;
    char where[512];
    errno = 0;
    while (rc == 0 && getline(&line, &cap, f) >= 0) {
        lineno++;
        snprintf(where, sizeof where, "%s:%d", path, lineno);
        char *s = trim(line);
        if (!*s || *s == '#')
            continue;
        char *eq = strchr(s, '=');
        if (!eq) {
            rc = errf(err, errlen, "%s: expected \"key = value\"", where);
            break;
        }
        *eq = '\0';
        char *key = trim(s), *value = trim(eq + 1);
        const struct key *k = find_key(key);
        if (!k)
            rc = errf(err, errlen, "%s: unknown key \"%s\"", where, key);
        else
            rc = apply(cfg, k, value, where, err, errlen);
    }
    if (rc == 0 && ferror(f))
        rc = errf(err, errlen, "%s: read error: %s", path, strerror(errno));
    free(line);
    if (fclose(f) != 0 && rc == 0)
        rc = errf(err, errlen, "%s: %s", path, strerror(errno));
    return rc;
}

static int load_env(pgc_config *cfg, char *err, size_t errlen)
{
    char var[64];
    for (size_t i = 0; i < NKEYS; i++) {
        size_t j = 0;
        j += (size_t)snprintf(var, sizeof var, "PGCAST_");
        for (const char *p = KEYS[i].name; *p && j < sizeof var - 1; p++)
            var[j++] = (char)toupper((unsigned char)*p);
        var[j] = '\0';
        const char *v = getenv(var);
        if (v && apply(cfg, &KEYS[i], v, var, err, errlen) != 0)
            return -1;
    }
    return 0;
}

int pgc_config_load(pgc_config *cfg, const char *path, char *err, size_t errlen)
{
    memset(cfg, 0, sizeof *cfg);
    int rc = 0;
    for (size_t i = 0; i < NKEYS && rc == 0; i++)
        rc = apply(cfg, &KEYS[i], KEYS[i].def, "default", err, errlen);
    if (rc == 0) {
        if (!path || !*path)
            path = getenv("PGCAST_CONFIG");
        if (path && *path)
            rc = load_file(cfg, path, err, errlen);
    }
    if (rc == 0)
        rc = load_env(cfg, err, errlen);
    if (rc != 0)
        pgc_config_free(cfg);
    return rc;
}

void pgc_config_free(pgc_config *cfg)
{
    for (size_t i = 0; i < NKEYS; i++) {
        if (KEYS[i].kind == K_STR || KEYS[i].kind == K_ALG || KEYS[i].kind == K_HOSTPORT) {
            char **slot = (char **)((char *)cfg + KEYS[i].off);
            free(*slot);
            *slot = NULL;
        }
    }
}
