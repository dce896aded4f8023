/* Whether anything follows the cursors of the events requests in flight: from the
 * positions the process knows when that is provably current, else for many requests by
 * one query.
 *
 * From memory (FastCGI, with the hub): the hub keeps the last seq of every channel asked
 * about here current from its wake-ups (core/positions.h). A known position beyond the
 * cursor answers yes at once (positions only grow; a read follows anyway). All known
 * and none beyond: a sync barrier on the hub's LISTEN connection, asked for after the
 * request arrived (pgc_hub_sync: every notification committed before it has then been
 * applied; requests that arrive meanwhile share the next one), then the positions again
 * within the same epoch answer no (barriers are asked for at most every 2 ms; see
 * barrier() below). Anything else (a channel not known yet, evicted, the
 * LISTEN connection lost meanwhile, no secret, a barrier that failed or took over
 * SYNC_WAIT_MS) asks the database as below, and what that query reads is learnt.
 *
 * The query: the database's share of a 304 was almost all the round trip (the lookup itself is one
 * index probe), so requests share them: each queues its question; the first to find no
 * query running takes everything queued, asks for all their positions at once
 * (realtime.positions_of), hands each its answer and wakes it, then wakes the first
 * request that queued meanwhile to lead the next batch. Each wakes once, on its own
 * condition variable (no broadcast herd on the one mutex). A lone request runs its
 * query at once, as before: no timer, no wait beyond a query already running.
 *
 * Freshness is unchanged: a batch's query starts after every request in it arrived, so
 * its snapshot holds everything committed before any of them reached this process. */
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "pgarray.h"
#include "log.h"
#include "poll.h"
#include "positions.h"

#define BATCH_CHANNELS 2048 /* channels per query, at most (a request's all go together) */
#define PENDING (-2)
#define SYNC_WAIT_MS 5000   /* a barrier slower than this: the database is asked instead */
#define SYNC_MIN_INTERVAL_US 2000 /* barriers asked for at most this often (per process) */

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
    uint64_t *ids = calloc(n ? n : 1, sizeof(uint64_t));
    PGconn *c = NULL;
    if (tenants.oom || chans.oom || !last || !pruned || !ids) {
        PGC_WARN("positions of %zu channels: out of memory", n);
        goto out;
    }
    /* tracked from now on, before the query: what it reads plus every wake-up after */
    pgc_positions *pos = app->hub ? pgc_hub_positions(app->hub) : NULL;
    k = 0;
    for (const struct ask *a = batch; pos && a; a = a->next)
        for (size_t i = 0; i < a->cur->n; i++)
            ids[k++] = pgc_positions_expect(pos, a->tenant, a->cur->v[i].channel);
    k = 0;
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
                for (size_t i = 0; i < a->cur->n; i++, k++) {
                    if (last[k] > a->cur->v[i].seq || pruned[k] > a->cur->v[i].seq)
                        news[j] = 1;
                    pgc_positions_learn(pos, ids[k], a->tenant, a->cur->v[i].channel, last[k]);
                }
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
    free(ids);
    free(last);
    free(pruned);
    free(tenants.p);
    free(chans.p);
}

/* A barrier's answer, shared by the waiting request and the hub's callback (each holds
 * a reference: a request that stops waiting leaves it to the callback). */
struct sync_wait {
    pthread_mutex_t mu;
    pthread_cond_t cond;
    atomic_int refs;
    bool done;
    int status;
};

static void sync_wait_unref(struct sync_wait *w)
{
    if (atomic_fetch_sub(&w->refs, 1) != 1)
        return;
    pthread_cond_destroy(&w->cond);
    pthread_mutex_destroy(&w->mu);
    free(w);
}

static void sync_done(void *arg, bool current)
{
    struct sync_wait *w = arg;
    pthread_mutex_lock(&w->mu);
    w->done = true;
    w->status = current ? 0 : -1;
    pthread_cond_signal(&w->cond);
    pthread_mutex_unlock(&w->mu);
    sync_wait_unref(w);
}

/* One barrier through the hub, waited for: 0 when passed, -1 otherwise (failed, no
 * memory, too slow). */
static int hub_barrier(pgc_hub *hub)
{
    struct sync_wait *w = calloc(1, sizeof(*w));
    pthread_condattr_t ca;
    if (!w)
        return -1;
    if (pthread_condattr_init(&ca) != 0) {
        free(w);
        return -1;
    }
    int rc = pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    if (rc == 0)
        rc = pthread_cond_init(&w->cond, &ca);
    pthread_condattr_destroy(&ca);
    if (rc != 0) {
        free(w);
        return -1;
    }
    if (pthread_mutex_init(&w->mu, NULL) != 0) {
        pthread_cond_destroy(&w->cond);
        free(w);
        return -1;
    }
    atomic_init(&w->refs, 2);
    if (pgc_hub_sync(hub, sync_done, w) != 0) {
        atomic_store(&w->refs, 1);
        sync_wait_unref(w);
        return -1;
    }
    struct timespec until;
    clock_gettime(CLOCK_MONOTONIC, &until);
    until.tv_sec += SYNC_WAIT_MS / 1000;
    until.tv_nsec += (long)(SYNC_WAIT_MS % 1000) * 1000000L;
    if (until.tv_nsec >= 1000000000L) {
        until.tv_sec++;
        until.tv_nsec -= 1000000000L;
    }
    pthread_mutex_lock(&w->mu);
    while (!w->done)
        if (pthread_cond_timedwait(&w->cond, &w->mu, &until) == ETIMEDOUT)
            break;
    int status = w->done ? w->status : -1;
    pthread_mutex_unlock(&w->mu);
    sync_wait_unref(w);
    return status;
}

/* Requests waiting for a barrier: one of them at a time leads, asking the hub for one
 * barrier for all that have queued, and barriers are asked for at most every
 * SYNC_MIN_INTERVAL_US (the leader waits out the rest of the interval first, and takes
 * whoever queued meanwhile): under a steady stream of polls the database sees at most
 * 1 s / SYNC_MIN_INTERVAL_US round trips per process, whatever the rate; a lone poll
 * waits for nothing. Each barrier is asked for after every request of its batch arrived. */
struct bwait {
    int status;
    bool done;
    pthread_cond_t wake;
    struct bwait *next;
};

static pthread_mutex_t bmu = PTHREAD_MUTEX_INITIALIZER;
static struct bwait *bqueue, **bqueue_tail = &bqueue;
static bool bleading;
static int64_t blast_us; /* when the last barrier was asked for (monotonic) */

static int64_t mono_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

static int barrier(pgc_hub *hub)
{
    struct bwait me = {.wake = PTHREAD_COND_INITIALIZER};
    pthread_mutex_lock(&bmu);
    *bqueue_tail = &me;
    bqueue_tail = &me.next;
    while (!me.done) {
        if (bleading) {
            pthread_cond_wait(&me.wake, &bmu);
            continue;
        }
        bleading = true;
        int64_t wait = blast_us + SYNC_MIN_INTERVAL_US - mono_us();
        if (wait > 0) {
            pthread_mutex_unlock(&bmu);
            struct timespec ts = {0, (long)wait * 1000};
            nanosleep(&ts, NULL);
            pthread_mutex_lock(&bmu);
        }
        struct bwait *batch = bqueue; /* me among them */
        bqueue = NULL;
        bqueue_tail = &bqueue;
        blast_us = mono_us();
        pthread_mutex_unlock(&bmu);
        int status = hub_barrier(hub);
        pthread_mutex_lock(&bmu);
        for (struct bwait *a = batch, *next; a; a = next) {
            next = a->next;
            a->status = status;
            a->done = true;
            if (a != &me)
                pthread_cond_signal(&a->wake);
        }
        bleading = false;
        if (bqueue)
            pthread_cond_signal(&bqueue->wake); /* leads the next batch */
    }
    pthread_mutex_unlock(&bmu);
    pthread_cond_destroy(&me.wake);
    return me.status;
}

/* From the positions known in epoch: 1 a channel is known beyond the cursor, 0 every
 * channel is known and none beyond, -1 some channel is not known. */
static int compare_known(pgc_positions *pos, uint64_t epoch, const char *tenant, const pgc_cursor *cur)
{
    int res = 0;
    for (size_t i = 0; i < cur->n; i++) {
        int64_t last;
        if (!pgc_positions_get(pos, epoch, tenant, cur->v[i].channel, &last))
            res = -1;
        else if (last > cur->v[i].seq)
            return 1;
    }
    return res;
}

/* The answer from memory (see the top of this file): 1, 0, or -1 to ask the database. */
static int from_memory(pgc_app *app, const char *tenant, const pgc_cursor *cur)
{
    pgc_positions *pos = pgc_hub_positions(app->hub);
    uint64_t epoch = pgc_positions_epoch(pos);
    if (!epoch || cur->n == 0)
        return -1;
    int res = compare_known(pos, epoch, tenant, cur);
    if (res != 0)
        return res;
    if (barrier(app->hub) != 0 || pgc_positions_epoch(pos) != epoch)
        return -1;
    return compare_known(pos, epoch, tenant, cur);
}

int poll_anything_after(pgc_app *app, const char *tenant, const pgc_cursor *cur, bool *unreachable)
{
    int known = app->hub ? from_memory(app, tenant, cur) : -1;
    if (known >= 0) {
        *unreachable = false;
        return known;
    }
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
