/* Whether anything follows the cursors of the events requests in flight, answered for
 * many requests by one query.
 *
 * The database's share of a 304 was almost all the round trip (the lookup itself is one
 * index probe), so requests share them: each queues its question; the first to find no
 * query running takes everything queued, asks for all their positions at once
 * (realtime.positions_of), hands each its answer and wakes it, then wakes the first
 * request that queued meanwhile to lead the next batch. Each wakes once, on its own
 * condition variable (no broadcast herd on the one mutex). A lone request runs its
 * query at once, as before: no timer, no wait beyond a query already running.
 *
 * Freshness is unchanged: a batch's query starts after every request in it arrived, so
 * its snapshot holds everything committed before any of them reached this process. */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "pgarray.h"
#include "log.h"
#include "poll.h"

#define BATCH_CHANNELS 2048 /* channels per query, at most (a request's all go together) */
#define PENDING (-2)

/* On the asking thread's stack; written by a batch's leader only under mu, since its
 * owner may return (and the ask end) as soon as it sees its answer. */
struct ask {
    const char *tenant;
    const pgc_cursor *cur;
    int news; /* PENDING, then 1, 0 or -1 */
    bool unreachable;
    pthread_cond_t wake;
    struct ask *next;
};

static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static struct ask *queue, **queue_tail = &queue;
static bool running; /* a batch's query is in flight */

/* The answers for a batch of nasks asks, in order: news[i] 1, 0 or -1 (*unreachable
 * then says whether the database could not be reached). Called with mu not held; reads
 * the asks, which stay put until they are answered. */
static void run_batch(pgc_app *app, const struct ask *batch, size_t nasks, int *news, bool *unreachable)
{
    size_t n = 0, k = 0, j = 0;
    for (const struct ask *a = batch; a; a = a->next)
        n += a->cur->n;
    for (j = 0; j < nasks; j++)
        news[j] = -1;
    *unreachable = false;
    pgc_arr tenants = {0}, chans = {0};
    for (const struct ask *a = batch; a; a = a->next) {
        for (size_t i = 0; i < a->cur->n; i++) {
            pgc_arr_text(&tenants, a->tenant);
            pgc_arr_text(&chans, a->cur->v[i].channel);
        }
    }
    pgc_arr_end(&tenants);
    pgc_arr_end(&chans);
    int64_t *last = calloc(n ? n : 1, sizeof(int64_t)), *pruned = calloc(n ? n : 1, sizeof(int64_t));
    PGconn *c = NULL;
    if (tenants.oom || chans.oom || !last || !pruned) {
        PGC_WARN("positions of %zu channels: out of memory", n);
        goto out;
    }
    /* twice: a connection the server ended after it was taken fails once, not the batch */
    for (int attempt = 0; attempt < 2; attempt++) {
        if (!(c = pgc_db_acquire(app->pool, 5000))) {
            *unreachable = true;
            break;
        }
        const char *params[2] = {tenants.p, chans.p};
        PGresult *r = pgc_db_exec_prepared(
            c, "pgcast_positions_of",
            "SELECT ord, last_seq, pruned_through FROM realtime.positions_of($1::text[], $2::text[])", 2, params);
        if (PQresultStatus(r) == PGRES_TUPLES_OK) {
            for (int i = 0; i < PQntuples(r); i++) {
                long long ord = strtoll(PQgetvalue(r, i, 0), NULL, 10);
                if (ord >= 1 && (size_t)ord <= n) {
                    last[ord - 1] = strtoll(PQgetvalue(r, i, 1), NULL, 10);
                    pruned[ord - 1] = strtoll(PQgetvalue(r, i, 2), NULL, 10);
                }
            }
            j = 0;
            for (const struct ask *a = batch; a; a = a->next, j++) {
                news[j] = 0;
                for (size_t i = 0; i < a->cur->n; i++, k++)
                    if (last[k] > a->cur->v[i].seq || pruned[k] > a->cur->v[i].seq)
                        news[j] = 1;
            }
            pgc_db_release(app->pool, c, false);
            *unreachable = false;
            PQclear(r);
            break;
        }
        *unreachable = PQstatus(c) != CONNECTION_OK;
        PGC_WARN("positions of %zu channels: %s", n, PQresultErrorMessage(r));
        pgc_db_release(app->pool, c, *unreachable);
        PQclear(r);
        if (!*unreachable)
            break; /* the database answered with an error: no retry */
    }
out:
    free(last);
    free(pruned);
    free(tenants.p);
    free(chans.p);
}

int poll_anything_after(pgc_app *app, const char *tenant, const pgc_cursor *cur, bool *unreachable)
{
    struct ask me = {.tenant = tenant, .cur = cur, .news = PENDING, .wake = PTHREAD_COND_INITIALIZER};
    pthread_mutex_lock(&mu);
    *queue_tail = &me;
    queue_tail = &me.next;
    while (me.news == PENDING) {
        if (running) {
            pthread_cond_wait(&me.wake, &mu);
            continue;
        }
        /* take the queue, up to BATCH_CHANNELS channels (at least one request) */
        struct ask *batch = queue, **end = &queue;
        size_t chans = 0, nasks = 0;
        while (*end && (chans == 0 || chans + (*end)->cur->n <= BATCH_CHANNELS)) {
            chans += (*end)->cur->n;
            nasks++;
            end = &(*end)->next;
        }
        queue = *end;
        *end = NULL;
        if (!queue)
            queue_tail = &queue;
        running = true;
        pthread_mutex_unlock(&mu);
        int stack_news[64], *news = nasks <= 64 ? stack_news : malloc(nasks * sizeof(int));
        bool down = false;
        if (news)
            run_batch(app, batch, nasks, news, &down);
        pthread_mutex_lock(&mu);
        size_t j = 0;
        for (struct ask *a = batch; a; a = a->next, j++) {
            a->news = news ? news[j] : -1;
            a->unreachable = news && down;
            if (a != &me)
                pthread_cond_signal(&a->wake);
        }
        if (news != stack_news)
            free(news);
        running = false;
        if (queue)
            pthread_cond_signal(&queue->wake); /* leads the next batch */
    }
    pthread_mutex_unlock(&mu);
    pthread_cond_destroy(&me.wake);
    *unreachable = me.unreachable;
    return me.news;
}
