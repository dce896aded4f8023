/* A tenant is 1-200 bytes: tokens with a longer one are refused with their own reason,
 * and an anonymous_tenant outside the bound stops start-up with a message. */
#include <jwt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "t.h"
#include "token.h"

static const char *secret = "tenant-bound-secret";
static const int64_t NOW = 1800000000;

static char *sign(const char *claims_json)
{
    jwt_t *j = NULL;
    if (jwt_new(&j) != 0 || jwt_add_grants_json(j, claims_json) != 0 ||
        jwt_set_alg(j, JWT_ALG_HS256, (const unsigned char *)secret, (int)strlen(secret)) != 0)
        return NULL;
    char *s = jwt_encode_str(j);
    jwt_free(j);
    return s;
}

static pgc_verifier *verifier(const char *anonymous_tenant, char *err, size_t errlen)
{
    pgc_config cfg;
    setenv("PGCAST_JWT_ALG", "HS256", 1);
    setenv("PGCAST_JWT_SECRET", secret, 1);
    if (anonymous_tenant) {
        setenv("PGCAST_ANONYMOUS", "true", 1);
        setenv("PGCAST_ANONYMOUS_TENANT", anonymous_tenant, 1);
    } else {
        setenv("PGCAST_ANONYMOUS", "false", 1);
        unsetenv("PGCAST_ANONYMOUS_TENANT");
    }
    if (pgc_config_load(&cfg, NULL, err, errlen) != 0)
        return NULL;
    pgc_verifier *v = pgc_verifier_new(&cfg, err, errlen);
    pgc_config_free(&cfg);
    return v;
}

/* Verifies a token whose tenant is `tenant`; the verified tenant in *got (caller frees). */
static pgc_token_status check_tenant(pgc_verifier *v, const char *tenant, char **got)
{
    char claims[1024];
    snprintf(claims, sizeof(claims), "{\"sub\":\"u1\",\"tenant\":\"%s\",\"exp\":1900000000}", tenant);
    char *tok = sign(claims);
    pgc_token t;
    pgc_token_status st = pgc_token_verify(v, tok, NOW, &t);
    free(tok);
    *got = NULL;
    if (st == PGC_TOKEN_OK) {
        *got = strdup(t.tenant);
        pgc_token_free(&t);
    }
    return st;
}

static char *repeat(char c, size_t n)
{
    char *s = malloc(n + 1);
    memset(s, c, n);
    s[n] = '\0';
    return s;
}

int main(void)
{
    char err[256] = "";
    pgc_verifier *v = verifier(NULL, err, sizeof(err));
    T_OK(v != NULL, "verifier (%s)", err);
    if (!v)
        return T_DONE();

    char *got;
    char *t200 = repeat('a', 200), *t201 = repeat('a', 201), *t4000 = repeat('b', 600);
    T_INT(check_tenant(v, t200, &got), PGC_TOKEN_OK, "a tenant of 200 bytes is accepted");
    T_OK(got && strcmp(got, t200) == 0, "and kept whole");
    free(got);
    T_INT(check_tenant(v, t201, &got), PGC_TOKEN_BAD_TENANT, "a tenant of 201 bytes is refused");
    T_INT(check_tenant(v, t4000, &got), PGC_TOKEN_BAD_TENANT, "a tenant of 600 bytes is refused");
    T_STR(pgc_token_status_str(PGC_TOKEN_BAD_TENANT), "token tenant claim is longer than 200 bytes",
          "the refusal names the bound");

    /* 99 x "é" (2 bytes each) + "ab": 200 bytes, 101 characters: bytes are counted */
    char utf[512] = "";
    for (int i = 0; i < 99; i++)
        strcat(utf, "\xc3\xa9");
    strcat(utf, "ab"); /* 200 bytes */
    T_INT(check_tenant(v, utf, &got), PGC_TOKEN_OK, "200 bytes of UTF-8 (101 characters) are accepted");
    free(got);
    strcat(utf, "c"); /* 201 bytes */
    T_INT(check_tenant(v, utf, &got), PGC_TOKEN_BAD_TENANT, "201 bytes of UTF-8 are refused");
    T_INT(check_tenant(v, "", &got), PGC_TOKEN_NO_TENANT, "an empty tenant is still refused as missing");
    pgc_verifier_free(v);

    /* the anonymous tenant comes from the config: checked at start-up */
    v = verifier(t201, err, sizeof(err));
    T_OK(v == NULL, "an anonymous_tenant of 201 bytes stops start-up");
    T_OK(strstr(err, "anonymous_tenant") && strstr(err, "200"), "with a message naming the key and the bound (%s)",
         err);
    pgc_verifier_free(v);
    v = verifier(t200, err, sizeof(err));
    T_OK(v != NULL, "an anonymous_tenant of 200 bytes is accepted");
    pgc_verifier_free(v);

    free(t200);
    free(t201);
    free(t4000);
    return T_DONE();
}
