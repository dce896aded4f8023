/*
 * Long-lived responses: streams on the process's event loop (core/evloop.c), and the same
 * callbacks driven on a thread.
 *
 * Why a loop: with a thread per stream, every event delivered to every stream cost an
 * eventfd wake, a context switch, a poll() and a write — and every idle stream a thread
 * (its stack pages, the kernel's task). On the loop, one thread owns every stream's
 * FastCGI connection (non-blocking, in one epoll set): the hub's wake marks a stream
 * ready (one eventfd write per batch); the loop takes each stream's queued items, frames
 * them as FCGI_STDOUT records itself and writes them with one write(). The loop itself
 * (ready list, hand-over, timer scan, deferred close) is core/evloop.c, shared with the
 * WebSocket sidecar; this file keeps only the FastCGI framing and the stream's life.
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
 * A pump that stopped at the bound is owed another: whatever drains the output (EPOLLOUT,
 * a tick's flush, a wake's) runs pump again once the output is back under the bound —
 * the hub wakes only an empty queue, so nothing else would.
 * An ended stream is closed through the loop's deferred close: its done callback and its
 * memory go after the loop's current batch, never while the batch may still point at it.
 */
#include "stream.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "clock.h"
#include "evloop.h"
#include "hub.h"
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
#define PUMP_ROUNDS 16         /* pumps of one stream per turn of the loop */

struct pgc_stream {
    pgc_ev ev; /* loop mode: its place on the event loop */
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
    bool gone, ending;
    bool starved; /* pump stopped at the soft bound: it runs again once the output drains */
    const char *reason;
    int64_t end_by;
};

static struct {
    pthread_once_t once;
    pgc_evloop *l;
    pgc_ev shutdown_watch; /* the runtime's shutdown descriptor */
} loop = {.once = PTHREAD_ONCE_INIT};

static atomic_int open_streams;

int pgc_stream_count(void) { return atomic_load(&open_streams); }
const char *pgc_stream_id(pgc_stream *st) { return pgc_req_id(st->r); }

void pgc_stream_set_due(pgc_stream *st, int64_t when_ms)
{
    st->due = when_ms;
    if (st->on_loop && !st->ending)
        pgc_ev_set_due(&st->ev, when_ms);
}

static bool over_soft_bound(const pgc_stream *st) { return st->len - st->off > OUT_SOFT_BYTES; }

bool pgc_stream_backlogged(pgc_stream *st)
{
    if (!st->on_loop || !over_soft_bound(st))
        return false;
    st->starved = true; /* the caller stops taking: it is owed a pump once drained */
    return true;
}

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
    if (pgc_ev_set_events(&st->ev, want) != 0)
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
    size_t k = pgc_req_head_split(st->r, data, len);
    if (k && (loop_write(st, data, k) != 0 ||
              loop_write(st, st->r->head_extra, strlen(st->r->head_extra)) != 0)) {
        PGC_WARN("stream %s: out of memory for its output; ending it", pgc_req_id(st->r));
        st->gone = true;
        return -1;
    }
    data += k;
    len -= k;
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

static void loop_init(void);
static const pgc_ev_ops stream_ev_ops;

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
    /* no loop (it could not start): the stream stays on its thread */
    if (st->on_loop && (pthread_once(&loop.once, loop_init) != 0 || !loop.l))
        st->on_loop = false;
    if (st->on_loop)
        pgc_ev_init(&st->ev, loop.l, &stream_ev_ops);
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

/* ---------------------------------------------------------------- on the loop */

static pgc_stream *of(pgc_ev *o) { return (pgc_stream *)((char *)o - offsetof(pgc_stream, ev)); }

void pgc_stream_wake(void *arg)
{
    pgc_stream *st = arg;
    if (st->on_loop)
        pgc_ev_wake(&st->ev); /* kept until the hand-over when sent before it */
    else
        pgc_wake_eventfd(&st->efd);
}

/* The stream's last act, deferred by the loop to after its batch (release). */
static void finish(pgc_stream *st, const char *reason)
{
    if (!st->reason)
        st->reason = reason;
    pgc_ev_close(&st->ev);
}

static void on_release(pgc_ev *o)
{
    pgc_stream *st = of(o);
    st->ops->done(st, st->arg, st->reason ? st->reason : "closed"); /* no wake after it */
    if (close(st->fd) != 0)
        PGC_DEBUG("stream %s: close: %s", pgc_req_id(st->r), strerror(errno));
    pgc_fcgi_detached_done(st->r);
    stream_free(st);
}

/* Ends the stream: the end of the FastCGI response after what is queued, written with it
 * (a long-poll's answer and its END_REQUEST go in one write: the web server reads them
 * at once); closed once written (or after END_FLUSH_MS, or at once when the client is
 * gone). */
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
    if (st->gone || st->off == st->len) {
        finish(st, reason);
    } else {
        st->end_by = pgc_mono_ms() + END_FLUSH_MS;
        pgc_ev_set_due(&st->ev, st->end_by);
    }
}

/* Every path that may have made room (a wake, EPOLLOUT, a tick) ends here: write what is
 * waiting, then pump while it was woken or is owed a pump and the output is under the
 * soft bound. A pump that stops at the bound sets starved again; the output then waits
 * for EPOLLOUT, which comes back here. */
static void service(pgc_stream *st, bool woken)
{
    if (st->ending) {
        flush_out(st);
        if (st->gone || st->off == st->len)
            finish(st, st->reason);
        return;
    }
    flush_out(st);
    for (int round = 0; !st->gone && (woken || (st->starved && !over_soft_bound(st))); round++) {
        if (round == PUMP_ROUNDS) {
            pgc_ev_wake(&st->ev); /* more next pass: other streams get their turn first */
            break;
        }
        woken = false;
        st->starved = false;
        const char *reason = st->ops->pump(st, st->arg);
        if (reason) {
            end_stream(st, reason); /* the last bytes and the end in one write */
            return;
        }
        flush_out(st);
    }
    if (st->gone)
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

static void on_start(pgc_ev *o)
{
    pgc_stream *st = of(o);
    st->due = pgc_mono_ms(); /* its first tick sets its timers */
    pgc_ev_set_due(o, st->due);
}

static void on_io(pgc_ev *o, uint32_t events)
{
    pgc_stream *st = of(o);
    if (events & (EPOLLERR | EPOLLHUP | EPOLLRDHUP) ||
        ((events & EPOLLIN) && pgc_req_peer_gone(st->fd, POLLIN, false))) {
        st->gone = true;
        if (st->ending)
            finish(st, st->reason);
        else
            end_stream(st, "client gone");
        return;
    }
    if (events & EPOLLOUT)
        service(st, false); /* room again: what is owed a pump gets it */
}

static void on_ready(pgc_ev *o) { service(of(o), true); }

static void on_timer(pgc_ev *o, int64_t now)
{
    pgc_stream *st = of(o);
    if (st->ending) {
        if (now >= st->end_by)
            finish(st, st->reason);
        return;
    }
    const char *reason = run_tick(st, now);
    pgc_ev_set_due(o, st->due);
    if (reason) {
        end_stream(st, reason);
    } else {
        service(st, false);
    }
}

static void on_shutdown(pgc_ev *o) { shutdown_stream(of(o)); }

static const pgc_ev_ops stream_ev_ops = {on_start, on_io, on_ready, on_timer, on_shutdown, on_release};

/* The runtime's shutdown descriptor (readable once SIGTERM came, never reset): the loop
 * stops, which ends every stream with its shutdown message. */
static void on_shutdown_fd(pgc_ev *o, uint32_t events)
{
    (void)events;
    pgc_ev_close(o);
    pgc_evloop_stop(loop.l);
}

static const pgc_ev_ops shutdown_watch_ops = {.io = on_shutdown_fd};

/* The end of each turn: the hub commands of the turn's releases (a CMD_FREE per
 * answered long-poll) wake the hub thread once. */
static void on_turn_end(void *unused)
{
    (void)unused;
    pgc_hub_flush_signals();
}

static void *loop_main(void *unused)
{
    (void)unused;
    pgc_hub_defer_signals(true);
    /* after the stop, the streams' last bytes get END_FLUSH_MS; the loop then ends */
    pgc_evloop_run(loop.l, END_FLUSH_MS + 1000);
    return NULL;
}

static void loop_init(void)
{
    pgc_evloop *l = pgc_evloop_new(PGC_STREAM_TICK_MS);
    if (!l)
        return;
    pgc_ev_init(&loop.shutdown_watch, l, &shutdown_watch_ops);
    if (pgc_evloop_adopt(&loop.shutdown_watch, pgc_fcgi_shutdown_fd(), EPOLLIN) != 0) {
        pgc_evloop_free(l);
        return;
    }
    pgc_evloop_on_turn_end(l, on_turn_end, NULL);
    loop.l = l;
    pthread_attr_t attr;
    int rc = pthread_attr_init(&attr);
    if (rc == 0)
        rc = pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
    if (rc == 0)
        rc = pgc_fcgi_thread_start(&attr, loop_main, NULL);
    pthread_attr_destroy(&attr);
    if (rc != 0) {
        PGC_ERROR("stream loop: cannot start its thread: %s", strerror(rc));
        loop.l = NULL; /* never ran: streams stay on their threads */
        pgc_evloop_free(l);
        return;
    }
}

void pgc_stream_run(pgc_stream *st)
{
    pgc_request *r = st->r;
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
    pgc_fcgi_mark_detached(r);
    int fl = fcntl(st->fd, F_GETFL);
    if (fl < 0 || fcntl(st->fd, F_SETFL, fl | O_NONBLOCK) != 0)
        PGC_WARN("stream %s: cannot make its connection non-blocking: %s", pgc_req_id(r), strerror(errno));
    /* from here on st is the loop's (a wake sent before is delivered after the adoption);
     * this thread does not touch it again */
    pgc_ev_fd_closed_on_release(&st->ev); /* on_release closes it; nothing dups it */
    if (pgc_evloop_adopt(&st->ev, st->fd, EPOLLIN | EPOLLRDHUP) != 0) {
        st->reason = "shutdown"; /* the loop has ended: the process is stopping */
        on_release(&st->ev);
    }
}
