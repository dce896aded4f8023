/* Configuration: defaults, then the file, then PGCAST_* variables. One table lists every
 * key with its type, bounds and default; pgcast.conf.example documents them. */
#include "config.h"

#include <ctype.h>
#include <errno.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "log.h"
#include "origin.h"

enum ktype { K_STR, K_INT, K_SIZE, K_BOOL, K_LEVEL, K_ALG, K_ORIGINS, K_ADDRS };

struct key {
    const char *name;
    enum ktype type;
    size_t off;
    long long min, max;
    const char *def;
};

#define F(field) offsetof(pgc_config, field)
static const struct key keys[] = {
    {"database_url", K_STR, F(database_url), 0, 0, ""},
    {"jwt_alg", K_ALG, F(jwt_alg), 0, 0, "HS256"},
    {"jwt_secret", K_STR, F(jwt_secret), 0, 0, ""},
    {"jwt_public_key", K_STR, F(jwt_public_key), 0, 0, ""},
    {"jwt_require_exp", K_BOOL, F(jwt_require_exp), 0, 1, "true"},
    {"jwt_nbf_leeway_s", K_INT, F(jwt_nbf_leeway_s), 0, 3600, "30"},
    {"token_cookie", K_STR, F(token_cookie), 0, 0, "pgcast_token"},
    {"allowed_origins", K_ORIGINS, F(allowed_origins), 0, 0, "self"},
    {"anonymous", K_BOOL, F(anonymous), 0, 1, "false"},
    {"anonymous_tenant", K_STR, F(anonymous_tenant), 0, 0, "anonymous"},
    {"anonymous_channels", K_STR, F(anonymous_channels), 0, 0, "public:*"},
    {"anonymous_publish", K_STR, F(anonymous_publish), 0, 0, ""},
    {"max_channels", K_INT, F(max_channels), 1, 10000, "50"},
    {"max_message_bytes", K_SIZE, F(max_message_bytes), 1024, 1LL << 30, "1088KiB"},
    {"max_payload_bytes", K_SIZE, F(max_payload_bytes), 16, 1LL << 30, "1MiB"},
    {"client_rate", K_INT, F(client_rate), 1, 1000000, "100"},
    {"publish_rate", K_INT, F(publish_rate), 0, 1000000, "50"},
    {"publish_burst", K_INT, F(publish_burst), 1, 1000000, "100"},
    {"presence_max_per_subject", K_INT, F(presence_max_per_subject), 0, 1000000, "10"},
    {"presence_max_per_channel", K_INT, F(presence_max_per_channel), 0, 10000000, "1000"},
    {"ws_max_conns_per_ip", K_INT, F(ws_max_conns_per_ip), 0, 10000000, "100"},
    {"ws_max_conns_per_subject", K_INT, F(ws_max_conns_per_subject), 0, 10000000, "20"},
    {"ws_handshake_timeout_s", K_INT, F(ws_handshake_timeout_s), 1, 3600, "10"},
    {"ws_handshake_memory", K_SIZE, F(ws_handshake_memory), 4096, 1LL << 24, "16KiB"},
    {"ws_handshakes_per_ip", K_INT, F(ws_handshakes_per_ip), 0, 1000000, "16"},
    {"trusted_proxies", K_STR, F(trusted_proxies), 0, 0, "127.0.0.1,::1"},
    {"queue_events", K_INT, F(queue_events), 8, 1 << 24, "1024"},
    {"queue_bytes", K_SIZE, F(queue_bytes), 4096, 1LL << 34, "8MiB"},
    {"queue_stall_ms", K_INT, F(queue_stall_ms), 100, 3600000, "10000"},
    {"ws_max_unfinished_bytes", K_SIZE, F(ws_max_unfinished_bytes), 0, 1LL << 31, "0"},
    {"sse_max_duration_s", K_INT, F(sse_max_duration_s), -1, 86400 * 7, "-1"},
    {"sse_heartbeat_max_ms", K_INT, F(sse_heartbeat_max_ms), 0, 3600000, "30000"},
    {"sse_padding_bytes", K_SIZE, F(sse_padding_bytes), 0, 1 << 20, "0"},
    {"sse_retry_ms", K_INT, F(sse_retry_ms), 0, 3600000, "3000"},
    {"sse_keepalive_ms", K_INT, F(sse_keepalive_ms), 0, 3600000, "5000"},
    {"sse_max_streams", K_INT, F(sse_max_streams), 0, 1000000, "10000"},
    {"site_max_streams", K_INT, F(site_max_streams), -1, 1000000, "-1"},
    {"site_streams_file", K_STR, F(site_streams_file), 0, 0, ""},
    {"site_busy_retry_s", K_INT, F(site_busy_retry_s), 1, 3600, "10"},
    {"cgi_poll_interval_ms", K_INT, F(cgi_poll_interval_ms), 50, 60000, "1000"},
    {"poll_max_wait_s", K_INT, F(poll_max_wait_s), 0, 3600, "25"},
    {"poll_max_limit", K_INT, F(poll_max_limit), 1, 100000, "1000"},
    {"poll_page_bytes", K_SIZE, F(poll_page_bytes), 1024, 1LL << 30, "1MiB"},
    {"poll_positions_cache", K_INT, F(poll_positions_cache), 0, 10000000, "65536"},
    {"catchup_read_bytes", K_SIZE, F(catchup_read_bytes), 1024, 1LL << 30, "1MiB"},
    {"retention_max_age_s", K_INT, F(retention_max_age_s), 0, 1 << 30, "604800"},
    {"retention_max_events", K_INT, F(retention_max_events), 0, 1 << 30, "10000"},
    {"prune_interval_s", K_INT, F(prune_interval_s), 0, 86400, "60"},
    {"stats_retention_s", K_INT, F(stats_retention_s), 0, 1 << 30, "604800"},
    {"log_level", K_LEVEL, F(log_level), 0, 0, "info"},
    {"ws_listen", K_STR, F(ws_listen), 0, 0, "127.0.0.1:8081"},
    {"metrics_allow", K_ADDRS, F(metrics_allow), 0, 0, "127.0.0.1,::1"},
    {"ws_db_workers", K_INT, F(ws_db_workers), 1, 256, "4"},
    {"ws_db_queue", K_INT, F(ws_db_queue), 1, 1 << 20, "1024"},
    {"ws_db_pending", K_INT, F(ws_db_pending), 1, 10000, "16"},
    {"relay_socket", K_STR, F(relay_socket), 0, 0, "/run/pgcast-relay/relay.sock"},
    {"relay_retry_ms", K_INT, F(relay_retry_ms), 100, 3600000, "2000"},
    {"relay_client_buffer", K_SIZE, F(relay_client_buffer), 65536, 1LL << 30, "4MiB"},
    {"relay_max_clients", K_INT, F(relay_max_clients), 1, 1000000, "1024"},
    {"relay_client_tags", K_INT, F(relay_client_tags), 16, 100000000, "1000000"},
    {"http_port", K_INT, F(http_port), 1, 65535, "8080"},
    {"ws_port", K_INT, F(ws_port), 1, 65535, "8081"},
};
#define NKEYS (sizeof(keys) / sizeof(keys[0]))

static int parse_ll(const char *v, long long *out)
{
    char *end;
    errno = 0;
    long long n = strtoll(v, &end, 10);
    if (errno || end == v)
        return -1;
    *out = n;
    return (int)(end - v);
}

/* "1048576", "1MiB", "512KiB", "1GiB", "64k"/"8m" (binary units). */
static int parse_size(const char *v, long long *out)
{
    long long n;
    int used = parse_ll(v, &n);
    if (used < 0 || n < 0)
        return -1;
    const char *u = v + used;
    long long mul = 1;
    if (!*u || strcasecmp(u, "b") == 0)
        mul = 1;
    else if (strcasecmp(u, "k") == 0 || strcasecmp(u, "kib") == 0 || strcasecmp(u, "kb") == 0)
        mul = 1024;
    else if (strcasecmp(u, "m") == 0 || strcasecmp(u, "mib") == 0 || strcasecmp(u, "mb") == 0)
        mul = 1024 * 1024;
    else if (strcasecmp(u, "g") == 0 || strcasecmp(u, "gib") == 0 || strcasecmp(u, "gb") == 0)
        mul = 1024LL * 1024 * 1024;
    else
        return -1;
    if (n > (1LL << 40))
        return -1;
    *out = n * mul;
    return 0;
}

static int set_key(pgc_config *cfg, const struct key *k, const char *v, char *err, size_t errlen, const char *where)
{
    char *base = (char *)cfg;
    long long n = 0;
    switch (k->type) {
    case K_STR: {
        char *copy = strdup(v);
        if (!copy) {
            snprintf(err, errlen, "out of memory");
            return -1;
        }
        free(*(char **)(base + k->off));
        *(char **)(base + k->off) = copy;
        return 0;
    }
    case K_ALG:
        if (strcmp(v, "HS256") && strcmp(v, "RS256") && strcmp(v, "ES256")) {
            snprintf(err, errlen, "%s: %s must be HS256, RS256 or ES256 (got '%s')", where, k->name, v);
            return -1;
        }
        return set_key(cfg, &(struct key){k->name, K_STR, k->off, 0, 0, NULL}, v, err, errlen, where);
    case K_ORIGINS:
    case K_ADDRS: {
        char why[200];
        if ((k->type == K_ORIGINS ? pgc_origin_list_check(v, why, sizeof(why))
                                  : pgc_addr_list_check(v, why, sizeof(why))) != 0) {
            snprintf(err, errlen, "%s: %s: %s", where, k->name, why);
            return -1;
        }
        return set_key(cfg, &(struct key){k->name, K_STR, k->off, 0, 0, NULL}, v, err, errlen, where);
    }
    case K_BOOL:
        if (!strcasecmp(v, "true") || !strcasecmp(v, "on") || !strcasecmp(v, "yes") || !strcmp(v, "1"))
            *(bool *)(base + k->off) = true;
        else if (!strcasecmp(v, "false") || !strcasecmp(v, "off") || !strcasecmp(v, "no") || !strcmp(v, "0"))
            *(bool *)(base + k->off) = false;
        else {
            snprintf(err, errlen, "%s: %s must be true or false (got '%s')", where, k->name, v);
            return -1;
        }
        return 0;
    case K_LEVEL: {
        int lvl = pgc_log_level_parse(v);
        if (lvl < 0) {
            snprintf(err, errlen, "%s: %s must be error, warn, info or debug (got '%s')", where, k->name, v);
            return -1;
        }
        *(int *)(base + k->off) = lvl;
        return 0;
    }
    case K_INT:
    case K_SIZE:
        if (k->type == K_INT ? (parse_ll(v, &n) != (int)strlen(v)) : (parse_size(v, &n) != 0)) {
            snprintf(err, errlen, "%s: %s must be %s (got '%s')", where, k->name,
                     k->type == K_INT ? "an integer" : "a size like 1048576 or 1MiB", v);
            return -1;
        }
        if (n < k->min || n > k->max) {
            snprintf(err, errlen, "%s: %s must be between %lld and %lld (got %lld)", where, k->name, k->min, k->max, n);
            return -1;
        }
        if (k->type == K_INT)
            *(int *)(base + k->off) = (int)n;
        else
            *(size_t *)(base + k->off) = (size_t)n;
        return 0;
    }
    return -1;
}

static const struct key *find_key(const char *name)
{
    for (size_t i = 0; i < NKEYS; i++)
        if (strcmp(keys[i].name, name) == 0)
            return &keys[i];
    return NULL;
}

static char *trim(char *s)
{
    while (isspace((unsigned char)*s))
        s++;
    char *e = s + strlen(s);
    while (e > s && isspace((unsigned char)e[-1]))
        *--e = '\0';
    return s;
}

static int load_file(pgc_config *cfg, const char *path, char *err, size_t errlen)
{
    FILE *f = fopen(path, "r");
    if (!f) {
        snprintf(err, errlen, "cannot read the configuration file %s: %s", path, strerror(errno));
        return -1;
    }
    char line[4096];
    int lineno = 0, rc = 0;
    while (rc == 0 && fgets(line, sizeof(line), f)) {
        lineno++;
        char where[512];
        snprintf(where, sizeof(where), "%s:%d", path, lineno);
        if (!strchr(line, '\n') && !feof(f)) {
            snprintf(err, errlen, "%s: line too long", where);
            rc = -1;
            break;
        }
        char *s = trim(line);
        if (!*s || *s == '#')
            continue;
        char *eq = strchr(s, '=');
        if (!eq) {
            snprintf(err, errlen, "%s: expected 'key = value', got '%.60s'", where, s);
            rc = -1;
            break;
        }
        *eq = '\0';
        char *name = trim(s), *val = trim(eq + 1);
        size_t vl = strlen(val);
        if (vl >= 2 && ((val[0] == '"' && val[vl - 1] == '"') || (val[0] == '\'' && val[vl - 1] == '\''))) {
            val[vl - 1] = '\0';
            val++;
        }
        const struct key *k = find_key(name);
        if (!k) {
            snprintf(err, errlen, "%s: unknown key '%s'", where, name);
            rc = -1;
            break;
        }
        rc = set_key(cfg, k, val, err, errlen, where);
    }
    if (ferror(f) && rc == 0) {
        snprintf(err, errlen, "error reading %s", path);
        rc = -1;
    }
    fclose(f);
    return rc;
}

/* Where the configuration is when no path is given (docs/deploy.md, "Finding the
 * configuration"): PGCAST_CONFIG when set (empty means no file); REDIRECT_PGCAST_CONFIG,
 * which is what Apache passes a SetEnv value as after an internal redirect (mod_rewrite);
 * pgcast.conf next to the program (found through /proc/self/exe, or SCRIPT_FILENAME where
 * /proc is not mounted), for web servers that pass no environment (mod_fcgid, shared
 * hosting); /etc/pgcast/pgcast.conf. NULL when none of them is there. */
const char *pgc_config_find(char *buf, size_t len)
{
    const char *env = getenv("PGCAST_CONFIG");
    if (env)
        return env;
    env = getenv("REDIRECT_PGCAST_CONFIG");
    if (env && *env)
        return env;
    /* the program's folder: from the kernel, or (no /proc) the CGI script's path */
    char exe[4096] = "";
    ssize_t n = readlink("/proc/self/exe", exe, sizeof(exe) - 1);
    if (n > 0)
        exe[n] = '\0';
    else if ((env = getenv("SCRIPT_FILENAME")) && *env == '/' && strlen(env) < sizeof(exe))
        strcpy(exe, env);
    char *slash = strrchr(exe, '/');
    if (slash) {
        *slash = '\0';
        int w = snprintf(buf, len, "%s/pgcast.conf", exe);
        if (w > 0 && (size_t)w < len && access(buf, F_OK) == 0)
            return buf;
    }
    if (access("/etc/pgcast/pgcast.conf", F_OK) == 0)
        return "/etc/pgcast/pgcast.conf";
    return NULL;
}

int pgc_config_load(pgc_config *cfg, const char *path, char *err, size_t errlen)
{
    memset(cfg, 0, sizeof(*cfg));
    for (size_t i = 0; i < NKEYS; i++)
        if (set_key(cfg, &keys[i], keys[i].def, err, errlen, "default") != 0)
            goto fail;
    char found[4096];
    if (!path || !*path)
        path = pgc_config_find(found, sizeof(found));
    if (path && *path && load_file(cfg, path, err, errlen) != 0)
        goto fail;
    struct stat sb;
    if (path && *path && stat(path, &sb) == 0 && (sb.st_mode & S_IROTH))
        PGC_WARN("the configuration file %s is readable by every account on this machine (mode %03o): it holds "
                 "the database password and the token secret; chmod 600 it (see docs/shared-hosting.md)",
                 path, (unsigned)(sb.st_mode & 0777));
    for (size_t i = 0; i < NKEYS; i++) {
        char env[64] = "PGCAST_";
        for (size_t j = 0; keys[i].name[j] && j < sizeof(env) - 8; j++)
            env[7 + j] = (char)toupper((unsigned char)keys[i].name[j]);
        const char *v = getenv(env);
        if (v && set_key(cfg, &keys[i], v, err, errlen, env) != 0)
            goto fail;
    }
    return 0;
fail:
    pgc_config_free(cfg);
    return -1;
}

void pgc_config_free(pgc_config *cfg)
{
    for (size_t i = 0; i < NKEYS; i++)
        if (keys[i].type == K_STR || keys[i].type == K_ALG || keys[i].type == K_ORIGINS || keys[i].type == K_ADDRS) {
            char **p = (char **)((char *)cfg + keys[i].off);
            free(*p);
            *p = NULL;
        }
}
