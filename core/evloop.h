/* The event loop of long-lived connections: one thread, one epoll set. Both transports
 * run on it — the FastCGI handlers' streams (fcgi/stream.c: SSE, waiting long-polls) and
 * the sidecar's WebSockets (ws-sidecar/loop.c) — each keeping only its own framing and
 * protocol. What the loop provides:
 *
 *  - Registration: an object (a pgc_ev embedded in the transport's connection) watches one
 *    descriptor with the interest it asks for (pgc_ev_set_events).
 *  - Wakes from any thread (pgc_ev_wake, e.g. a hub subscriber's wake function): woken
 *    objects go on a ready list, run in wake order; the loop's eventfd is written once per
 *    batch (when the list goes from empty to non-empty), not once per wake. A pass runs the
 *    objects woken before it began; later wakes wait for the next pass, so wakes cannot
 *    starve socket events.
 *  - Hand-over (pgc_evloop_adopt): an object made on another thread joins the loop; a wake
 *    sent before the hand-over is kept and delivered after it. The adopting thread must not
 *    touch the object once pgc_evloop_adopt returned 0.
 *  - Time: each object has a due time (pgc_ev_set_due); one scan every tick_ms calls the
 *    objects whose time has come (one comparison per object, no timer per object).
 *  - Deferred close: pgc_ev_close only marks the object closing and takes it off the
 *    ready list and the epoll set (or leaves the set to the release's close of the
 *    descriptor); its release callback (which frees it) runs after the current
 *    batch — the epoll events, adoptions, ready pass and timer scan of one turn. So no
 *    object is freed while a later entry of the same batch may still point at it, events
 *    still pending for a closing object are ignored, and wakes for it are dropped (as
 *    lighttpd's fdevent_sched_close and Redis's freeClientAsync do).
 *  - Stop (pgc_evloop_stop, async-signal-safe): every object gets its shutdown callback
 *    (objects adopted later too, right after start); the loop runs on until they have all
 *    closed or grace_ms has passed, then releases what is left and pgc_evloop_run returns.
 *    From then on pgc_evloop_adopt refuses.
 *
 * Every callback runs on the loop thread, one at a time. */
#ifndef PGCAST_EVLOOP_H
#define PGCAST_EVLOOP_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

typedef struct pgc_evloop pgc_evloop;
typedef struct pgc_ev pgc_ev;

typedef struct pgc_ev_ops {
    void (*start)(pgc_ev *o);                 /* adopted: the first callback on the loop */
    void (*io)(pgc_ev *o, uint32_t events);   /* epoll events of its descriptor */
    void (*ready)(pgc_ev *o);                 /* woken (pgc_ev_wake) */
    void (*timer)(pgc_ev *o, int64_t now_ms); /* its due time has come (up to tick_ms late) */
    void (*shutdown)(pgc_ev *o);              /* the loop is stopping: close soon */
    /* Closed, after the batch: free the object (and close its descriptor). Every adopted
     * object gets it exactly once, after start; nothing of it runs afterwards. */
    void (*release)(pgc_ev *o);
} pgc_ev_ops;

#define PGC_EV_NEVER INT64_MAX

/* Embedded in the transport's object; the fields are the loop's. */
struct pgc_ev {
    const pgc_ev_ops *ops;
    pgc_evloop *loop;
    int fd;
    uint32_t events;      /* the interest epoll has now */
    int64_t due;
    bool registered;      /* in the epoll set */
    bool fd_closed_on_release; /* pgc_ev_fd_closed_on_release */
    bool closing;         /* written by the loop thread (see pgc_ev_close) */
    atomic_bool woken;    /* a ready call is due (or the object is closing) */
    /* under the loop's mutex (queued, rnext/rprev also by the loop in its pass) */
    int state;
    bool pending, queued;
    uint64_t rgen;
    pgc_ev *rnext, *rprev; /* ready list */
    pgc_ev *inext;         /* handed over, not adopted yet */
    /* loop thread */
    pgc_ev *next, *prev;   /* every adopted object */
    pgc_ev *cnext;         /* closed, to release after the batch */
};

/* A loop that scans due times every tick_ms. NULL (logged) on failure. */
pgc_evloop *pgc_evloop_new(int tick_ms);
/* Runs the loop on this thread until pgc_evloop_stop, then up to grace_ms for the objects
 * to close; the rest are released. */
void pgc_evloop_run(pgc_evloop *l, int grace_ms);
void pgc_evloop_stop(pgc_evloop *l); /* any thread, async-signal-safe */
bool pgc_evloop_stopping(pgc_evloop *l); /* loop thread */
/* After pgc_evloop_run returned. */
void pgc_evloop_free(pgc_evloop *l);

/* Prepares o (any thread): wakes may be sent from now on. */
void pgc_ev_init(pgc_ev *o, pgc_evloop *l, const pgc_ev_ops *ops);
/* Hands o over to the loop with descriptor fd (-1: none) and its first interest (any
 * thread). 0: the loop owns o now; -1: the loop has ended, o is still the caller's. */
int pgc_evloop_adopt(pgc_ev *o, int fd, uint32_t events);
/* Any thread, never blocks: ready runs soon (once for any number of wakes before it). */
void pgc_ev_wake(pgc_ev *o);

/* Loop thread. 0 takes the descriptor out of the epoll set (no hang-up reported either)
 * until an interest is set again. -1 when epoll refuses (treat the descriptor as broken). */
int pgc_ev_set_events(pgc_ev *o, uint32_t events);
void pgc_ev_set_due(pgc_ev *o, int64_t when_ms);
/* Deferred close (see above) of an object on the loop (started); idempotent. */
void pgc_ev_close(pgc_ev *o);
/* o's release closes its descriptor, and no other descriptor refers to the same open
 * file (no dup, no fork): the close takes it out of the epoll set, so pgc_ev_close leaves
 * it there (the rest of the turn ignores its events; no epoll_wait comes before the
 * release) and saves a system call per object. Before the hand-over. */
void pgc_ev_fd_closed_on_release(pgc_ev *o);
/* fn(arg) at the end of every turn of the loop, after the releases (loop thread): work a
 * turn's callbacks batched, done once per turn. Before pgc_evloop_run. */
void pgc_evloop_on_turn_end(pgc_evloop *l, void (*fn)(void *arg), void *arg);
static inline bool pgc_ev_closing(const pgc_ev *o) { return o->closing; }

#endif
