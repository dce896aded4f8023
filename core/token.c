/* Token verification with libjwt. The header is read first, by us, so that "none" and
 * an algorithm other than the configured one are refused with their own reason before
 * libjwt checks the signature with the configured key. */
#include "token.h"

#include <errno.h>
#include <jwt.h>
#include <json.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "channel.h"

struct pgc_verifier {
    jwt_alg_t alg;
    char alg_name[8];
    unsigned char *key;
    int key_len;
    bool require_exp;
    int64_t nbf_leeway;
    bool anonymous;
    char *anon_tenant;
    char **anon_channels;
    size_t n_anon_channels;
    char **anon_publish;
    size_t n_anon_publish;
};

static void free_list(char **v, size_t n)
{
    for (size_t i = 0; i < n; i++)
        free(v[i]);
    free(v);
}

/* "a, b,c" -> {"a","b","c"}; empty items are skipped. */
static int split_list(const char *s, char ***out, size_t *n)
{
    *out = NULL;
    *n = 0;
    if (!s)
        return 0;
    char *copy = strdup(s), *save = NULL;
    if (!copy)
        return -1;
    for (char *t = strtok_r(copy, ",", &save); t; t = strtok_r(NULL, ",", &save)) {
        while (*t == ' ' || *t == '\t')
            t++;
        size_t l = strlen(t);
        while (l && (t[l - 1] == ' ' || t[l - 1] == '\t'))
            t[--l] = '\0';
        if (!l)
            continue;
        char **v = realloc(*out, (*n + 1) * sizeof(char *));
        if (!v || !(v[*n] = strdup(t))) {
            free(v ? v : *out);
            free(copy);
            return -1;
        }
        *out = v;
        (*n)++;
    }
    free(copy);
    return 0;
}

static unsigned char *read_all(const char *path, int *len, char *err, size_t errlen)
{
    FILE *f = fopen(path, "rb");
    if (!f) {
        snprintf(err, errlen, "cannot read jwt_public_key %s: %s", path, strerror(errno));
        return NULL;
    }
    unsigned char *buf = malloc(65536);
    size_t n = buf ? fread(buf, 1, 65535, f) : 0;
    fclose(f);
    if (!buf || n == 0) {
        free(buf);
        snprintf(err, errlen, "jwt_public_key %s is empty", path);
        return NULL;
    }
    buf[n] = '\0';
    *len = (int)n;
    return buf;
}

pgc_verifier *pgc_verifier_new(const pgc_config *cfg, char *err, size_t errlen)
{
    pgc_verifier *v = calloc(1, sizeof(*v));
    if (!v) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    const char *alg = cfg->jwt_alg ? cfg->jwt_alg : "HS256";
    snprintf(v->alg_name, sizeof(v->alg_name), "%s", alg);
    v->alg = jwt_str_alg(alg);
    v->require_exp = cfg->jwt_require_exp;
    v->nbf_leeway = cfg->jwt_nbf_leeway_s;
    v->anonymous = cfg->anonymous;
    if (v->alg != JWT_ALG_HS256 && v->alg != JWT_ALG_RS256 && v->alg != JWT_ALG_ES256) {
        snprintf(err, errlen, "jwt_alg must be HS256, RS256 or ES256 (got '%s')", alg);
        goto fail;
    }
    if (v->alg == JWT_ALG_HS256) {
        if (!cfg->jwt_secret || !*cfg->jwt_secret) {
            if (!cfg->anonymous) {
                snprintf(err, errlen, "jwt_secret is required for HS256 (or turn anonymous on)");
                goto fail;
            }
        } else if (strcmp(cfg->jwt_secret, "change-me") == 0) {
            /* the shipped configuration's placeholder: anyone could mint tokens */
            snprintf(err, errlen, "jwt_secret is still the example's placeholder: set a secret of at least 32 "
                                  "random bytes (e.g. openssl rand -base64 32)");
            goto fail;
        } else if (!(v->key = (unsigned char *)strdup(cfg->jwt_secret))) {
            goto oom;
        } else {
            v->key_len = (int)strlen(cfg->jwt_secret);
        }
    } else {
        if (!cfg->jwt_public_key || !*cfg->jwt_public_key) {
            snprintf(err, errlen, "jwt_public_key (a PEM file) is required for %s", alg);
            goto fail;
        }
        if (!(v->key = read_all(cfg->jwt_public_key, &v->key_len, err, errlen)))
            goto fail;
    }
    if (cfg->anonymous) {
        size_t tl = cfg->anonymous_tenant ? strlen(cfg->anonymous_tenant) : 1;
        if (tl == 0 || tl > PGC_TENANT_MAX) {
            snprintf(err, errlen, "anonymous_tenant must be 1-%d bytes (got %zu)", PGC_TENANT_MAX, tl);
            goto fail;
        }
        if (!(v->anon_tenant = strdup(cfg->anonymous_tenant ? cfg->anonymous_tenant : "anonymous")) ||
            split_list(cfg->anonymous_channels, &v->anon_channels, &v->n_anon_channels) != 0 ||
            split_list(cfg->anonymous_publish, &v->anon_publish, &v->n_anon_publish) != 0)
            goto oom;
    }
    return v;
oom:
    snprintf(err, errlen, "out of memory");
fail:
    pgc_verifier_free(v);
    return NULL;
}

void pgc_verifier_free(pgc_verifier *v)
{
    if (!v)
        return;
    free(v->key);
    free(v->anon_tenant);
    free_list(v->anon_channels, v->n_anon_channels);
    free_list(v->anon_publish, v->n_anon_publish);
    free(v);
}

/* base64url (no padding) -> bytes, NUL-terminated. */
static char *b64url_decode(const char *s, size_t len)
{
    size_t padded = (len + 3) / 4 * 4;
    char *tmp = malloc(padded + 1);
    unsigned char *out = malloc(padded / 4 * 3 + 1);
    if (!tmp || !out) {
        free(tmp);
        free(out);
        return NULL;
    }
    for (size_t i = 0; i < len; i++) {
        char c = s[i];
        tmp[i] = c == '-' ? '+' : c == '_' ? '/' : c;
    }
    for (size_t i = len; i < padded; i++)
        tmp[i] = '=';
    tmp[padded] = '\0';
    int n = EVP_DecodeBlock(out, (unsigned char *)tmp, (int)padded);
    free(tmp);
    if (n < 0 || len % 4 == 1) {
        free(out);
        return NULL;
    }
    n -= (int)(padded - len); /* EVP_DecodeBlock counts the padding as zero bytes */
    out[n] = '\0';
    return (char *)out;
}

static pgc_token_status header_alg(const char *jwt, const char *want)
{
    const char *dot = strchr(jwt, '.');
    if (!dot || !strchr(dot + 1, '.'))
        return PGC_TOKEN_MALFORMED;
    char *hdr = b64url_decode(jwt, (size_t)(dot - jwt));
    struct json_object *o = hdr ? json_tokener_parse(hdr) : NULL, *alg;
    free(hdr);
    pgc_token_status st = PGC_TOKEN_OK;
    if (!o || !json_object_is_type(o, json_type_object) || !json_object_object_get_ex(o, "alg", &alg) ||
        !json_object_is_type(alg, json_type_string))
        st = PGC_TOKEN_MALFORMED;
    else if (strcasecmp(json_object_get_string(alg), "none") == 0)
        st = PGC_TOKEN_ALG_NONE;
    else if (strcmp(json_object_get_string(alg), want) != 0)
        st = PGC_TOKEN_WRONG_ALG;
    json_object_put(o);
    return st;
}

/* A claim that must be a string (NULL when absent); -1 when of another type. */
static int claim_str(struct json_object *claims, const char *name, char **out)
{
    struct json_object *v;
    *out = NULL;
    if (!json_object_object_get_ex(claims, name, &v) || json_object_is_type(v, json_type_null))
        return 0;
    if (!json_object_is_type(v, json_type_string))
        return -1;
    *out = strdup(json_object_get_string(v));
    return *out ? 0 : -1;
}

static int claim_list(struct json_object *claims, const char *name, char ***out, size_t *n)
{
    struct json_object *v;
    *out = NULL;
    *n = 0;
    if (!json_object_object_get_ex(claims, name, &v) || json_object_is_type(v, json_type_null))
        return 0;
    if (!json_object_is_type(v, json_type_array))
        return -1;
    size_t len = json_object_array_length(v);
    *out = calloc(len + 1, sizeof(char *));
    if (!*out)
        return -1;
    for (size_t i = 0; i < len; i++) {
        struct json_object *it = json_object_array_get_idx(v, i);
        if (!json_object_is_type(it, json_type_string) || !((*out)[i] = strdup(json_object_get_string(it)))) {
            free_list(*out, i);
            *out = NULL;
            *n = 0; /* else pgc_token_free walks a NULL list of i items */
            return -1;
        }
        *n = i + 1;
    }
    return 0;
}

static pgc_token_status anonymous_token(const pgc_verifier *v, pgc_token *out)
{
    memset(out, 0, sizeof(*out));
    out->anonymous = true;
    out->tenant = strdup(v->anon_tenant);
    out->channels = calloc(v->n_anon_channels + 1, sizeof(char *));
    out->publish = calloc(v->n_anon_publish + 1, sizeof(char *));
    if (!out->tenant || !out->channels || !out->publish) {
        pgc_token_free(out);
        return PGC_TOKEN_BAD_CLAIMS;
    }
    for (size_t i = 0; i < v->n_anon_channels; i++)
        if ((out->channels[out->n_channels] = strdup(v->anon_channels[i])))
            out->n_channels++;
    for (size_t i = 0; i < v->n_anon_publish; i++)
        if ((out->publish[out->n_publish] = strdup(v->anon_publish[i])))
            out->n_publish++;
    return PGC_TOKEN_OK;
}

/* A NumericDate claim (RFC 7519 §2): seconds since the epoch, an integer or a number
 * with a fraction (cut off), from 0 to the end of year 9999. Anything else — another type,
 * a negative value, 1e300 — is refused, so every later computation (exp * 1000 in ms)
 * stays far from overflowing. 1: absent; 0: *out set; -1: refused. */
#define PGC_NUMERIC_DATE_MAX 253402300799LL
static int numeric_date(struct json_object *claims, const char *name, int64_t *out)
{
    struct json_object *v;
    if (!json_object_object_get_ex(claims, name, &v))
        return 1;
    if (json_object_is_type(v, json_type_int)) {
        errno = 0;
        int64_t n = json_object_get_int64(v);
        /* json-c saturates out-of-range integers at INT64_MAX/MIN and sets errno */
        if (errno != 0 || n < 0 || n > PGC_NUMERIC_DATE_MAX)
            return -1;
        *out = n;
        return 0;
    }
    if (json_object_is_type(v, json_type_double)) {
        double d = json_object_get_double(v);
        if (!(d >= 0.0 && d <= (double)PGC_NUMERIC_DATE_MAX)) /* also false for NaN */
            return -1;
        *out = (int64_t)d;
        return 0;
    }
    return -1;
}

pgc_token_status pgc_token_verify(const pgc_verifier *v, const char *token, int64_t now, pgc_token *out)
{
    memset(out, 0, sizeof(*out));
    if (!token || !*token)
        return v->anonymous ? anonymous_token(v, out) : PGC_TOKEN_MISSING;
    if (strlen(token) > 16384)
        return PGC_TOKEN_MALFORMED;
    pgc_token_status st = header_alg(token, v->alg_name);
    if (st != PGC_TOKEN_OK)
        return st;
    if (!v->key)
        return PGC_TOKEN_BAD_SIGNATURE; /* anonymous-only setup: no key to check a token with */
    jwt_t *jwt = NULL;
    if (jwt_decode(&jwt, token, v->key, v->key_len) != 0 || !jwt)
        return PGC_TOKEN_BAD_SIGNATURE;
    if (jwt_get_alg(jwt) != v->alg) {
        jwt_free(jwt);
        return PGC_TOKEN_WRONG_ALG;
    }
    char *grants = jwt_get_grants_json(jwt, NULL);
    jwt_free(jwt);
    struct json_object *claims = grants ? json_tokener_parse(grants) : NULL;
    free(grants);
    if (!claims || !json_object_is_type(claims, json_type_object)) {
        json_object_put(claims);
        return PGC_TOKEN_MALFORMED;
    }
    st = PGC_TOKEN_OK;
    int64_t nbf = 0, iat = 0;
    int has_exp = numeric_date(claims, "exp", &out->exp), has_nbf = numeric_date(claims, "nbf", &nbf);
    if (has_exp < 0 || has_nbf < 0 || numeric_date(claims, "iat", &iat) < 0)
        st = PGC_TOKEN_BAD_CLAIMS;
    else if (has_exp == 0 && out->exp <= now)
        st = PGC_TOKEN_EXPIRED;
    else if (has_exp == 1 && v->require_exp)
        st = PGC_TOKEN_NO_EXP;
    else if (has_nbf == 0 && nbf > now + v->nbf_leeway)
        st = PGC_TOKEN_NOT_YET_VALID;
    if (st == PGC_TOKEN_OK &&
        (claim_str(claims, "sub", &out->sub) || claim_str(claims, "tenant", &out->tenant) ||
         claim_str(claims, "name", &out->name) || claim_list(claims, "channels", &out->channels, &out->n_channels) ||
         claim_list(claims, "publish", &out->publish, &out->n_publish)))
        st = PGC_TOKEN_BAD_CLAIMS;
    if (st == PGC_TOKEN_OK && (!out->tenant || !*out->tenant))
        st = PGC_TOKEN_NO_TENANT;
    else if (st == PGC_TOKEN_OK && strlen(out->tenant) > PGC_TENANT_MAX)
        st = PGC_TOKEN_BAD_TENANT;
    json_object_put(claims);
    if (st != PGC_TOKEN_OK)
        pgc_token_free(out);
    return st;
}

const char *pgc_token_status_str(pgc_token_status s)
{
    switch (s) {
    case PGC_TOKEN_OK: return "ok";
    case PGC_TOKEN_MISSING: return "no token";
    case PGC_TOKEN_MALFORMED: return "token is not a valid JWT";
    case PGC_TOKEN_ALG_NONE: return "token algorithm 'none' is not accepted";
    case PGC_TOKEN_WRONG_ALG: return "token algorithm is not the configured one";
    case PGC_TOKEN_BAD_SIGNATURE: return "token signature is invalid";
    case PGC_TOKEN_EXPIRED: return "token expired";
    case PGC_TOKEN_NOT_YET_VALID: return "token not valid yet (nbf)";
    case PGC_TOKEN_NO_EXP: return "token has no exp claim";
    case PGC_TOKEN_NO_TENANT: return "token has no tenant claim";
    case PGC_TOKEN_BAD_CLAIMS: return "token claims have the wrong types";
    case PGC_TOKEN_BAD_TENANT: return "token tenant claim is longer than 200 bytes";
    }
    return "token refused";
}

void pgc_token_free(pgc_token *t)
{
    free(t->sub);
    free(t->tenant);
    free(t->name);
    free_list(t->channels, t->n_channels);
    free_list(t->publish, t->n_publish);
    memset(t, 0, sizeof(*t));
}

static bool any_match(char **patterns, size_t n, const char *channel, const char *sub)
{
    for (size_t i = 0; i < n; i++)
        if (pgc_pattern_match(patterns[i], channel, sub))
            return true;
    return false;
}

bool pgc_token_can_subscribe(const pgc_token *t, const char *channel)
{
    return any_match(t->channels, t->n_channels, channel, t->sub);
}

bool pgc_token_can_publish(const pgc_token *t, const char *channel)
{
    return any_match(t->publish, t->n_publish, channel, t->sub);
}

char *pgc_token_from_request(const char *authorization, const char *query_token, const char *cookie_header,
                             const char *cookie_name)
{
    if (authorization && strncasecmp(authorization, "Bearer ", 7) == 0) {
        const char *t = authorization + 7;
        while (*t == ' ')
            t++;
        size_t tl = strlen(t);
        while (tl && (t[tl - 1] == ' ' || t[tl - 1] == '\t')) /* header OWS is no part of it */
            tl--;
        if (tl)
            return strndup(t, tl);
    }
    if (query_token && *query_token)
        return strdup(query_token);
    if (cookie_header && cookie_name && *cookie_name) {
        size_t nl = strlen(cookie_name);
        const char *p = cookie_header;
        while (*p) {
            while (*p == ' ' || *p == ';')
                p++;
            if (strncmp(p, cookie_name, nl) == 0 && p[nl] == '=') {
                const char *val = p + nl + 1;
                size_t vl = strcspn(val, ";");
                while (vl && val[vl - 1] == ' ')
                    vl--;
                return vl ? strndup(val, vl) : NULL;
            }
            p += strcspn(p, ";");
        }
    }
    return NULL;
}
