/*
 * The part of libjwt's API that core/token.c uses (jwt_str_alg, jwt_decode, jwt_get_alg,
 * jwt_get_grants_json, jwt_free), on OpenSSL and json-c, for the self-contained
 * programs of `make static`: Debian ships no static libjwt (nor the jansson and libb64
 * it needs), while OpenSSL and json-c come as static archives. The ordinary build links
 * libjwt itself; tests/hosting/static.sh runs the token unit tests against this file.
 *
 * jwt_decode as libjwt 1.10 does it: three base64url parts; the header a JSON object
 * whose "alg" names the algorithm (and whose "typ", when present, is "JWT"); the payload
 * a JSON object; with a key, the signature over "header.payload" checked with the
 * header's algorithm (HS256/384/512: HMAC with the key as secret; RS* and ES*: the key
 * is a PEM public key, ES* signatures are r||s as JWS defines them). The caller compares
 * jwt_get_alg with the algorithm it expects.
 */
#include <errno.h>
#include <jwt.h>
#include <json.h>
#include <openssl/bn.h>
#include <openssl/crypto.h>
#include <openssl/ec.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/pem.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

struct jwt {
    jwt_alg_t alg;
    struct json_object *grants;
};

static const struct {
    const char *name;
    jwt_alg_t alg;
} algs[] = {{"none", JWT_ALG_NONE},   {"HS256", JWT_ALG_HS256}, {"HS384", JWT_ALG_HS384}, {"HS512", JWT_ALG_HS512},
            {"RS256", JWT_ALG_RS256}, {"RS384", JWT_ALG_RS384}, {"RS512", JWT_ALG_RS512}, {"ES256", JWT_ALG_ES256},
            {"ES384", JWT_ALG_ES384}, {"ES512", JWT_ALG_ES512}};

jwt_alg_t jwt_str_alg(const char *alg)
{
    for (size_t i = 0; alg && i < sizeof(algs) / sizeof(algs[0]); i++)
        if (strcmp(algs[i].name, alg) == 0)
            return algs[i].alg;
    return JWT_ALG_INVAL;
}

jwt_alg_t jwt_get_alg(jwt_t *jwt) { return jwt ? jwt->alg : JWT_ALG_INVAL; }

void jwt_free(jwt_t *jwt)
{
    if (!jwt)
        return;
    json_object_put(jwt->grants);
    free(jwt);
}

char *jwt_get_grants_json(jwt_t *jwt, const char *grant)
{
    if (!jwt || !jwt->grants)
        return NULL;
    struct json_object *v = jwt->grants;
    if (grant && !json_object_object_get_ex(jwt->grants, grant, &v))
        return NULL;
    const char *s = json_object_to_json_string_ext(v, JSON_C_TO_STRING_PLAIN);
    return s ? strdup(s) : NULL;
}

/* base64url without padding -> bytes (malloc'd, NUL-terminated); NULL when malformed. */
static unsigned char *b64url_decode(const char *in, size_t len, size_t *out_len)
{
    if (len % 4 == 1)
        return NULL;
    size_t padded = (len + 3) / 4 * 4;
    char *std = malloc(padded + 1);
    unsigned char *out = malloc(padded / 4 * 3 + 1);
    if (!std || !out) {
        free(std);
        free(out);
        return NULL;
    }
    for (size_t i = 0; i < len; i++) {
        char c = in[i];
        if (c == '-')
            c = '+';
        else if (c == '_')
            c = '/';
        else if (c == '+' || c == '/' || c == '=')
            goto bad;
        std[i] = c;
    }
    for (size_t i = len; i < padded; i++)
        std[i] = '=';
    std[padded] = '\0';
    int n = padded ? EVP_DecodeBlock(out, (const unsigned char *)std, (int)padded) : 0;
    if (n < 0)
        goto bad;
    n -= (int)(padded - len); /* EVP_DecodeBlock counts the padding's zero bytes */
    free(std);
    out[n] = '\0';
    *out_len = (size_t)n;
    return out;
bad:
    free(std);
    free(out);
    return NULL;
}

/* One JSON object, nothing after it. */
static struct json_object *parse_object(const unsigned char *text, size_t len)
{
    struct json_tokener *tok = json_tokener_new();
    if (!tok)
        return NULL;
    json_tokener_set_flags(tok, JSON_TOKENER_STRICT);
    struct json_object *o = json_tokener_parse_ex(tok, (const char *)text, (int)len);
    bool whole = o && json_tokener_get_error(tok) == json_tokener_success && (size_t)json_tokener_get_parse_end(tok) == len;
    json_tokener_free(tok);
    if (!whole || !json_object_is_type(o, json_type_object)) {
        json_object_put(o);
        return NULL;
    }
    return o;
}

static const EVP_MD *digest_of(jwt_alg_t alg)
{
    switch (alg) {
    case JWT_ALG_HS256: case JWT_ALG_RS256: case JWT_ALG_ES256: return EVP_sha256();
    case JWT_ALG_HS384: case JWT_ALG_RS384: case JWT_ALG_ES384: return EVP_sha384();
    case JWT_ALG_HS512: case JWT_ALG_RS512: case JWT_ALG_ES512: return EVP_sha512();
    default: return NULL;
    }
}

static int verify_hmac(jwt_alg_t alg, const unsigned char *key, int key_len, const char *msg, size_t msg_len,
                       const unsigned char *sig, size_t sig_len)
{
    unsigned char mac[EVP_MAX_MD_SIZE];
    unsigned int mac_len = 0;
    if (!HMAC(digest_of(alg), key, key_len, (const unsigned char *)msg, msg_len, mac, &mac_len))
        return -1;
    return mac_len == sig_len && CRYPTO_memcmp(mac, sig, sig_len) == 0 ? 0 : -1;
}

/* r||s (JWS) -> DER (what OpenSSL verifies); NULL on a wrong length. */
static unsigned char *ecdsa_der(const unsigned char *sig, size_t sig_len, size_t want, int *der_len)
{
    if (sig_len != want)
        return NULL;
    ECDSA_SIG *es = ECDSA_SIG_new();
    BIGNUM *r = BN_bin2bn(sig, (int)(want / 2), NULL), *s = BN_bin2bn(sig + want / 2, (int)(want / 2), NULL);
    if (!es || !r || !s || ECDSA_SIG_set0(es, r, s) != 1) {
        BN_free(r);
        BN_free(s);
        ECDSA_SIG_free(es);
        return NULL;
    }
    unsigned char *der = NULL;
    *der_len = i2d_ECDSA_SIG(es, &der);
    ECDSA_SIG_free(es);
    if (*der_len <= 0) {
        OPENSSL_free(der);
        return NULL;
    }
    return der;
}

static int verify_pubkey(jwt_alg_t alg, const unsigned char *key, int key_len, const char *msg, size_t msg_len,
                         const unsigned char *sig, size_t sig_len)
{
    BIO *bio = BIO_new_mem_buf(key, key_len);
    EVP_PKEY *pkey = bio ? PEM_read_bio_PUBKEY(bio, NULL, NULL, NULL) : NULL;
    BIO_free(bio);
    if (!pkey)
        return -1;
    int rc = -1;
    bool ec = alg == JWT_ALG_ES256 || alg == JWT_ALG_ES384 || alg == JWT_ALG_ES512;
    if (EVP_PKEY_get_base_id(pkey) != (ec ? EVP_PKEY_EC : EVP_PKEY_RSA)) {
        EVP_PKEY_free(pkey);
        return -1;
    }
    unsigned char *der = NULL;
    int der_len = 0;
    if (ec) {
        size_t want = alg == JWT_ALG_ES256 ? 64 : alg == JWT_ALG_ES384 ? 96 : 132;
        if (!(der = ecdsa_der(sig, sig_len, want, &der_len))) {
            EVP_PKEY_free(pkey);
            return -1;
        }
    }
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();
    if (ctx && EVP_DigestVerifyInit(ctx, NULL, digest_of(alg), NULL, pkey) == 1 &&
        EVP_DigestVerify(ctx, ec ? der : sig, ec ? (size_t)der_len : sig_len, (const unsigned char *)msg, msg_len) == 1)
        rc = 0;
    EVP_MD_CTX_free(ctx);
    OPENSSL_free(der);
    EVP_PKEY_free(pkey);
    return rc;
}

int jwt_decode(jwt_t **jwt, const char *token, const unsigned char *key, int key_len)
{
    if (!jwt)
        return EINVAL;
    *jwt = NULL;
    if (!token)
        return EINVAL;
    const char *dot1 = strchr(token, '.');
    const char *dot2 = dot1 ? strchr(dot1 + 1, '.') : NULL;
    if (!dot2 || strchr(dot2 + 1, '.'))
        return EINVAL;
    int rc = EINVAL;
    size_t hlen = 0, plen = 0, slen = 0;
    unsigned char *head = b64url_decode(token, (size_t)(dot1 - token), &hlen);
    unsigned char *body = b64url_decode(dot1 + 1, (size_t)(dot2 - dot1 - 1), &plen);
    unsigned char *sig = b64url_decode(dot2 + 1, strlen(dot2 + 1), &slen);
    struct json_object *h = head ? parse_object(head, hlen) : NULL, *v;
    jwt_t *out = calloc(1, sizeof(*out));
    if (!h || !body || !sig || !out)
        goto done;
    if (!json_object_object_get_ex(h, "alg", &v) || !json_object_is_type(v, json_type_string))
        goto done;
    out->alg = jwt_str_alg(json_object_get_string(v));
    if (out->alg == JWT_ALG_INVAL)
        goto done;
    if (json_object_object_get_ex(h, "typ", &v) &&
        (!json_object_is_type(v, json_type_string) || strcasecmp(json_object_get_string(v), "JWT") != 0))
        goto done;
    if (!(out->grants = parse_object(body, plen)))
        goto done;
    if (key && key_len > 0) {
        const char *msg = token;
        size_t msg_len = (size_t)(dot2 - token);
        if (out->alg == JWT_ALG_NONE)
            goto done;
        bool hmac = out->alg == JWT_ALG_HS256 || out->alg == JWT_ALG_HS384 || out->alg == JWT_ALG_HS512;
        if ((hmac ? verify_hmac(out->alg, key, key_len, msg, msg_len, sig, slen)
                  : verify_pubkey(out->alg, key, key_len, msg, msg_len, sig, slen)) != 0)
            goto done;
    } else if (out->alg != JWT_ALG_NONE || slen != 0) {
        goto done; /* libjwt: a signed token needs a key, an unsigned one no signature */
    }
    rc = 0;
    *jwt = out;
    out = NULL;
done:
    json_object_put(h);
    jwt_free(out);
    free(head);
    free(body);
    free(sig);
    return rc;
}
