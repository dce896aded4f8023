/* Hub benchmarks against a real database (PGCAST_DATABASE_URL):
 *   hub_fanout fanout SUBS EVENTS   SUBS subscribers on one channel, EVENTS published in
 *                                   one transaction: deliveries/s into the queues
 *   hub_fanout latency RATE SECS    one subscriber, RATE publishes/s for SECS seconds from
 *                                   another connection: publish-to-hub latency p50/p99
 * Prints figures only; never asserts. */
#include <libpq-fe.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "benchdb.h"
#include "hub.h"
#include "log.h"

static const char *conninfo;

static pgc_hub *start_hub(size_t queue_events)
{
    char err[256];
    pgc_hub_options o = {.conninfo = conninfo, .kind = "bench", .queue_events = queue_events,
                         .queue_bytes = (size_t)1 << 30};
    pgc_hub *h = pgc_hub_start(&o, err, sizeof(err));
    if (!h) {
        fprintf(stderr, "hub: %s\n", err);
        exit(1);
    }
    int64_t end = bench_us(CLOCK_MONOTONIC) + 10000000;
    while (!pgc_hub_db_ok(h) && bench_us(CLOCK_MONOTONIC) < end)
        usleep(10000);
    return h;
}

static uint64_t deliveries(pgc_hub *h)
{
    pgc_hub_stats s;
    pgc_hub_get_stats(h, &s);
    return s.deliveries;
}

static void no_wake(void *arg) { (void)arg; }

static int fanout(int nsubs, int nevents)
{
    pgc_hub *h = start_hub((size_t)nevents + 16);
    pgc_sub **subs = calloc((size_t)nsubs, sizeof(*subs));
    if (!subs)
        return 1;
    for (int i = 0; i < nsubs; i++) {
        subs[i] = pgc_sub_new(h, "bench", no_wake, NULL);
        if (!subs[i] || pgc_sub_add(subs[i], "fan:1", -1) != 0) {
            fprintf(stderr, "subscribe failed\n");
            return 1;
        }
    }
    /* every SUBSCRIBED item queued: the subscriptions are live */
    while (deliveries(h) < (uint64_t)nsubs)
        usleep(1000);
    uint64_t base = deliveries(h), want = base + (uint64_t)nsubs * (uint64_t)nevents;

    PGconn *pub = bench_connect(conninfo);
    char q[256];
    snprintf(q, sizeof(q),
             "SELECT realtime.publish('bench', 'fan:1', 'tick', jsonb_build_object('i', g)) "
             "FROM generate_series(1, %d) g",
             nevents);
    if (bench_exec(pub, q) != 0)
        exit(1);
    int64_t committed = bench_us(CLOCK_MONOTONIC), first = 0;
    uint64_t d;
    while ((d = deliveries(h)) < want) {
        if (!first && d > base)
            first = bench_us(CLOCK_MONOTONIC);
        if (bench_us(CLOCK_MONOTONIC) - committed > 60000000) {
            fprintf(stderr, "fan-out incomplete: %llu of %llu\n", (unsigned long long)(d - base),
                    (unsigned long long)(want - base));
            return 1;
        }
    }
    int64_t done = bench_us(CLOCK_MONOTONIC);
    if (!first)
        first = committed;
    double n = (double)(want - base);
    printf("fanout: %d subscribers x %d events = %.0f deliveries\n", nsubs, nevents, n);
    printf("fanout: %.0f deliveries/s (first delivery to last: %.1f ms)\n",
           n / ((double)(done - first) / 1e6), (double)(done - first) / 1000.0);
    printf("fanout: %.0f deliveries/s (commit to last delivery: %.1f ms)\n",
           n / ((double)(done - committed) / 1e6), (double)(done - committed) / 1000.0);
    PQfinish(pub);
    for (int i = 0; i < nsubs; i++)
        pgc_sub_free(subs[i]);
    free(subs);
    pgc_hub_stop(h);
    return 0;
}

/* ---- latency ---- */

typedef struct lat_state {
    pgc_sub *sub;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    bool woken, done;
    int64_t *sent_us;      /* realtime clock at the publish call, by seq */
    int64_t *ts_lat_us;    /* now - envelope timestamp */
    int64_t *call_lat_us;  /* now - publish call start */
    int n, want;
    int64_t seq0;
} lat_state;

static void lat_wake(void *arg)
{
    lat_state *ls = arg;
    pthread_mutex_lock(&ls->mu);
    ls->woken = true;
    pthread_cond_signal(&ls->cv);
    pthread_mutex_unlock(&ls->mu);
}

static void *lat_consumer(void *arg)
{
    lat_state *ls = arg;
    pgc_event *items[64];
    while (ls->n < ls->want) {
        pthread_mutex_lock(&ls->mu);
        while (!ls->woken && !ls->done)
            pthread_cond_wait(&ls->cv, &ls->mu);
        ls->woken = false;
        bool done = ls->done;
        pthread_mutex_unlock(&ls->mu);
        size_t k;
        while ((k = pgc_sub_take(ls->sub, items, 64)) > 0) {
            int64_t now = bench_us(CLOCK_REALTIME);
            for (size_t i = 0; i < k; i++) {
                pgc_event *e = items[i];
                if (e->kind == PGC_ITEM_SUBSCRIBED)
                    ls->seq0 = e->seq;
                if (e->kind == PGC_ITEM_EVENT && ls->n < ls->want) {
                    int64_t idx = e->seq - ls->seq0 - 1;
                    ls->ts_lat_us[ls->n] = now - e->ts_ms * 1000;
                    ls->call_lat_us[ls->n] =
                        idx >= 0 && idx < ls->want ? now - atomic_load((_Atomic int64_t *)&ls->sent_us[idx]) : 0;
                    ls->n++;
                }
                pgc_event_unref(e);
            }
        }
        if (done)
            break;
    }
    return NULL;
}

static int cmp64(const void *a, const void *b)
{
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return x < y ? -1 : x > y;
}

static void report(const char *what, int64_t *v, int n)
{
    qsort(v, (size_t)n, sizeof(*v), cmp64);
    printf("latency (%s): p50 %.2f ms, p99 %.2f ms, max %.2f ms over %d events\n", what,
           (double)v[n / 2] / 1000.0, (double)v[(n * 99) / 100] / 1000.0, (double)v[n - 1] / 1000.0, n);
}

static int latency(int rate, int secs)
{
    pgc_hub *h = start_hub(4096);
    lat_state ls = {.want = rate * secs, .seq0 = -1};
    ls.sent_us = calloc((size_t)ls.want, sizeof(int64_t));
    ls.ts_lat_us = calloc((size_t)ls.want, sizeof(int64_t));
    ls.call_lat_us = calloc((size_t)ls.want, sizeof(int64_t));
    if (!ls.sent_us || !ls.ts_lat_us || !ls.call_lat_us || pthread_mutex_init(&ls.mu, NULL) != 0 ||
        pthread_cond_init(&ls.cv, NULL) != 0)
        return 1;
    ls.sub = pgc_sub_new(h, "bench", lat_wake, &ls);
    if (!ls.sub || pgc_sub_add(ls.sub, "lat:1", -1) != 0)
        return 1;
    pthread_t th;
    if (pthread_create(&th, NULL, lat_consumer, &ls) != 0)
        return 1;
    while (__atomic_load_n(&ls.seq0, __ATOMIC_ACQUIRE) < 0)
        usleep(1000);

    PGconn *pub = bench_connect(conninfo);
    int64_t step = 1000000 / rate, t = bench_us(CLOCK_MONOTONIC);
    for (int i = 0; i < ls.want; i++) {
        t += step;
        int64_t wait = t - bench_us(CLOCK_MONOTONIC);
        if (wait > 0)
            usleep((useconds_t)wait);
        atomic_store((_Atomic int64_t *)&ls.sent_us[i], bench_us(CLOCK_REALTIME));
        if (bench_exec(pub, "SELECT realtime.publish('bench', 'lat:1', 'tick', '{\"x\": 1}')") != 0)
            exit(1);
    }
    int64_t end = bench_us(CLOCK_MONOTONIC) + 10000000;
    while (__atomic_load_n(&ls.n, __ATOMIC_ACQUIRE) < ls.want && bench_us(CLOCK_MONOTONIC) < end)
        usleep(1000);
    lat_wake(&ls);
    pthread_mutex_lock(&ls.mu);
    ls.done = true;
    pthread_cond_signal(&ls.cv);
    pthread_mutex_unlock(&ls.mu);
    pthread_join(th, NULL);
    printf("latency: %d publishes at %d/s, %d arrived\n", ls.want, rate, ls.n);
    if (ls.n > 0) {
        report("envelope timestamp to queue, 1 ms resolution", ls.ts_lat_us, ls.n);
        report("publish call start to queue", ls.call_lat_us, ls.n);
    }
    PQfinish(pub);
    pgc_sub_free(ls.sub);
    pgc_hub_stop(h);
    free(ls.sent_us);
    free(ls.ts_lat_us);
    free(ls.call_lat_us);
    return ls.n == ls.want ? 0 : 1;
}

int main(int argc, char **argv)
{
    pgc_log_init("hub_fanout", PGC_LOG_WARN);
    conninfo = getenv("PGCAST_DATABASE_URL");
    if (!conninfo)
        conninfo = "";
    if (argc == 4 && strcmp(argv[1], "fanout") == 0)
        return fanout(atoi(argv[2]), atoi(argv[3]));
    if (argc == 4 && strcmp(argv[1], "latency") == 0)
        return latency(atoi(argv[2]), atoi(argv[3]));
    fprintf(stderr, "usage: hub_fanout fanout SUBS EVENTS | latency RATE SECONDS\n");
    return 2;
}
