/* libFuzzer: token verification and token lookup in a request never crash; nothing the
 * fuzzer makes up passes an HS256 verifier whose secret it does not know. The input is also
 * signed as a claims object with that secret, to reach the claim checks behind the signature. */
#include <jwt.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "token.h"

#define SECRET "fuzz-secret-0123456789abcdef"

static pgc_verifier *verifier(void)
{
    static pgc_verifier *v;
    if (!v) {
        pgc_config cfg;
        char err[256];
        if (pgc_config_load(&cfg, NULL, err, sizeof err) != 0)
            abort();
        free(cfg.jwt_secret);
        cfg.jwt_secret = strdup(SECRET);
        cfg.anonymous = false;
        v = pgc_verifier_new(&cfg, err, sizeof err);
        pgc_config_free(&cfg);
        if (!v)
            abort();
    }
    return v;
}

/* Signs json as the claims of an HS256 token and checks what the verifier makes of it. */
static void signed_claims(const char *json)
{
    jwt_t *j = NULL;
    if (jwt_new(&j) != 0)
        return;
    char *tok = NULL;
    if (jwt_add_grants_json(j, json) == 0 &&
        jwt_set_alg(j, JWT_ALG_HS256, (const unsigned char *)SECRET, (int)strlen(SECRET)) == 0)
        tok = jwt_encode_str(j);
    jwt_free(j);
    if (!tok)
        return;
    pgc_token t;
    if (pgc_token_verify(verifier(), tok, 1700000000, &t) == PGC_TOKEN_OK) {
        if (!t.tenant || !*t.tenant)
            abort();
        (void)pgc_token_can_subscribe(&t, "project:abc");
        (void)pgc_token_can_publish(&t, "user:u1");
        pgc_token_free(&t);
    }
    free(tok);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *buf = malloc(size + 1);
    if (!buf)
        return 0;
    memcpy(buf, data, size);
    buf[size] = '\0';
    pgc_token t;
    pgc_token_status st = pgc_token_verify(verifier(), buf, 1700000000, &t);
    if (st == PGC_TOKEN_OK)
        abort();
    if (!pgc_token_status_str(st))
        abort();
    if (buf[0] == '{')
        signed_claims(buf);
    /* The same bytes as "Authorization", query and cookie parts, split at '\n'. */
    char *auth = buf, *query = NULL, *cookie = NULL, *nl;
    if ((nl = strchr(auth, '\n'))) {
        *nl = '\0';
        query = nl + 1;
        if ((nl = strchr(query, '\n'))) {
            *nl = '\0';
            cookie = nl + 1;
        }
    }
    free(pgc_token_from_request(auth, query, cookie, "pgcast_token"));
    free(buf);
    return 0;
}
