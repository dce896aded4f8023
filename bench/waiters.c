/*
 * waiters: bench/waiters.py in C, with the same arguments and the same one-line answer,
 * for a client that costs the machine as little as it can while the servers answer:
 *
 *   waiters HOST PORT PATH HEADERS N sql:STATEMENT|http:PATH WORK
 *
 * N connections each send one GET (path, extra headers given as text with \r\n), about
 * 2,000 a second; WORK/held is written once every request was sent. Once WORK/go exists
 * the publish is sent — sql: on a libpq connection opened beforehand (the environment's
 * PG* variables, as psql), http: a POST on a connection opened beforehand — and the time
 * from sending it to each answer's first bytes is taken (one clock reading per
 * epoll_wait, as the Python client does). WAITERS_WARMUP: SQL run on the publish's
 * connection before the clock (a publish elsewhere: a publisher's session is warm). Prints
 *   answered= ok= early= first= p50= p99= last= publish= cpu=
 * (ms; ok = answered 200; early = answered before the publish; cpu = this process's CPU
 * time from the publish to the last answer), and acked= (ms: when the publish's own answer
 * came back — the commit, for sql:).
 */
#include <errno.h>
#include <libpq-fe.h>
#include <netdb.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

static double now_ms(clockid_t id)
{
    struct timespec ts;
    clock_gettime(id, &ts);
    return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

static int connect_to(const struct addrinfo *ai)
{
    int fd = socket(ai->ai_family, ai->ai_socktype | SOCK_CLOEXEC, ai->ai_protocol);
    if (fd < 0 || connect(fd, ai->ai_addr, ai->ai_addrlen) != 0) {
        perror("waiters: connect");
        exit(1);
    }
    return fd;
}

static void send_all(int fd, const char *p, size_t n)
{
    while (n > 0) {
        ssize_t w = send(fd, p, n, MSG_NOSIGNAL);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0) {
            perror("waiters: send");
            exit(1);
        }
        p += w;
        n -= (size_t)w;
    }
}

static bool exists(const char *work, const char *name)
{
    char path[4096];
    struct stat sb;
    snprintf(path, sizeof(path), "%s/%s", work, name);
    return stat(path, &sb) == 0;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

int main(int argc, char **argv)
{
    if (argc != 8) {
        fprintf(stderr, "usage: waiters HOST PORT PATH HEADERS N sql:STATEMENT|http:PATH WORK\n");
        return 2;
    }
    const char *host = argv[1], *port = argv[2], *path = argv[3], *publish = argv[6], *work = argv[7];
    int n = atoi(argv[5]);
    /* the headers come as text: \r\n written out */
    char hdrs[4096];
    size_t hl = 0;
    for (const char *s = argv[4]; *s && hl + 2 < sizeof(hdrs); s++) {
        if (strncmp(s, "\\r\\n", 4) == 0) {
            hdrs[hl++] = '\r';
            hdrs[hl++] = '\n';
            s += 3;
        } else {
            hdrs[hl++] = *s;
        }
    }
    hdrs[hl] = '\0';
    char req[8192];
    int rl = snprintf(req, sizeof(req), "GET %s HTTP/1.0\r\nHost: %s\r\n%s\r\n", path, host, hdrs);
    if (n <= 0 || rl < 0 || (size_t)rl >= sizeof(req)) {
        fprintf(stderr, "waiters: bad arguments\n");
        return 2;
    }
    struct addrinfo hints = {.ai_family = AF_INET, .ai_socktype = SOCK_STREAM}, *ai;
    if (getaddrinfo(host, port, &hints, &ai) != 0) {
        fprintf(stderr, "waiters: cannot resolve %s\n", host);
        return 1;
    }
    int ep = epoll_create1(EPOLL_CLOEXEC);
    if (ep < 0) {
        perror("waiters: epoll_create1");
        return 1;
    }
    for (int i = 0; i < n; i++) {
        int fd = connect_to(ai);
        send_all(fd, req, (size_t)rl);
        struct epoll_event ev = {.events = EPOLLIN, .data.fd = fd};
        if (epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev) != 0) {
            perror("waiters: epoll_ctl");
            return 1;
        }
        if (i % 250 == 249)
            usleep(100000); /* about 2,000 new waiters a second (see bench/waiters.py) */
    }
    /* the publisher is connected before the clock starts */
    bool sql = strncmp(publish, "sql:", 4) == 0;
    const char *what = strchr(publish, ':');
    if (!what) {
        fprintf(stderr, "waiters: the publish is sql:STATEMENT or http:PATH\n");
        return 2;
    }
    what++;
    PGconn *pg = NULL;
    int pub = -1;
    if (sql) {
        pg = PQconnectdb("");
        if (PQstatus(pg) != CONNECTION_OK) {
            fprintf(stderr, "waiters: %s", PQerrorMessage(pg));
            return 1;
        }
        /* a publisher's session is warm: the first call of a PL/pgSQL function in a
         * session compiles it and plans its statements (several ms), which no later
         * publish pays */
        const char *warm = getenv("WAITERS_WARMUP");
        if (warm && *warm) {
            PGresult *r = PQexec(pg, warm);
            if (PQresultStatus(r) != PGRES_TUPLES_OK && PQresultStatus(r) != PGRES_COMMAND_OK) {
                fprintf(stderr, "waiters: warm-up: %s", PQresultErrorMessage(r));
                return 1;
            }
            PQclear(r);
        }
    } else {
        pub = connect_to(ai);
    }
    char held[4096];
    snprintf(held, sizeof(held), "%s/held", work);
    FILE *f = fopen(held, "w");
    if (!f || fprintf(f, "%d", n) < 0 || fclose(f) != 0) {
        perror("waiters: held");
        return 1;
    }
    while (!exists(work, "go"))
        usleep(50000);
    struct epoll_event *evs = calloc((size_t)n, sizeof(*evs));
    double *lat = calloc((size_t)n, sizeof(*lat));
    if (!evs || !lat) {
        fprintf(stderr, "waiters: out of memory\n");
        return 1;
    }
    int early = epoll_wait(ep, evs, n, 0);
    double c0 = now_ms(CLOCK_PROCESS_CPUTIME_ID), t0 = now_ms(CLOCK_MONOTONIC);
    if (sql) {
        if (!PQsendQuery(pg, what)) {
            fprintf(stderr, "waiters: %s", PQerrorMessage(pg));
            return 1;
        }
    } else {
        char post[4096];
        int pl = snprintf(post, sizeof(post), "POST %s HTTP/1.0\r\nHost: %s\r\nContent-Length: 2\r\n\r\n{}", what, host);
        send_all(pub, post, (size_t)pl);
    }
    /* the publish's answer is watched too: when its commit came back (acked=) */
    int pubfd = sql ? PQsocket(pg) : pub;
    struct epoll_event pev = {.events = EPOLLIN, .data.fd = pubfd};
    if (epoll_ctl(ep, EPOLL_CTL_ADD, pubfd, &pev) != 0) {
        perror("waiters: epoll_ctl");
        return 1;
    }
    double acked = -1;
    int answered = 0, good = 0;
    char buf[256];
    while (answered < n && now_ms(CLOCK_MONOTONIC) - t0 < 30000) {
        int k = epoll_wait(ep, evs, n < 1024 ? n : 1024, 500); /* batches as Python's epoll.poll() */
        double t = now_ms(CLOCK_MONOTONIC);
        for (int i = 0; i < k; i++) {
            int fd = evs[i].data.fd;
            if (fd == pubfd) {
                if (!sql || (PQconsumeInput(pg) && !PQisBusy(pg))) {
                    acked = t - t0;
                    epoll_ctl(ep, EPOLL_CTL_DEL, pubfd, NULL);
                }
                continue;
            }
            ssize_t m = recv(fd, buf, sizeof(buf) - 1, 0);
            buf[m > 0 ? m : 0] = '\0';
            close(fd); /* out of the epoll set with it */
            lat[answered++] = t - t0;
            const char *sp = strchr(buf, ' ');
            good += sp && strncmp(sp + 1, "200", 3) == 0;
        }
    }
    double cpu = now_ms(CLOCK_PROCESS_CPUTIME_ID) - c0;
    char status[64] = "";
    if (sql) {
        PGresult *r;
        while ((r = PQgetResult(pg))) {
            if (PQresultStatus(r) == PGRES_TUPLES_OK && PQntuples(r) == 1)
                snprintf(status, sizeof(status), "seq_%s", PQgetvalue(r, 0, 0));
            else if (!status[0])
                snprintf(status, sizeof(status), "%s", PQresStatus(PQresultStatus(r)));
            PQclear(r);
        }
        PQfinish(pg);
    } else {
        ssize_t m = recv(pub, buf, sizeof(buf) - 1, 0);
        buf[m > 0 ? m : 0] = '\0';
        const char *sp = strchr(buf, ' ');
        snprintf(status, sizeof(status), "%.3s", sp ? sp + 1 : "?");
    }
    qsort(lat, (size_t)answered, sizeof(*lat), cmp_double);
#define Q(fr) (answered ? lat[(int)(answered * (fr)) < answered ? (int)(answered * (fr)) : answered - 1] : 0.0 / 0.0)
    printf("answered=%d ok=%d early=%d first=%.1f p50=%.1f p99=%.1f last=%.1f publish=%s cpu=%.0f acked=%.1f\n",
           answered, good, early, Q(0.0), Q(0.5), Q(0.99), Q(1.0), status, cpu, acked);
    freeaddrinfo(ai);
    return 0;
}
