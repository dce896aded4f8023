/*
 * The FastCGI runtime: accept loop, a pool of request threads, plain-CGI mode, shutdown.
 *
 * Design: a request runs on a thread of its own, taken from a pool (pre-started, small
 * stacks of 128 KiB reserved; a request touches a few KiB of it), so a slow or stalled
 * client blocks only its own request. libfcgi's FCGX_* API is reentrant per request,
 * which is what makes this simple; it has no non-blocking mode, so an event loop over
 * whole requests would need a FastCGI parser of our own. Short requests (a poll, a
 * publish) give their thread back to the pool: no thread is created per request. What
 * lives long — an SSE stream once its head is written, a long-poll while it waits —
 * leaves its thread for the process's one stream loop (stream.c): an idle stream then
 * costs a few hundred bytes and no thread. (A long-poll waits before it writes
 * anything: the stream then writes its whole answer, head included.)
 * The pool grows whenever every thread is busy and shrinks back to POOL_MAX_IDLE idle
 * threads as requests finish: a thread beyond them waits POOL_LINGER_MS for another
 * request before it ends, so a steady load of requests that wait (polls on a shared
 * positions read or sync barrier come in batches) reuses its threads instead of
 * creating and ending dozens per batch.
 *
 * The main thread accepts (FCGI_FAIL_ACCEPT_ON_INTR, so SIGTERM interrupts it) and hands
 * each request to the pool; on SIGTERM/SIGINT it stops accepting, signals every request
 * and stream through the shutdown eventfd and waits for them to finish.
 *
 * Plain CGI (no FastCGI socket, GATEWAY_INTERFACE set): the one request is read from the
 * environment and stdin and answered on stdout; the handler runs on the main thread.
 */
#include "server.h"

#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#include "admit.h"
#include "internal.h"
#include "log.h"

#define THREAD_STACK_BYTES (128 * 1024)
#define POOL_MAX_IDLE 16
#define POOL_LINGER_MS 2000
#define SHUTDOWN_GRACE_MS 10000

static atomic_int active_requests;
static atomic_bool shutting_down;
static int shutdown_fd = -1;
static atomic_uint next_id;

bool pgc_fcgi_shutting_down(void) { return atomic_load(&shutting_down); }
int pgc_fcgi_active(void) { return atomic_load(&active_requests); }
int pgc_fcgi_shutdown_fd(void) { return shutdown_fd; }

static void set_id(pgc_request *r)
{
    unsigned n = atomic_fetch_add(&next_id, 1);
    snprintf(r->id, sizeof(r->id), "%x-%x", (unsigned)getpid(), n);
}

/* ---------------------------------------------------------------- the pool */

struct job {
    struct job *next;
    pgc_request *r;
    pgc_handler_fn handler;
    void *ctx;
};

static struct {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    struct job *head, *tail; /* accepted, waiting for a thread */
    int queued, idle;
    bool stop;
    pthread_attr_t attr;
} pool = {.mu = PTHREAD_MUTEX_INITIALIZER, .cv = PTHREAD_COND_INITIALIZER};

static void finish_request(pgc_request *r)
{
    pgc_admit_release(r);
    FCGX_Finish_r(&r->fcgx);
    FCGX_Free(&r->fcgx, 1);
    free(r);
    atomic_fetch_sub(&active_requests, 1);
}

/* Set on a request thread when its handler handed the request to the stream loop. */
static _Thread_local bool handed_over;

void pgc_fcgi_mark_detached(pgc_request *r)
{
    r->detached = true;
    handed_over = true;
}

void pgc_fcgi_detached_done(pgc_request *r)
{
    pgc_admit_release(r);
    free(r);
    atomic_fetch_sub(&active_requests, 1);
}

static void *worker(void *arg)
{
    (void)arg;
    pthread_mutex_lock(&pool.mu);
    for (;;) {
        bool linger_over = false;
        while (!pool.head && !pool.stop && !linger_over) {
            bool extra = pool.idle >= POOL_MAX_IDLE;
            pool.idle++;
            if (extra) {
                struct timespec until;
                clock_gettime(CLOCK_REALTIME, &until); /* the condition's clock */
                until.tv_sec += POOL_LINGER_MS / 1000;
                until.tv_nsec += (long)(POOL_LINGER_MS % 1000) * 1000000L;
                if (until.tv_nsec >= 1000000000L) {
                    until.tv_sec++;
                    until.tv_nsec -= 1000000000L;
                }
                linger_over = pthread_cond_timedwait(&pool.cv, &pool.mu, &until) == ETIMEDOUT;
            } else {
                pthread_cond_wait(&pool.cv, &pool.mu);
            }
            pool.idle--;
        }
        struct job *j = pool.head;
        if (!j)
            break; /* stopping, or an extra thread that found no work: it ends */
        pool.head = j->next;
        if (!pool.head)
            pool.tail = NULL;
        pool.queued--;
        pthread_mutex_unlock(&pool.mu);

        handed_over = false;
        j->handler(j->r, j->ctx);
        if (!handed_over) /* else the stream loop finishes (and frees) it: r is not read again */
            finish_request(j->r);
        free(j);

        pthread_mutex_lock(&pool.mu);
    }
    pthread_mutex_unlock(&pool.mu);
    return NULL;
}

/* Threads of the runtime never take the signals: the main thread's accept must see
 * SIGTERM. */
int pgc_fcgi_thread_start(const pthread_attr_t *attr, void *(*fn)(void *), void *arg)
{
    sigset_t block, old;
    sigemptyset(&block);
    sigaddset(&block, SIGTERM);
    sigaddset(&block, SIGINT);
    int blocked = pthread_sigmask(SIG_BLOCK, &block, &old) == 0;
    pthread_t t;
    int rc = pthread_create(&t, attr, fn, arg);
    if (blocked)
        pthread_sigmask(SIG_SETMASK, &old, NULL);
    return rc;
}

static int start_worker(void)
{
    int rc = pgc_fcgi_thread_start(&pool.attr, worker, NULL);
    if (rc != 0)
        PGC_ERROR("cannot start a request thread: %s", strerror(rc));
    return rc == 0 ? 0 : -1;
}

/* Queues the request and starts a thread when every one is busy. If none can start,
 * the request waits for the next thread that finishes. */
static void dispatch(struct job *j)
{
    pthread_mutex_lock(&pool.mu);
    j->next = NULL;
    if (pool.tail)
        pool.tail->next = j;
    else
        pool.head = j;
    pool.tail = j;
    pool.queued++;
    bool need = pool.queued > pool.idle;
    pthread_cond_signal(&pool.cv);
    pthread_mutex_unlock(&pool.mu);
    if (need)
        start_worker();
}

/* ---------------------------------------------------------------- serving */

static pthread_t main_thread;

/* The kernel hands a process-directed signal to any thread that does not block it — the
 * hub's, say, started before ours. Only the accepting thread's accept() returns on it, so
 * the signal is passed on to that thread (pthread_kill is async-signal-safe in glibc). */
static void on_signal(int sig)
{
    if (!pthread_equal(pthread_self(), main_thread)) {
        pthread_kill(main_thread, sig);
        return;
    }
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

/* SIGTERM/SIGINT counted (whatever disposition or mask the web server left us), and
 * without SA_RESTART: a blocked write or wait returns and the request ends at once. */
static int install_signals(void)
{
    sigset_t term;
    sigemptyset(&term);
    sigaddset(&term, SIGTERM);
    sigaddset(&term, SIGINT);
    if (sigprocmask(SIG_UNBLOCK, &term, NULL) != 0)
        PGC_WARN("cannot unblock SIGTERM: %s", strerror(errno));
    main_thread = pthread_self();
    struct sigaction sa;
    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = on_signal;
    sigemptyset(&sa.sa_mask);
    if (sigaction(SIGTERM, &sa, NULL) != 0 || sigaction(SIGINT, &sa, NULL) != 0) {
        PGC_ERROR("sigaction: %s", strerror(errno));
        return -1;
    }
    return 0;
}

/* Plain CGI: Apache's mod_cgi(d) and lighttpd's mod_cgi send SIGTERM when the client
 * leaves or a timeout hits; the handler sees it as a shutdown (pgc_req_wait) and ends. */
static int serve_cgi(pgc_handler_fn handler, void *ctx)
{
    if (install_signals() != 0)
        return 1;
    pgc_request *r = calloc(1, sizeof(*r));
    if (!r)
        return 1;
    r->cgi = true;
    set_id(r);
    handler(r, ctx);
    if (!r->gone)
        fflush(stdout);
    pgc_req_drain_cgi_body(r);
    pgc_admit_release(r);
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
    if (mode == PGC_MODE_FCGI_INHERITED) {
        /* spawned by the web server (lighttpd bin-path, mod_fcgid): never outlive it, even
         * when it dies without stopping us (or spawns one more of us as it stops) */
        sigset_t term;
        sigemptyset(&term);
        sigaddset(&term, SIGTERM);
        /* a web server may spawn us with SIGTERM ignored or blocked: the signal must count */
        if (signal(SIGTERM, SIG_DFL) == SIG_ERR || sigprocmask(SIG_UNBLOCK, &term, NULL) != 0)
            PGC_WARN("cannot restore SIGTERM: %s", strerror(errno));
        if (prctl(PR_SET_PDEATHSIG, SIGTERM) != 0) {
            PGC_WARN("prctl(PR_SET_PDEATHSIG): %s", strerror(errno));
        } else if (getppid() == 1) {
            PGC_INFO("the web server that started this process is gone; exiting");
            return 0;
        }
    }
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
    if (install_signals() != 0) /* no SA_RESTART: accept() must return on SIGTERM */
        return 1;
    if (pthread_attr_init(&pool.attr) != 0 || pthread_attr_setstacksize(&pool.attr, THREAD_STACK_BYTES) != 0 ||
        pthread_attr_setdetachstate(&pool.attr, PTHREAD_CREATE_DETACHED) != 0) {
        PGC_ERROR("pthread attributes failed");
        return 1;
    }
    for (int i = 0; i < 4; i++)
        start_worker();

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
        int rc = FCGX_Accept_r(&r->fcgx);
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
        dispatch(j);
    }
    pthread_mutex_lock(&pool.mu);
    pool.stop = true;
    pthread_cond_broadcast(&pool.cv);
    pthread_mutex_unlock(&pool.mu);

    /* every stream saw the shutdown eventfd; give them a moment to say goodbye */
    PGC_INFO("shutting down: %d requests to finish", atomic_load(&active_requests));
    for (int waited = 0; atomic_load(&active_requests) > 0 && waited < SHUTDOWN_GRACE_MS; waited += 10)
        usleep(10000);
    if (atomic_load(&active_requests) > 0)
        PGC_WARN("%d requests still running at exit", atomic_load(&active_requests));
    return 0;
}
