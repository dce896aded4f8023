/* Database calls off the loop thread (see worker.h).
 *
 * One mutex guards the queue and every lane. A lane is in the run list, or held by one
 * worker, exactly while it has a job to run (pending != NULL): so its jobs never run two
 * at a time. A worker that finishes a job puts the lane back at the tail of the run list
 * when it has more: a connection with many requests does not hold a worker while others
 * wait. The notify function is called without the mutex; a lane being closed waits for a
 * notify under way to return, so the connection it names is never used after its close. */
#include "worker.h"

#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>

#include "clock.h"
#include "log.h"

#define ACQUIRE_MS 5000 /* a pool connection, at most this long */

struct ws_lane {
    ws_workers *w;
    ws_lane *next_run;
    ws_job *head, *tail; /* submitted, not taken back */
    ws_job *pending;     /* the next job to run (or running); NULL: nothing to run */
    size_t count;        /* jobs submitted and not taken back */
    size_t bounded, max; /* of those, the ones not forced: at most max */
    bool closed;
    int notifying;
    void (*notify)(void *arg);
    void *arg;
};

struct slot {
    ws_workers *w;
    pthread_t thread;
    bool started;
    PGcancel *cancel; /* of the query running on it (under mu) */
};

struct ws_workers {
    pgc_db_pool *pool;
    pthread_mutex_t mu;
    pthread_cond_t work_cv; /* a lane to run, or stop */
    pthread_cond_t idle_cv; /* a notify returned, or a thread ended */
    ws_lane *run_head, *run_tail;
    size_t queued, max_queued;
    unsigned long long refused;
    bool stop, cancelled;
    int64_t deadline_ms;
    int nthreads, alive;
    struct slot *slots;
};

static void run_push(ws_workers *w, ws_lane *l)
{
    l->next_run = NULL;
    if (w->run_tail)
        w->run_tail->next_run = l;
    else
        w->run_head = l;
    w->run_tail = l;
    pthread_cond_signal(&w->work_cv);
}

static ws_lane *run_pop(ws_workers *w)
{
    ws_lane *l = w->run_head;
    if (l) {
        w->run_head = l->next_run;
        if (!w->run_head)
            w->run_tail = NULL;
    }
    return l;
}

/* A closed lane: frees its finished jobs at the front, and the lane once it has nothing
 * left. true when the lane is gone. Under mu. */
static bool closed_tidy(ws_lane *l)
{
    while (l->head && l->head->done) {
        ws_job *j = l->head;
        l->head = j->next;
        l->count--;
        l->bounded -= !j->forced;
        j->free(j);
    }
    if (!l->head)
        l->tail = NULL;
    if (l->head || l->pending || l->notifying)
        return false;
    free(l);
    return true;
}

static void *worker_main(void *arg)
{
    struct slot *me = arg;
    ws_workers *w = me->w;
    pthread_mutex_lock(&w->mu);
    for (;;) {
        while (!w->run_head && !w->stop)
            pthread_cond_wait(&w->work_cv, &w->mu);
        if (w->stop && (!w->run_head || pgc_mono_ms() >= w->deadline_ms))
            break;
        ws_lane *l = run_pop(w);
        ws_job *j = l->pending;
        pthread_mutex_unlock(&w->mu);

        PGconn *db = pgc_db_acquire(w->pool, ACQUIRE_MS);
        PGcancel *cn = db ? PQgetCancel(db) : NULL;
        pthread_mutex_lock(&w->mu);
        me->cancel = cn;
        bool cancel_now = w->cancelled;
        pthread_mutex_unlock(&w->mu);
        char err[256];
        if (cn && cancel_now && !PQcancel(cn, err, sizeof(err)))
            pgc_log(PGC_LOG_WARN, NULL, "cancel: %s", err);
        j->run(j, db);
        pthread_mutex_lock(&w->mu);
        me->cancel = NULL;
        pthread_mutex_unlock(&w->mu);
        if (cn)
            PQfreeCancel(cn);
        pgc_db_release(w->pool, db, false); /* a broken connection is seen by its status */

        pthread_mutex_lock(&w->mu);
        j->done = true;
        w->queued--;
        ws_job *n = j->next;
        while (n && n->done)
            n = n->next;
        l->pending = n;
        if (n)
            run_push(w, l);
        if (l->closed) {
            (void)closed_tidy(l);
            continue;
        }
        l->notifying++;
        pthread_mutex_unlock(&w->mu);
        l->notify(l->arg);
        pthread_mutex_lock(&w->mu);
        if (--l->notifying == 0 && l->closed)
            pthread_cond_broadcast(&w->idle_cv);
    }
    w->alive--;
    pthread_cond_broadcast(&w->idle_cv);
    pthread_mutex_unlock(&w->mu);
    return NULL;
}

ws_workers *ws_workers_new(pgc_db_pool *pool, int threads, int max_queued)
{
    if (threads < 1 || max_queued < 1)
        return NULL;
    ws_workers *w = calloc(1, sizeof(*w));
    if (!w)
        return NULL;
    w->slots = calloc((size_t)threads, sizeof(*w->slots));
    bool ok = w->slots && pthread_mutex_init(&w->mu, NULL) == 0;
    ok = ok && pthread_cond_init(&w->work_cv, NULL) == 0 && pthread_cond_init(&w->idle_cv, NULL) == 0;
    if (!ok) {
        free(w->slots);
        free(w);
        return NULL;
    }
    w->pool = pool;
    w->max_queued = (size_t)max_queued;
    w->nthreads = threads;
    pthread_mutex_lock(&w->mu);
    for (int i = 0; i < threads; i++) {
        w->slots[i].w = w;
        if (pthread_create(&w->slots[i].thread, NULL, worker_main, &w->slots[i]) != 0) {
            pgc_log(PGC_LOG_WARN, NULL, "database workers: started %d of %d threads", i, threads);
            break;
        }
        w->slots[i].started = true;
        w->alive++;
    }
    bool none = w->alive == 0;
    pthread_mutex_unlock(&w->mu);
    if (none) {
        ws_workers_free(w, 0);
        return NULL;
    }
    return w;
}

void ws_workers_free(ws_workers *w, int grace_ms)
{
    if (!w)
        return;
    pthread_mutex_lock(&w->mu);
    w->stop = true;
    w->deadline_ms = pgc_mono_ms() + (grace_ms > 0 ? grace_ms : 0);
    pthread_cond_broadcast(&w->work_cv);
    while (w->alive > 0) {
        int64_t now = pgc_mono_ms();
        if (now >= w->deadline_ms) {
            if (!w->cancelled) { /* queries still running past the grace period */
                w->cancelled = true;
                for (int i = 0; i < w->nthreads; i++) {
                    char err[256];
                    if (w->slots[i].cancel && !PQcancel(w->slots[i].cancel, err, sizeof(err)))
                        pgc_log(PGC_LOG_WARN, NULL, "cancel: %s", err);
                }
            }
            pthread_cond_wait(&w->idle_cv, &w->mu);
            continue;
        }
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        int64_t wait = w->deadline_ms - now;
        ts.tv_sec += wait / 1000;
        ts.tv_nsec += (long)(wait % 1000) * 1000000L;
        if (ts.tv_nsec >= 1000000000L) {
            ts.tv_sec++;
            ts.tv_nsec -= 1000000000L;
        }
        (void)pthread_cond_timedwait(&w->idle_cv, &w->mu, &ts);
    }
    size_t dropped = 0;
    for (ws_lane *l; (l = run_pop(w));) {
        for (ws_job *j = l->head; j; j = j->next)
            dropped += j->run && !j->done;
        l->pending = NULL;
        for (ws_job *j = l->head; j; j = j->next)
            j->done = true;
        if (!l->closed || !closed_tidy(l))
            pgc_log(PGC_LOG_WARN, NULL, "database workers: a lane was not closed before the end");
    }
    pthread_mutex_unlock(&w->mu);
    if (dropped)
        pgc_log(PGC_LOG_WARN, NULL, "database workers: %zu requests dropped at shutdown", dropped);
    for (int i = 0; i < w->nthreads; i++)
        if (w->slots[i].started)
            pthread_join(w->slots[i].thread, NULL);
    pthread_cond_destroy(&w->work_cv);
    pthread_cond_destroy(&w->idle_cv);
    pthread_mutex_destroy(&w->mu);
    free(w->slots);
    free(w);
}

ws_lane *ws_lane_new(ws_workers *w, int max_jobs, void (*notify)(void *arg), void *arg)
{
    ws_lane *l = calloc(1, sizeof(*l));
    if (!l)
        return NULL;
    l->w = w;
    l->max = max_jobs > 0 ? (size_t)max_jobs : 1;
    l->notify = notify;
    l->arg = arg;
    return l;
}

int ws_lane_submit(ws_lane *l, ws_job *j, bool force)
{
    ws_workers *w = l->w;
    pthread_mutex_lock(&w->mu);
    int rc = WS_JOB_OK;
    if (j->run && w->stop)
        rc = WS_JOB_BUSY;
    else if (!force && l->bounded >= l->max)
        rc = WS_JOB_LANE_FULL;
    else if (!force && j->run && w->queued >= w->max_queued)
        rc = WS_JOB_BUSY;
    if (rc != WS_JOB_OK) {
        w->refused++;
        pthread_mutex_unlock(&w->mu);
        return rc;
    }
    j->next = NULL;
    j->done = !j->run;
    j->forced = force;
    if (l->tail)
        l->tail->next = j;
    else
        l->head = j;
    l->tail = j;
    l->count++;
    l->bounded += !force;
    if (j->run) {
        w->queued++;
        if (!l->pending) {
            l->pending = j;
            run_push(w, l);
        }
    }
    pthread_mutex_unlock(&w->mu);
    return WS_JOB_OK;
}

ws_job *ws_lane_take(ws_lane *l)
{
    ws_workers *w = l->w;
    pthread_mutex_lock(&w->mu);
    ws_job *first = NULL, **tail = &first;
    while (l->head && l->head->done) {
        ws_job *j = l->head;
        l->head = j->next;
        l->count--;
        l->bounded -= !j->forced;
        j->next = NULL;
        *tail = j;
        tail = &j->next;
    }
    if (!l->head)
        l->tail = NULL;
    pthread_mutex_unlock(&w->mu);
    return first;
}

size_t ws_lane_count(ws_lane *l)
{
    pthread_mutex_lock(&l->w->mu);
    size_t n = l->count;
    pthread_mutex_unlock(&l->w->mu);
    return n;
}

void ws_lane_close(ws_lane *l)
{
    if (!l)
        return;
    ws_workers *w = l->w;
    pthread_mutex_lock(&w->mu);
    l->closed = true;
    while (l->notifying)
        pthread_cond_wait(&w->idle_cv, &w->mu);
    (void)closed_tidy(l);
    pthread_mutex_unlock(&w->mu);
}

void ws_workers_stats(ws_workers *w, unsigned long long *queued, unsigned long long *refused)
{
    pthread_mutex_lock(&w->mu);
    *queued = w->queued;
    *refused = w->refused;
    pthread_mutex_unlock(&w->mu);
}
