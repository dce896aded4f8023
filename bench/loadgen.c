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
 *
 * WebSocket mode: the same arguments after
 *   loadgen --ws [--subscribe CHANNEL] HOST PORT PATH ...
 * Each connection does the RFC 6455 handshake, then (with --subscribe) sends the masked
 * text frame {"type":"subscribe","channel":CHANNEL} (SPEC §5); frames are parsed, pings
 * answered, the "t" of each text message measured. Once every connection is open (and
 * subscribed) or 60 s have passed it prints "ready open=N subscribed=N" on its own line,
 * and one second later holds (idle) or publishes, as above.
 *
 * LOADGEN_GRACE_S: seconds to wait for deliveries after the last publish (default 3).
 * In WebSocket mode latency counts from when each publish was due (see payload_for), and
 * a line "publish calls=N rtt_p50=… rtt_p99=…; … sent_p50=… sent_p99=…" gives the round
 * trip of the publish calls (SQL call with its commit, or HTTP POST) and the latency
 * counted from when each was sent instead.
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

/* WebSocket mode: per connection, indexed by fd (loopback fds are small and dense). */
struct wsc {
    bool open, subscribed;
    char *part;        /* an incomplete frame carried to the next read */
    size_t plen;
};
static struct wsc *wsc;
static bool ws_mode;
static const char *ws_channel;
static int n_open, n_subscribed;
static long deliveries;
static int64_t *lat, first_at, last_at;
static size_t nlat;
static int64_t *lat_sent; /* WebSocket mode: from the "s" of each event */
static size_t nlat_sent;

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
    atomic_bool done;
    int64_t *rtt; /* round trip of each publish call, us */
};

/* Sleeps until publish i is due; returns when it was due. */
static int64_t pace(int64_t start, long i, int rate)
{
    int64_t due = start + i * 1000000L / rate, now = now_us();
    if (due > now) {
        struct timespec ts = {(time_t)((due - now) / 1000000), (long)((due - now) % 1000000) * 1000};
        nanosleep(&ts, NULL);
    }
    return due;
}

/* The payload: {"t": when it was sent}; in WebSocket mode {"t": when it was due, "s":
 * when it was sent}, so a publish the server held up (a slow commit, a POST answered
 * only after its fan-out) counts in the latency, as it would for a producer at a fixed
 * rate, and the time from the send is reported as well. */
static void payload_for(char *buf, size_t size, int64_t due, const char *space)
{
    if (ws_mode)
        snprintf(buf, size, "{\"t\":%s%lld,\"s\":%s%lld}", space, (long long)due, space, (long long)now_us());
    else
        snprintf(buf, size, "{\"t\":%s%lld}", space, (long long)now_us());
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
            atomic_store(&p->done, true);
            return NULL;
        }
        for (long i = 0; i < total; i++) {
            int64_t due = pace(start, i, p->rate);
            char payload[96];
            payload_for(payload, sizeof(payload), due, " ");
            const char *params[3] = {p->b, p->c, payload};
            int64_t t = now_us();
            PGresult *r = PQexecParams(c, "SELECT realtime.publish($1, $2, 'bench', $3::jsonb)", 3, NULL, params,
                                       NULL, NULL, 0);
            if (PQresultStatus(r) == PGRES_TUPLES_OK && p->rtt)
                p->rtt[atomic_fetch_add(&p->published, 1)] = now_us() - t;
            PQclear(r);
        }
        PQfinish(c);
    } else {
        int fd = -1;
        for (long i = 0; i < total; i++) {
            int64_t due = pace(start, i, p->rate);
            if (fd < 0 && (fd = connect_to(p->a, atoi(p->b))) < 0)
                continue;
            char body[96], req[512], resp[4096];
            int64_t t = now_us();
            payload_for(body, sizeof(body), due, "");
            int bl = (int)strlen(body);
            int rl = snprintf(req, sizeof(req),
                              "POST %s HTTP/1.1\r\nHost: %s\r\nContent-Type: application/json\r\n"
                              "Content-Length: %d\r\n\r\n%s",
                              p->c, p->a, bl, body);
            if (write(fd, req, (size_t)rl) != rl || read(fd, resp, sizeof(resp)) <= 0) {
                close(fd);
                fd = -1;
                continue;
            }
            if (p->rtt)
                p->rtt[atomic_fetch_add(&p->published, 1)] = now_us() - t;
        }
        if (fd >= 0)
            close(fd);
    }
    atomic_store(&p->done, true);
    return NULL;
}

/* Sends one client frame, masked as RFC 6455 requires of clients. Control frames and a
 * subscribe are small: a short write on a fresh socket is not expected; it is counted as
 * a failure of that connection rather than buffered. */
static int ws_send(int fd, int opcode, const char *data, size_t len)
{
    unsigned char f[14 + 256];
    if (len > 256)
        return -1;
    size_t h = 0;
    f[h++] = (unsigned char)(0x80 | opcode);
    if (len < 126) {
        f[h++] = (unsigned char)(0x80 | len);
    } else {
        f[h++] = 0x80 | 126;
        f[h++] = (unsigned char)(len >> 8);
        f[h++] = (unsigned char)len;
    }
    uint32_t key = (uint32_t)random();
    memcpy(f + h, &key, 4);
    const unsigned char *k = f + h;
    h += 4;
    for (size_t i = 0; i < len; i++)
        f[h + i] = (unsigned char)data[i] ^ k[i % 4];
    return write(fd, f, h + len) == (ssize_t)(h + len) ? 0 : -1;
}

static void measure(const char *p, const char *end)
{
    /* every event carries "t": <us> (pgcast: "t": 1; nchan: "t":1) */
    int64_t now = now_us();
    const char *msg = p;
    for (; (p = memmem(p, (size_t)(end - p), "\"t\":", 4)) != NULL; p += 4) {
        const char *q = p + 4;
        while (q < end && *q == ' ')
            q++;
        int64_t t = strtoll(q, NULL, 10);
        if (t <= 0)
            continue;
        deliveries++;
        if (!first_at)
            first_at = now;
        last_at = now;
        if (nlat < MAX_SAMPLES)
            lat[nlat++] = now - t;
        const char *sp;
        if (ws_mode && (sp = memmem(msg, (size_t)(end - msg), "\"s\":", 4)) != NULL && nlat_sent < MAX_SAMPLES)
            lat_sent[nlat_sent++] = now - strtoll(sp + 4 + (sp[4] == ' '), NULL, 10); /* one event a frame */
    }
}

/* One complete server frame (unmasked, as servers send). Messages are single frames
 * from both servers measured; a continuation frame is measured on its own. */
static void ws_frame(int fd, int opcode, const char *p, size_t len)
{
    if (opcode == 0x9) { /* ping: echo it */
        if (ws_send(fd, 0xA, p, len < 125 ? len : 125) != 0)
            fprintf(stderr, "loadgen: pong not sent\n");
        return;
    }
    if (opcode != 0x1 && opcode != 0x0)
        return;
    if (!wsc[fd].subscribed && ws_channel && memmem(p, len, "\"type\":\"subscribed\"", 19)) {
        wsc[fd].subscribed = true;
        n_subscribed++;
        return;
    }
    measure(p, p + len);
}

/* Bytes from a WebSocket connection: the 101 response, then frames. false: drop it. */
static bool ws_input(int fd, char *buf, size_t n)
{
    struct wsc *c = &wsc[fd];
    size_t off = 0;
    if (!c->open) {
        /* "HTTP/1.1 101 ..." up to its blank line, in the first read on loopback */
        const char *blank = memmem(buf, n, "\r\n\r\n", 4);
        if (n < 12 || memcmp(buf + 9, "101", 3) != 0 || !blank)
            return false;
        off = (size_t)(blank - buf) + 4;
        c->open = true;
        n_open++;
        if (ws_channel) {
            char sub[300];
            int sl = snprintf(sub, sizeof(sub), "{\"type\":\"subscribe\",\"channel\":\"%s\"}", ws_channel);
            if (sl < 0 || (size_t)sl >= sizeof(sub) || ws_send(fd, 0x1, sub, (size_t)sl) != 0)
                return false;
        }
    }
    const char *p = buf + off, *end = buf + n;
    char *joined = NULL;
    if (c->plen) { /* the rest of a frame cut by the previous read */
        joined = malloc(c->plen + (size_t)(end - p));
        if (!joined)
            return false;
        memcpy(joined, c->part, c->plen);
        memcpy(joined + c->plen, p, (size_t)(end - p));
        end = joined + c->plen + (end - p);
        p = joined;
        free(c->part);
        c->part = NULL;
        c->plen = 0;
    }
    while (end - p >= 2) {
        int opcode = p[0] & 0x0f;
        uint64_t len = (unsigned char)p[1] & 0x7f;
        size_t h = 2;
        if (len == 126) {
            if (end - p < 4)
                break;
            len = ((uint64_t)(unsigned char)p[2] << 8) | (unsigned char)p[3];
            h = 4;
        } else if (len == 127) {
            if (end - p < 10)
                break;
            len = 0;
            for (int i = 0; i < 8; i++)
                len = (len << 8) | (unsigned char)p[2 + i];
            h = 10;
        }
        if ((uint64_t)(end - p) < h + len)
            break;
        ws_frame(fd, opcode, p + h, (size_t)len);
        p += h + len;
    }
    if (p < end) {
        c->plen = (size_t)(end - p);
        c->part = malloc(c->plen);
        if (!c->part) {
            free(joined);
            return false;
        }
        memcpy(c->part, p, c->plen);
    }
    free(joined);
    return true;
}

/* Reads what is there; false when the connection ended. */
static bool on_readable(int fd, char *buf, size_t size)
{
    ssize_t r;
    while ((r = read(fd, buf, size - 1)) > 0) {
        if (ws_mode) {
            if (!ws_input(fd, buf, (size_t)r))
                return false;
        } else {
            buf[r] = '\0';
            measure(buf, buf + r);
        }
    }
    return r < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR);
}

static int cmp64(const void *a, const void *b)
{
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return x < y ? -1 : x > y;
}

int main(int argc, char **argv)
{
    while (argc > 1 && strncmp(argv[1], "--", 2) == 0) {
        if (strcmp(argv[1], "--ws") == 0) {
            ws_mode = true;
        } else if (strcmp(argv[1], "--subscribe") == 0 && argc > 2) {
            ws_mode = true;
            ws_channel = argv[2];
            argv++;
            argc--;
        } else {
            break;
        }
        argv++;
        argc--;
    }
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
    if (ws_mode) {
        if (getrlimit(RLIMIT_NOFILE, &rl) != 0 || !(wsc = calloc(rl.rlim_cur, sizeof(*wsc))))
            return 1;
        srandom((unsigned)now_us());
    }
    int ep = epoll_create1(0);
    if (ep < 0)
        return 1;
    int connected = 0;
    char req[1024];
    int reqlen = ws_mode ? snprintf(req, sizeof(req),
                                    "GET %s HTTP/1.1\r\nHost: %s:%d\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                                    "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n",
                                    path, host, port)
                         : snprintf(req, sizeof(req), "GET %s HTTP/1.1\r\nHost: %s\r\nAccept: text/event-stream\r\n\r\n",
                                    path, host);
    for (int i = 0; i < streams; i++) {
        int fd = connect_to(host, port);
        if (fd < 0 || (ws_mode && (rlim_t)fd >= rl.rlim_cur) || write(fd, req, (size_t)reqlen) != reqlen) {
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
    lat = malloc(MAX_SAMPLES * sizeof(int64_t));
    if (!lat || (ws_mode && !(lat_sent = malloc(MAX_SAMPLES * sizeof(int64_t)))))
        return 1;
    char buf[65536];
    struct epoll_event evs[512];
    /* settle: read the heads, give the server a moment to subscribe everyone; WebSocket
     * connections until each is open (and subscribed), or at most 60 s */
    int64_t settle_end = now_us() + (ws_mode ? 60000000 : 2000000);
    while (now_us() < settle_end) {
        if (ws_mode && n_open == connected && (!ws_channel || n_subscribed == connected))
            break;
        int n = epoll_wait(ep, evs, 512, 100);
        for (int i = 0; i < n; i++) {
            int fd = evs[i].data.fd;
            if (!ws_mode) {
                while (read(fd, buf, sizeof(buf)) > 0)
                    ;
            } else if (!on_readable(fd, buf, sizeof(buf))) {
                close(fd);
                connected--;
            }
        }
    }
    if (ws_mode) {
        printf("ready open=%d subscribed=%d\n", n_open, n_subscribed);
        fflush(stdout);
        /* a second before publishing: time for the caller to sample the server's CPU */
        int64_t go = now_us() + 1000000;
        while (now_us() < go) {
            int n = epoll_wait(ep, evs, 512, 100);
            for (int i = 0; i < n; i++) {
                if (!on_readable(evs[i].data.fd, buf, sizeof(buf))) {
                    close(evs[i].data.fd);
                    connected--;
                }
            }
        }
    }
    struct pubargs pa = {.mode = mode, .rate = rate, .seconds = seconds};
    if (rate > 0 && !(pa.rtt = calloc((size_t)rate * (size_t)seconds + 1, sizeof(int64_t))))
        return 1;
    if (argc > 10) {
        pa.a = argv[8];
        pa.b = argv[9];
        pa.c = argv[10];
    }
    pthread_t pt;
    bool pub = strcmp(mode, "idle") != 0 && rate > 0;
    if (pub && pthread_create(&pt, NULL, publisher, &pa) != 0)
        return 1;
    int64_t t0 = now_us();
    /* after the last publish: LOADGEN_GRACE_S (3) seconds for deliveries still on their
     * way; in WebSocket mode it ends as soon as every connection has every event */
    const char *grace = getenv("LOADGEN_GRACE_S");
    int64_t end = t0 + (int64_t)seconds * 1000000 + (pub ? (grace ? atoi(grace) : 3) * 1000000LL : 0);
    while (now_us() < end) {
        if (ws_mode && pub && atomic_load(&pa.done) &&
            deliveries >= atomic_load(&pa.published) * connected)
            break;
        int n = epoll_wait(ep, evs, 512, 100);
        for (int i = 0; i < n; i++) {
            int fd = evs[i].data.fd;
            if (!on_readable(fd, buf, sizeof(buf))) {
                close(fd); /* ended by the server: out of the epoll set */
                connected--;
            }
        }
    }
    if (pub)
        pthread_join(pt, NULL);
    qsort(lat, nlat, sizeof(int64_t), cmp64);
    size_t npub = (size_t)atomic_load(&pa.published);
    if (ws_mode && npub) { /* what the publish call itself took */
        qsort(pa.rtt, npub, sizeof(int64_t), cmp64);
        qsort(lat_sent, nlat_sent, sizeof(int64_t), cmp64);
        printf("publish calls=%zu rtt_p50=%.2fms rtt_p99=%.2fms; latency from the send: sent_p50=%.2fms sent_p99=%.2fms\n",
               npub, pa.rtt[npub / 2] / 1000.0, pa.rtt[npub * 99 / 100] / 1000.0,
               nlat_sent ? lat_sent[nlat_sent / 2] / 1000.0 : 0, nlat_sent ? lat_sent[nlat_sent * 99 / 100] / 1000.0 : 0);
    }
    free(pa.rtt);
    free(lat_sent);
    double span = last_at > first_at ? (double)(last_at - first_at) / 1e6 : 1;
    printf("streams=%d published=%ld deliveries=%ld expected=%ld rate=%.0f/s p50=%.2fms p99=%.2fms max=%.2fms\n",
           connected, atomic_load(&pa.published), deliveries, atomic_load(&pa.published) * connected,
           deliveries / span, nlat ? lat[nlat / 2] / 1000.0 : 0, nlat ? lat[nlat * 99 / 100] / 1000.0 : 0,
           nlat ? lat[nlat - 1] / 1000.0 : 0);
    free(lat);
    return 0;
}
