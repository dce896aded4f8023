/* Tokens (SPEC §3) verified with libjwt. The header's alg is read and checked here first,
 * independently of libjwt, so "none" and algorithm confusion never reach the library. */
#include "token.h"

#include <errno.h>
#include <jwt.h>
#include <json-c/json.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "channel.h"

#define TOKEN_MAX 16384 /* bytes of a JWT; anything longer is refused as malformed */
#define KEY_MAX 65536   /* bytes of a PEM key file */

struct pgc_verifier {
    jwt_alg_t alg;
    const char *alg_name;
    unsigned char *key;
    size_t key_len;
    bool require_exp;
    bool anonymous;
    char *anon_tenant;
    char **anon_channels; size_t n_anon_channels;
    char **anon_publish;  size_t n_anon_publish;
};

static void free_list(char **v, size_t n)
{
    for (size_t i = 0; i < n; i++)
        free(v[i]);
    free(v);
}

/* "a, b,c" -> {"a","b","c"}; empty items are skipped. 0 or -1 (allocation). */
static int split_patterns(const char *text, char ***out, size_t *n)
{
    *out = NULL;
    *n = 0;
    const char *p = text ? text : "";
    while (*p) {
        p += strspn(p, " \t,");
        size_t len = strcspn(p, ",");
        size_t tl = len;
        while (tl && (p[tl - 1] == ' ' || p[tl - 1] == '\t'))
            tl--;
        if (tl) {
            char **v = realloc(*out, (*n + 1) * sizeof *v);
            if (!v)
                goto fail;
            *out = v;
            if (!(v[*n] = strndup(p, tl)))
                goto fail;
            (*n)++;
        }
        p += len;
    }
    return 0;
fail:
    free_list(*out, *n);
    *out = NULL;
    *n = 0;
    return -1;
}

static unsigned char *read_file(const char *path, size_t *len, char *err, size_t errlen)
{
    FILE *f = fopen(path, "rb");
    if (!f) {
        snprintf(err, errlen, "jwt_public_key: cannot open %s: %s", path, strerror(errno));
        return NULL;
    }
    unsigned char *buf = malloc(KEY_MAX + 1);
    size_t n = buf ? fread(buf, 1, KEY_MAX + 1, f) : 0;
    int bad = !buf || ferror(f) || n == 0 || n > KEY_MAX;
    if (fclose(f) != 0)
        bad = 1;
    if (bad) {
        snprintf(err, errlen, "jwt_public_key: cannot read %s (empty, unreadable or over %d bytes)",
                 path, KEY_MAX);
        free(buf);
        return NULL;
    }
    buf[n] = '\0';
    *len = n;
    return buf;
}

pgc_verifier *pgc_verifier_new(const pgc_config *cfg, char *err, size_t errlen)
{
    pgc_verifier *v = calloc(1, sizeof *v);
    if (!v) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    v->require_exp = cfg->jwt_require_exp;
    v->anonymous = cfg->anonymous;
    const char *alg = cfg->jwt_alg ? cfg->jwt_alg : "HS256";
    v->alg = jwt_str_alg(alg);
    if (v->alg != JWT_ALG_HS256 && v->alg != JWT_ALG_RS256 && v->alg != JWT_ALG_ES256) {
        snprintf(err, errlen, "jwt_alg: \"%s\" is not one of HS256, RS256, ES256", alg);
        goto fail;
    }
    v->alg_name = jwt_alg_str(v->alg);
    if (v->alg == JWT_ALG_HS256) {
        if (!cfg->jwt_secret || !*cfg->jwt_secret) {
            snprintf(err, errlen, "jwt_secret: required with jwt_alg = HS256");
            goto fail;
        }
        v->key_len = strlen(cfg->jwt_secret);
        if (!(v->key = (unsigned char *)strdup(cfg->jwt_secret))) {
            snprintf(err, errlen, "out of memory");
            goto fail;
        }
    } else {
        if (!cfg->jwt_public_key || !*cfg->jwt_public_key) {
            snprintf(err, errlen, "jwt_public_key: required with jwt_alg = %s", v->alg_name);
            goto fail;
        }
        if (!(v->key = read_file(cfg->jwt_public_key, &v->key_len, err, errlen)))
            goto fail;
    }
    if (!(v->anon_tenant = strdup(cfg->anonymous_tenant ? cfg->anonymous_tenant : "anonymous")) ||
        split_patterns(cfg->anonymous_channels, &v->anon_channels, &v->n_anon_channels) != 0 ||
        split_patterns(cfg->anonymous_publish, &v->anon_publish, &v->n_anon_publish) != 0) {
        snprintf(err, errlen, "out of memory");
        goto fail;
    }
    return v;
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

/* base64url (no padding) -> bytes, NUL-terminated; NULL if not base64url. */
static char *b64url_decode(const char *s, size_t len)
{
    if (len % 4 == 1)
        return NULL;
    size_t padded = (len + 3) / 4 * 4;
    char *in = malloc(padded + 1);
    char *out = malloc(padded / 4 * 3 + 1);
    if (!in || !out)
        goto fail;
    for (size_t i = 0; i < len; i++) {
        char c = s[i];
        if (c == '-')
            c = '+';
        else if (c == '_')
            c = '/';
        else if (!((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9')))
            goto fail;
        in[i] = c;
    }
    for (size_t i = len; i < padded; i++)
        in[i] = '=';
    in[padded] = '\0';
    int n = padded ? EVP_DecodeBlock((unsigned char *)out, (unsigned char *)in, (int)padded) : 0;
    if (n < 0)
        goto fail;
    n -= (int)(padded - len); /* EVP_DecodeBlock counts the padding as zero bytes */
    out[n] = '\0';
    free(in);
    return out;
fail:
    free(in);
    free(out);
    return NULL;
}

/* Reads the alg of the JOSE header. */
static pgc_token_status check_header(const pgc_verifier *v, const char *jwt)
{
    const char *dot1 = strchr(jwt, '.');
    const char *dot2 = dot1 ? strchr(dot1 + 1, '.') : NULL;
    if (!dot1 || !dot2 || strchr(dot2 + 1, '.') || dot1 == jwt || dot2 == dot1 + 1)
        return PGC_TOKEN_MALFORMED;
    char *hdr = b64url_decode(jwt, (size_t)(dot1 - jwt));
    if (!hdr)
        return PGC_TOKEN_MALFORMED;
    json_object *o = json_tokener_parse(hdr);
    free(hdr);
    json_object *alg;
    pgc_token_status st = PGC_TOKEN_OK;
    if (!o || !json_object_is_type(o, json_type_object) ||
        !json_object_object_get_ex(o, "alg", &alg) || !json_object_is_type(alg, json_type_string))
        st = PGC_TOKEN_MALFORMED;
    else if (strcasecmp(json_object_get_string(alg), "none") == 0)
        st = PGC_TOKEN_ALG_NONE;
    else if (strcmp(json_object_get_string(alg), v->alg_name) != 0)
        st = PGC_TOKEN_WRONG_ALG;
    else if (dot2[1] == '\0')
        st = PGC_TOKEN_BAD_SIGNATURE; /* a signed alg with an empty signature */
    json_object_put(o);
    return st;
}

/* Optional string claim: absent -> NULL, a string -> copy, anything else -> -1. */
static int claim_string(json_object *claims, const char *name, char **out)
{
    json_object *x;
    *out = NULL;
    if (!json_object_object_get_ex(claims, name, &x) || json_object_is_type(x, json_type_null))
        return 0;
    if (!json_object_is_type(x, json_type_string))
        return -1;
    return (*out = strdup(json_object_get_string(x))) ? 0 : -1;
}

/* Optional array of strings: absent -> empty, else all items must be strings. */
static int claim_patterns(json_object *claims, const char *name, char ***out, size_t *n)
{
    json_object *x;
    *out = NULL;
    *n = 0;
    if (!json_object_object_get_ex(claims, name, &x) || json_object_is_type(x, json_type_null))
        return 0;
    if (!json_object_is_type(x, json_type_array))
        return -1;
    size_t len = json_object_array_length(x);
    if (len == 0)
        return 0;
    char **v = calloc(len, sizeof *v);
    if (!v)
        return -1;
    for (size_t i = 0; i < len; i++) {
        json_object *it = json_object_array_get_idx(x, i);
        if (!json_object_is_type(it, json_type_string) ||
            !(v[i] = strdup(json_object_get_string(it)))) {
            free_list(v, len);
            return -1;
        }
    }
    *out = v;
    *n = len;
    return 0;
}

static pgc_token_status read_claims(const pgc_verifier *v, jwt_t *j, int64_t now, pgc_token *t)
{
    char *json = jwt_get_grants_json(j, NULL);
    json_object *claims = json ? json_tokener_parse(json) : NULL;
    free(json);
    pgc_token_status st = PGC_TOKEN_OK;
    json_object *x;
    if (!claims || !json_object_is_type(claims, json_type_object)) {
        st = PGC_TOKEN_MALFORMED;
    } else if (json_object_object_get_ex(claims, "exp", &x) &&
               !json_object_is_type(x, json_type_null)) {
        if (!json_object_is_type(x, json_type_int) && !json_object_is_type(x, json_type_double))
            st = PGC_TOKEN_BAD_CLAIMS;
        else if ((t->exp = json_object_get_int64(x)) <= now)
            st = PGC_TOKEN_EXPIRED;
    } else if (v->require_exp) {
        st = PGC_TOKEN_NO_EXP;
    }
    if (st == PGC_TOKEN_OK &&
        (claim_string(claims, "sub", &t->sub) != 0 || claim_string(claims, "tenant", &t->tenant) != 0 ||
         claim_string(claims, "name", &t->name) != 0 ||
         claim_patterns(claims, "channels", &t->channels, &t->n_channels) != 0 ||
         claim_patterns(claims, "publish", &t->publish, &t->n_publish) != 0))
        st = PGC_TOKEN_BAD_CLAIMS;
    if (st == PGC_TOKEN_OK && (!t->tenant || !*t->tenant))
        st = PGC_TOKEN_NO_TENANT;
    json_object_put(claims);
    return st;
}

static pgc_token_status anonymous_token(const pgc_verifier *v, pgc_token *t)
{
    t->anonymous = true;
    if (!(t->tenant = strdup(v->anon_tenant)))
        return PGC_TOKEN_MALFORMED;
    t->channels = calloc(v->n_anon_channels + 1, sizeof *t->channels);
    t->publish = calloc(v->n_anon_publish + 1, sizeof *t->publish);
    if (!t->channels || !t->publish)
        return PGC_TOKEN_MALFORMED;
    for (; t->n_channels < v->n_anon_channels; t->n_channels++)
        if (!(t->channels[t->n_channels] = strdup(v->anon_channels[t->n_channels])))
            return PGC_TOKEN_MALFORMED;
    for (; t->n_publish < v->n_anon_publish; t->n_publish++)
        if (!(t->publish[t->n_publish] = strdup(v->anon_publish[t->n_publish])))
            return PGC_TOKEN_MALFORMED;
    return PGC_TOKEN_OK;
}

pgc_token_status pgc_token_verify(const pgc_verifier *v, const char *jwt, int64_t now, pgc_token *out)
{
    memset(out, 0, sizeof *out);
    pgc_token_status st;
    if (!jwt || !*jwt) {
        if (!v->anonymous)
            return PGC_TOKEN_MISSING;
        st = anonymous_token(v, out);
    } else if (strlen(jwt) > TOKEN_MAX) {
        st = PGC_TOKEN_MALFORMED;
    } else if ((st = check_header(v, jwt)) == PGC_TOKEN_OK) {
        jwt_t *j = NULL;
        /* The header is well-formed and has our alg: a decode failure is the signature. */
        if (jwt_decode(&j, jwt, v->key, (int)v->key_len) != 0 || !j)
            st = PGC_TOKEN_BAD_SIGNATURE;
        else if (jwt_get_alg(j) != v->alg)
            st = PGC_TOKEN_WRONG_ALG;
        else
            st = read_claims(v, j, now, out);
        jwt_free(j);
    }
    if (st != PGC_TOKEN_OK)
        pgc_token_free(out);
    return st;
}

const char *pgc_token_status_str(pgc_token_status s)
{
    switch (s) {
    case PGC_TOKEN_OK: return "ok";
    case PGC_TOKEN_MISSING: return "token missing";
    case PGC_TOKEN_MALFORMED: return "token malformed";
    case PGC_TOKEN_ALG_NONE: return "token with alg none refused";
    case PGC_TOKEN_WRONG_ALG: return "token signed with another algorithm than configured";
    case PGC_TOKEN_BAD_SIGNATURE: return "token signature invalid";
    case PGC_TOKEN_EXPIRED: return "token expired";
    case PGC_TOKEN_NO_EXP: return "token has no exp";
    case PGC_TOKEN_NO_TENANT: return "token has no tenant";
    case PGC_TOKEN_BAD_CLAIMS: return "token claims of the wrong type";
    }
    return "token refused";
}

void pgc_token_free(pgc_token *t)
{
    if (!t)
        return;
    free(t->sub);
    free(t->tenant);
    free(t->name);
    free_list(t->channels, t->n_channels);
    free_list(t->publish, t->n_publish);
    memset(t, 0, sizeof *t);
}

static bool any_match(char *const *pats, size_t n, const char *channel, const char *sub)
{
    for (size_t i = 0; i < n; i++)
        if (pgc_pattern_match(pats[i], channel, sub))
            return true;
    return false;
}

bool pgc_token_can_subscribe(const pgc_token *t, const char *channel)
{
    return t && any_match(t->channels, t->n_channels, channel, t->sub);
}

bool pgc_token_can_publish(const pgc_token *t, const char *channel)
{
    return t && any_match(t->publish, t->n_publish, channel, t->sub);
}

/* Copy of s[0..len) with spaces around it trimmed; NULL when that is empty. */
static char *trimmed_dup(const char *s, size_t len)
{
    while (len && (*s == ' ' || *s == '\t'))
        s++, len--;
    while (len && (s[len - 1] == ' ' || s[len - 1] == '\t'))
        len--;
    return len ? strndup(s, len) : NULL;
}

char *pgc_token_from_request(const char *authorization, const char *query_token,
                             const char *cookie_header, const char *cookie_name)
{
    if (authorization) {
        const char *a = authorization + strspn(authorization, " \t");
        if (strncasecmp(a, "Bearer", 6) == 0 && (a[6] == ' ' || a[6] == '\t')) {
            char *t = trimmed_dup(a + 7, strlen(a + 7));
            if (t)
                return t;
        }
    }
    if (query_token && *query_token)
        return strdup(query_token);
    if (cookie_header && cookie_name && *cookie_name) {
        size_t nlen = strlen(cookie_name);
        const char *p = cookie_header;
        while (*p) {
            p += strspn(p, " \t;");
            size_t len = strcspn(p, ";");
            if (len > nlen && strncmp(p, cookie_name, nlen) == 0 && p[nlen] == '=') {
                char *t = trimmed_dup(p + nlen + 1, len - nlen - 1);
                if (t)
                    return t;
            }
            p += len;
        }
    }
    return NULL;
}
