/* Tokens, more cases: claims of every wrong type, wrong keys and algorithms for each alg,
 * alg none spellings, malformed inputs, anonymous patterns, where a request's token comes from. */
#include <jwt.h>
#include <openssl/evp.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>

#include "config.h"
#include "t.h"
#include "token.h"

#define NOW 1700000000LL

static char dir[512];

static void sh(const char *cmd)
{
    int rc = system(cmd);
    if (rc == -1 || !WIFEXITED(rc) || WEXITSTATUS(rc) != 0) {
        fprintf(stderr, "command failed: %s\n", cmd);
        exit(2);
    }
}

static char *slurp(const char *name, size_t *len)
{
    char path[700];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    FILE *f = fopen(path, "rb");
    if (!f)
        exit(2);
    char *buf = calloc(1, 65536);
    *len = buf ? fread(buf, 1, 65535, f) : 0;
    fclose(f);
    if (!*len)
        exit(2);
    return buf;
}

/* A token signed by libjwt with alg and key over the claims JSON. */
static char *sign(jwt_alg_t alg, const char *key, size_t keylen, const char *claims)
{
    jwt_t *j = NULL;
    if (jwt_new(&j) != 0 || jwt_add_grants_json(j, claims) != 0 ||
        jwt_set_alg(j, alg, (const unsigned char *)key, (int)keylen) != 0) {
        fprintf(stderr, "cannot build a token\n");
        exit(2);
    }
    char *s = jwt_encode_str(j);
    jwt_free(j);
    if (!s)
        exit(2);
    return s;
}

static char *b64url(const char *s)
{
    size_t n = strlen(s);
    char *out = calloc(1, 4 * ((n + 2) / 3) + 1);
    if (!out)
        exit(2);
    int m = EVP_EncodeBlock((unsigned char *)out, (const unsigned char *)s, (int)n);
    while (m > 0 && out[m - 1] == '=')
        out[--m] = '\0';
    for (int i = 0; i < m; i++)
        out[i] = out[i] == '+' ? '-' : out[i] == '/' ? '_' : out[i];
    return out;
}

/* header.payload.sig built by hand (for alg none and broken tokens). */
static char *hand_token(const char *header, const char *payload, const char *sig)
{
    char *h = b64url(header), *p = b64url(payload);
    size_t n = strlen(h) + strlen(p) + strlen(sig) + 3;
    char *t = malloc(n);
    if (!t)
        exit(2);
    snprintf(t, n, "%s.%s.%s", h, p, sig);
    free(h);
    free(p);
    return t;
}

static pgc_token_status verify(const pgc_verifier *v, const char *jwt, pgc_token *tok)
{
    pgc_token t;
    pgc_token_status st = pgc_token_verify(v, jwt, NOW, tok ? tok : &t);
    if (!tok && st == PGC_TOKEN_OK)
        pgc_token_free(&t);
    return st;
}

static pgc_verifier *make_verifier(const char *alg, const char *secret, const char *pubfile,
                                   bool anonymous)
{
    pgc_config cfg;
    char err[256], path[700];
    if (pgc_config_load(&cfg, NULL, err, sizeof err) != 0)
        exit(2);
    free(cfg.jwt_alg);
    cfg.jwt_alg = strdup(alg);
    free(cfg.jwt_secret);
    cfg.jwt_secret = strdup(secret ? secret : "");
    free(cfg.jwt_public_key);
    snprintf(path, sizeof path, "%s/%s", dir, pubfile ? pubfile : "");
    cfg.jwt_public_key = strdup(pubfile ? path : "");
    cfg.anonymous = anonymous;
    free(cfg.anonymous_channels);
    cfg.anonymous_channels = strdup(" public:* , demo:{sub},");
    pgc_verifier *v = pgc_verifier_new(&cfg, err, sizeof err);
    if (!v)
        printf("# verifier: %s\n", err);
    pgc_config_free(&cfg);
    return v;
}

static const char *CLAIMS = "{\"sub\":\"u1\",\"tenant\":\"acme\",\"exp\":1700000100,\"name\":\"Ann\","
                            "\"channels\":[\"project:*\",\"user:{sub}\"],\"publish\":[\"chat:{sub}:*\"]}";

static void check_valid(const char *label, pgc_verifier *v, const char *jwt)
{
    pgc_token t;
    pgc_token_status st = pgc_token_verify(v, jwt, NOW, &t);
    T_INT(st, PGC_TOKEN_OK, "%s: valid token accepted (%s)", label, pgc_token_status_str(st));
    if (st != PGC_TOKEN_OK)
        return;
    T_STR(t.sub, "u1", "%s: sub", label);
    T_STR(t.tenant, "acme", "%s: tenant", label);
    T_STR(t.name, "Ann", "%s: name", label);
    T_INT(t.exp, 1700000100, "%s: exp", label);
    T_INT(t.n_channels, 2, "%s: channels", label);
    T_INT(t.n_publish, 1, "%s: publish", label);
    T_OK(!t.anonymous, "%s: not anonymous", label);
    T_OK(pgc_token_can_subscribe(&t, "project:abc"), "%s: project:* subscribes project:abc", label);
    T_OK(pgc_token_can_subscribe(&t, "user:u1"), "%s: user:{sub} subscribes user:u1", label);
    T_OK(!pgc_token_can_subscribe(&t, "user:u2"), "%s: but not user:u2", label);
    T_OK(!pgc_token_can_subscribe(&t, "chat:u1:x"), "%s: publish patterns do not subscribe", label);
    T_OK(pgc_token_can_publish(&t, "chat:u1:room"), "%s: chat:{sub}:* publishes", label);
    T_OK(!pgc_token_can_publish(&t, "chat:u2:room"), "%s: not another sub's", label);
    T_OK(!pgc_token_can_publish(&t, "project:abc"), "%s: subscribe patterns do not publish", label);
    pgc_token_free(&t);
}

int main(void)
{
    const char *work = getenv("PGCAST_TEST_WORK");
    snprintf(dir, sizeof dir, "%s/pgcast-token-XXXXXX", work && *work ? work : "/tmp");
    if (!mkdtemp(dir))
        return 2;
    for (const char *const *e = (const char *const[]){"PGCAST_CONFIG", "PGCAST_JWT_ALG",
             "PGCAST_JWT_SECRET", "PGCAST_JWT_PUBLIC_KEY", "PGCAST_ANONYMOUS",
             "PGCAST_JWT_REQUIRE_EXP", "PGCAST_ANONYMOUS_CHANNELS", NULL}; *e; e++)
        unsetenv(*e);

    char cmd[4096];
    snprintf(cmd, sizeof cmd,
             "cd '%s' && openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out rsa.pem 2>/dev/null"
             " && openssl pkey -in rsa.pem -pubout -out rsa.pub"
             " && openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out rsa2.pem 2>/dev/null"
             " && openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out ec.pem"
             " && openssl pkey -in ec.pem -pubout -out ec.pub"
             " && openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out ec2.pem",
             dir);
    sh(cmd);
    size_t rsa_len, rsa2_len, ec_len, ec2_len, rsapub_len;
    char *rsa = slurp("rsa.pem", &rsa_len), *rsa2 = slurp("rsa2.pem", &rsa2_len);
    char *ec = slurp("ec.pem", &ec_len), *ec2 = slurp("ec2.pem", &ec2_len);
    char *rsapub = slurp("rsa.pub", &rsapub_len);
    const char *secret = "0123456789abcdef0123456789abcdef";

    pgc_verifier *hs = make_verifier("HS256", secret, NULL, false);
    pgc_verifier *rs = make_verifier("RS256", NULL, "rsa.pub", false);
    pgc_verifier *es = make_verifier("ES256", NULL, "ec.pub", false);
    T_OK(hs && rs && es, "verifiers built");
    if (!hs || !rs || !es)
        return 1;

    /* Valid tokens, each algorithm. */
    char *t_hs = sign(JWT_ALG_HS256, secret, strlen(secret), CLAIMS);
    char *t_rs = sign(JWT_ALG_RS256, rsa, rsa_len, CLAIMS);
    char *t_es = sign(JWT_ALG_ES256, ec, ec_len, CLAIMS);
    check_valid("HS256", hs, t_hs);
    check_valid("RS256", rs, t_rs);
    check_valid("ES256", es, t_es);

    /* Wrong key: bad signature. */
    char *t;
    t = sign(JWT_ALG_HS256, "another secret", 14, CLAIMS);
    T_INT(verify(hs, t, NULL), PGC_TOKEN_BAD_SIGNATURE, "HS256 with another secret");
    free(t);
    t = sign(JWT_ALG_RS256, rsa2, rsa2_len, CLAIMS);
    T_INT(verify(rs, t, NULL), PGC_TOKEN_BAD_SIGNATURE, "RS256 with another key");
    free(t);
    t = sign(JWT_ALG_ES256, ec2, ec2_len, CLAIMS);
    T_INT(verify(es, t, NULL), PGC_TOKEN_BAD_SIGNATURE, "ES256 with another key");
    free(t);
    /* Tampered payload, signature kept. */
    {
        char *tam = strdup(t_hs);
        char *dot = strchr(tam, '.');
        dot[3] = dot[3] == 'A' ? 'B' : 'A';
        pgc_token_status st = verify(hs, tam, NULL);
        T_OK(st == PGC_TOKEN_BAD_SIGNATURE || st == PGC_TOKEN_MALFORMED,
             "tampered payload refused (%s)", pgc_token_status_str(st));
        free(tam);
        tam = strdup(t_hs);
        *strrchr(tam, '.') = '\0';
        T_INT(verify(hs, tam, NULL), PGC_TOKEN_MALFORMED, "two segments");
        strcat(tam, ".");
        T_INT(verify(hs, tam, NULL), PGC_TOKEN_BAD_SIGNATURE, "empty signature");
        free(tam);
    }

    /* Wrong algorithm: a token of another alg, and the RS256 public key used as HMAC secret. */
    T_INT(verify(hs, t_rs, NULL), PGC_TOKEN_WRONG_ALG, "RS256 token to an HS256 verifier");
    T_INT(verify(rs, t_es, NULL), PGC_TOKEN_WRONG_ALG, "ES256 token to an RS256 verifier");
    T_INT(verify(es, t_hs, NULL), PGC_TOKEN_WRONG_ALG, "HS256 token to an ES256 verifier");
    t = sign(JWT_ALG_HS256, rsapub, rsapub_len, CLAIMS);
    T_INT(verify(rs, t, NULL), PGC_TOKEN_WRONG_ALG, "HS256 signed with the RSA public key (confusion)");
    free(t);
    t = sign(JWT_ALG_HS512, secret, strlen(secret), CLAIMS);
    T_INT(verify(hs, t, NULL), PGC_TOKEN_WRONG_ALG, "HS512 to an HS256 verifier");
    free(t);

    /* alg none, built by hand (libjwt would not be asked). */
    static const char *none_hdrs[] = {"{\"alg\":\"none\",\"typ\":\"JWT\"}", "{\"alg\":\"None\"}",
                                      "{\"alg\":\"NONE\"}"};
    for (size_t i = 0; i < 3; i++) {
        t = hand_token(none_hdrs[i], CLAIMS, "");
        T_INT(verify(hs, t, NULL), PGC_TOKEN_ALG_NONE, "alg none refused: %s", none_hdrs[i]);
        free(t);
        t = hand_token(none_hdrs[i], CLAIMS, "c2ln");
        T_INT(verify(rs, t, NULL), PGC_TOKEN_ALG_NONE, "alg none with a signature refused");
        free(t);
    }
    T_OK(strstr(pgc_token_status_str(PGC_TOKEN_ALG_NONE), "none") != NULL, "status text names none");

    /* Malformed. */
    static const char *junk[] = {"x", "a.b", "a.b.c.d", "..", "!!!.e30.sig", "e30.e30.sig",
                                 "eyJhbGciOjF9.e30.sig" /* alg: 1 */, "bnVsbA.e30.sig" /* null */};
    for (size_t i = 0; i < sizeof junk / sizeof *junk; i++)
        T_INT(verify(hs, junk[i], NULL), PGC_TOKEN_MALFORMED, "malformed: %s", junk[i]);
    {
        char *big = malloc(20000);
        memset(big, 'a', 19999);
        big[19999] = '\0';
        big[10] = big[20] = '.';
        T_INT(verify(hs, big, NULL), PGC_TOKEN_MALFORMED, "over 16 KiB");
        free(big);
    }

    /* Claims. */
    struct { const char *claims; pgc_token_status want; const char *what; } cl[] = {
        {"{\"sub\":\"u\",\"tenant\":\"acme\",\"exp\":1700000000}", PGC_TOKEN_EXPIRED, "exp == now"},
        {"{\"sub\":\"u\",\"tenant\":\"acme\",\"exp\":1600000000}", PGC_TOKEN_EXPIRED, "exp in the past"},
        {"{\"sub\":\"u\",\"tenant\":\"acme\"}", PGC_TOKEN_NO_EXP, "no exp"},
        {"{\"sub\":\"u\",\"tenant\":\"acme\",\"exp\":\"soon\"}", PGC_TOKEN_BAD_CLAIMS, "exp a string"},
        {"{\"sub\":\"u\",\"exp\":1700000100}", PGC_TOKEN_NO_TENANT, "no tenant"},
        {"{\"sub\":\"u\",\"tenant\":\"\",\"exp\":1700000100}", PGC_TOKEN_NO_TENANT, "empty tenant"},
        {"{\"sub\":\"u\",\"tenant\":5,\"exp\":1700000100}", PGC_TOKEN_BAD_CLAIMS, "tenant a number"},
        {"{\"sub\":7,\"tenant\":\"a\",\"exp\":1700000100}", PGC_TOKEN_BAD_CLAIMS, "sub a number"},
        {"{\"name\":[],\"tenant\":\"a\",\"exp\":1700000100}", PGC_TOKEN_BAD_CLAIMS, "name an array"},
        {"{\"tenant\":\"a\",\"exp\":1700000100,\"channels\":\"x:*\"}", PGC_TOKEN_BAD_CLAIMS, "channels a string"},
        {"{\"tenant\":\"a\",\"exp\":1700000100,\"channels\":[\"x\",1]}", PGC_TOKEN_BAD_CLAIMS, "channels with a number"},
        {"{\"tenant\":\"a\",\"exp\":1700000100,\"publish\":{}}", PGC_TOKEN_BAD_CLAIMS, "publish an object"},
        {"{\"tenant\":\"a\",\"exp\":1700000100,\"channels\":[]}", PGC_TOKEN_OK, "empty channels, no sub"},
        /* NumericDate claims: range-checked, so exp * 1000 never overflows; nbf honoured */
        {"{\"tenant\":\"a\",\"exp\":9300000000000000}", PGC_TOKEN_BAD_CLAIMS, "exp past year 9999 (9.3e15)"},
        {"{\"tenant\":\"a\",\"exp\":9223372036854775807}", PGC_TOKEN_BAD_CLAIMS, "exp INT64_MAX"},
        {"{\"tenant\":\"a\",\"exp\":1e300}", PGC_TOKEN_BAD_CLAIMS, "exp 1e300"},
        {"{\"tenant\":\"a\",\"exp\":-1}", PGC_TOKEN_BAD_CLAIMS, "exp negative"},
        {"{\"tenant\":\"a\",\"exp\":1700000100.5}", PGC_TOKEN_OK, "exp with a fraction"},
        {"{\"tenant\":\"a\",\"exp\":1700000100,\"nbf\":1700000010}", PGC_TOKEN_OK, "nbf within the 30 s leeway"},
        {"{\"tenant\":\"a\",\"exp\":1700000100,\"nbf\":1700000031}", PGC_TOKEN_NOT_YET_VALID, "nbf past the leeway"},
        {"{\"tenant\":\"a\",\"exp\":1700000100,\"nbf\":\"now\"}", PGC_TOKEN_BAD_CLAIMS, "nbf a string"},
        {"{\"tenant\":\"a\",\"exp\":1700000100,\"iat\":-5}", PGC_TOKEN_BAD_CLAIMS, "iat negative"},
    };
    for (size_t i = 0; i < sizeof cl / sizeof *cl; i++) {
        t = sign(JWT_ALG_HS256, secret, strlen(secret), cl[i].claims);
        pgc_token_status st = verify(hs, t, NULL);
        T_INT(st, cl[i].want, "claims: %s (%s)", cl[i].what, pgc_token_status_str(st));
        free(t);
    }
    {
        pgc_verifier *noexp = NULL;
        setenv("PGCAST_JWT_REQUIRE_EXP", "false", 1);
        noexp = make_verifier("HS256", secret, NULL, false);
        unsetenv("PGCAST_JWT_REQUIRE_EXP");
        t = sign(JWT_ALG_HS256, secret, strlen(secret), "{\"sub\":\"u\",\"tenant\":\"acme\"}");
        pgc_token tok;
        T_INT(verify(noexp, t, &tok), PGC_TOKEN_OK, "no exp accepted when not required");
        T_INT(tok.exp, 0, "exp 0 = none");
        T_OK(!pgc_token_can_subscribe(&tok, "anything"), "no channels claim: nothing allowed");
        pgc_token_free(&tok);
        free(t);
        pgc_verifier_free(noexp);
    }

    /* Missing token, anonymous access. */
    T_INT(verify(hs, NULL, NULL), PGC_TOKEN_MISSING, "NULL token without anonymous access");
    T_INT(verify(hs, "", NULL), PGC_TOKEN_MISSING, "empty token without anonymous access");
    {
        pgc_verifier *an = make_verifier("HS256", secret, NULL, true);
        pgc_token tok;
        T_INT(verify(an, "", &tok), PGC_TOKEN_OK, "anonymous token");
        T_OK(tok.anonymous, "marked anonymous");
        T_STR(tok.tenant, "anonymous", "anonymous tenant");
        T_INT(tok.n_channels, 2, "patterns split on commas, blanks dropped");
        T_OK(pgc_token_can_subscribe(&tok, "public:news"), "public:* allowed");
        T_OK(!pgc_token_can_subscribe(&tok, "demo:x"), "{sub} without a sub matches nothing");
        T_OK(!pgc_token_can_publish(&tok, "public:news"), "anonymous publishes nothing by default");
        pgc_token_free(&tok);
        T_INT(verify(an, "garbage", NULL), PGC_TOKEN_MALFORMED, "a bad token is not made anonymous");
        pgc_verifier_free(an);
    }

    /* Verifier configuration errors. */
    T_OK(make_verifier("HS256", "", NULL, false) == NULL, "HS256 without a secret refused");
    T_OK(make_verifier("RS256", NULL, NULL, false) == NULL, "RS256 without a key file refused");
    T_OK(make_verifier("ES256", NULL, "missing.pub", false) == NULL, "ES256 with a missing key file refused");
    T_OK(make_verifier("none", "x", NULL, false) == NULL, "alg none in the config refused");

    /* Where the token comes from. */
    struct { const char *auth, *query, *cookie, *want; } fr[] = {
        {"Bearer abc", "q", "pgcast_token=c", "abc"},
        {"bearer  abc ", NULL, NULL, "abc"},
        {"BEARER abc", NULL, NULL, "abc"},
        {"Bearer\tabc", "q", NULL, "q"}, /* RFC 6750: one or more SP */
        {"Basic dXNlcg==", "q", NULL, "q"},
        {"Bearer", "q", NULL, "q"},
        {"Bearer ", NULL, "pgcast_token=c", "c"},
        {"Bearerabc", NULL, NULL, NULL},
        {NULL, "", "a=1; pgcast_token=tok; b=2", "tok"},
        {NULL, NULL, "pgcast_token_x=no; pgcast_token=yes", "yes"},
        {NULL, NULL, "x_pgcast_token=no", NULL},
        {NULL, NULL, "pgcast_token=", NULL},
        {NULL, NULL, "pgcast_token", NULL},
        {NULL, NULL, NULL, NULL},
    };
    for (size_t i = 0; i < sizeof fr / sizeof *fr; i++) {
        char *got = pgc_token_from_request(fr[i].auth, fr[i].query, fr[i].cookie, "pgcast_token");
        T_STR(got, fr[i].want, "token_from_request case %zu", i);
        free(got);
    }
    {
        char *got = pgc_token_from_request(NULL, NULL, "pgcast_token=c", NULL);
        T_OK(got == NULL, "no cookie name: no cookie lookup");
        free(got);
    }

    free(t_hs);
    free(t_rs);
    free(t_es);
    free(rsa);
    free(rsa2);
    free(ec);
    free(ec2);
    free(rsapub);
    pgc_verifier_free(hs);
    pgc_verifier_free(rs);
    pgc_verifier_free(es);
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    sh(cmd);
    printf("1..%d\n", t_n);
    return T_DONE();
}
