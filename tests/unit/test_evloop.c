/* The shared event loop (core/evloop.c): deferred close within an epoll batch (under
 * ASan a use after free would abort), the turn-end callback, descriptors closed by the
 * release (no EPOLL_CTL_DEL; the number reused at once), an object closed while on the
 * ready list, wakes before the hand-over, wake order, wakes for a closing object dropped,
 * due times, stop with shutdown callbacks, adoption refused after the end. */
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#include "clock.h"
#include "evloop.h"
#include "t.h"

typedef struct obj {
    pgc_ev ev;
    int fd, peer;
    int id;
    struct obj *other;     /* io closes this one too */
    struct obj *wake_close; /* ready wakes this one, then closes it (it is on the ready list) */
    atomic_int started, io, ready, timer, shutdown, released;
    atomic_int closed_in_ready; /* ready closes it */
    atomic_int due_in_ready;    /* ready sets its due time to now */
} obj;

static atomic_int order[16], norder;
static atomic_int released_total;

static obj *of(pgc_ev *o) { return (obj *)((char *)o - offsetof(obj, ev)); }

static void o_start(pgc_ev *e) { atomic_fetch_add(&of(e)->started, 1); }

static void o_io(pgc_ev *e, uint32_t events)
{
    obj *o = of(e);
    atomic_fetch_add(&o->io, 1);
    char buf[64];
    if (read(o->fd, buf, sizeof buf) < 0) { /* drained */ }
    pgc_ev_close(e);
    if (o->other)
        pgc_ev_close(&o->other->ev); /* later in the same batch: must not run, not be freed yet */
}

static void o_ready(pgc_ev *e)
{
    obj *o = of(e);
    atomic_fetch_add(&o->ready, 1);
    int k = atomic_fetch_add(&norder, 1);
    if (k < 16)
        order[k] = o->id;
    if (atomic_load(&o->closed_in_ready))
        pgc_ev_close(e);
    if (o->wake_close) {
        pgc_ev_wake(&o->wake_close->ev);
        pgc_ev_close(&o->wake_close->ev);
    }
    if (atomic_exchange(&o->due_in_ready, 0))
        pgc_ev_set_due(e, pgc_mono_ms());
}

static void o_timer(pgc_ev *e, int64_t now)
{
    atomic_fetch_add(&of(e)->timer, 1);
    pgc_ev_set_due(e, PGC_EV_NEVER);
}

static void o_shutdown(pgc_ev *e)
{
    atomic_fetch_add(&of(e)->shutdown, 1);
    pgc_ev_close(e);
}

static void o_release(pgc_ev *e)
{
    obj *o = of(e);
    /* every pointer of the batch is gone by now: poison the object as free would */
    atomic_fetch_add(&o->released, 1);
    atomic_fetch_add(&released_total, 1);
    if (o->fd >= 0)
        close(o->fd);
    o->fd = -1;
}

static const pgc_ev_ops ops = {o_start, o_io, o_ready, o_timer, o_shutdown, o_release};

static obj *mk(pgc_evloop *l, int id, bool with_fd)
{
    obj *o = calloc(1, sizeof(*o));
    o->id = id;
    o->fd = o->peer = -1;
    pgc_ev_init(&o->ev, l, &ops);
    if (with_fd) {
        int sv[2];
        if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, sv) == 0) {
            o->fd = sv[0];
            o->peer = sv[1];
        }
    }
    return o;
}

static atomic_int turns;
static void on_turn_end(void *arg) { atomic_fetch_add((atomic_int *)arg, 1); }

static void *run(void *l)
{
    pgc_evloop_run(l, 2000);
    return NULL;
}

/* Waits up to 5 s for *v >= want. */
static bool wait_for(atomic_int *v, int want)
{
    for (int i = 0; i < 500; i++) {
        if (atomic_load(v) >= want)
            return true;
        usleep(10000);
    }
    return atomic_load(v) >= want;
}

int main(void)
{
    signal(SIGPIPE, SIG_IGN);
    pgc_evloop *l = pgc_evloop_new(20);
    T_OK(l != NULL, "a loop");
    pgc_evloop_on_turn_end(l, on_turn_end, &turns);
    pthread_t th;
    int rc = pthread_create(&th, NULL, run, l);
    T_OK(rc == 0, "runs on its thread");

    /* two objects readable in the same batch, each closing the other: one io runs, the
     * other's pending event is ignored, both are released after the batch */
    for (int round = 0; round < 50; round++) {
        obj *a = mk(l, 1, true), *b = mk(l, 2, false);
        b->fd = dup(a->fd); /* the same socket twice: one write makes both ready at once */
        a->other = b;
        b->other = a;
        int before = atomic_load(&released_total);
        int ra = pgc_evloop_adopt(&a->ev, a->fd, EPOLLIN), rb = pgc_evloop_adopt(&b->ev, b->fd, EPOLLIN);
        if (ra != 0 || rb != 0)
            T_OK(0, "round %d: adopted", round);
        wait_for(&a->started, 1);
        wait_for(&b->started, 1);
        /* one write makes both readable at once: the loop sees both in one epoll batch */
        if (write(a->peer, "x", 1) != 1)
            T_OK(0, "write");
        wait_for(&released_total, before + 2);
        if (round == 0 || a->io + b->io != 1 || a->released != 1 || b->released != 1)
            T_OK(a->io + b->io == 1 && a->released == 1 && b->released == 1,
                 "round %d: one io ran, the other object's pending event ignored; both released once "
                 "(io %d+%d, released %d+%d)", round, a->io, b->io, a->released, b->released);
        close(a->peer);
        free(a);
        free(b);
    }

    T_OK(atomic_load(&turns) > 0, "the turn-end callback runs (%d turns)", atomic_load(&turns));

    /* a descriptor the release closes (pgc_ev_fd_closed_on_release): closing leaves its
     * removal from the epoll set to that close; the object gets nothing more, and the
     * descriptor number, reused at once, serves a new object */
    for (int round = 0; round < 20; round++) {
        obj *c = mk(l, 4, true);
        int cfd = c->fd, before = atomic_load(&released_total);
        pgc_ev_fd_closed_on_release(&c->ev);
        pgc_evloop_adopt(&c->ev, c->fd, EPOLLIN);
        wait_for(&c->started, 1);
        if (write(c->peer, "x", 1) != 1)
            T_OK(0, "write");
        wait_for(&released_total, before + 1);
        obj *d = mk(l, 5, true);
        int dfd = d->fd;
        pgc_ev_fd_closed_on_release(&d->ev);
        pgc_evloop_adopt(&d->ev, d->fd, EPOLLIN);
        wait_for(&d->started, 1);
        ssize_t late = write(c->peer, "y", 1); /* to the closed one: refused, nothing runs */
        if (write(d->peer, "z", 1) != 1)
            T_OK(0, "write");
        bool got = wait_for(&d->released, 1);
        if (round == 0 || c->io != 1 || c->released != 1 || !got || d->io != 1 || late != -1)
            T_OK(c->io == 1 && c->released == 1 && got && d->io == 1 && late == -1,
                 "round %d: closed with its descriptor, no event after (io %d, released %d); the next "
                 "object on descriptor %d (was %d) gets its own (io %d)",
                 round, c->io, c->released, dfd, cfd, d->io);
        close(c->peer);
        close(d->peer);
        free(c);
        free(d);
    }

    /* closed while on the ready list (woken, then closed before the pass reaches it):
     * its ready never runs, it is released once */
    obj *p = mk(l, 6, false), *q = mk(l, 7, false);
    p->wake_close = q;
    pgc_evloop_adopt(&q->ev, -1, 0);
    pgc_evloop_adopt(&p->ev, -1, 0);
    wait_for(&p->started, 1);
    wait_for(&q->started, 1);
    pgc_ev_wake(&p->ev);
    T_OK(wait_for(&q->released, 1), "woken and closed in the same ready pass: released");
    usleep(50000);
    T_OK(q->ready == 0 && q->released == 1, "its ready never ran (ready %d, released %d)", q->ready, q->released);

    /* a wake before the hand-over is delivered after it, once */
    obj *w = mk(l, 3, false);
    pgc_ev_wake(&w->ev);
    pgc_ev_wake(&w->ev);
    rc = pgc_evloop_adopt(&w->ev, -1, 0);
    T_OK(rc == 0, "adopted an object woken before");
    T_OK(wait_for(&w->ready, 1), "the wake sent before the hand-over is delivered");
    usleep(100000);
    T_INT(atomic_load(&w->ready), 1, "once for both wakes");

    /* due times */
    atomic_store(&w->due_in_ready, 1);
    pgc_ev_wake(&w->ev);
    T_OK(wait_for(&w->timer, 1), "a due time runs the timer callback");

    /* wakes in order: adopted, then woken in an order of our own before the loop's pass */
    obj *x[4];
    for (int i = 0; i < 4; i++) {
        x[i] = mk(l, 10 + i, false);
        pgc_evloop_adopt(&x[i]->ev, -1, 0);
    }
    usleep(100000);
    atomic_store(&norder, 0);
    int want[4] = {12, 10, 13, 11};
    for (int i = 0; i < 4; i++)
        pgc_ev_wake(&x[want[i] - 10]->ev);
    T_OK(wait_for(&norder, 4), "four wakes run");
    T_OK(order[0] == 12 && order[1] == 10 && order[2] == 13 && order[3] == 11, "in wake order (%d %d %d %d)",
         order[0], order[1], order[2], order[3]);

    /* an object that closes while others keep waking it: wakes are dropped, one release */
    atomic_store(&x[0]->closed_in_ready, 1);
    for (int i = 0; i < 1000; i++)
        pgc_ev_wake(&x[0]->ev);
    T_OK(wait_for(&x[0]->released, 1), "closed from its ready callback: released");
    int r0 = atomic_load(&x[0]->ready);
    for (int i = 0; i < 1000; i++)
        pgc_ev_wake(&x[0]->ev); /* the object's memory is still ours: a wake after the close */
    usleep(100000);
    T_OK(atomic_load(&x[0]->ready) == r0 && x[0]->released == 1, "wakes after the close are dropped");

    /* stop: shutdown callbacks, the loop returns, adoption is refused */
    pgc_evloop_stop(l);
    pthread_join(th, NULL);
    T_OK(w->shutdown == 1 && x[1]->shutdown == 1 && x[1]->released == 1 && w->released == 1,
         "stop: every object gets its shutdown callback and is released");
    obj *late = mk(l, 99, false);
    T_INT(pgc_evloop_adopt(&late->ev, -1, 0), -1, "after the end, adoption is refused");
    pgc_evloop_free(l);
    free(late);
    free(w);
    free(q);
    p->wake_close = NULL;
    free(p);
    for (int i = 0; i < 4; i++)
        free(x[i]);
    return T_DONE();
}
