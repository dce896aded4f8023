/* Tokens (SPEC §3), verified with libjwt: HS256 with a shared secret, RS256/ES256 with a
 * public key. alg "none", an algorithm other than the configured one, a bad signature,
 * an expired token, a token without tenant are each refused with their own status. */
#ifndef PGCAST_TOKEN_H
#define PGCAST_TOKEN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "config.h"

typedef enum pgc_token_status {
    PGC_TOKEN_OK = 0,
    PGC_TOKEN_MISSING,       /* no token and anonymous access is off */
    PGC_TOKEN_MALFORMED,     /* not a JWT */
    PGC_TOKEN_ALG_NONE,      /* alg "none" */
    PGC_TOKEN_WRONG_ALG,     /* another algorithm than the configured one */
    PGC_TOKEN_BAD_SIGNATURE,
    PGC_TOKEN_EXPIRED,
    PGC_TOKEN_NO_EXP,        /* exp required by the config */
    PGC_TOKEN_NO_TENANT,
    PGC_TOKEN_BAD_CLAIMS,    /* claims of the wrong JSON type, or exp/nbf/iat out of range */
    PGC_TOKEN_NOT_YET_VALID, /* nbf later than now + jwt_nbf_leeway_s */
    PGC_TOKEN_BAD_TENANT,    /* a tenant longer than PGC_TENANT_MAX bytes */
} pgc_token_status;

/* A tenant is 1 to PGC_TENANT_MAX bytes of text. */
#define PGC_TENANT_MAX 200

typedef struct pgc_token {
    char *sub;      /* may be NULL */
    char *tenant;   /* never NULL when verified */
    char *name;     /* may be NULL */
    int64_t exp;    /* seconds since the epoch; 0 = none */
    char **channels; size_t n_channels; /* subscribe patterns */
    char **publish;  size_t n_publish;  /* publish patterns */
    bool anonymous;
} pgc_token;

typedef struct pgc_verifier pgc_verifier;

/* Reads the key (secret or public-key file) once. NULL with err on a bad config. */
/* First thing in a program, before any thread uses OpenSSL (libjwt, libpq, the hub's
 * tags): OpenSSL is not torn down at exit. Its atexit cleanup would delete the per-thread
 * destructor while detached threads (hub, loop, workers) may still end, leaving their
 * error state unfreed. Returns 0, or -1 with the reason logged. */
int pgc_crypto_init(void);
pgc_verifier *pgc_verifier_new(const pgc_config *cfg, char *err, size_t errlen);
void pgc_verifier_free(pgc_verifier *v);

/* jwt NULL or "": the anonymous token when the config allows it, else MISSING.
 * now: seconds since the epoch. On OK, *out must be freed with pgc_token_free. */
pgc_token_status pgc_token_verify(const pgc_verifier *v, const char *jwt, int64_t now, pgc_token *out);
/* A short reason for logs and error bodies ("token expired", ...). */
const char *pgc_token_status_str(pgc_token_status s);
void pgc_token_free(pgc_token *t);

bool pgc_token_can_subscribe(const pgc_token *t, const char *channel);
bool pgc_token_can_publish(const pgc_token *t, const char *channel);

/* Finds the token of a request: "Authorization: Bearer X", else ?token=X (already
 * URL-decoded by the caller), else the cookie named cookie_name in the Cookie header.
 * Any argument may be NULL. Returns a malloc'd copy or NULL when there is none. */
char *pgc_token_from_request(const char *authorization, const char *query_token,
                             const char *cookie_header, const char *cookie_name);

#endif
