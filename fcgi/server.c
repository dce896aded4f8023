/*
 * The FastCGI runtime: accept loop, a thread per request, plain-CGI mode, shutdown.
 *
 * Design: one thread per request, with a small stack (128 KiB reserved; an idle SSE
 * stream touches a few KiB of it). A stream spends its life in poll() on three file
 * descriptors — its FastCGI connection (to notice the client leaving at once), its
 * own eventfd (woken by the hub when events are queued) and the process-wide shutdown
 * eventfd — so thousands of mostly idle streams cost no CPU, and a slow or stalled client
 * blocks only the thread writing to it. libfcgi's FCGX_* API is reentrant per request,
 * which is what makes this simple; an event loop would need a FastCGI implementation of
 * our own, since libfcgi has no non-blocking mode. The cost is memory per stream (stack
 * pages actually used, plus the kernel's thread structures): bench/ measures it.
 *
 * The main thread accepts (FCGI_FAIL_ACCEPT_ON_INTR, so SIGTERM interrupts it), starts a
 * detached thread per request, and on SIGTERM/SIGINT stops accepting, signals every stream
 * through the shutdown eventfd and waits for them to finish.
 *
 * Plain CGI (no FastCGI socket, GATEWAY_INTERFACE set): the one request is read from the
 * environment and stdin and answered on stdout; the handler runs on the main thread.
 */
#define NO_FCGI_DEFINES
#include "server.h"

#include <errno.h>
#include <fcgiapp.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "log.h"

#define STREAM_STACK_BYTES (128 * 1024)
#define SHUTDOWN_GRACE_MS 10000

struct pgc_request {
    FCGX_Request fcgx; /* FastCGI mode */
    bool cgi;
    bool gone;
    bool drained; /* the request's stdin was read to its end */
    unsigned long long consumed; /* body bytes read (CGI) */
    char id[24];
    char **envp; /* FastCGI params or environ */
};

static atomic_int active_requests;
static atomic_bool shutting_down;
static int shutdown_fd = -1;
static pthread_mutex_t accept_mu = PTHREAD_MUTEX_INITIALIZER;
static atomic_uint next_id;

bool pgc_fcgi_shutting_down(void) { return atomic_load(&shutting_down); }
int pgc_fcgi_active(void) { return atomic_load(&active_requests); }

/* ---------------------------------------------------------------- request API */

const char *pgc_req_param(pgc_request *r, const char *name)
{
    if (r->cgi)
        return getenv(name);
    return FCGX_GetParam(name, r->fcgx.envp);
}

bool pgc_req_is_cgi(pgc_request *r) { return r->cgi; }
const char *pgc_req_id(pgc_request *r) { return r->id; }

static int body_read(pgc_request *r, char *buf, size_t len)
{
    if (!r->cgi)
        return FCGX_GetStr(buf, len > INT32_MAX ? INT32_MAX : (int)len, r->fcgx.in);
    for (;;) {
        ssize_t m = read(STDIN_FILENO, buf, len);
        if (m < 0 && errno == EINTR)
            continue;
        if (m > 0)
            r->consumed += (unsigned long long)m;
        return (int)m;
    }
}

int pgc_req_read_body(pgc_request *r, char **out, size_t *len, size_t max)
{
    *out = NULL;
    *len = 0;
    const char *cl = pgc_req_param(r, "CONTENT_LENGTH");
    char *end;
    unsigned long long want = cl && *cl ? strtoull(cl, &end, 10) : 0;
    if (cl && *cl && *end)
        return -1;
    if (want > max) {
        /* read and drop it (up to a bound), so the web server can deliver the 413
         * instead of failing to write the body to a process that stopped reading */
        char sink[16384];
        for (unsigned long long left = want < 64ULL * max ? want : 0; left > 0;) {
            int n = body_read(r, sink, left < sizeof(sink) ? (size_t)left : sizeof(sink));
            if (n <= 0)
                break;
            left -= (unsigned long long)n;
        }
        return -2;
    }
    char *buf = malloc((size_t)want + 1);
    if (!buf)
        return -1;
    size_t got = 0;
    while (got < want) {
        int n = body_read(r, buf + got, (size_t)(want - got));
        if (n <= 0)
            break;
        got += (size_t)n;
    }
    if (got != want) {
        free(buf);
        return -1;
    }
    buf[got] = '\0';
    *out = buf;
    *len = got;
    return 0;
}

int pgc_req_write(pgc_request *r, const char *data, size_t len)
{
    if (r->gone)
        return -1;
    if (r->cgi) {
        if (fwrite(data, 1, len, stdout) != len)
            r->gone = true;
    } else if (len && FCGX_PutStr(data, (int)len, r->fcgx.out) != (int)len) {
        r->gone = true;
    }
    return r->gone ? -1 : 0;
}

int pgc_req_puts(pgc_request *r, const char *s) { return pgc_req_write(r, s, strlen(s)); }

int pgc_req_printf(pgc_request *r, const char *fmt, ...)
{
    char small[1024];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(small, sizeof(small), fmt, ap);
    va_end(ap);
    if (n < 0)
        return -1;
    if ((size_t)n < sizeof(small))
        return pgc_req_write(r, small, (size_t)n);
    char *big = malloc((size_t)n + 1);
    if (!big)
        return -1;
    va_start(ap, fmt);
    vsnprintf(big, (size_t)n + 1, fmt, ap);
    va_end(ap);
    int rc = pgc_req_write(r, big, (size_t)n);
    free(big);
    return rc;
}

int pgc_req_flush(pgc_request *r)
{
    if (r->gone)
        return -1;
    if (r->cgi ? fflush(stdout) != 0 : FCGX_FFlush(r->fcgx.out) != 0)
        r->gone = true;
    return r->gone ? -1 : 0;
}

/* The web server has nothing more to send once the request is read: readable means it
 * closed the connection (the client left) or aborted the request. */
static bool peer_gone(int fd, short revents, bool cgi)
{
    if (revents & (POLLHUP | POLLERR | POLLRDHUP))
        return true;
    if (!cgi && (revents & POLLIN)) {
        char c;
        ssize_t n = recv(fd, &c, 1, MSG_PEEK | MSG_DONTWAIT);
        return n >= 0 || (errno != EAGAIN && errno != EWOULDBLOCK);
    }
    return false;
}

enum pgc_wait_result pgc_req_wait(pgc_request *r, int wake_fd, int timeout_ms)
{
    if (r->gone)
        return PGC_WAIT_GONE;
    if (!r->cgi && !r->drained) {
        /* consume the rest of the request (at least the empty FCGI_STDIN record that
         * ends it): afterwards, anything readable on the connection means the web
         * server closed or aborted it */
        char buf[4096];
        while (FCGX_GetStr(buf, sizeof(buf), r->fcgx.in) > 0)
            ;
        r->drained = true;
    }
    if (atomic_load(&shutting_down))
        return PGC_WAIT_SHUTDOWN;
    /* CGI: stdout is a pipe to the web server; POLLERR/POLLHUP when it is closed */
    int conn = r->cgi ? STDOUT_FILENO : r->fcgx.ipcFd;
    struct pollfd fds[3] = {{conn, (short)(r->cgi ? 0 : POLLIN | POLLRDHUP), 0},
                            {wake_fd, POLLIN, 0},
                            {shutdown_fd, POLLIN, 0}};
    int n = poll(fds, 3, timeout_ms);
    if (n < 0)
        return errno == EINTR ? PGC_WAIT_TIMEOUT : PGC_WAIT_GONE;
    if (fds[2].revents & POLLIN)
        return PGC_WAIT_SHUTDOWN;
    if (peer_gone(conn, fds[0].revents, r->cgi)) {
        r->gone = true;
        return PGC_WAIT_GONE;
    }
    if (wake_fd >= 0 && (fds[1].revents & POLLIN)) {
        uint64_t v;
        ssize_t m = read(wake_fd, &v, sizeof(v));
        (void)m; /* non-blocking counter: reading resets it, EAGAIN means already reset */
        return PGC_WAIT_WOKEN;
    }
    return PGC_WAIT_TIMEOUT;
}

/* ---------------------------------------------------------------- serving */

static void set_id(pgc_request *r)
{
    unsigned n = atomic_fetch_add(&next_id, 1);
    snprintf(r->id, sizeof(r->id), "%x-%x", (unsigned)getpid(), n);
}

struct job {
    pgc_request *r;
    pgc_handler_fn handler;
    void *ctx;
};

static void *request_thread(void *arg)
{
    struct job *j = arg;
    j->handler(j->r, j->ctx);
    FCGX_Finish_r(&j->r->fcgx);
    FCGX_Free(&j->r->fcgx, 1);
    free(j->r);
    free(j);
    atomic_fetch_sub(&active_requests, 1);
    return NULL;
}

static void on_signal(int sig)
{
    (void)sig;
    atomic_store(&shutting_down, true);
    uint64_t one = 1;
    ssize_t w = write(shutdown_fd, &one, sizeof(one));
    (void)w; /* async-signal context: nothing to do about a failed write */
    FCGX_ShutdownPending();
}

enum pgc_fcgi_mode pgc_fcgi_detect_mode(const char *listen)
{
    if (listen && *listen)
        return PGC_MODE_FCGI_LISTEN;
    if (FCGX_IsCGI() && getenv("GATEWAY_INTERFACE"))
        return PGC_MODE_CGI;
    return PGC_MODE_FCGI_INHERITED;
}

/* Thousands of streams need thousands of descriptors: raise the soft limit to the hard. */
static void raise_fd_limit(void)
{
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        if (setrlimit(RLIMIT_NOFILE, &rl) != 0)
            PGC_WARN("cannot raise the open-files limit: %s", strerror(errno));
    }
}

static int serve_cgi(pgc_handler_fn handler, void *ctx)
{
    pgc_request *r = calloc(1, sizeof(*r));
    if (!r)
        return 1;
    r->cgi = true;
    set_id(r);
    handler(r, ctx);
    if (!r->gone)
        fflush(stdout);
    /* read what is left of the body: a process that exits with unread input makes the
     * web server's socket reset, and the answer already written is lost with it */
    const char *cl = getenv("CONTENT_LENGTH");
    unsigned long long want = cl ? strtoull(cl, NULL, 10) : 0;
    char sink[16384];
    while (r->consumed < want && want - r->consumed < (64ULL << 20)) {
        unsigned long long left = want - r->consumed;
        if (body_read(r, sink, left < sizeof(sink) ? (size_t)left : sizeof(sink)) <= 0)
            break;
    }
    free(r);
    return 0;
}

int pgc_fcgi_serve(enum pgc_fcgi_mode mode, const char *listen, pgc_handler_fn handler, void *ctx)
{
    signal(SIGPIPE, SIG_IGN); /* a client gone is a failed write, not a dead process */
    shutdown_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (shutdown_fd < 0) {
        PGC_ERROR("eventfd: %s", strerror(errno));
        return 1;
    }
    if (mode == PGC_MODE_CGI)
        return serve_cgi(handler, ctx);

    raise_fd_limit();
    if (FCGX_Init() != 0) {
        PGC_ERROR("FCGX_Init failed");
        return 1;
    }
    int sock = 0;
    if (mode == PGC_MODE_FCGI_LISTEN) {
        sock = FCGX_OpenSocket(listen, 1024);
        if (sock < 0) {
            PGC_ERROR("cannot listen on %s: %s", listen, strerror(errno));
            return 1;
        }
        PGC_INFO("listening on %s", listen);
    }
    struct sigaction sa;
    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = on_signal;
    sigemptyset(&sa.sa_mask); /* no SA_RESTART: accept() must return on SIGTERM */
    if (sigaction(SIGTERM, &sa, NULL) != 0 || sigaction(SIGINT, &sa, NULL) != 0) {
        PGC_ERROR("sigaction: %s", strerror(errno));
        return 1;
    }
    /* worker threads never take the signals: only this thread's accept is interrupted */
    sigset_t block, old;
    sigemptyset(&block);
    sigaddset(&block, SIGTERM);
    sigaddset(&block, SIGINT);
    pthread_attr_t attr;
    if (pthread_attr_init(&attr) != 0 || pthread_attr_setstacksize(&attr, STREAM_STACK_BYTES) != 0 ||
        pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED) != 0) {
        PGC_ERROR("pthread attributes failed");
        return 1;
    }

    while (!atomic_load(&shutting_down)) {
        pgc_request *r = calloc(1, sizeof(*r));
        struct job *j = calloc(1, sizeof(*j));
        if (!r || !j || FCGX_InitRequest(&r->fcgx, sock, FCGI_FAIL_ACCEPT_ON_INTR) != 0) {
            free(r);
            free(j);
            PGC_ERROR("out of memory accepting a request");
            sleep(1);
            continue;
        }
        pthread_mutex_lock(&accept_mu);
        int rc = FCGX_Accept_r(&r->fcgx);
        pthread_mutex_unlock(&accept_mu);
        if (rc < 0) {
            FCGX_Free(&r->fcgx, 1);
            free(r);
            free(j);
            if (atomic_load(&shutting_down))
                break;
            if (rc == -EINTR || errno == EINTR)
                continue;
            PGC_ERROR("accept failed (%d); stopping", rc);
            break;
        }
        set_id(r);
        j->r = r;
        j->handler = handler;
        j->ctx = ctx;
        atomic_fetch_add(&active_requests, 1);
        pthread_t t;
        int blocked = pthread_sigmask(SIG_BLOCK, &block, &old) == 0;
        int started = pthread_create(&t, &attr, request_thread, j) == 0;
        if (blocked)
            pthread_sigmask(SIG_SETMASK, &old, NULL);
        if (!started) {
            PGC_ERROR("cannot start a request thread: %s", strerror(errno));
            atomic_fetch_sub(&active_requests, 1);
            FCGX_Finish_r(&r->fcgx);
            FCGX_Free(&r->fcgx, 1);
            free(r);
            free(j);
        }
    }
    pthread_attr_destroy(&attr);

    /* every stream saw the shutdown eventfd; give them a moment to say goodbye */
    PGC_INFO("shutting down: %d requests to finish", atomic_load(&active_requests));
    for (int waited = 0; atomic_load(&active_requests) > 0 && waited < SHUTDOWN_GRACE_MS; waited += 10)
        usleep(10000);
    if (atomic_load(&active_requests) > 0)
        PGC_WARN("%d requests still running at exit", atomic_load(&active_requests));
    return 0;
}
