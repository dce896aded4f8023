/* What the number of hub processes on a host costs the database, with and without the
 * host's relay (bench/bench_listeners.sh):
 *
 *   listeners CONNINFO HUBS RELAY_SOCKET|- DIR TPUT_SECS PUBLISHERS LAT_SECS LAT_RATE
 *
 * Forks HUBS processes, each running one hub (its own LISTEN, or the relay at
 * RELAY_SOCKET) with one subscriber on bench:lat. Then:
 *   - throughput: PUBLISHERS connections (synchronous_commit = off) call realtime.publish
 *     as fast as they can for TPUT_SECS seconds, each on a channel of its own that no hub
 *     serves (with its own LISTEN every hub still gets and sorts out each wake-up; the
 *     relay forwards a wake-up only to the processes serving its channel);
 *   - latency: LAT_RATE publishes/s on bench:lat for LAT_SECS seconds, each carrying its
 *     publish time; every hub process records publish -> its subscriber's queue.
 * Prints one line: hubs, listening connections seen in pg_stat_activity, publishes/s,
 * p50/p99 of publish -> subscriber (ms) and deliveries (got/expected). Never asserts. */
#include <errno.h>
#include <inttypes.h>
#include <libpq-fe.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "benchdb.h"
#include "hub.h"
#include "log.h"

static const char *conninfo;

/* ---------------------------------------------------------------- a hub process */

static void wake_efd(void *arg)
{
    uint64_t one = 1;
    ssize_t w = write(*(int *)arg, &one, sizeof(one));
    (void)w;
}

static int child_main(int idx, const char *relay, const char *dir, int ready_fd, int ctl_fd)
{
    pgc_log_init("listeners", PGC_LOG_WARN);
    char err[256];
    pgc_hub_options o = {.conninfo = conninfo, .kind = "bench", .queue_events = 1 << 16,
                         .queue_bytes = (size_t)1 << 28, .relay_socket = relay, .relay_retry_ms = 500};
    pgc_hub *h = pgc_hub_start(&o, err, sizeof(err));
    int efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    pgc_sub *s = h && efd >= 0 ? pgc_sub_new(h, "bench", wake_efd, &efd) : NULL;
    if (!s || pgc_sub_add(s, "bench:lat", -1) != 0) {
        fprintf(stderr, "hub %d: cannot start: %s\n", idx, h ? "subscriber" : err);
        return 1;
    }
    size_t cap = 1 << 16, n = 0;
    int32_t *lat = malloc(cap * sizeof(*lat));
    bool subscribed = false, ready = false, stop = false;
    int64_t give_up = bench_us(CLOCK_MONOTONIC) + 60000000;
    while (!stop) {
        struct pollfd p[2] = {{efd, POLLIN, 0}, {ctl_fd, POLLIN, 0}};
        if (poll(p, 2, 100) < 0 && errno != EINTR)
            break;
        uint64_t v;
        if (read(efd, &v, sizeof(v)) < 0 && errno != EAGAIN)
            break;
        if (p[1].revents)
            stop = true; /* the parent closed the pipe; take what is queued, then end */
        pgc_event *items[256];
        size_t k;
        while ((k = pgc_sub_take(s, items, 256)) > 0) {
            int64_t t = bench_us(CLOCK_REALTIME);
            for (size_t i = 0; i < k; i++) {
                pgc_event *e = items[i];
                if (e->kind == PGC_ITEM_SUBSCRIBED)
                    subscribed = true;
                const char *m = e->kind == PGC_ITEM_EVENT ? strstr(e->json, "\"t\":") : NULL;
                if (m && lat) {
                    if (n == cap) {
                        int32_t *l2 = realloc(lat, cap * 2 * sizeof(*lat));
                        if (l2) {
                            lat = l2;
                            cap *= 2;
                        }
                    }
                    if (n < cap)
                        lat[n++] = (int32_t)(t - strtoll(m + 4, NULL, 10));
                }
                pgc_event_unref(e);
            }
        }
        if (!ready && subscribed && (!relay || pgc_hub_relayed(h))) {
            ready = true;
            if (write(ready_fd, "R", 1) != 1)
                break;
        }
        if (!ready && bench_us(CLOCK_MONOTONIC) > give_up) {
            fprintf(stderr, "hub %d: not ready after 60 s (relayed: %d)\n", idx, (int)pgc_hub_relayed(h));
            if (write(ready_fd, "F", 1) != 1)
                break;
            ready = true;
        }
    }
    char path[4096];
    snprintf(path, sizeof(path), "%s/lat.%d", dir, idx);
    FILE *f = fopen(path, "wb");
    if (f) {
        if (n && fwrite(lat, sizeof(*lat), n, f) != n)
            fprintf(stderr, "hub %d: short write\n", idx);
        fclose(f);
    }
    free(lat);
    pgc_sub_free(s);
    pgc_hub_stop(h);
    return 0;
}

/* ---------------------------------------------------------------- publishers */

static atomic_bool tput_stop;
static atomic_long tput_count;

static void *tput_thread(void *arg)
{
    int i = (int)(intptr_t)arg;
    PGconn *c = bench_connect(conninfo);
    if (bench_exec(c, "SET synchronous_commit = off") != 0)
        exit(1);
    char ch[64];
    snprintf(ch, sizeof(ch), "bench:tput:%d", i);
    const char *params[1] = {ch};
    long n = 0;
    while (!atomic_load(&tput_stop)) {
        PGresult *r = PQexecParams(c, "SELECT realtime.publish('bench', $1, 'e', '{}'::jsonb)", 1, NULL, params,
                                   NULL, NULL, 0);
        if (PQresultStatus(r) == PGRES_TUPLES_OK)
            n++;
        else
            fprintf(stderr, "publish: %s", PQresultErrorMessage(r));
        PQclear(r);
    }
    atomic_fetch_add(&tput_count, n);
    PQfinish(c);
    return NULL;
}

static int cmp_i32(const void *a, const void *b)
{
    int32_t x = *(const int32_t *)a, y = *(const int32_t *)b;
    return x < y ? -1 : x > y;
}

int main(int argc, char **argv)
{
    if (argc != 9) {
        fprintf(stderr, "usage: listeners CONNINFO HUBS RELAY_SOCKET|- DIR TPUT_SECS PUBLISHERS LAT_SECS LAT_RATE\n");
        return 2;
    }
    conninfo = argv[1];
    int hubs = atoi(argv[2]);
    const char *relay = strcmp(argv[3], "-") ? argv[3] : NULL;
    const char *dir = argv[4];
    double tput_secs = atof(argv[5]), lat_secs = atof(argv[7]);
    int publishers = atoi(argv[6]), lat_rate = atoi(argv[8]);
    int ready[2], ctl[2];
    if (pipe(ready) != 0 || pipe(ctl) != 0) {
        perror("pipe");
        return 1;
    }
    pid_t *pids = calloc((size_t)hubs, sizeof(*pids));
    for (int i = 0; i < hubs; i++) {
        pids[i] = fork();
        if (pids[i] < 0) {
            perror("fork");
            return 1;
        }
        if (pids[i] == 0) {
            close(ready[0]);
            close(ctl[1]);
            _exit(child_main(i, relay, dir, ready[1], ctl[0]));
        }
    }
    close(ready[1]);
    close(ctl[0]);
    int got = 0, failed = 0;
    while (got < hubs) {
        char b;
        ssize_t r = read(ready[0], &b, 1);
        if (r <= 0)
            break;
        got++;
        failed += b != 'R';
    }
    PGconn *c = bench_connect(conninfo);
    PGresult *r = PQexec(c, "SELECT count(*) FILTER (WHERE application_name IN ('pgcast-hub', 'pgcast-relay')), "
                            "count(*) FILTER (WHERE application_name = 'pgcast-hub-relayed') "
                            "FROM pg_stat_activity WHERE datname = current_database()");
    int listening = PQresultStatus(r) == PGRES_TUPLES_OK ? atoi(PQgetvalue(r, 0, 0)) : -1;
    int relayed = PQresultStatus(r) == PGRES_TUPLES_OK ? atoi(PQgetvalue(r, 0, 1)) : -1;
    PQclear(r);

    /* throughput */
    pthread_t *th = calloc((size_t)publishers, sizeof(*th));
    int64_t t0 = bench_us(CLOCK_MONOTONIC);
    for (int i = 0; i < publishers; i++)
        pthread_create(&th[i], NULL, tput_thread, (void *)(intptr_t)i);
    usleep((useconds_t)(tput_secs * 1e6));
    atomic_store(&tput_stop, true);
    for (int i = 0; i < publishers; i++)
        pthread_join(th[i], NULL);
    double secs = (double)(bench_us(CLOCK_MONOTONIC) - t0) / 1e6;
    double pubs = (double)atomic_load(&tput_count) / secs;
    sleep(2); /* the hubs drain their wake-ups */

    /* latency */
    long published = 0;
    int64_t start = bench_us(CLOCK_MONOTONIC), step = 1000000 / (lat_rate > 0 ? lat_rate : 1);
    for (int64_t next = start; next < start + (int64_t)(lat_secs * 1e6); next += step) {
        int64_t wait = next - bench_us(CLOCK_MONOTONIC);
        if (wait > 0)
            usleep((useconds_t)wait);
        char q[160];
        snprintf(q, sizeof(q), "SELECT realtime.publish('bench', 'bench:lat', 'e', '{\"t\": %" PRId64 "}'::jsonb)",
                 bench_us(CLOCK_REALTIME));
        if (bench_exec(c, q) == 0)
            published++;
    }
    sleep(3);
    close(ctl[1]);
    for (int i = 0; i < hubs; i++)
        waitpid(pids[i], NULL, 0);
    size_t cap = 1 << 16, n = 0;
    int32_t *all = malloc(cap * sizeof(*all));
    for (int i = 0; i < hubs; i++) {
        char path[4096];
        snprintf(path, sizeof(path), "%s/lat.%d", dir, i);
        FILE *f = fopen(path, "rb");
        if (!f)
            continue;
        int32_t v;
        while (fread(&v, sizeof(v), 1, f) == 1) {
            if (n == cap) {
                cap *= 2;
                all = realloc(all, cap * sizeof(*all));
                if (!all)
                    return 1;
            }
            all[n++] = v;
        }
        fclose(f);
        unlink(path);
    }
    qsort(all, n, sizeof(*all), cmp_i32);
    double p50 = n ? all[n / 2] / 1000.0 : -1, p99 = n ? all[(size_t)((double)n * 0.99)] / 1000.0 : -1;
    printf("hubs=%d mode=%s listening=%d relayed=%d not_ready=%d publishes_s=%.0f p50_ms=%.1f p99_ms=%.1f "
           "delivered=%zu/%ld\n",
           hubs, relay ? "relay" : "own", listening, relayed, failed + (hubs - got), pubs, p50, p99, n,
           published * hubs);
    free(all);
    free(th);
    free(pids);
    PQfinish(c);
    return 0;
}
