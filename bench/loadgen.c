/*
 * loadgen: many SSE subscribers from one process (epoll), and a publisher at a fixed rate
 * whose payload carries the publish time, so every delivery's latency is measured.
 *
 *   loadgen HOST PORT PATH STREAMS SECONDS RATE pg CONNINFO TENANT CHANNEL
 *   loadgen HOST PORT PATH STREAMS SECONDS RATE http PUBHOST PUBPORT PUBPATH
 *   loadgen HOST PORT PATH STREAMS SECONDS 0 idle        (open and hold, for RSS)
 *
 * Publishes {"t": <microseconds since the epoch>} RATE times a second for SECONDS, either
 * with realtime.publish (pg) or with an HTTP POST (http, e.g. nchan's publisher). Prints
 * one line: streams connected, deliveries, deliveries/s, latency p50/p99/max in ms.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <libpq-fe.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define MAX_SAMPLES (4u << 20)

static int64_t now_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

static int connect_to(const char *host, int port)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    if (fd < 0)
        return -1;
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    if (inet_pton(AF_INET, host, &a.sin_addr) != 1 || connect(fd, (struct sockaddr *)&a, sizeof(a)) != 0) {
        close(fd);
        return -1;
    }
    int one = 1;
    (void)setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    return fd;
}

struct pubargs {
    const char *mode;
    int rate, seconds;
    const char *a, *b, *c, *d; /* pg: conninfo tenant channel; http: host port path */
    atomic_long published;
};

static void pace(int64_t start, long i, int rate)
{
    int64_t due = start + i * 1000000L / rate, now = now_us();
    if (due > now) {
        struct timespec ts = {(time_t)((due - now) / 1000000), (long)((due - now) % 1000000) * 1000};
        nanosleep(&ts, NULL);
    }
}

static void *publisher(void *arg)
{
    struct pubargs *p = arg;
    long total = (long)p->rate * p->seconds;
    int64_t start = now_us();
    if (strcmp(p->mode, "pg") == 0) {
        PGconn *c = PQconnectdb(p->a);
        if (PQstatus(c) != CONNECTION_OK) {
            fprintf(stderr, "loadgen: %s", PQerrorMessage(c));
            PQfinish(c);
            return NULL;
        }
        for (long i = 0; i < total; i++) {
            pace(start, i, p->rate);
            char payload[64];
            snprintf(payload, sizeof(payload), "{\"t\": %lld}", (long long)now_us());
            const char *params[3] = {p->b, p->c, payload};
            PGresult *r = PQexecParams(c, "SELECT realtime.publish($1, $2, 'bench', $3::jsonb)", 3, NULL, params,
                                       NULL, NULL, 0);
            if (PQresultStatus(r) == PGRES_TUPLES_OK)
                atomic_fetch_add(&p->published, 1);
            PQclear(r);
        }
        PQfinish(c);
    } else {
        int fd = -1;
        for (long i = 0; i < total; i++) {
            pace(start, i, p->rate);
            if (fd < 0 && (fd = connect_to(p->a, atoi(p->b))) < 0)
                continue;
            char body[64], req[512], resp[4096];
            int bl = snprintf(body, sizeof(body), "{\"t\":%lld}", (long long)now_us());
            int rl = snprintf(req, sizeof(req),
                              "POST %s HTTP/1.1\r\nHost: %s\r\nContent-Type: application/json\r\n"
                              "Content-Length: %d\r\n\r\n%s",
                              p->c, p->a, bl, body);
            if (write(fd, req, (size_t)rl) != rl || read(fd, resp, sizeof(resp)) <= 0) {
                close(fd);
                fd = -1;
                continue;
            }
            atomic_fetch_add(&p->published, 1);
        }
        if (fd >= 0)
            close(fd);
    }
    return NULL;
}

static int cmp64(const void *a, const void *b)
{
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return x < y ? -1 : x > y;
}

int main(int argc, char **argv)
{
    if (argc < 8) {
        fprintf(stderr, "usage: see the comment at the top of bench/loadgen.c\n");
        return 2;
    }
    const char *host = argv[1], *path = argv[3];
    int port = atoi(argv[2]), streams = atoi(argv[4]), seconds = atoi(argv[5]), rate = atoi(argv[6]);
    const char *mode = argv[7];
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0) {
        rl.rlim_cur = rl.rlim_max;
        (void)setrlimit(RLIMIT_NOFILE, &rl);
    }
    int ep = epoll_create1(0);
    if (ep < 0)
        return 1;
    int connected = 0;
    char req[1024];
    int reqlen = snprintf(req, sizeof(req), "GET %s HTTP/1.1\r\nHost: %s\r\nAccept: text/event-stream\r\n\r\n", path, host);
    for (int i = 0; i < streams; i++) {
        int fd = connect_to(host, port);
        if (fd < 0 || write(fd, req, (size_t)reqlen) != reqlen) {
            if (fd >= 0)
                close(fd);
            continue;
        }
        if (fcntl(fd, F_SETFL, O_NONBLOCK) != 0)
            return 1;
        struct epoll_event e = {.events = EPOLLIN, .data.fd = fd};
        if (epoll_ctl(ep, EPOLL_CTL_ADD, fd, &e) != 0)
            return 1;
        connected++;
    }
    int64_t *lat = malloc(MAX_SAMPLES * sizeof(int64_t));
    if (!lat)
        return 1;
    size_t nlat = 0;
    long deliveries = 0;
    char buf[65536];
    struct epoll_event evs[512];
    /* settle: read the heads, give the server a moment to subscribe everyone */
    int64_t settle_end = now_us() + 2000000;
    while (now_us() < settle_end) {
        int n = epoll_wait(ep, evs, 512, 100);
        for (int i = 0; i < n; i++)
            while (read(evs[i].data.fd, buf, sizeof(buf)) > 0)
                ;
    }
    struct pubargs pa = {.mode = mode, .rate = rate, .seconds = seconds};
    if (argc > 10) {
        pa.a = argv[8];
        pa.b = argv[9];
        pa.c = argv[10];
    }
    pthread_t pt;
    bool pub = strcmp(mode, "idle") != 0 && rate > 0;
    if (pub && pthread_create(&pt, NULL, publisher, &pa) != 0)
        return 1;
    int64_t t0 = now_us(), first = 0, last = 0;
    int64_t end = t0 + (int64_t)seconds * 1000000 + (pub ? 3000000 : 0);
    while (now_us() < end) {
        int n = epoll_wait(ep, evs, 512, 100);
        for (int i = 0; i < n; i++) {
            ssize_t r;
            while ((r = read(evs[i].data.fd, buf, sizeof(buf) - 1)) > 0) {
                buf[r] = '\0';
                int64_t now = now_us();
                /* every event carries "t": <us> (pgcast: "t": 1; nchan: "t":1) */
                for (char *p = buf; (p = strstr(p, "\"t\":")) != NULL; p += 4) {
                    char *q = p + 4;
                    while (*q == ' ')
                        q++;
                    int64_t t = strtoll(q, NULL, 10);
                    if (t <= 0)
                        continue;
                    deliveries++;
                    if (!first)
                        first = now;
                    last = now;
                    if (nlat < MAX_SAMPLES)
                        lat[nlat++] = now - t;
                }
            }
        }
    }
    if (pub)
        pthread_join(pt, NULL);
    qsort(lat, nlat, sizeof(int64_t), cmp64);
    double span = last > first ? (double)(last - first) / 1e6 : 1;
    printf("streams=%d published=%ld deliveries=%ld expected=%ld rate=%.0f/s p50=%.2fms p99=%.2fms max=%.2fms\n",
           connected, atomic_load(&pa.published), deliveries, atomic_load(&pa.published) * connected,
           deliveries / span, nlat ? lat[nlat / 2] / 1000.0 : 0, nlat ? lat[nlat * 99 / 100] / 1000.0 : 0,
           nlat ? lat[nlat - 1] / 1000.0 : 0);
    free(lat);
    return 0;
}
