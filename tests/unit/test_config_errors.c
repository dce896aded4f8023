/* Configuration: every default, file syntax, environment overrides, and refusals that name
 * the key and file:line. */
#include <stdlib.h>
#include <unistd.h>

#include "config.h"
#include "log.h"
#include "t.h"

static char dir[512];

static const char *write_conf(const char *name, const char *text)
{
    static char path[600];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    FILE *f = fopen(path, "w");
    if (!f || fputs(text, f) < 0 || fclose(f) != 0) {
        perror(path);
        exit(2);
    }
    return path;
}

/* Loads text as a file; returns the rc, err filled. */
static int load_text(const char *text, pgc_config *cfg, char *err, size_t errlen)
{
    int rc = pgc_config_load(cfg, write_conf("t.conf", text), err, errlen);
    return rc;
}

int main(void)
{
    const char *work = getenv("PGCAST_TEST_WORK");
    snprintf(dir, sizeof dir, "%s/pgcast-config-XXXXXX", work && *work ? work : "/tmp");
    if (!mkdtemp(dir)) {
        perror("mkdtemp");
        return 2;
    }
    unsetenv("PGCAST_CONFIG");
    /* Variables the environment of the run might set would change what is tested. */
    static const char *vars[] = {"PGCAST_DATABASE_URL", "PGCAST_JWT_ALG", "PGCAST_JWT_SECRET",
                                 "PGCAST_LOG_LEVEL", "PGCAST_ANONYMOUS", "PGCAST_HTTP_PORT",
                                 "PGCAST_WS_PORT", "PGCAST_JWT_PUBLIC_KEY", "PGCAST_MAX_CHANNELS"};
    for (size_t i = 0; i < sizeof vars / sizeof *vars; i++)
        unsetenv(vars[i]);

    pgc_config cfg;
    char err[512];

    T_INT(pgc_config_load(&cfg, NULL, err, sizeof err), 0, "defaults load without a file");
    T_STR(cfg.jwt_alg, "HS256", "default alg");
    T_STR(cfg.database_url, "", "default database_url");
    T_OK(cfg.jwt_require_exp, "exp required by default");
    T_OK(!cfg.anonymous, "anonymous off by default");
    T_STR(cfg.anonymous_tenant, "anonymous", "default anonymous tenant");
    T_STR(cfg.anonymous_channels, "public:*", "default anonymous channels");
    T_STR(cfg.token_cookie, "pgcast_token", "default cookie");
    T_INT(cfg.max_channels, 50, "default max_channels");
    T_INT(cfg.max_message_bytes, 1048576 + 65536, "default max_message_bytes");
    T_INT(cfg.max_payload_bytes, 1048576, "default max_payload_bytes");
    T_INT(cfg.client_rate, 100, "default client_rate");
    T_INT(cfg.queue_events, 1024, "default queue_events");
    T_INT(cfg.queue_bytes, 8 << 20, "default queue_bytes");
    T_INT(cfg.retention_max_age_s, 7 * 86400, "default retention");
    T_INT(cfg.log_level, PGC_LOG_INFO, "default log level");
    T_STR(cfg.ws_listen, "127.0.0.1:8081", "default ws_listen");
    T_INT(cfg.http_port, 8080, "default http_port");
    T_INT(cfg.ws_port, 8081, "default ws_port");
    pgc_config_free(&cfg);

    /* The example file documents every key with its default: loading it changes nothing. */
    {
        const char *root = getenv("PGCAST_ROOT");
        char ex[600];
        snprintf(ex, sizeof ex, "%s/pgcast.conf.example", root && *root ? root : ".");
        T_INT(pgc_config_load(&cfg, ex, err, sizeof err), 0, "pgcast.conf.example loads: %s", err);
        T_INT(cfg.max_message_bytes, 1048576 + 65536, "example: max_message_bytes");
        T_INT(cfg.max_payload_bytes, 1048576, "example: max_payload_bytes");
        T_INT(cfg.queue_bytes, 8 << 20, "example: queue_bytes");
        pgc_config_free(&cfg);
    }

    T_INT(load_text("# comment\n\n  database_url = host=/tmp dbname=x  \n"
                    "jwt_alg=RS256\njwt_public_key = /k.pem\nanonymous = yes\n"
                    "max_message_bytes = 2KiB\nqueue_bytes = 3M\nlog_level = debug\n"
                    "max_channels = 7\njwt_secret = a=b # not a comment\n",
                    &cfg, err, sizeof err),
          0, "file loads: %s", err);
    T_STR(cfg.database_url, "host=/tmp dbname=x", "value with spaces, trimmed");
    T_STR(cfg.jwt_alg, "RS256", "alg from file");
    T_STR(cfg.jwt_public_key, "/k.pem", "public key path");
    T_OK(cfg.anonymous, "bool yes");
    T_INT(cfg.max_message_bytes, 2048, "2KiB");
    T_INT(cfg.queue_bytes, 3 << 20, "3M");
    T_INT(cfg.log_level, PGC_LOG_DEBUG, "log level debug");
    T_INT(cfg.max_channels, 7, "max_channels");
    T_STR(cfg.jwt_secret, "a=b # not a comment", "everything after the first '=' is the value");
    pgc_config_free(&cfg);

    /* Environment overrides the file. */
    setenv("PGCAST_MAX_CHANNELS", "9", 1);
    setenv("PGCAST_JWT_ALG", "ES256", 1);
    setenv("PGCAST_ANONYMOUS", "off", 1);
    setenv("PGCAST_HTTP_PORT", "18080", 1);
    setenv("PGCAST_WS_PORT", "18081", 1);
    setenv("PGCAST_DATABASE_URL", "postgresql://u@h/db", 1);
    setenv("PGCAST_JWT_SECRET", "s3cret", 1);
    setenv("PGCAST_LOG_LEVEL", "warn", 1);
    const char *p = write_conf("env.conf", "max_channels = 7\nanonymous = on\njwt_alg = HS256\n");
    setenv("PGCAST_CONFIG", p, 1);
    T_INT(pgc_config_load(&cfg, NULL, err, sizeof err), 0, "PGCAST_CONFIG names the file: %s", err);
    T_INT(cfg.max_channels, 9, "env overrides int");
    T_STR(cfg.jwt_alg, "ES256", "env overrides alg");
    T_OK(!cfg.anonymous, "env overrides bool");
    T_INT(cfg.http_port, 18080, "PGCAST_HTTP_PORT");
    T_INT(cfg.ws_port, 18081, "PGCAST_WS_PORT");
    T_STR(cfg.database_url, "postgresql://u@h/db", "PGCAST_DATABASE_URL");
    T_STR(cfg.jwt_secret, "s3cret", "PGCAST_JWT_SECRET");
    T_INT(cfg.log_level, PGC_LOG_WARN, "PGCAST_LOG_LEVEL");
    pgc_config_free(&cfg);
    setenv("PGCAST_MAX_CHANNELS", "lots", 1);
    T_INT(pgc_config_load(&cfg, NULL, err, sizeof err), -1, "bad env value refused");
    T_OK(strstr(err, "PGCAST_MAX_CHANNELS") && strstr(err, "max_channels"),
         "message names the variable: %s", err);
    for (size_t i = 0; i < sizeof vars / sizeof *vars; i++)
        unsetenv(vars[i]);
    unsetenv("PGCAST_CONFIG");

    struct { const char *text, *want; } bad[] = {
        {"bogus = 1\n", "t.conf:1: unknown key"},
        {"\n# x\nmax_channels = abc\n", "t.conf:3: max_channels"},
        {"max_channels = 0\n", "t.conf:1: max_channels"},
        {"max_channels = 10001\n", "max_channels"},
        {"max_channels = -5\n", "max_channels"},
        {"max_channels = 5x\n", "max_channels"},
        {"max_channels = \n", "max_channels"},
        {"max_channels = 99999999999999999999999\n", "max_channels"},
        {"anonymous = maybe\n", "anonymous"},
        {"jwt_alg = none\n", "jwt_alg"},
        {"jwt_alg = HS512\n", "jwt_alg"},
        {"log_level = loud\n", "log_level"},
        {"max_message_bytes = 1TiB\n", "max_message_bytes"},
        {"max_message_bytes = 2GiB\n", "max_message_bytes"},
        {"http_port = 70000\n", "http_port"},
        {"just words\n", "t.conf:1: expected"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        err[0] = '\0';
        T_INT(load_text(bad[i].text, &cfg, err, sizeof err), -1, "refused: bad[%zu]", i);
        T_OK(strstr(err, bad[i].want) != NULL, "message has \"%s\": %s", bad[i].want, err);
        pgc_config_free(&cfg);
    }
    T_INT(pgc_config_load(&cfg, "/nonexistent/pgcast.conf", err, sizeof err), -1, "missing file");
    T_OK(strstr(err, "/nonexistent/pgcast.conf") != NULL, "message names the file: %s", err);
    pgc_config_free(&cfg); /* safe after an error */

    char path[700];
    snprintf(path, sizeof path, "%s/t.conf", dir);
    unlink(path);
    snprintf(path, sizeof path, "%s/env.conf", dir);
    unlink(path);
    if (rmdir(dir) != 0)
        perror("rmdir");
    printf("1..%d\n", t_n);
    return T_DONE();
}
