/* A few TAP macros for pgcast's C unit tests (tests/run.sh counts the lines). */
#ifndef PGCAST_TEST_T_H
#define PGCAST_TEST_T_H

#include <inttypes.h>
#include <stdio.h>
#include <string.h>

static int t_n, t_failed;

#define T_OK(cond, ...)                                                                      \
    do {                                                                                     \
        t_n++;                                                                               \
        if (cond) {                                                                          \
            printf("ok %d - ", t_n);                                                         \
        } else {                                                                             \
            t_failed++;                                                                      \
            printf("not ok %d - ", t_n);                                                     \
        }                                                                                    \
        printf(__VA_ARGS__);                                                                 \
        printf("\n");                                                                        \
        if (!(cond))                                                                         \
            printf("#   at %s:%d: %s\n", __FILE__, __LINE__, #cond);                         \
    } while (0)

#define T_STR(got, want, ...)                                                                \
    do {                                                                                     \
        const char *t_g = (got), *t_w = (want);                                              \
        int t_eq = (t_g && t_w) ? strcmp(t_g, t_w) == 0 : t_g == t_w;                        \
        T_OK(t_eq, __VA_ARGS__);                                                             \
        if (!t_eq)                                                                           \
            printf("#   got:  %s\n#   want: %s\n", t_g ? t_g : "(null)", t_w ? t_w : "(null)"); \
    } while (0)

#define T_INT(got, want, ...)                                                                \
    do {                                                                                     \
        long long t_g = (long long)(got), t_w = (long long)(want);                           \
        T_OK(t_g == t_w, __VA_ARGS__);                                                       \
        if (t_g != t_w)                                                                      \
            printf("#   got:  %lld\n#   want: %lld\n", t_g, t_w);                            \
    } while (0)

#define T_DONE() (t_failed ? 1 : 0)

#endif
