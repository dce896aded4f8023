/*
 * Long-lived responses: the stream loop, and the same callbacks driven on a thread.
 *
 * Why a loop: with a thread per stream, every event delivered to every stream cost an
 * eventfd wake, a context switch, a poll() and a write — and every idle stream a thread
 * (its stack pages, the kernel's task). On the loop, one thread owns every stream's
 * FastCGI connection (non-blocking, in one epoll set): the hub puts woken streams on a
 * ready list and writes one eventfd per batch; the loop takes each stream's queued
 * items, frames them as FCGI_STDOUT records itself and writes them with one write().
 *
 * libfcgi still parses the request (params, stdin) on the request thread; once the head
 * is written and flushed through it, the loop takes the raw connection over and libfcgi's
 * buffers are freed. The loop then speaks the little of FastCGI that is left: STDOUT
 * records (content up to 65,535 bytes, no padding — none is required), and at the end an
 * empty STDOUT record and END_REQUEST, then it closes the connection (a connection kept
 * for further requests, FCGI_KEEP_CONN, stays on its thread instead: libfcgi must accept
 * the next request on it).
 *
 * A slow client: what its socket does not take waits in the stream's output buffer; past
 * a soft bound (OUT_SOFT_BYTES) pump stops taking from the hub, so the backlog builds up
 * in the stream's bounded hub queue, whose overflow ends the stream. Nothing else waits.
 * Time: the loop scans its streams every PGC_STREAM_TICK_MS for due ticks (one cheap
 * comparison per stream), instead of keeping a timer per stream.
 */
#include "stream.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include "clock.h"
#include "internal.h"
#include "log.h"
#include "server.h"

#define OUT_SOFT_BYTES (64 * 1024)
#define END_FLUSH_MS 5000      /* a stream ending gets this long to write its last bytes */
#define DEFAULT_TICK_MS 1000   /* when a tick callback sets no due time */
#define FCGI_HEADER_LEN 8
#define FCGI_STDOUT 6
#define FCGI_END_REQUEST 3
#define NO_RECORD SIZE_MAX

struct pgc_stream {
    pgc_request *r;
    const pgc_stream_ops *ops;
    void *arg;
    bool on_loop;
    int64_t due;
    /* thread mode */
    int efd;
    /* loop mode: FastCGI-framed bytes not yet written (out[off..len)), the open record */
    int fd;
    unsigned char reqid[2];
    char *out;
    size_t len, off, cap, rec;
    uint32_t events;
    bool adopted, gone, ending;
    const char *reason;
    int64_t end_by;
    pgc_stream *next, *prev;   /* the loop's streams (loop thread only) */
    /* under loop.mu */
    bool started, pending_wake, queued;
    pgc_stream *rnext, *rprev; /* ready list */
    pgc_stream *inext;         /* handed over, not yet adopted */
};

static struct {
    pthread_once_t once;
    bool ok;
    int epfd, evfd;
    pthread_mutex_t mu;
    pgc_stream *rhead, *rtail, *incoming;
    pgc_stream *all;
    bool shutdown_seen;
} loop = {.once = PTHREAD_ONCE_INIT, .mu = PTHREAD_MUTEX_INITIALIZER, .epfd = -1, .evfd = -1};

static atomic_int open_streams;
static char evfd_tag, shutdown_tag; /* epoll data of the loop's own descriptors */

int pgc_stream_count(void) { return atomic_load(&open_streams); }
const char *pgc_stream_id(pgc_stream *st) { return pgc_req_id(st->r); }
void pgc_stream_set_due(pgc_stream *st, int64_t when_ms) { st->due = when_ms; }
bool pgc_stream_backlogged(pgc_stream *st) { return st->on_loop && st->len - st->off > OUT_SOFT_BYTES; }

/* ---------------------------------------------------------------- output (loop mode) */

static int reserve(pgc_stream *st, size_t n)
{
    if (st->len + n <= st->cap)
        return 0;
    size_t cap = st->cap ? st->cap : 1024;
    while (cap < st->len + n)
        cap *= 2;
    char *p = realloc(st->out, cap);
    if (!p)
        return -1;
    st->out = p;
    st->cap = cap;
    return 0;
}

static void put_header(unsigned char *h, int type, const unsigned char id[2], size_t content)
{
    h[0] = 1; /* FCGI_VERSION_1 */
    h[1] = (unsigned char)type;
    h[2] = id[0];
    h[3] = id[1];
    h[4] = (unsigned char)(content >> 8);
    h[5] = (unsigned char)(content & 0xff);
    h[6] = 0; /* no padding */
    h[7] = 0;
}

/* Writes the open record's header now that its length is known. An empty record is
 * dropped: an empty STDOUT record means the end of the response. */
static void close_record(pgc_stream *st)
{
    if (st->rec == NO_RECORD)
        return;
    size_t content = st->len - st->rec - FCGI_HEADER_LEN;
    if (content == 0)
        st->len = st->rec;
    else
        put_header((unsigned char *)st->out + st->rec, FCGI_STDOUT, st->reqid, content);
    st->rec = NO_RECORD;
}

static int loop_write(pgc_stream *st, const char *data, size_t n)
{
    while (n > 0) {
        if (st->rec == NO_RECORD) {
            if (reserve(st, FCGI_HEADER_LEN) != 0)
                return -1;
            st->rec = st->len;
            st->len += FCGI_HEADER_LEN;
        }
        size_t room = 65535 - (st->len - st->rec - FCGI_HEADER_LEN);
        if (room == 0) {
            close_record(st);
            continue;
        }
        size_t k = n < room ? n : room;
        if (reserve(st, k) != 0)
            return -1;
        memcpy(st->out + st->len, data, k);
        st->len += k;
        data += k;
        n -= k;
    }
    return 0;
}

static void update_interest(pgc_stream *st)
{
    uint32_t want = EPOLLIN | EPOLLRDHUP | (st->off < st->len ? EPOLLOUT : 0);
    if (want == st->events || !st->adopted)
        return;
    struct epoll_event ev = {.events = want, .data.ptr = st};
    if (epoll_ctl(loop.epfd, EPOLL_CTL_MOD, st->fd, &ev) == 0)
        st->events = want;
    else
        st->gone = true; /* cannot watch it any more: treat the client as gone */
}

/* Writes what the socket takes. The buffer is freed once empty: an idle stream holds
 * no output memory. */
static void flush_out(pgc_stream *st)
{
    close_record(st);
    while (!st->gone && st->off < st->len) {
        ssize_t n = write(st->fd, st->out + st->off, st->len - st->off);
        if (n > 0)
            st->off += (size_t)n;
        else if (n < 0 && errno == EINTR)
            continue;
        else if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
            break;
        else
            st->gone = true;
    }
    if (st->off == st->len || st->gone) {
        free(st->out);
        st->out = NULL;
        st->len = st->off = st->cap = 0;
    }
    update_interest(st);
}

/* ---------------------------------------------------------------- both modes */

int pgc_stream_write(pgc_stream *st, const char *data, size_t len)
{
    if (!st->on_loop)
        return pgc_req_write(st->r, data, len);
    if (st->gone)
        return -1;
    if (loop_write(st, data, len) != 0) {
        PGC_WARN("stream %s: out of memory for its output; ending it", pgc_req_id(st->r));
        st->gone = true;
        return -1;
    }
    return 0;
}

static int stream_write_fn(void *st, const char *data, size_t len) { return pgc_stream_write(st, data, len); }

int pgc_stream_printf(pgc_stream *st, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int rc = pgc_vprintf_to(stream_write_fn, st, fmt, ap);
    va_end(ap);
    return rc;
}

pgc_stream *pgc_stream_new(pgc_request *r, const pgc_stream_ops *ops, void *arg)
{
    pgc_stream *st = calloc(1, sizeof(*st));
    if (!st)
        return NULL;
    st->r = r;
    st->ops = ops;
    st->arg = arg;
    st->fd = -1;
    st->efd = -1;
    st->rec = NO_RECORD;
    st->on_loop = !r->cgi && !r->fcgx.keepConnection;
    if (!st->on_loop && (st->efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC)) < 0) {
        PGC_ERROR("eventfd: %s", strerror(errno));
        free(st);
        return NULL;
    }
    atomic_fetch_add(&open_streams, 1);
    return st;
}

static void stream_free(pgc_stream *st)
{
    if (st->efd >= 0)
        close(st->efd);
    free(st->out);
    free(st);
    atomic_fetch_sub(&open_streams, 1);
}

void pgc_stream_discard(pgc_stream *st) { stream_free(st); }

/* tick with a fallback due time, so a callback that sets none is not called in a loop */
static const char *run_tick(pgc_stream *st, int64_t now)
{
    st->due = now + DEFAULT_TICK_MS;
    return st->ops->tick ? st->ops->tick(st, st->arg, now) : NULL;
}

/* ---------------------------------------------------------------- thread mode */

static void run_on_thread(pgc_stream *st)
{
    pgc_request *r = st->r;
    const char *reason = NULL;
    bool woken = true;
    st->due = pgc_mono_ms();
    while (!reason) {
        if (woken && (reason = st->ops->pump(st, st->arg)) == NULL && pgc_req_flush(r) != 0)
            reason = "client gone";
        if (reason)
            break;
        int64_t now = pgc_mono_ms();
        if (now >= st->due) {
            if ((reason = run_tick(st, now)) == NULL && pgc_req_flush(r) != 0)
                reason = "client gone";
            if (reason)
                break;
        }
        int64_t wait = st->due - pgc_mono_ms();
        enum pgc_wait_result w = pgc_req_wait(r, st->efd, wait < 0 ? 0 : wait > INT_MAX ? INT_MAX : (int)wait);
        if (w == PGC_WAIT_GONE) {
            reason = "client gone";
        } else if (w == PGC_WAIT_SHUTDOWN) {
            if (st->ops->shutdown)
                st->ops->shutdown(st, st->arg);
            pgc_req_flush(r);
            reason = "shutdown";
        }
        woken = w == PGC_WAIT_WOKEN;
    }
    st->ops->done(st, st->arg, reason);
    stream_free(st);
}

/* ---------------------------------------------------------------- the loop */

static void loop_signal(void)
{
    uint64_t one = 1;
    if (write(loop.evfd, &one, sizeof(one)) < 0 && errno != EAGAIN)
        PGC_ERROR("stream loop eventfd: %s", strerror(errno));
}

void pgc_stream_wake(void *arg)
{
    pgc_stream *st = arg;
    if (!st->on_loop) {
        pgc_wake_eventfd(&st->efd);
        return;
    }
    bool signal = false;
    pthread_mutex_lock(&loop.mu);
    if (!st->started) {
        st->pending_wake = true;
    } else if (!st->queued) {
        st->queued = true;
        st->rnext = NULL;
        st->rprev = loop.rtail;
        if (loop.rtail)
            loop.rtail->rnext = st;
        else
            loop.rhead = st;
        loop.rtail = st;
        signal = st == loop.rhead; /* the list was empty: the loop may be asleep */
    }
    pthread_mutex_unlock(&loop.mu);
    if (signal)
        loop_signal();
}

/* under loop.mu */
static void ready_unlink(pgc_stream *st)
{
    if (!st->queued)
        return;
    if (st->rprev)
        st->rprev->rnext = st->rnext;
    else
        loop.rhead = st->rnext;
    if (st->rnext)
        st->rnext->rprev = st->rprev;
    else
        loop.rtail = st->rprev;
    st->queued = false;
}

/* The stream's last act: done (after which no wake comes), then its memory. */
static void finish(pgc_stream *st, const char *reason)
{
    if (st->adopted) {
        if (epoll_ctl(loop.epfd, EPOLL_CTL_DEL, st->fd, NULL) != 0)
            PGC_WARN("stream %s: epoll_ctl DEL: %s", pgc_req_id(st->r), strerror(errno));
        if (st->prev)
            st->prev->next = st->next;
        else
            loop.all = st->next;
        if (st->next)
            st->next->prev = st->prev;
    }
    st->ops->done(st, st->arg, reason);
    pthread_mutex_lock(&loop.mu);
    ready_unlink(st);
    pthread_mutex_unlock(&loop.mu);
    if (close(st->fd) != 0)
        PGC_DEBUG("stream %s: close: %s", pgc_req_id(st->r), strerror(errno));
    pgc_fcgi_detached_done(st->r);
    stream_free(st);
}

/* Ends the stream: the end of the FastCGI response after what is queued; closed once
 * written (or after END_FLUSH_MS, or at once when the client is gone). */
static void end_stream(pgc_stream *st, const char *reason)
{
    if (st->ending)
        return;
    st->ending = true;
    st->reason = reason;
    if (!st->gone) {
        close_record(st);
        unsigned char tail[2 * FCGI_HEADER_LEN + 8] = {0};
        put_header(tail, FCGI_STDOUT, st->reqid, 0);
        put_header(tail + FCGI_HEADER_LEN, FCGI_END_REQUEST, st->reqid, 8);
        /* body: appStatus 0 (4 bytes), protocolStatus FCGI_REQUEST_COMPLETE (0), reserved */
        if (reserve(st, sizeof(tail)) == 0) {
            memcpy(st->out + st->len, tail, sizeof(tail));
            st->len += sizeof(tail);
        } else {
            st->gone = true;
        }
        flush_out(st);
    }
    if (st->gone || st->off == st->len)
        finish(st, reason);
    else
        st->end_by = pgc_mono_ms() + END_FLUSH_MS;
}

static void run_pump(pgc_stream *st)
{
    if (st->ending || st->gone)
        return;
    const char *reason;
    bool again;
    do {
        reason = st->ops->pump(st, st->arg);
        /* pump stopped at the soft bound: if the socket takes it all, nothing else will
         * call pump again (the hub wakes only an empty queue), so go on here */
        bool stopped_early = pgc_stream_backlogged(st);
        flush_out(st);
        again = !reason && !st->gone && stopped_early && st->off == st->len;
    } while (again);
    if (reason)
        end_stream(st, reason);
    else if (st->gone)
        end_stream(st, "client gone");
}

static void shutdown_stream(pgc_stream *st)
{
    if (st->ending)
        return;
    if (st->ops->shutdown && !st->gone)
        st->ops->shutdown(st, st->arg);
    end_stream(st, "shutdown");
}

static void adopt_incoming(void)
{
    pthread_mutex_lock(&loop.mu);
    pgc_stream *list = loop.incoming;
    loop.incoming = NULL;
    pthread_mutex_unlock(&loop.mu);
    while (list) {
        pgc_stream *st = list;
        list = st->inext;
        struct epoll_event ev = {.events = EPOLLIN | EPOLLRDHUP, .data.ptr = st};
        if (epoll_ctl(loop.epfd, EPOLL_CTL_ADD, st->fd, &ev) != 0) {
            PGC_ERROR("stream %s: epoll_ctl ADD: %s", pgc_req_id(st->r), strerror(errno));
            st->gone = true;
            finish(st, "out of resources");
            continue;
        }
        st->events = ev.events;
        st->adopted = true;
        st->next = loop.all;
        st->prev = NULL;
        if (loop.all)
            loop.all->prev = st;
        loop.all = st;
        st->due = pgc_mono_ms(); /* its first tick sets its timers */
        if (loop.shutdown_seen)
            shutdown_stream(st);
    }
}

/* Pumps every stream the hub woke. Returns whether more were woken meanwhile. */
static bool run_ready(void)
{
    for (int budget = 4096; budget > 0; budget--) {
        pthread_mutex_lock(&loop.mu);
        pgc_stream *st = loop.rhead;
        if (st)
            ready_unlink(st);
        pthread_mutex_unlock(&loop.mu);
        if (!st)
            return false;
        if (!st->adopted)
            adopt_incoming(); /* handed over and woken since the last adoption */
        run_pump(st);
    }
    return true;
}

static void scan(int64_t now)
{
    pgc_stream *next;
    for (pgc_stream *st = loop.all; st; st = next) {
        next = st->next;
        if (st->ending) {
            if (now >= st->end_by)
                finish(st, st->reason);
        } else if (now >= st->due) {
            const char *reason = run_tick(st, now);
            flush_out(st);
            if (reason || st->gone)
                end_stream(st, reason ? reason : "client gone");
        }
    }
}

static void on_connection_event(pgc_stream *st, uint32_t events)
{
    if (events & (EPOLLERR | EPOLLHUP | EPOLLRDHUP) ||
        ((events & EPOLLIN) && pgc_req_peer_gone(st->fd, POLLIN, false))) {
        st->gone = true;
        if (st->ending)
            finish(st, st->reason);
        else
            end_stream(st, "client gone");
        return;
    }
    if (events & EPOLLOUT) {
        flush_out(st);
        if (st->ending && (st->gone || st->off == st->len))
            finish(st, st->reason);
        else if (!st->ending && st->off == st->len)
            run_pump(st); /* room again: take what waited in the hub queue */
        else if (st->gone)
            end_stream(st, "client gone");
    }
}

static void *loop_main(void *unused)
{
    (void)unused;
    struct epoll_event evs[256];
    int64_t next_scan = pgc_mono_ms() + PGC_STREAM_TICK_MS;
    bool more = false;
    for (;;) {
        int64_t now = pgc_mono_ms();
        int timeout = more ? 0 : next_scan > now ? (int)(next_scan - now) : 0;
        int n = epoll_wait(loop.epfd, evs, 256, timeout);
        if (n < 0 && errno != EINTR) {
            PGC_ERROR("stream loop: epoll_wait: %s", strerror(errno));
            usleep(10000);
        }
        for (int i = 0; i < n; i++) {
            if (evs[i].data.ptr == &evfd_tag) {
                uint64_t v;
                if (read(loop.evfd, &v, sizeof(v)) < 0 && errno != EAGAIN)
                    PGC_ERROR("stream loop: eventfd read: %s", strerror(errno));
            } else if (evs[i].data.ptr == &shutdown_tag) {
                /* level-triggered and never reset: stop watching, end every stream */
                if (epoll_ctl(loop.epfd, EPOLL_CTL_DEL, pgc_fcgi_shutdown_fd(), NULL) != 0)
                    PGC_WARN("stream loop: epoll_ctl DEL: %s", strerror(errno));
                loop.shutdown_seen = true;
                pgc_stream *next;
                for (pgc_stream *st = loop.all; st; st = next) {
                    next = st->next;
                    shutdown_stream(st);
                }
            } else {
                on_connection_event(evs[i].data.ptr, evs[i].events);
            }
        }
        adopt_incoming();
        more = run_ready();
        now = pgc_mono_ms();
        if (now >= next_scan) {
            scan(now);
            next_scan = now + PGC_STREAM_TICK_MS;
        }
    }
    return NULL;
}

static void loop_init(void)
{
    loop.epfd = epoll_create1(EPOLL_CLOEXEC);
    loop.evfd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (loop.epfd < 0 || loop.evfd < 0) {
        PGC_ERROR("stream loop: %s", strerror(errno));
        return;
    }
    struct epoll_event ev = {.events = EPOLLIN, .data.ptr = &evfd_tag};
    struct epoll_event sd = {.events = EPOLLIN, .data.ptr = &shutdown_tag};
    if (epoll_ctl(loop.epfd, EPOLL_CTL_ADD, loop.evfd, &ev) != 0 ||
        epoll_ctl(loop.epfd, EPOLL_CTL_ADD, pgc_fcgi_shutdown_fd(), &sd) != 0) {
        PGC_ERROR("stream loop: epoll_ctl: %s", strerror(errno));
        return;
    }
    pthread_attr_t attr;
    int rc = pthread_attr_init(&attr);
    if (rc == 0)
        rc = pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
    if (rc == 0)
        rc = pgc_fcgi_thread_start(&attr, loop_main, NULL);
    pthread_attr_destroy(&attr);
    if (rc != 0) {
        PGC_ERROR("stream loop: cannot start its thread: %s", strerror(rc));
        return;
    }
    loop.ok = true;
}

void pgc_stream_run(pgc_stream *st)
{
    pgc_request *r = st->r;
    if (st->on_loop && (pthread_once(&loop.once, loop_init) != 0 || !loop.ok)) {
        /* no loop: the stream stays on its thread */
        st->on_loop = false;
        if ((st->efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC)) < 0) {
            st->ops->done(st, st->arg, "out of resources");
            stream_free(st);
            return;
        }
        /* a wake sent before now went to the loop, which will never run it */
        pgc_wake_eventfd(&st->efd);
    }
    if (!st->on_loop) {
        run_on_thread(st);
        return;
    }
    /* hand the connection over: what libfcgi buffered is written, its buffers freed */
    pgc_req_drain(r);
    if (pgc_req_flush(r) != 0) {
        st->ops->done(st, st->arg, "client gone");
        stream_free(st); /* r is still the request thread's: it finishes it */
        return;
    }
    st->fd = r->fcgx.ipcFd;
    st->reqid[0] = (unsigned char)(r->fcgx.requestId >> 8);
    st->reqid[1] = (unsigned char)(r->fcgx.requestId & 0xff);
    FCGX_Free(&r->fcgx, 0);
    r->detached = true;
    int fl = fcntl(st->fd, F_GETFL);
    if (fl < 0 || fcntl(st->fd, F_SETFL, fl | O_NONBLOCK) != 0)
        PGC_WARN("stream %s: cannot make its connection non-blocking: %s", pgc_req_id(r), strerror(errno));
    pthread_mutex_lock(&loop.mu);
    st->started = true;
    st->inext = loop.incoming;
    loop.incoming = st;
    pthread_mutex_unlock(&loop.mu);
    if (st->pending_wake)
        pgc_stream_wake(st); /* a wake that came before the hand-over */
    else
        loop_signal();
}
