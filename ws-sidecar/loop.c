#include "clock.h"
#include "loop.h"

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>
#include <fcntl.h>
#include <wslay/wslay.h>

#include "log.h"
#include "session.h"
#include "utf8.h"

typedef struct ws_conn {
    struct ws_conn *next, *prev;     /* loop list (loop thread only) */
    struct ws_conn *next_new;        /* handover list (under the loop mutex) */
    int fd;
    wslay_event_context_ptr ctx;
    ws_loop *loop;
    char *pre; size_t pre_len, pre_off; /* bytes MHD read past the handshake */
    int64_t last_pong_ms, ping_sent_ms;
    int64_t lingering_ms;            /* non-zero: closed, draining until the peer's EOF */
    uint32_t events;                 /* what epoll watches now */
    pgc_token tok;                   /* verified at the handshake; moved to the session */
    ws_session *session;
    atomic_bool ready;               /* the hub queued items (set from the hub thread) */
    struct ws_conn *next_ready;      /* ready list (under the loop mutex) */
    bool closing;                    /* a close is queued: ignore the rest */
} ws_conn;

struct ws_loop {
    int epfd, evfd;
    pthread_mutex_t mu;
    ws_conn *incoming;               /* adopted, not yet in the loop */
    ws_conn *conns;
    ws_conn *ready;                  /* woken by the hub, to pump (under mu) */
    ws_env env;
    uint64_t next_id;
    atomic_bool stop;
    size_t max_msg, queue_bytes;
    _Atomic uint64_t n_conn, n_in, n_out, n_overflow;
};

static ssize_t recv_cb(wslay_event_context_ptr ctx, uint8_t *buf, size_t len, int flags, void *user)
{
    ws_conn *c = user;
    if (c->pre_off < c->pre_len) {
        size_t n = c->pre_len - c->pre_off < len ? c->pre_len - c->pre_off : len;
        memcpy(buf, c->pre + c->pre_off, n);
        c->pre_off += n;
        return (ssize_t)n;
    }
    ssize_t r;
    do r = recv(c->fd, buf, len, 0); while (r < 0 && errno == EINTR);
    if (r < 0) {
        wslay_event_set_error(ctx, (errno == EAGAIN || errno == EWOULDBLOCK) ? WSLAY_ERR_WOULDBLOCK
                                                                            : WSLAY_ERR_CALLBACK_FAILURE);
        return -1;
    }
    if (r == 0) { wslay_event_set_error(ctx, WSLAY_ERR_CALLBACK_FAILURE); return -1; }
    return r;
}

static ssize_t send_cb(wslay_event_context_ptr ctx, const uint8_t *data, size_t len, int flags, void *user)
{
    ws_conn *c = user;
    ssize_t r;
    do r = send(c->fd, data, len, MSG_NOSIGNAL); while (r < 0 && errno == EINTR);
    if (r < 0) {
        wslay_event_set_error(ctx, (errno == EAGAIN || errno == EWOULDBLOCK) ? WSLAY_ERR_WOULDBLOCK
                                                                            : WSLAY_ERR_CALLBACK_FAILURE);
        return -1;
    }
    return r;
}

/* Queues a text message unless the connection's outbound bytes exceed its bound: a
 * slow reader is cut off (1008) instead of growing without limit. */
void ws_conn_send(ws_conn *c, const char *s, size_t n)
{
    if (c->closing || c->lingering_ms || wslay_event_get_close_sent(c->ctx))
        return; /* closing */
    if (wslay_event_get_queued_msg_length(c->ctx) + n > c->loop->queue_bytes) {
        atomic_fetch_add(&c->loop->n_overflow, 1);
        const char *why = "outbound queue overflow";
        wslay_event_queue_close(c->ctx, WSLAY_CODE_POLICY_VIOLATION, (const uint8_t *)why, strlen(why));
        return;
    }
    struct wslay_event_msg m = { WSLAY_TEXT_FRAME, (const uint8_t *)s, n };
    if (wslay_event_queue_msg(c->ctx, &m) == 0) atomic_fetch_add(&c->loop->n_out, 1);
}

void ws_conn_close(ws_conn *c, uint16_t code, const char *reason)
{
    if (c->closing)
        return;
    c->closing = true;
    /* wslay sends control frames before queued data: write what is queued first so
     * that the messages explaining the close (rate_limited, ...) are not lost */
    if (wslay_event_want_write(c->ctx))
        (void)wslay_event_send(c->ctx);
    wslay_event_queue_close(c->ctx, code, (const uint8_t *)reason, strlen(reason));
    wslay_event_shutdown_read(c->ctx);
}

static void wake(ws_loop *l);

void ws_conn_mark_ready(ws_conn *c)
{
    if (atomic_exchange(&c->ready, true))
        return;
    pthread_mutex_lock(&c->loop->mu);
    c->next_ready = c->loop->ready;
    c->loop->ready = c;
    pthread_mutex_unlock(&c->loop->mu);
    wake(c->loop);
}

static void on_msg(wslay_event_context_ptr ctx, const struct wslay_event_on_msg_recv_arg *arg, void *user)
{
    ws_conn *c = user;
    if (arg->opcode == WSLAY_PONG) { c->last_pong_ms = pgc_mono_ms(); c->ping_sent_ms = 0; return; }
    if (wslay_is_ctrl_frame(arg->opcode)) return; /* ping answered and close handled by wslay */
    atomic_fetch_add(&c->loop->n_in, 1);
    if (arg->opcode == WSLAY_TEXT_FRAME && !ws_utf8_valid(arg->msg, arg->msg_length)) {
        const char *why = "invalid UTF-8";
        wslay_event_queue_close(ctx, WSLAY_CODE_INVALID_FRAME_PAYLOAD_DATA, (const uint8_t *)why, strlen(why));
        return;
    }
    if (arg->opcode != WSLAY_TEXT_FRAME) {
        const char *why = "text messages only";
        wslay_event_queue_close(ctx, WSLAY_CODE_UNSUPPORTED_DATA, (const uint8_t *)why, strlen(why));
        return;
    }
    if (!c->closing && c->session)
        ws_session_on_text(c->session, (const char *)arg->msg, arg->msg_length);
}

static void conn_update_events(ws_conn *c)
{
    uint32_t ev = 0;
    if (wslay_event_want_read(c->ctx)) ev |= EPOLLIN;
    if (wslay_event_want_write(c->ctx)) ev |= EPOLLOUT;
    if (ev == c->events) return;
    struct epoll_event e = { .events = ev, .data.ptr = c };
    if (epoll_ctl(c->loop->epfd, EPOLL_CTL_MOD, c->fd, &e) != 0)
        pgc_log(PGC_LOG_WARN, NULL, "epoll_ctl: %s", strerror(errno));
    c->events = ev;
}

static void conn_free(ws_loop *l, ws_conn *c)
{
    ws_session_close(c->session); /* after this the hub never marks c ready again */
    c->session = NULL;
    pthread_mutex_lock(&l->mu);
    for (ws_conn **pp = &l->ready; *pp; pp = &(*pp)->next_ready) {
        if (*pp == c) {
            *pp = c->next_ready;
            break;
        }
    }
    pthread_mutex_unlock(&l->mu);
    pgc_token_free(&c->tok);
    if (epoll_ctl(l->epfd, EPOLL_CTL_DEL, c->fd, NULL) != 0)
        pgc_log(PGC_LOG_WARN, NULL, "epoll_ctl del: %s", strerror(errno));
    if (c->prev) c->prev->next = c->next; else l->conns = c->next;
    if (c->next) c->next->prev = c->prev;
    wslay_event_context_free(c->ctx);
    close(c->fd);
    free(c->pre);
    free(c);
    atomic_fetch_sub(&l->n_conn, 1);
}

/* Closing a socket with unread input makes the kernel send RST, which can destroy our
 * close frame before the peer reads it (e.g. after 1009 on a large message). So the
 * write side is shut and input is drained until the peer's EOF (or LINGER_MS). */
#define LINGER_MS 2000
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
    bool done = false;
    if ((ev & (EPOLLIN | EPOLLHUP | EPOLLERR)) && wslay_event_recv(c->ctx) != 0) done = true;
    if (!done && wslay_event_want_write(c->ctx) && wslay_event_send(c->ctx) != 0) done = true;
    if (!done && !wslay_event_want_read(c->ctx) && !wslay_event_want_write(c->ctx)) done = true;
    if (!done) {
        conn_update_events(c);
        return true;
    }
    if (ev & (EPOLLHUP | EPOLLERR)) return false;
    if (shutdown(c->fd, SHUT_WR) != 0) return false;
    c->lingering_ms = pgc_mono_ms();
    struct epoll_event e = { .events = EPOLLIN, .data.ptr = c };
    if (epoll_ctl(c->loop->epfd, EPOLL_CTL_MOD, c->fd, &e) != 0) return false;
    c->events = EPOLLIN;
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
    c->tok = *tok;
    memset(tok, 0, sizeof(*tok));
    if (extra_len) {
        c->pre = malloc(extra_len);
        if (!c->pre) { free(c); return -1; }
        memcpy(c->pre, extra, extra_len);
        c->pre_len = extra_len;
    }
    int fl = fcntl(fd, F_GETFL);
    if (fl < 0 || fcntl(fd, F_SETFL, fl | O_NONBLOCK) != 0) {
        *tok = c->tok; /* the caller keeps it */
        free(c->pre);
        free(c);
        return -1;
    }
    c->fd = fd;
    c->loop = l;
    pthread_mutex_lock(&l->mu);
    c->next_new = l->incoming;
    l->incoming = c;
    pthread_mutex_unlock(&l->mu);
    wake(l);
    return 0;
}

static void take_incoming(ws_loop *l)
{
    static const struct wslay_event_callbacks cbs = { recv_cb, send_cb, NULL, NULL, NULL, NULL, on_msg };
    pthread_mutex_lock(&l->mu);
    ws_conn *list = l->incoming;
    l->incoming = NULL;
    pthread_mutex_unlock(&l->mu);
    while (list) {
        ws_conn *c = list;
        list = c->next_new;
        struct epoll_event e = { .events = EPOLLIN, .data.ptr = c };
        if (wslay_event_context_server_init(&c->ctx, &cbs, c) != 0 ||
            epoll_ctl(l->epfd, EPOLL_CTL_ADD, c->fd, &e) != 0) {
            pgc_log(PGC_LOG_WARN, NULL, "cannot adopt a connection");
            if (c->ctx) wslay_event_context_free(c->ctx);
            close(c->fd);
            pgc_token_free(&c->tok);
            free(c->pre);
            free(c);
            continue;
        }
        c->events = EPOLLIN;
        wslay_event_config_set_max_recv_msg_length(c->ctx, l->max_msg);
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
            ws_conn_close(c, 1011, "server error");
        }
        /* Bytes that came with the handshake are parsed now, not on the next readiness. */
        if (!conn_io(c, c->pre_len ? EPOLLIN : 0)) conn_free(l, c);
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
        int interval = 30000, timeout = 90000;
        if (c->session) {
            ws_session_heartbeat(c->session, &interval, &timeout);
            ws_session_tick(c->session, now);
        }
        if (c->ping_sent_ms && now - c->ping_sent_ms > timeout) {
            const char *why = "ping timeout";
            wslay_event_queue_close(c->ctx, WSLAY_CODE_POLICY_VIOLATION, (const uint8_t *)why, strlen(why));
            wslay_event_shutdown_read(c->ctx);
        } else if (!c->ping_sent_ms && now - c->last_pong_ms >= interval) {
            struct wslay_event_msg m = { WSLAY_PING, (const uint8_t *)"hb", 2 };
            if (wslay_event_queue_msg(c->ctx, &m) == 0) c->ping_sent_ms = now;
        }
        if (!conn_io(c, 0)) conn_free(l, c);
    }
}

/* Connections the hub woke: move their queued items to wslay, then write. */
static void pump_ready(ws_loop *l)
{
    pthread_mutex_lock(&l->mu);
    ws_conn *list = l->ready;
    l->ready = NULL;
    for (ws_conn *c = list; c; c = c->next_ready)
        atomic_store(&c->ready, false);
    pthread_mutex_unlock(&l->mu);
    while (list) {
        ws_conn *c = list;
        list = c->next_ready;
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
    for (ws_conn *c = l->conns; c; c = c->next) {
        if (c->lingering_ms) continue;
        const char *why = "server shutting down";
        wslay_event_queue_close(c->ctx, WSLAY_CODE_GOING_AWAY, (const uint8_t *)why, strlen(why));
        conn_update_events(c);
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
