/* Configuration: defaults, the file, environment overrides, clear errors. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "config.h"
#include "log.h"
#include "t.h"

static char path[256];

static int load_text(const char *text, pgc_config *cfg, char *err, size_t errlen)
{
    FILE *f = fopen(path, "w");
    if (!f || fputs(text, f) < 0 || fclose(f) != 0)
        return -2;
    return pgc_config_load(cfg, path, err, errlen);
}

int main(void)
{
    snprintf(path, sizeof(path), "%s/pgcast-test-%d.conf", getenv("PGCAST_TEST_WORK") ? getenv("PGCAST_TEST_WORK") : "/tmp",
             (int)getpid());
    unsetenv("PGCAST_CONFIG");
    pgc_config cfg;
    char err[512];
    T_INT(pgc_config_load(&cfg, NULL, err, sizeof(err)), 0, "defaults load without a file");
    T_INT(cfg.max_channels, 50, "max_channels defaults to 50");
    T_INT(cfg.max_message_bytes, (1 << 20) + (64 << 10), "max_message_bytes defaults to 1 MiB + 64 KiB");
    T_INT(cfg.max_payload_bytes, 1 << 20, "max_payload_bytes defaults to 1 MiB");
    T_INT(cfg.client_rate, 100, "client_rate defaults to 100/s");
    T_INT(cfg.poll_max_wait_s, 25, "poll wait cap defaults to 25 s");
    T_OK(cfg.jwt_require_exp && !cfg.anonymous, "exp required, anonymous off by default");
    T_STR(cfg.jwt_alg, "HS256", "HS256 by default");
    pgc_config_free(&cfg);

    T_INT(load_text("# comment\n\nmax_channels = 10\njwt_secret = \"abc def\"\nmax_message_bytes = 64KiB\n"
                    "anonymous = on\nlog_level = debug\n",
                    &cfg, err, sizeof(err)),
          0, "a file loads");
    T_INT(cfg.max_channels, 10, "int from the file");
    T_STR(cfg.jwt_secret, "abc def", "quoted string from the file");
    T_INT(cfg.max_message_bytes, 65536, "size with a unit");
    T_OK(cfg.anonymous, "bool from the file");
    T_INT(cfg.log_level, PGC_LOG_DEBUG, "log level from the file");
    pgc_config_free(&cfg);

    setenv("PGCAST_MAX_CHANNELS", "7", 1);
    setenv("PGCAST_DATABASE_URL", "host=/tmp dbname=x", 1);
    T_INT(load_text("max_channels = 10\n", &cfg, err, sizeof(err)), 0, "file plus environment");
    T_INT(cfg.max_channels, 7, "the environment wins over the file");
    T_STR(cfg.database_url, "host=/tmp dbname=x", "PGCAST_DATABASE_URL");
    pgc_config_free(&cfg);
    unsetenv("PGCAST_MAX_CHANNELS");
    unsetenv("PGCAST_DATABASE_URL");

    setenv("PGCAST_CONFIG", path, 1);
    T_INT(load_text("max_channels = 3\n", &cfg, err, sizeof(err)), 0, "PGCAST_CONFIG names the file");
    pgc_config_free(&cfg);
    T_INT(pgc_config_load(&cfg, NULL, err, sizeof(err)), 0, "loaded through PGCAST_CONFIG");
    T_INT(cfg.max_channels, 3, "value from the PGCAST_CONFIG file");
    pgc_config_free(&cfg);
    unsetenv("PGCAST_CONFIG");

    /* Apache hands SetEnv values to a rewritten request as REDIRECT_*; mod_fcgid hands
     * none, so pgcast.conf next to the program is found; PGCAST_CONFIG set and empty
     * means no file at all. */
    setenv("REDIRECT_PGCAST_CONFIG", path, 1);
    T_INT(pgc_config_load(&cfg, NULL, err, sizeof(err)), 0, "loaded through REDIRECT_PGCAST_CONFIG");
    T_INT(cfg.max_channels, 3, "value from the REDIRECT_PGCAST_CONFIG file");
    pgc_config_free(&cfg);
    setenv("PGCAST_CONFIG", "", 1);
    T_INT(pgc_config_load(&cfg, NULL, err, sizeof(err)), 0, "PGCAST_CONFIG empty loads no file");
    T_INT(cfg.max_channels, 50, "defaults when PGCAST_CONFIG is empty");
    pgc_config_free(&cfg);
    unsetenv("PGCAST_CONFIG");
    unsetenv("REDIRECT_PGCAST_CONFIG");
    char exe[4096], found[4096];
    ssize_t n = readlink("/proc/self/exe", exe, sizeof(exe) - 1);
    T_OK(n > 0, "own path read");
    if (n > 0) {
        exe[n] = '\0';
        *strrchr(exe, '/') = '\0';
        char beside[4200];
        snprintf(beside, sizeof(beside), "%s/pgcast.conf", exe);
        FILE *f = fopen(beside, "w");
        T_OK(f && fputs("max_channels = 4\n", f) >= 0 && fclose(f) == 0, "pgcast.conf written next to the program");
        const char *p = pgc_config_find(found, sizeof(found));
        T_STR(p ? p : "(none)", beside, "pgcast.conf next to the program is found");
        T_INT(pgc_config_load(&cfg, NULL, err, sizeof(err)), 0, "loaded from next to the program");
        T_INT(cfg.max_channels, 4, "value from the file next to the program");
        pgc_config_free(&cfg);
        unlink(beside);
    }

    struct {
        const char *text, *want;
    } bad[] = {
        {"max_chanels = 3\n", "unknown key 'max_chanels'"},
        {"max_channels = many\n", "max_channels must be an integer"},
        {"max_channels = 0\n", "max_channels must be between"},
        {"max_channels = 5x\n", "max_channels must be an integer"},
        {"anonymous = maybe\n", "anonymous must be true or false"},
        {"jwt_alg = none\n", "jwt_alg must be HS256, RS256 or ES256"},
        {"log_level = loud\n", "log_level must be"},
        {"queue_bytes = 12 parsecs\n", "queue_bytes must be a size"},
        {"just some words\n", "expected 'key = value'"},
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(*bad); i++) {
        int rc = load_text(bad[i].text, &cfg, err, sizeof(err));
        T_OK(rc == -1 && strstr(err, bad[i].want) && strstr(err, ":1"), "refused with file:line and reason: %s", err);
    }
    setenv("PGCAST_CLIENT_RATE", "-5", 1);
    T_INT(pgc_config_load(&cfg, NULL, err, sizeof(err)), -1, "a bad environment value is refused");
    T_OK(strstr(err, "PGCAST_CLIENT_RATE") != NULL, "naming the variable: %s", err);
    unsetenv("PGCAST_CLIENT_RATE");
    T_INT(pgc_config_load(&cfg, "/nonexistent/pgcast.conf", err, sizeof(err)), -1, "a missing file is an error");
    unlink(path);
    return T_DONE();
}
