#include "clock.h"
#include "loop.h"

#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

#include "frame.h"
#include "log.h"
#include "session.h"

/* One queued server frame: a header and a payload that is either an item of the hub,
 * shared by every connection it goes to (no copy per connection), or bytes of our own. */
typedef struct ws_out {
    pgc_event *ev;               /* holds a reference; the payload is ev->json */
    unsigned char *own;          /* or this, freed when written */
    const unsigned char *data;
    size_t len, off;             /* off: bytes of header + payload written */
    unsigned char hdr[WS_HEADER_MAX];
    uint8_t hlen;
    bool is_close;
} ws_out;

typedef struct ws_conn {
    struct ws_conn *next, *prev;     /* loop list (loop thread only) */
    struct ws_conn *next_new;        /* handover list (under the loop mutex) */
    int fd;
    ws_loop *loop;
    ws_parser parser;
    unsigned char *in;               /* an incomplete frame, kept only until it completes */
    size_t in_len, in_cap;
    ws_out *q;                       /* ring of queued frames; capacity a power of two */
    size_t qcap, qhead, qlen, qbytes;
    int64_t last_pong_ms, ping_sent_ms;
    int64_t close_queued_ms;         /* our close frame is queued: nothing more after it */
    int64_t lingering_ms;            /* non-zero: finished, draining until the peer's EOF */
    uint32_t events;                 /* what epoll watches now */
    bool close_sent;                 /* our close frame is written */
    bool read_done;                  /* close received or input refused: drain, do not parse */
    pgc_token tok;                   /* verified at the handshake; moved to the session */
    ws_session *session;
    atomic_bool ready;               /* the hub queued items (set from the hub thread) */
    struct ws_conn *next_ready;      /* ready list (under the loop mutex) */
} ws_conn;

#define RBUF_SIZE 65536

struct ws_loop {
    int epfd, evfd;
    pthread_mutex_t mu;
    ws_conn *incoming;               /* adopted, not yet in the loop */
    ws_conn *conns;
    ws_conn *ready, **ready_tail;    /* woken by the hub, to pump in that order (under mu) */
    ws_env env;
    uint64_t next_id;
    atomic_bool stop;
    size_t max_msg, queue_bytes;
    unsigned char rbuf[RBUF_SIZE];   /* every read lands here first: one buffer, not one each */
    _Atomic uint64_t n_conn, n_in, n_out, n_overflow;
};

/* ---------------------------------------------------------------- output queue */

static void out_release(ws_out *o)
{
    if (o->ev)
        pgc_event_unref(o->ev);
    free(o->own);
}

static ws_out *q_at(ws_conn *c, size_t k) { return &c->q[(c->qhead + k) & (c->qcap - 1)]; }

static bool q_room(ws_conn *c)
{
    if (c->qlen < c->qcap)
        return true;
    size_t cap = c->qcap ? c->qcap * 2 : 4;
    ws_out *q = malloc(cap * sizeof(*q));
    if (!q)
        return false;
    for (size_t k = 0; k < c->qlen; k++)
        q[k] = *q_at(c, k);
    free(c->q);
    c->q = q;
    c->qcap = cap;
    c->qhead = 0;
    return true;
}

/* Appends a frame, or (front) puts it before everything not yet begun: control frames
 * do not wait behind a backlog, but never cut into a frame half written. */
static bool q_push(ws_conn *c, int op, pgc_event *ev, unsigned char *own, const void *data, size_t len, bool front)
{
    if (!q_room(c))
        return false;
    ws_out o = {.ev = ev, .own = own, .data = data, .len = len, .is_close = op == WS_OP_CLOSE};
    o.hlen = (uint8_t)ws_frame_header(o.hdr, op, len);
    if (!front || c->qlen == 0) {
        *q_at(c, c->qlen) = o;
    } else {
        c->qhead = (c->qhead - 1) & (c->qcap - 1);
        if (q_at(c, 1)->off > 0) { /* the old head is under way: it stays first */
            *q_at(c, 0) = *q_at(c, 1);
            *q_at(c, 1) = o;
        } else {
            *q_at(c, 0) = o;
        }
    }
    c->qlen++;
    c->qbytes += len;
    return true;
}

/* Drops every frame not begun (a reader cut off does not get its backlog). */
static void q_drop_unstarted(ws_conn *c)
{
    size_t keep = c->qlen && q_at(c, 0)->off > 0 ? 1 : 0;
    for (size_t k = keep; k < c->qlen; k++) {
        c->qbytes -= q_at(c, k)->len;
        out_release(q_at(c, k));
    }
    c->qlen = keep;
}

static bool push_copy(ws_conn *c, int op, const void *data, size_t len, bool front)
{
    unsigned char *own = NULL;
    if (len) {
        own = malloc(len);
        if (!own)
            return false;
        memcpy(own, data, len);
    }
    if (q_push(c, op, NULL, own, own, len, front))
        return true;
    free(own);
    return false;
}

/* Our close frame, after what is queued (the messages explaining the close, such as
 * rate_limited, go first); nothing is queued after it. */
static void queue_close(ws_conn *c, uint16_t code, const char *reason)
{
    if (c->close_queued_ms)
        return;
    c->close_queued_ms = pgc_mono_ms();
    unsigned char b[125];
    size_t n = 0;
    if (code != WS_CLOSE_NO_STATUS) {
        b[0] = (unsigned char)(code >> 8);
        b[1] = (unsigned char)code;
        n = strlen(reason) > sizeof(b) - 2 ? sizeof(b) - 2 : strlen(reason);
        memcpy(b + 2, reason, n);
        n += 2;
    }
    if (!push_copy(c, WS_OP_CLOSE, b, n, false))
        c->close_sent = true; /* no memory even for that: finish without it */
}

static bool queue_full(ws_conn *c, size_t n)
{
    if (c->qbytes + n <= c->loop->queue_bytes)
        return false;
    /* a slow reader is cut off (1008) instead of growing without limit */
    atomic_fetch_add(&c->loop->n_overflow, 1);
    q_drop_unstarted(c);
    queue_close(c, WS_CLOSE_POLICY, "outbound queue overflow");
    c->read_done = true;
    return true;
}

void ws_conn_send(ws_conn *c, const char *s, size_t n)
{
    if (c->close_queued_ms || c->lingering_ms || queue_full(c, n))
        return;
    if (push_copy(c, WS_OP_TEXT, s, n, false))
        atomic_fetch_add(&c->loop->n_out, 1);
}

void ws_conn_send_event(ws_conn *c, pgc_event *e)
{
    if (c->close_queued_ms || c->lingering_ms || queue_full(c, e->json_len))
        return;
    pgc_event_ref(e);
    if (q_push(c, WS_OP_TEXT, e, NULL, e->json, e->json_len, false))
        atomic_fetch_add(&c->loop->n_out, 1);
    else
        pgc_event_unref(e);
}

void ws_conn_close(ws_conn *c, uint16_t code, const char *reason)
{
    queue_close(c, code, reason);
    c->read_done = true;
}

/* Writes what is queued, many frames per call. -1: the connection is broken. */
static int conn_write(ws_conn *c)
{
    while (c->qlen) {
        struct iovec iov[64];
        int n = 0;
        for (size_t k = 0; k < c->qlen && n + 2 <= 64; k++) {
            ws_out *o = q_at(c, k);
            size_t off = o->off;
            if (off < o->hlen) {
                iov[n++] = (struct iovec){o->hdr + off, o->hlen - off};
                off = 0;
            } else {
                off -= o->hlen;
            }
            if (o->len > off)
                iov[n++] = (struct iovec){(void *)(o->data + off), o->len - off};
        }
        struct msghdr m = {.msg_iov = iov, .msg_iovlen = (size_t)n};
        ssize_t w = sendmsg(c->fd, &m, MSG_NOSIGNAL);
        if (w < 0) {
            if (errno == EINTR)
                continue;
            return errno == EAGAIN || errno == EWOULDBLOCK ? 0 : -1;
        }
        while (w > 0) {
            ws_out *o = q_at(c, 0);
            size_t rest = o->hlen + o->len - o->off;
            if ((size_t)w < rest) {
                o->off += (size_t)w;
                break;
            }
            w -= (ssize_t)rest;
            if (o->is_close)
                c->close_sent = true;
            c->qbytes -= o->len;
            out_release(o);
            c->qhead = (c->qhead + 1) & (c->qcap - 1);
            c->qlen--;
        }
    }
    return 0;
}

/* ---------------------------------------------------------------- input */

static void on_unit(ws_conn *c, const ws_frame_event *ev)
{
    switch (ev->op) {
    case WS_OP_PONG:
        c->last_pong_ms = pgc_mono_ms();
        c->ping_sent_ms = 0;
        break;
    case WS_OP_PING:
        if (!c->close_queued_ms && !push_copy(c, WS_OP_PONG, ev->data, ev->len, true))
            ws_conn_close(c, WS_CLOSE_SERVER_ERROR, "server error");
        break;
    case WS_OP_CLOSE: /* answered with the same code; then the peer expects us to end */
        queue_close(c, ev->code, "");
        c->read_done = true;
        break;
    case WS_OP_TEXT:
        atomic_fetch_add(&c->loop->n_in, 1);
        if (!c->close_queued_ms && c->session)
            ws_session_on_text(c->session, (const char *)ev->data, ev->len);
        break;
    case WS_OP_BINARY:
        atomic_fetch_add(&c->loop->n_in, 1);
        ws_conn_close(c, WS_CLOSE_UNSUPPORTED, "text messages only");
        break;
    default: /* a fragment */
        break;
    }
}

/* Handles the complete frames of buf[0..*len) and moves what remains to its front. */
static void conn_parse(ws_conn *c, unsigned char *buf, size_t *len)
{
    size_t off = 0;
    while (!c->read_done && off < *len) {
        ws_frame_event ev;
        long n = ws_parse(&c->parser, buf + off, *len - off, &ev);
        if (n == 0)
            break;
        if (n < 0) {
            const char *why = n == -WS_CLOSE_TOO_BIG        ? "message too big"
                              : n == -WS_CLOSE_INVALID_DATA ? "invalid UTF-8"
                                                            : "protocol error";
            ws_conn_close(c, (uint16_t)-n, why);
            break;
        }
        off += (size_t)n;
        on_unit(c, &ev);
    }
    if (c->read_done)
        off = *len; /* the rest is not looked at */
    memmove(buf, buf + off, *len - off);
    *len -= off;
}

/* Keeps an incomplete frame: c->in gets n bytes from src. */
static bool keep_rest(ws_conn *c, const unsigned char *src, size_t n)
{
    if (n > c->in_cap) {
        unsigned char *b = realloc(c->in, n);
        if (!b)
            return false;
        c->in = b;
        c->in_cap = n;
    }
    memmove(c->in, src, n);
    c->in_len = n;
    return true;
}

/* Reads what the socket has. false: the peer is gone (EOF, error) or out of memory. */
static bool conn_read(ws_conn *c)
{
    ws_loop *l = c->loop;
    for (;;) {
        unsigned char *dst = l->rbuf;
        size_t room = sizeof(l->rbuf);
        if (c->in_len) { /* continue the incomplete frame in its own buffer */
            size_t need = ws_frame_need(c->in, c->in_len), want = c->in_len + 4096;
            if (need > want && need <= l->max_msg + 14)
                want = need;
            if (want > c->in_cap) {
                unsigned char *b = realloc(c->in, want);
                if (!b)
                    return false;
                c->in = b;
                c->in_cap = want;
            }
            dst = c->in + c->in_len;
            room = c->in_cap - c->in_len;
        }
        ssize_t r = recv(c->fd, dst, room, 0);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0)
            return errno == EAGAIN || errno == EWOULDBLOCK;
        if (r == 0)
            return false;
        if (c->read_done) {
            c->in_len = 0; /* drained unread */
        } else if (dst == l->rbuf) {
            size_t n = (size_t)r;
            conn_parse(c, l->rbuf, &n);
            if (n && !keep_rest(c, l->rbuf, n))
                return false;
        } else {
            c->in_len += (size_t)r;
            conn_parse(c, c->in, &c->in_len);
        }
        if (!c->in_len && c->in_cap) { /* idle connections keep no input buffer */
            free(c->in);
            c->in = NULL;
            c->in_cap = 0;
        }
        if ((size_t)r < room)
            return true; /* level-triggered: epoll tells us when there is more */
    }
}

/* ---------------------------------------------------------------- connections */

static void conn_update_events(ws_conn *c, uint32_t ev)
{
    if (ev == c->events) return;
    struct epoll_event e = { .events = ev, .data.ptr = c };
    if (epoll_ctl(c->loop->epfd, EPOLL_CTL_MOD, c->fd, &e) != 0)
        pgc_log(PGC_LOG_WARN, NULL, "epoll_ctl: %s", strerror(errno));
    c->events = ev;
}

static void wake(ws_loop *l);

void ws_conn_mark_ready(ws_conn *c)
{
    if (atomic_exchange(&c->ready, true))
        return;
    ws_loop *l = c->loop;
    pthread_mutex_lock(&l->mu);
    bool first = l->ready == NULL;
    c->next_ready = NULL;
    *l->ready_tail = c;
    l->ready_tail = &c->next_ready;
    pthread_mutex_unlock(&l->mu);
    /* one wake per batch: the loop takes the whole list after each wake */
    if (first)
        wake(l);
}

static void conn_free(ws_loop *l, ws_conn *c)
{
    ws_session_close(c->session); /* after this the hub never marks c ready again */
    c->session = NULL;
    pthread_mutex_lock(&l->mu);
    for (ws_conn **pp = &l->ready; *pp; pp = &(*pp)->next_ready) {
        if (*pp == c) {
            *pp = c->next_ready;
            if (!*pp)
                l->ready_tail = pp;
            break;
        }
    }
    pthread_mutex_unlock(&l->mu);
    pgc_token_free(&c->tok);
    if (epoll_ctl(l->epfd, EPOLL_CTL_DEL, c->fd, NULL) != 0)
        pgc_log(PGC_LOG_WARN, NULL, "epoll_ctl del: %s", strerror(errno));
    if (c->prev) c->prev->next = c->next; else l->conns = c->next;
    if (c->next) c->next->prev = c->prev;
    close(c->fd);
    for (size_t k = 0; k < c->qlen; k++)
        out_release(q_at(c, k));
    free(c->q);
    free(c->in);
    ws_parser_free(&c->parser);
    free(c);
    atomic_fetch_sub(&l->n_conn, 1);
}

/* Closing a socket with unread input makes the kernel send RST, which can destroy our
 * close frame before the peer reads it (e.g. after 1009 on a large message). So the
 * write side is shut and input is drained until the peer's EOF (or LINGER_MS). The
 * same bound applies to a peer that does not answer our close frame. */
#define LINGER_MS 2000
#define CLOSE_WAIT_MS 5000
static bool conn_linger(ws_conn *c)
{
    char buf[16384];
    for (;;) {
        ssize_t r = recv(c->fd, buf, sizeof buf, 0);
        if (r > 0) continue;
        if (r < 0 && errno == EINTR) continue;
        return r < 0 && (errno == EAGAIN || errno == EWOULDBLOCK);
    }
}

/* Drives one connection; false when it is finished and must be freed. */
static bool conn_io(ws_conn *c, uint32_t ev)
{
    if (c->lingering_ms) return conn_linger(c);
    if ((ev & (EPOLLIN | EPOLLHUP | EPOLLERR)) && !conn_read(c))
        return false; /* the peer is gone: nothing left to tell it */
    if (c->qlen && conn_write(c) != 0)
        return false;
    /* finished: our close is out and the peer's came (or input was refused) */
    if (!(c->close_sent && c->read_done)) {
        conn_update_events(c, EPOLLIN | (c->qlen ? EPOLLOUT : 0));
        return true;
    }
    if (ev & (EPOLLHUP | EPOLLERR)) return false;
    if (shutdown(c->fd, SHUT_WR) != 0) return false;
    c->lingering_ms = pgc_mono_ms();
    conn_update_events(c, EPOLLIN);
    return conn_linger(c);
}

ws_loop *ws_loop_new(const ws_env *env, size_t max_message_bytes, size_t queue_bytes)
{
    ws_loop *l = calloc(1, sizeof *l);
    if (!l) return NULL;
    l->env = *env;
    l->epfd = epoll_create1(EPOLL_CLOEXEC);
    l->evfd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (l->epfd < 0 || l->evfd < 0 || pthread_mutex_init(&l->mu, NULL) != 0) goto fail;
    struct epoll_event e = { .events = EPOLLIN, .data.ptr = NULL };
    if (epoll_ctl(l->epfd, EPOLL_CTL_ADD, l->evfd, &e) != 0) goto fail;
    l->max_msg = max_message_bytes;
    l->queue_bytes = queue_bytes;
    l->ready_tail = &l->ready;
    return l;
fail:
    if (l->epfd >= 0) close(l->epfd);
    if (l->evfd >= 0) close(l->evfd);
    free(l);
    return NULL;
}

static void wake(ws_loop *l)
{
    uint64_t one = 1;
    /* EAGAIN means the counter is already non-zero: the loop wakes anyway. */
    if (write(l->evfd, &one, sizeof one) < 0 && errno != EAGAIN)
        pgc_log(PGC_LOG_WARN, NULL, "eventfd write: %s", strerror(errno));
}

int ws_loop_adopt(ws_loop *l, int fd, const char *extra, size_t extra_len, pgc_token *tok)
{
    ws_conn *c = calloc(1, sizeof *c);
    if (!c) return -1;
    if (extra_len) { /* bytes MHD read past the handshake: parsed first */
        c->in = malloc(extra_len);
        if (!c->in) { free(c); return -1; }
        memcpy(c->in, extra, extra_len);
        c->in_len = c->in_cap = extra_len;
    }
    /* Frames are written whole and many at a time already; Nagle would hold a frame
     * back until the previous one is acknowledged, and the peer may delay that ACK
     * (up to 40 ms on Linux). */
    int one = 1;
    if (setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one)) != 0)
        pgc_log(PGC_LOG_WARN, NULL, "TCP_NODELAY: %s", strerror(errno));
    int fl = fcntl(fd, F_GETFL);
    if (fl < 0 || fcntl(fd, F_SETFL, fl | O_NONBLOCK) != 0) {
        free(c->in);
        free(c);
        return -1;
    }
    c->tok = *tok;
    memset(tok, 0, sizeof(*tok));
    c->fd = fd;
    c->loop = l;
    c->parser.max_msg = l->max_msg;
    pthread_mutex_lock(&l->mu);
    c->next_new = l->incoming;
    l->incoming = c;
    pthread_mutex_unlock(&l->mu);
    wake(l);
    return 0;
}

static void take_incoming(ws_loop *l)
{
    pthread_mutex_lock(&l->mu);
    ws_conn *list = l->incoming;
    l->incoming = NULL;
    pthread_mutex_unlock(&l->mu);
    while (list) {
        ws_conn *c = list;
        list = c->next_new;
        struct epoll_event e = { .events = EPOLLIN, .data.ptr = c };
        if (epoll_ctl(l->epfd, EPOLL_CTL_ADD, c->fd, &e) != 0) {
            pgc_log(PGC_LOG_WARN, NULL, "cannot adopt a connection: %s", strerror(errno));
            close(c->fd);
            pgc_token_free(&c->tok);
            free(c->in);
            free(c);
            continue;
        }
        c->events = EPOLLIN;
        c->last_pong_ms = pgc_mono_ms();
        c->next = l->conns;
        if (l->conns) l->conns->prev = c;
        l->conns = c;
        atomic_fetch_add(&l->n_conn, 1);
        char id[48];
        snprintf(id, sizeof(id), "%s-%llu", pgc_hub_instance_id(l->env.hub), (unsigned long long)++l->next_id);
        c->session = ws_session_open(&l->env, c, &c->tok, id);
        if (!c->session) {
            pgc_log(PGC_LOG_WARN, NULL, "out of memory opening a session");
            ws_conn_close(c, WS_CLOSE_SERVER_ERROR, "server error");
        }
        if (c->in_len) { /* what came with the handshake, after `connected` */
            conn_parse(c, c->in, &c->in_len);
            if (!c->in_len) {
                free(c->in);
                c->in = NULL;
                c->in_cap = 0;
            }
        }
        if (!conn_io(c, 0)) conn_free(l, c);
    }
}

/* Server pings; a connection silent past the timeout is closed. */
static void heartbeat(ws_loop *l, int64_t now)
{
    for (ws_conn *c = l->conns, *n; c; c = n) {
        n = c->next;
        if (c->lingering_ms) {
            if (now - c->lingering_ms > LINGER_MS) conn_free(l, c);
            continue;
        }
        if (c->close_queued_ms && now - c->close_queued_ms > CLOSE_WAIT_MS) {
            conn_free(l, c); /* our close could not be written, or was never answered */
            continue;
        }
        int interval = 30000, timeout = 90000;
        if (c->session) {
            ws_session_heartbeat(c->session, &interval, &timeout);
            ws_session_tick(c->session, now);
        }
        if (c->ping_sent_ms && now - c->ping_sent_ms > timeout) {
            ws_conn_close(c, WS_CLOSE_POLICY, "ping timeout");
        } else if (!c->ping_sent_ms && !c->close_queued_ms && now - c->last_pong_ms >= interval) {
            if (push_copy(c, WS_OP_PING, "hb", 2, true)) c->ping_sent_ms = now;
        }
        if (!conn_io(c, 0)) conn_free(l, c);
    }
}

/* Connections the hub woke: queue their items, then write. Each stays flagged until its
 * turn: a wake while flagged is covered by the pump to come, and a connection flagged
 * again is linked into the next list only after its link in this one has been read. */
static void pump_ready(ws_loop *l)
{
    pthread_mutex_lock(&l->mu);
    ws_conn *list = l->ready;
    l->ready = NULL;
    l->ready_tail = &l->ready;
    pthread_mutex_unlock(&l->mu);
    while (list) {
        ws_conn *c = list;
        list = c->next_ready;
        atomic_store(&c->ready, false);
        if (!c->session || c->lingering_ms)
            continue;
        ws_session_pump(c->session);
        if (!conn_io(c, 0))
            conn_free(l, c);
    }
}

int ws_loop_run(ws_loop *l)
{
    struct epoll_event evs[256];
    int64_t next_hb = pgc_mono_ms() + 1000;
    while (!atomic_load(&l->stop)) {
        int n = epoll_wait(l->epfd, evs, 256, 1000);
        if (n < 0) {
            if (errno == EINTR) continue;
            pgc_log(PGC_LOG_ERROR, NULL, "epoll_wait: %s", strerror(errno));
            return -1;
        }
        for (int i = 0; i < n; i++) {
            ws_conn *c = evs[i].data.ptr;
            if (!c) {
                uint64_t v;
                if (read(l->evfd, &v, sizeof v) < 0 && errno != EAGAIN)
                    pgc_log(PGC_LOG_WARN, NULL, "eventfd read: %s", strerror(errno));
                take_incoming(l);
                pump_ready(l);
                continue;
            }
            if (!conn_io(c, evs[i].events)) conn_free(l, c);
        }
        int64_t now = pgc_mono_ms();
        if (now >= next_hb) { heartbeat(l, now); next_hb = now + 1000; }
    }
    /* Graceful end: 1001 to everyone, a short wait for the close replies. */
    take_incoming(l);
    for (ws_conn *c = l->conns, *n; c; c = n) {
        n = c->next;
        if (c->lingering_ms) continue;
        queue_close(c, WS_CLOSE_GOING_AWAY, "server shutting down");
        if (!conn_io(c, 0)) conn_free(l, c);
    }
    int64_t until = pgc_mono_ms() + 2000;
    while (l->conns && pgc_mono_ms() < until) {
        int n = epoll_wait(l->epfd, evs, 256, 100);
        for (int i = 0; i < n; i++) {
            ws_conn *c = evs[i].data.ptr;
            if (c && !conn_io(c, evs[i].events)) conn_free(l, c);
        }
    }
    while (l->conns) conn_free(l, l->conns);
    return 0;
}

void ws_loop_stop(ws_loop *l)
{
    atomic_store(&l->stop, true);
    uint64_t one = 1;
    ssize_t r = write(l->evfd, &one, sizeof one);
    (void)r; /* async-signal context: nothing to do on failure, the 1 s tick ends the loop */
}

void ws_loop_get_stats(ws_loop *l, ws_loop_stats *out)
{
    out->connections = atomic_load(&l->n_conn);
    out->messages_in = atomic_load(&l->n_in);
    out->messages_out = atomic_load(&l->n_out);
    out->queue_overflows = atomic_load(&l->n_overflow);
}

void ws_loop_free(ws_loop *l)
{
    if (!l) return;
    close(l->epfd);
    close(l->evfd);
    pthread_mutex_destroy(&l->mu);
    free(l);
}
