/* libFuzzer: token verification and token lookup in a request never crash; nothing the
 * fuzzer makes up passes an HS256 verifier whose secret it does not know. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "token.h"

static pgc_verifier *verifier(void)
{
    static pgc_verifier *v;
    if (!v) {
        pgc_config cfg;
        char err[256];
        if (pgc_config_load(&cfg, NULL, err, sizeof err) != 0)
            abort();
        free(cfg.jwt_secret);
        cfg.jwt_secret = strdup("fuzz-secret-0123456789abcdef");
        cfg.anonymous = false;
        v = pgc_verifier_new(&cfg, err, sizeof err);
        pgc_config_free(&cfg);
        if (!v)
            abort();
    }
    return v;
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
