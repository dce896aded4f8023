/* Verified tokens remembered by their exact text.
 *
 * A polling client sends the same token with every request, and verifying it (base64,
 * two JSON parses, the signature) was a third of what this process spent on a 304. The
 * verdict depends only on the token's bytes, the key (read once at start) and the
 * time, so an accepted token is kept, whole text compared, and reused while its exp is
 * in the future; a refused one is verified again each time (and answered by
 * pgc_app_authenticate, so the 401s stay what they are). Direct-mapped: a slot taken by
 * another token is simply replaced. */
#include <inttypes.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "strutil.h"
#include "poll.h"

#define SLOTS 4096
#define MAX_TOKEN_BYTES 4096 /* longer tokens are verified every time */

struct slot {
    char *text;
    pgc_token tok;
};

static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static struct slot *slots[SLOTS];


static char **dup_list(char **v, size_t n, bool *oom)
{
    if (!n)
        return NULL;
    char **d = calloc(n, sizeof(*d));
    if (!d) {
        *oom = true;
        return NULL;
    }
    for (size_t i = 0; i < n; i++)
        d[i] = pgc_strdup_opt(v[i], oom);
    return d;
}

/* A deep copy; -1 (nothing to free) when memory ran out. */
static int token_copy(pgc_token *dst, const pgc_token *src)
{
    bool oom = false;
    *dst = *src;
    dst->sub = pgc_strdup_opt(src->sub, &oom);
    dst->tenant = pgc_strdup_opt(src->tenant, &oom);
    dst->name = pgc_strdup_opt(src->name, &oom);
    dst->channels = dup_list(src->channels, src->n_channels, &oom);
    dst->publish = dup_list(src->publish, src->n_publish, &oom);
    if (!dst->channels)
        dst->n_channels = 0;
    if (!dst->publish)
        dst->n_publish = 0;
    if (oom) {
        pgc_token_free(dst);
        return -1;
    }
    return 0;
}

static void slot_free(struct slot *s)
{
    if (!s)
        return;
    free(s->text);
    pgc_token_free(&s->tok);
    free(s);
}

static size_t slot_of(const char *text)
{
    uint64_t h = 1469598103934665603ULL;
    for (const char *p = text; *p; p++)
        h = (h ^ (unsigned char)*p) * 1099511628211ULL;
    return (size_t)(h % SLOTS);
}

int poll_authenticate(pgc_app *app, pgc_request *r, pgc_token *out)
{
    char *qtok = pgc_query_get(pgc_req_param(r, "QUERY_STRING"), "token");
    char *text = pgc_token_from_request(pgc_req_param(r, "HTTP_AUTHORIZATION"), qtok,
                                        pgc_req_param(r, "HTTP_COOKIE"), app->cfg.token_cookie);
    free(qtok);
    if (!text || !*text || strlen(text) > MAX_TOKEN_BYTES) {
        free(text);
        return pgc_app_authenticate(app, r, out); /* anonymous, missing, or too long to keep */
    }
    size_t i = slot_of(text);
    int64_t now = (int64_t)time(NULL);
    int hit = -1;
    pthread_mutex_lock(&mu);
    struct slot *s = slots[i];
    if (s && strcmp(s->text, text) == 0 && (s->tok.exp == 0 || s->tok.exp > now))
        hit = token_copy(out, &s->tok);
    pthread_mutex_unlock(&mu);
    if (hit == 0) {
        free(text);
        return 0;
    }
    if (pgc_app_authenticate(app, r, out) != 0) {
        free(text);
        return -1;
    }
    struct slot *fresh = calloc(1, sizeof(*fresh));
    if (fresh && token_copy(&fresh->tok, out) == 0) {
        fresh->text = text;
        pthread_mutex_lock(&mu);
        struct slot *old = slots[i];
        slots[i] = fresh;
        pthread_mutex_unlock(&mu);
        slot_free(old);
    } else {
        free(fresh); /* not kept: verified again next time */
        free(text);
    }
    return 0;
}
