/* The sidecar's WebSocket transport on the shared event loop (core/evloop.c): RFC 6455
 * framing of each connection's input (frame.c parses) and output (a queue of frames
 * written many at a time with sendmsg). The loop provides the epoll set, the ready list
 * the hub's wakes feed, the hand-over from libmicrohttpd's thread, the timer scan and the
 * deferred close; this file keeps only the WebSocket side.
 *
 * Output. Two queues per connection: control frames (pongs, our pings) and data frames
 * (messages, events, our close). Control frames go out before data frames not yet begun,
 * in the order they were queued (pongs answer pings in order), and never cut into a frame
 * half written. Event frames point at the hub's item (its JSON is shared by every
 * connection it goes to); other frames own their bytes.
 *
 * Bounds. Catch-up and live events are paced by the socket: the session's pump stops
 * taking from the hub subscriber once WS_SOFT_BYTES wait here (ws_conn_backlogged), and
 * whatever drains the queue (EPOLLOUT, a wake, a tick) pumps again once it is back under
 * that bound. So a backlog waits in the subscriber's bounded hub queue, which the hub
 * feeds from the log as it drains; only the hub queue's overflow ends a connection (1008).
 * What the connection makes us queue on its own — replies to its messages, pongs to its
 * pings — counts against queue_bytes (with a per-frame overhead, so empty pings count
 * too); past it the connection is closed with 1008. Input not yet complete (a frame
 * still arriving, the fragments of a message) is bounded by ws_max_unfinished_bytes
 * (1009 past it).
 *
 * Closing. Our close frame goes after what is queued. While it cannot be written (a
 * reader that stalls with full socket buffers) the connection waits up to its ping
 * timeout, so a reader that resumes still gets the close code; once written, the peer
 * has CLOSE_WAIT_MS to answer. Then the write side is shut and the input drained until
 * the peer's EOF (or LINGER_MS), so that unread input does not make the kernel reset the
 * connection before the peer has read our close; and the descriptor stays open until the
 * peer has acknowledged what we wrote (bounded by the ping timeout): closed earlier, the
 * kernel would keep the unsent bytes in an orphan socket that it abandons after a few
 * zero-window probes, and a reader that stalled would see a reset instead of our close. */
#include "clock.h"
#include "loop.h"

#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <linux/sockios.h>
#include <sys/epoll.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

#include "evloop.h"
#include "frame.h"
#include "log.h"
#include "session.h"

#define WS_SOFT_BYTES (64 * 1024) /* the pump stops taking from the hub past this */
#define FRAME_COST 64             /* what a queued frame costs besides its payload */
#define TICK_MS 100               /* how late a connection's timer may run */
#define HEARTBEAT_MS 1000         /* each connection's timer: pings, presence, close waits */
#define LINGER_MS 2000
#define CLOSE_WAIT_MS 5000
#define RBUF_SIZE 65536
#define PUMP_ROUNDS 16            /* pumps of one connection per turn of the loop */

/* One queued server frame. */
typedef struct ws_out {
    pgc_event *ev;               /* holds a reference; the payload is ev->json */
    unsigned char *own;          /* or this, freed when written */
    const unsigned char *data;
    size_t len, off;             /* off: bytes of header + payload written */
    size_t cost;                 /* counted in own_bytes (0 for events) */
    unsigned char hdr[WS_HEADER_MAX];
    uint8_t hlen;
    bool is_close;
} ws_out;

typedef struct ws_ring {
    ws_out *q;                   /* capacity a power of two */
    size_t cap, head, len;
} ws_ring;

typedef struct ws_conn {
    pgc_ev ev;                       /* its place on the loop */
    int fd;
    ws_loop *loop;
    ws_parser parser;
    unsigned char *in;               /* an incomplete frame, kept only until it completes */
    size_t in_len, in_cap;
    ws_ring ctl, data;
    size_t own_bytes;                /* our own frames, bounded by queue_bytes */
    size_t event_bytes;              /* event payloads queued */
    int64_t last_pong_ms, ping_sent_ms;
    int64_t close_queued_ms;         /* our close frame is queued: nothing more after it */
    int64_t close_sent_ms;           /* ... and written */
    int64_t lingering_ms;            /* non-zero: finished, draining until the peer's EOF */
    bool read_done;                  /* close received or input refused: drain, do not parse */
    bool pump_owed;                  /* the pump stopped at the soft bound */
    bool peer_eof;                   /* lingering: the peer's EOF came */
    pgc_token tok;                   /* verified at the handshake; moved to the session */
    ws_session *session;
} ws_conn;

struct ws_loop {
    pgc_evloop *ev;
    ws_env env;
    uint64_t next_id;
    size_t max_msg, queue_bytes, max_unfinished;
    unsigned char rbuf[RBUF_SIZE];   /* every read lands here first: one buffer, not one each */
    _Atomic uint64_t n_conn, n_in, n_out, n_overflow;
};

static ws_conn *of(pgc_ev *o) { return (ws_conn *)((char *)o - offsetof(ws_conn, ev)); }

/* ---------------------------------------------------------------- output queues */

static ws_out *r_at(ws_ring *r, size_t k) { return &r->q[(r->head + k) & (r->cap - 1)]; }

static bool r_room(ws_ring *r)
{
    if (r->len < r->cap)
        return true;
    size_t cap = r->cap ? r->cap * 2 : 4;
    ws_out *q = malloc(cap * sizeof(*q));
    if (!q)
        return false;
    for (size_t k = 0; k < r->len; k++)
        q[k] = *r_at(r, k);
    free(r->q);
    r->q = q;
    r->cap = cap;
    r->head = 0;
    return true;
}

static void out_release(ws_conn *c, ws_out *o)
{
    if (o->ev) {
        c->event_bytes -= o->len;
        pgc_event_unref(o->ev);
    }
    c->own_bytes -= o->cost;
    free(o->own);
}

static void r_pop(ws_conn *c, ws_ring *r)
{
    out_release(c, r_at(r, 0));
    r->head = (r->head + 1) & (r->cap - 1);
    r->len--;
}

/* Drops every frame not begun (a reader cut off does not get its backlog). */
static void r_drop_unstarted(ws_conn *c, ws_ring *r)
{
    size_t keep = r->len && r_at(r, 0)->off > 0 ? 1 : 0;
    for (size_t k = keep; k < r->len; k++)
        out_release(c, r_at(r, k));
    r->len = keep;
}

static void r_free(ws_conn *c, ws_ring *r)
{
    while (r->len)
        r_pop(c, r);
    free(r->q);
    r->q = NULL;
    r->cap = 0;
}

static bool q_push(ws_conn *c, ws_ring *r, int op, pgc_event *ev, unsigned char *own, const void *data, size_t len)
{
    if (!r_room(r))
        return false;
    ws_out o = {.ev = ev, .own = own, .data = data, .len = len, .is_close = op == WS_OP_CLOSE};
    o.hlen = (uint8_t)ws_frame_header(o.hdr, op, len);
    if (ev) {
        c->event_bytes += len;
    } else {
        o.cost = len + FRAME_COST;
        c->own_bytes += o.cost;
    }
    *r_at(r, r->len++) = o;
    return true;
}

static bool push_copy(ws_conn *c, ws_ring *r, int op, const void *data, size_t len)
{
    unsigned char *own = NULL;
    if (len) {
        own = malloc(len);
        if (!own)
            return false;
        memcpy(own, data, len);
    }
    if (q_push(c, r, op, NULL, own, own, len))
        return true;
    free(own);
    return false;
}

static bool queued(const ws_conn *c) { return c->ctl.len || c->data.len; }

/* Input is not looked at any more (it is drained); its buffers go once no parse is
 * under way (drop_input), since the message being handled may live in them. */
static void stop_reading(ws_conn *c) { c->read_done = true; }

static void drop_input(ws_conn *c)
{
    free(c->in);
    c->in = NULL;
    c->in_len = c->in_cap = 0;
    ws_parser_free(&c->parser);
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
    if (!push_copy(c, &c->data, WS_OP_CLOSE, b, n))
        c->close_sent_ms = pgc_mono_ms(); /* no memory even for that: finish without it */
}

/* Cut off: what is not begun is dropped, the close goes out next. */
static void cut_off(ws_conn *c, uint16_t code, const char *reason)
{
    r_drop_unstarted(c, &c->ctl);
    r_drop_unstarted(c, &c->data);
    queue_close(c, code, reason);
    stop_reading(c);
}

/* Our own frame of n payload bytes would pass queue_bytes: the connection is cut off. */
static bool own_full(ws_conn *c, size_t n)
{
    if (c->own_bytes + n + FRAME_COST <= c->loop->queue_bytes)
        return false;
    atomic_fetch_add(&c->loop->n_overflow, 1);
    cut_off(c, WS_CLOSE_POLICY, "outbound queue overflow");
    return true;
}

void ws_conn_send(ws_conn *c, const char *s, size_t n)
{
    if (c->close_queued_ms || c->lingering_ms || own_full(c, n))
        return;
    if (push_copy(c, &c->data, WS_OP_TEXT, s, n))
        atomic_fetch_add(&c->loop->n_out, 1);
    else
        cut_off(c, WS_CLOSE_SERVER_ERROR, "server error");
}

void ws_conn_send_event(ws_conn *c, pgc_event *e)
{
    if (c->close_queued_ms || c->lingering_ms)
        return;
    /* a pump that honours ws_conn_backlogged stays far below this */
    if (c->event_bytes > c->loop->queue_bytes + WS_SOFT_BYTES) {
        atomic_fetch_add(&c->loop->n_overflow, 1);
        cut_off(c, WS_CLOSE_POLICY, "outbound queue overflow");
        return;
    }
    pgc_event_ref(e);
    if (q_push(c, &c->data, WS_OP_TEXT, e, NULL, e->json, e->json_len)) {
        atomic_fetch_add(&c->loop->n_out, 1);
    } else {
        pgc_event_unref(e);
        cut_off(c, WS_CLOSE_SERVER_ERROR, "server error");
    }
}

bool ws_conn_backlogged(ws_conn *c)
{
    if (c->event_bytes + c->own_bytes <= WS_SOFT_BYTES && !c->close_queued_ms)
        return false;
    c->pump_owed = true; /* the caller stops taking: it pumps again once drained */
    return true;
}

void ws_conn_close(ws_conn *c, uint16_t code, const char *reason)
{
    queue_close(c, code, reason);
    stop_reading(c);
}

void ws_conn_mark_ready(ws_conn *c) { pgc_ev_wake(&c->ev); }

/* Writes what is queued, many frames per call: a data frame under way first, then the
 * control frames, then the other data frames. -1: the connection is broken. */
static int conn_write(ws_conn *c)
{
    while (queued(c)) {
        struct iovec iov[64];
        ws_out *fr[32];
        ws_ring *from[32];
        int n = 0, nf = 0;
        size_t d0 = 0;
        if (c->data.len && r_at(&c->data, 0)->off > 0) {
            fr[nf] = r_at(&c->data, 0);
            from[nf++] = &c->data;
            d0 = 1;
        }
        for (size_t k = 0; k < c->ctl.len && nf < 32; k++) {
            fr[nf] = r_at(&c->ctl, k);
            from[nf++] = &c->ctl;
        }
        for (size_t k = d0; k < c->data.len && nf < 32; k++) {
            fr[nf] = r_at(&c->data, k);
            from[nf++] = &c->data;
        }
        for (int i = 0; i < nf; i++) {
            ws_out *o = fr[i];
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
        /* frames complete in the order they were laid out, each at the head of its queue */
        for (int i = 0; i < nf && w > 0; i++) {
            ws_out *o = fr[i];
            size_t rest = o->hlen + o->len - o->off;
            if ((size_t)w < rest) {
                o->off += (size_t)w;
                break;
            }
            w -= (ssize_t)rest;
            if (o->is_close)
                c->close_sent_ms = pgc_mono_ms();
            r_pop(c, from[i]);
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
    case WS_OP_PING: /* answered in order, before data not yet begun */
        if (!c->close_queued_ms && !own_full(c, ev->len) && !push_copy(c, &c->ctl, WS_OP_PONG, ev->data, ev->len))
            ws_conn_close(c, WS_CLOSE_SERVER_ERROR, "server error");
        break;
    case WS_OP_CLOSE: /* answered with the same code; then the peer expects us to end */
        queue_close(c, ev->code, "");
        stop_reading(c);
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

/* What the connection holds of input not complete yet. */
static size_t unfinished(const ws_conn *c) { return c->in_cap + c->parser.msg_cap; }

static bool too_much_unfinished(ws_conn *c, size_t more)
{
    if (unfinished(c) + more <= c->loop->max_unfinished)
        return false;
    ws_conn_close(c, WS_CLOSE_TOO_BIG, "too much unfinished input");
    return true;
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
        if (!c->read_done && ev.op == 0)
            too_much_unfinished(c, 0); /* the fragments so far */
    }
    if (c->read_done) {
        *len = 0; /* the rest is not looked at */
        return;
    }
    memmove(buf, buf + off, *len - off);
    *len -= off;
}

/* Keeps an incomplete frame: c->in gets n bytes from src. */
static bool keep_rest(ws_conn *c, const unsigned char *src, size_t n)
{
    if (n > c->in_cap) {
        if (too_much_unfinished(c, n - c->in_cap))
            return true;
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
        if (c->in_len && !c->read_done) { /* continue the incomplete frame in its own buffer */
            size_t need = ws_frame_need(c->in, c->in_len), want = c->in_len + 4096;
            if (need > want && need <= l->max_msg + 14)
                want = need;
            if (want > c->in_cap) {
                if (too_much_unfinished(c, want - c->in_cap))
                    continue; /* closing: the rest is drained */
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
            /* drained unread */
        } else if (dst == l->rbuf) {
            size_t n = (size_t)r;
            conn_parse(c, l->rbuf, &n);
            if (n && !c->read_done && !keep_rest(c, l->rbuf, n))
                return false;
        } else {
            c->in_len += (size_t)r;
            conn_parse(c, c->in, &c->in_len);
        }
        if (c->read_done && (c->in_cap || c->parser.msg_cap))
            drop_input(c);
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

/* Bytes written to the socket that the peer has not acknowledged yet. */
static int unacked(ws_conn *c)
{
    int n = 0;
    return ioctl(c->fd, SIOCOUTQ, &n) == 0 ? n : 0;
}

/* Lingering: input is drained (and dropped) until the peer's EOF. false: the peer is gone
 * (reset) or the descriptor failed. */
static bool linger_read(ws_conn *c)
{
    char buf[16384];
    while (!c->peer_eof) {
        ssize_t r = recv(c->fd, buf, sizeof buf, 0);
        if (r > 0) continue;
        if (r < 0 && errno == EINTR) continue;
        if (r < 0)
            return errno == EAGAIN || errno == EWOULDBLOCK;
        c->peer_eof = true; /* nothing more to read: stop watching input */
        if (pgc_ev_set_events(&c->ev, 0) != 0)
            return false;
    }
    return true;
}

/* A lingering connection is released once the peer's EOF came (or LINGER_MS passed) and
 * what we wrote has reached the peer — a reader that stalled gets its close frame when it
 * reads again — but not later than the connection's ping timeout. A descriptor closed
 * with unsent data would leave the kernel an orphan that it gives up on (the peer then
 * sees the connection reset, without our close). */
static void linger_check(ws_conn *c, int64_t now)
{
    int interval = 30000, timeout = 90000;
    if (c->session)
        ws_session_heartbeat(c->session, &interval, &timeout);
    int64_t age = now - c->lingering_ms;
    if ((c->peer_eof || age > LINGER_MS) && (unacked(c) == 0 || age > timeout))
        pgc_ev_close(&c->ev);
}

static bool has_room(const ws_conn *c)
{
    return c->session && !c->close_queued_ms && c->event_bytes + c->own_bytes <= WS_SOFT_BYTES;
}

/* Every path ends here (a wake, socket events, a tick): pump while woken or owed a pump
 * and under the soft bound, write, and watch for room while something waits. */
static void drive(ws_conn *c, bool woken)
{
    if (c->lingering_ms) {
        if (!linger_read(c))
            pgc_ev_close(&c->ev);
        return;
    }
    for (int round = 0;; round++) {
        if (woken || (c->pump_owed && has_room(c))) {
            if (round == PUMP_ROUNDS) {
                pgc_ev_wake(&c->ev); /* more next pass: others get their turn first */
                break;
            }
            woken = false;
            c->pump_owed = false;
            if (c->session && !c->close_queued_ms)
                ws_session_pump(c->session);
        }
        if (queued(c) && conn_write(c) != 0) {
            pgc_ev_close(&c->ev); /* the peer is gone: nothing left to tell it */
            return;
        }
        if (!(c->pump_owed && has_room(c)))
            break; /* else owed a pump and the socket took what waited: it runs now */
    }
    /* finished: our close is out and the peer's came (or input was refused) */
    if (!(c->close_sent_ms && c->read_done)) {
        if (pgc_ev_set_events(&c->ev, EPOLLIN | (queued(c) ? EPOLLOUT : 0)) != 0)
            pgc_ev_close(&c->ev);
        return;
    }
    if (shutdown(c->fd, SHUT_WR) != 0 || pgc_ev_set_events(&c->ev, EPOLLIN) != 0) {
        pgc_ev_close(&c->ev);
        return;
    }
    c->lingering_ms = pgc_mono_ms();
    if (!linger_read(c))
        pgc_ev_close(&c->ev);
    else
        linger_check(c, c->lingering_ms);
}

static void on_io(pgc_ev *o, uint32_t events)
{
    ws_conn *c = of(o);
    if (c->lingering_ms) {
        if ((events & EPOLLERR) || !linger_read(c))
            pgc_ev_close(o); /* reset: nothing more reaches the peer */
        else
            linger_check(c, pgc_mono_ms());
        return;
    }
    if ((events & (EPOLLIN | EPOLLHUP | EPOLLERR)) && !conn_read(c)) {
        pgc_ev_close(o); /* the peer is gone: nothing left to tell it */
        return;
    }
    drive(c, false);
}

static void on_ready(pgc_ev *o)
{
    ws_conn *c = of(o);
    if (!c->lingering_ms)
        drive(c, true);
}

/* Server pings, presence heartbeats, and the bounds on waiting for a close. */
static void on_timer(pgc_ev *o, int64_t now)
{
    ws_conn *c = of(o);
    pgc_ev_set_due(o, now + HEARTBEAT_MS);
    if (c->lingering_ms) {
        linger_check(c, now);
        return;
    }
    int interval = 30000, timeout = 90000;
    if (c->session)
        ws_session_heartbeat(c->session, &interval, &timeout);
    if (c->close_queued_ms) {
        /* our close not written yet (full socket buffers): as long as a ping would wait;
         * written: the peer has CLOSE_WAIT_MS to answer */
        if ((!c->close_sent_ms && now - c->close_queued_ms > timeout) ||
            (c->close_sent_ms && now - c->close_sent_ms > CLOSE_WAIT_MS)) {
            pgc_ev_close(o);
            return;
        }
    } else {
        if (c->session)
            ws_session_tick(c->session, now);
        if (c->ping_sent_ms && now - c->ping_sent_ms > timeout) {
            ws_conn_close(c, WS_CLOSE_POLICY, "ping timeout");
        } else if (!c->ping_sent_ms && !c->close_queued_ms && now - c->last_pong_ms >= interval) {
            if (!own_full(c, 2) && push_copy(c, &c->ctl, WS_OP_PING, "hb", 2))
                c->ping_sent_ms = now;
        }
    }
    drive(c, false);
}

static void on_start(pgc_ev *o)
{
    ws_conn *c = of(o);
    ws_loop *l = c->loop;
    int64_t now = pgc_mono_ms();
    c->last_pong_ms = now;
    pgc_ev_set_due(o, now + HEARTBEAT_MS);
    atomic_fetch_add(&l->n_conn, 1);
    char id[48];
    snprintf(id, sizeof(id), "%s-%llu", pgc_hub_instance_id(l->env.hub), (unsigned long long)++l->next_id);
    c->session = ws_session_open(&l->env, c, &c->tok, id);
    if (!c->session) {
        pgc_log(PGC_LOG_WARN, NULL, "out of memory opening a session");
        ws_conn_close(c, WS_CLOSE_SERVER_ERROR, "server error");
    }
    if (c->in_len && !c->read_done) { /* what came with the handshake, after `connected` */
        conn_parse(c, c->in, &c->in_len);
        if (c->read_done)
            drop_input(c);
        if (!c->in_len) {
            free(c->in);
            c->in = NULL;
            c->in_cap = 0;
        }
    }
    drive(c, false);
}

static void on_shutdown(pgc_ev *o)
{
    ws_conn *c = of(o);
    if (c->lingering_ms)
        return;
    queue_close(c, WS_CLOSE_GOING_AWAY, "server shutting down");
    stop_reading(c);
    drive(c, false);
}

static void on_release(pgc_ev *o)
{
    ws_conn *c = of(o);
    ws_session_close(c->session); /* after this the hub never wakes c again */
    c->session = NULL;
    pgc_token_free(&c->tok);
    if (close(c->fd) != 0)
        pgc_log(PGC_LOG_DEBUG, NULL, "close: %s", strerror(errno));
    r_free(c, &c->ctl);
    r_free(c, &c->data);
    free(c->in);
    ws_parser_free(&c->parser);
    ws_loop *l = c->loop;
    free(c);
    atomic_fetch_sub(&l->n_conn, 1);
}

static const pgc_ev_ops conn_ops = {on_start, on_io, on_ready, on_timer, on_shutdown, on_release};

/* ---------------------------------------------------------------- the loop */

ws_loop *ws_loop_new(const ws_env *env, size_t max_message_bytes, size_t queue_bytes)
{
    ws_loop *l = calloc(1, sizeof *l);
    if (!l) return NULL;
    l->ev = pgc_evloop_new(TICK_MS);
    if (!l->ev) {
        free(l);
        return NULL;
    }
    l->env = *env;
    l->max_msg = max_message_bytes;
    l->queue_bytes = queue_bytes;
    l->max_unfinished = env->cfg->ws_max_unfinished_bytes ? env->cfg->ws_max_unfinished_bytes
                                                           : max_message_bytes + 128 * 1024;
    return l;
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
    pgc_ev_init(&c->ev, l->ev, &conn_ops);
    if (pgc_evloop_adopt(&c->ev, fd, EPOLLIN) != 0) { /* the loop has ended */
        *tok = c->tok;
        free(c->in);
        free(c);
        return -1;
    }
    return 0;
}

int ws_loop_run(ws_loop *l)
{
    /* after a stop: 1001 to everyone, a short wait for their close replies */
    pgc_evloop_run(l->ev, 2000);
    return 0;
}

void ws_loop_stop(ws_loop *l) { pgc_evloop_stop(l->ev); }

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
    pgc_evloop_free(l->ev);
    free(l);
}
