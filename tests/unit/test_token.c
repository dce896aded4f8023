/* Tokens: HS256, RS256, ES256, and every refusal with its own reason; patterns. */
#include <jwt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "t.h"
#include "token.h"

static char dir[256];
static const int64_t NOW = 1800000000;

/* Signs claims_json (a JSON object) with alg and key. */
static char *sign(jwt_alg_t alg, const char *key, size_t keylen, const char *claims_json)
{
    jwt_t *j = NULL;
    if (jwt_new(&j) != 0 || jwt_add_grants_json(j, claims_json) != 0 ||
        jwt_set_alg(j, alg, (const unsigned char *)key, (int)keylen) != 0)
        return NULL;
    char *s = jwt_encode_str(j);
    jwt_free(j);
    return s;
}

static char *slurp(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    char *buf = calloc(1, 65536);
    *len = fread(buf, 1, 65535, f);
    fclose(f);
    return buf;
}

static pgc_verifier *verifier(const char *alg, const char *secret, const char *pubkey, int anonymous)
{
    pgc_config cfg;
    char err[256];
    setenv("PGCAST_JWT_ALG", alg, 1);
    if (secret)
        setenv("PGCAST_JWT_SECRET", secret, 1);
    else
        unsetenv("PGCAST_JWT_SECRET");
    if (pubkey)
        setenv("PGCAST_JWT_PUBLIC_KEY", pubkey, 1);
    else
        unsetenv("PGCAST_JWT_PUBLIC_KEY");
    setenv("PGCAST_ANONYMOUS", anonymous ? "true" : "false", 1);
    if (pgc_config_load(&cfg, NULL, err, sizeof(err)) != 0) {
        printf("# config: %s\n", err);
        return NULL;
    }
    pgc_verifier *v = pgc_verifier_new(&cfg, err, sizeof(err));
    if (!v)
        printf("# verifier: %s\n", err);
    pgc_config_free(&cfg);
    return v;
}

static pgc_token_status check(pgc_verifier *v, const char *tok)
{
    pgc_token t;
    pgc_token_status st = pgc_token_verify(v, tok, NOW, &t);
    if (st == PGC_TOKEN_OK)
        pgc_token_free(&t);
    return st;
}

static void keypair_test(const char *alg_name, jwt_alg_t alg, const char *genkey)
{
    char cmd[1024], priv[300], pub[300];
    snprintf(priv, sizeof(priv), "%s/%s.key", dir, alg_name);
    snprintf(pub, sizeof(pub), "%s/%s.pub", dir, alg_name);
    snprintf(cmd, sizeof(cmd), "%s -out %s 2>/dev/null && openssl pkey -in %s -pubout -out %s 2>/dev/null", genkey,
             priv, priv, pub);
    T_INT(system(cmd), 0, "%s key pair generated", alg_name);
    size_t klen;
    char *key = slurp(priv, &klen);
    pgc_verifier *v = verifier(alg_name, NULL, pub, 0);
    T_OK(v != NULL, "%s verifier from a public key file", alg_name);
    char *tok = key ? sign(alg, key, klen, "{\"sub\":\"u1\",\"tenant\":\"t1\",\"exp\":1900000000}") : NULL;
    T_INT(check(v, tok), PGC_TOKEN_OK, "%s token verifies", alg_name);
    if (tok) {
        tok[strlen(tok) - 3] ^= 1; /* flip a bit of the signature */
        T_INT(check(v, tok), PGC_TOKEN_BAD_SIGNATURE, "%s tampered signature refused", alg_name);
    }
    free(tok);
    tok = sign(JWT_ALG_HS256, "secret", 6, "{\"tenant\":\"t1\",\"exp\":1900000000}");
    T_INT(check(v, tok), PGC_TOKEN_WRONG_ALG, "%s verifier refuses an HS256 token (alg confusion)", alg_name);
    free(tok);
    free(key);
    pgc_verifier_free(v);
}

int main(void)
{
    snprintf(dir, sizeof(dir), "%s/tok.XXXXXX", getenv("PGCAST_TEST_WORK") ? getenv("PGCAST_TEST_WORK") : "/tmp");
    if (!mkdtemp(dir)) {
        printf("not ok 1 - mkdtemp\n");
        return 1;
    }
    const char *secret = "s3cret-key-for-tests";
    pgc_verifier *v = verifier("HS256", secret, NULL, 0);
    T_OK(v != NULL, "HS256 verifier");
    pgc_verifier *placeholder = verifier("HS256", "change-me", NULL, 0);
    T_OK(placeholder == NULL, "the shipped configuration's placeholder secret is refused");
    pgc_verifier_free(placeholder);

    char *good = sign(JWT_ALG_HS256, secret, strlen(secret),
                      "{\"sub\":\"u1\",\"tenant\":\"t1\",\"name\":\"Ann\",\"exp\":1900000000,"
                      "\"channels\":[\"project:*\",\"user:{sub}\"],\"publish\":[\"project:abc\"]}");
    pgc_token t;
    T_INT(pgc_token_verify(v, good, NOW, &t), PGC_TOKEN_OK, "valid HS256 token");
    T_STR(t.sub, "u1", "sub");
    T_STR(t.tenant, "t1", "tenant");
    T_STR(t.name, "Ann", "name");
    T_INT(t.exp, 1900000000, "exp");
    T_OK(pgc_token_can_subscribe(&t, "project:xyz"), "may subscribe to project:*");
    T_OK(pgc_token_can_subscribe(&t, "user:u1"), "may subscribe to user:{sub}");
    T_OK(!pgc_token_can_subscribe(&t, "user:u2"), "not to another user's channel");
    T_OK(pgc_token_can_publish(&t, "project:abc"), "may publish to project:abc");
    T_OK(!pgc_token_can_publish(&t, "project:xyz"), "not to another project");
    pgc_token_free(&t);

    char *tok;
    tok = sign(JWT_ALG_HS256, secret, strlen(secret), "{\"tenant\":\"t1\",\"exp\":1700000000}");
    T_INT(check(v, tok), PGC_TOKEN_EXPIRED, "expired token refused");
    free(tok);
    tok = sign(JWT_ALG_HS256, "wrong-key", 9, "{\"tenant\":\"t1\",\"exp\":1900000000}");
    T_INT(check(v, tok), PGC_TOKEN_BAD_SIGNATURE, "token signed with another key refused");
    free(tok);
    tok = sign(JWT_ALG_HS256, secret, strlen(secret), "{\"sub\":\"u1\",\"exp\":1900000000}");
    T_INT(check(v, tok), PGC_TOKEN_NO_TENANT, "token without tenant refused");
    free(tok);
    tok = sign(JWT_ALG_HS256, secret, strlen(secret), "{\"tenant\":\"\",\"exp\":1900000000}");
    T_INT(check(v, tok), PGC_TOKEN_NO_TENANT, "token with an empty tenant refused");
    free(tok);
    tok = sign(JWT_ALG_HS256, secret, strlen(secret), "{\"tenant\":\"t1\"}");
    T_INT(check(v, tok), PGC_TOKEN_NO_EXP, "token without exp refused when exp is required");
    free(tok);
    tok = sign(JWT_ALG_HS256, secret, strlen(secret), "{\"tenant\":\"t1\",\"exp\":1900000000,\"channels\":\"project:*\"}");
    T_INT(check(v, tok), PGC_TOKEN_BAD_CLAIMS, "channels that are not an array refused");
    free(tok);
    tok = sign(JWT_ALG_HS256, secret, strlen(secret), "{\"tenant\":42,\"exp\":1900000000}");
    T_INT(check(v, tok), PGC_TOKEN_BAD_CLAIMS, "a tenant that is not a string refused");
    free(tok);
    /* alg none, hand-built: {"alg":"none","typ":"JWT"} . {"tenant":"t1","exp":1900000000} . */
    T_INT(check(v, "eyJhbGciOiJub25lIiwidHlwIjoiSldUIn0.eyJ0ZW5hbnQiOiJ0MSIsImV4cCI6MTkwMDAwMDAwMH0."),
          PGC_TOKEN_ALG_NONE, "alg none refused");
    T_INT(check(v, "eyJhbGciOiJOb25lIn0.eyJ0ZW5hbnQiOiJ0MSJ9."), PGC_TOKEN_ALG_NONE, "alg None (any case) refused");
    T_INT(check(v, "not-a-token"), PGC_TOKEN_MALFORMED, "garbage refused as malformed");
    T_INT(check(v, "a.b.c"), PGC_TOKEN_MALFORMED, "three garbage parts refused as malformed");
    T_INT(check(v, NULL), PGC_TOKEN_MISSING, "no token refused when anonymous is off");
    T_INT(check(v, ""), PGC_TOKEN_MISSING, "empty token refused when anonymous is off");
    T_OK(strcmp(pgc_token_status_str(PGC_TOKEN_EXPIRED), pgc_token_status_str(PGC_TOKEN_BAD_SIGNATURE)) != 0,
         "each refusal has its own reason");
    pgc_verifier_free(v);

    setenv("PGCAST_JWT_REQUIRE_EXP", "false", 1);
    v = verifier("HS256", secret, NULL, 1);
    unsetenv("PGCAST_JWT_REQUIRE_EXP");
    tok = sign(JWT_ALG_HS256, secret, strlen(secret), "{\"tenant\":\"t1\"}");
    T_INT(check(v, tok), PGC_TOKEN_OK, "exp optional when the config says so");
    free(tok);
    T_INT(pgc_token_verify(v, NULL, NOW, &t), PGC_TOKEN_OK, "anonymous token when anonymous is on");
    T_STR(t.tenant, "anonymous", "anonymous tenant from the config");
    T_OK(t.anonymous && pgc_token_can_subscribe(&t, "public:news"), "anonymous patterns apply");
    T_OK(!pgc_token_can_subscribe(&t, "project:abc"), "and nothing else");
    T_OK(!pgc_token_can_publish(&t, "public:news"), "anonymous cannot publish by default");
    pgc_token_free(&t);
    pgc_verifier_free(v);

    keypair_test("RS256", JWT_ALG_RS256, "openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048");
    keypair_test("ES256", JWT_ALG_ES256, "openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256");

    char *s = pgc_token_from_request("Bearer abc", "q", "pgcast_token=c", "pgcast_token");
    T_STR(s, "abc", "Authorization: Bearer wins");
    free(s);
    s = pgc_token_from_request("bearer  abc", NULL, NULL, NULL);
    T_STR(s, "abc", "the scheme is case-insensitive");
    free(s);
    s = pgc_token_from_request("Basic xyz", "q", NULL, "pgcast_token");
    T_STR(s, "q", "then ?token=");
    free(s);
    s = pgc_token_from_request(NULL, NULL, "a=1; pgcast_token=ck; b=2", "pgcast_token");
    T_STR(s, "ck", "then the named cookie");
    free(s);
    s = pgc_token_from_request(NULL, NULL, "xpgcast_token=no", "pgcast_token");
    T_STR(s, NULL, "a cookie whose name only ends the same does not count");
    free(s);
    free(good);
    char cmd[300];
    snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
    if (system(cmd) != 0)
        printf("# could not remove %s\n", dir);
    return T_DONE();
}
