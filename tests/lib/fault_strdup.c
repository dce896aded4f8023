/* Fault injection for tests, loaded with LD_PRELOAD:
 *   PGCAST_FAIL_STRDUP="TEXT=N[,TEXT=N...]"
 * makes the N-th strdup() of exactly TEXT return NULL (errno ENOMEM), counting only the
 * calls of the thread that made the first copy of TEXT (in pgcast-ws, the thread that
 * parses the client's message), so copies made by other threads do not shift the count.
 * Build: cc -shared -fPIC -o fault_strdup.so fault_strdup.c -ldl */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_RULES 8

static struct rule {
    char text[256];
    int fail_at, count;
    bool has_thread;
    pthread_t thread;
} rules[MAX_RULES];
static int nrules = -1;
static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;

static void load(void)
{
    nrules = 0;
    const char *spec = getenv("PGCAST_FAIL_STRDUP");
    while (spec && *spec && nrules < MAX_RULES) {
        const char *end = strchr(spec, ',');
        size_t len = end ? (size_t)(end - spec) : strlen(spec);
        const char *eq = memchr(spec, '=', len);
        if (eq && (size_t)(eq - spec) < sizeof(rules[0].text)) {
            struct rule *r = &rules[nrules++];
            memcpy(r->text, spec, (size_t)(eq - spec));
            r->text[eq - spec] = 0;
            r->fail_at = atoi(eq + 1);
        }
        spec = end ? end + 1 : NULL;
    }
}

char *strdup(const char *s)
{
    static char *(*real)(const char *);
    if (!real)
        real = (char *(*)(const char *))dlsym(RTLD_NEXT, "strdup");
    bool fail = false;
    pthread_mutex_lock(&mu);
    if (nrules < 0)
        load();
    for (int i = 0; i < nrules; i++) {
        struct rule *r = &rules[i];
        if (strcmp(r->text, s) != 0)
            continue;
        if (!r->has_thread) {
            r->has_thread = true;
            r->thread = pthread_self();
        }
        if (pthread_equal(r->thread, pthread_self()) && ++r->count == r->fail_at) {
            fail = true;
            fprintf(stderr, "fault_strdup: copy %d of \"%s\" fails\n", r->count, s);
        }
    }
    pthread_mutex_unlock(&mu);
    if (fail) {
        errno = ENOMEM;
        return NULL;
    }
    return real(s);
}
