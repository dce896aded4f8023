/* The event loop of long-lived connections (see evloop.h for what it provides).
 *
 * One turn: epoll_wait; the batch of epoll events; the objects handed over since the last
 * turn; the ready pass (objects woken before it began, in wake order); the timer scan when
 * tick_ms has passed; then the objects closed during the turn are released. An object is
 * freed only there, so every pointer the turn holds (the epoll batch, the ready list) stays
 * valid until the turn ends; its closing flag makes the rest of the turn skip it. */
#include "evloop.h"

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "clock.h"
#include "log.h"

enum { EV_NEW = 0, EV_INCOMING, EV_ON_LOOP };

#define BATCH 256

struct pgc_evloop {
    int epfd, evfd;
    int tick_ms;
    atomic_bool stop;
    bool stopping;        /* loop thread: shutdown callbacks sent */
    pthread_mutex_t mu;
    /* under mu */
    bool ended;           /* pgc_evloop_run returned: adoption refused */
    pgc_ev *incoming;
    pgc_ev *rhead, *rtail;
    uint64_t rgen;        /* counts the ready passes: an object linked with the current
                           * value is on the list, an older one in the pass under way */
    /* loop thread */
    pgc_ev *all;
    pgc_ev *closed;
    int64_t min_due; /* no object is due before this: a scan before it would find nothing */
    void (*turn_end)(void *);
    void *turn_end_arg;
};

static char evfd_tag; /* epoll data of the loop's own eventfd */

pgc_evloop *pgc_evloop_new(int tick_ms)
{
    pgc_evloop *l = calloc(1, sizeof(*l));
    if (!l) {
        PGC_ERROR("event loop: out of memory");
        return NULL;
    }
    l->tick_ms = tick_ms > 0 ? tick_ms : 50;
    l->min_due = PGC_EV_NEVER;
    l->epfd = epoll_create1(EPOLL_CLOEXEC);
    l->evfd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    int rc = pthread_mutex_init(&l->mu, NULL);
    struct epoll_event ev = {.events = EPOLLIN, .data.ptr = &evfd_tag};
    if (l->epfd < 0 || l->evfd < 0 || rc != 0 || epoll_ctl(l->epfd, EPOLL_CTL_ADD, l->evfd, &ev) != 0) {
        PGC_ERROR("event loop: %s", strerror(rc ? rc : errno));
        if (l->epfd >= 0)
            close(l->epfd);
        if (l->evfd >= 0)
            close(l->evfd);
        if (rc == 0)
            pthread_mutex_destroy(&l->mu);
        free(l);
        return NULL;
    }
    return l;
}

void pgc_evloop_free(pgc_evloop *l)
{
    if (!l)
        return;
    close(l->epfd);
    close(l->evfd);
    pthread_mutex_destroy(&l->mu);
    free(l);
}

static void signal_loop(pgc_evloop *l)
{
    uint64_t one = 1;
    /* EAGAIN: the counter is at its maximum, the loop wakes anyway */
    if (write(l->evfd, &one, sizeof(one)) < 0 && errno != EAGAIN)
        PGC_ERROR("event loop: eventfd write: %s", strerror(errno));
}

void pgc_evloop_stop(pgc_evloop *l)
{
    atomic_store(&l->stop, true);
    uint64_t one = 1;
    ssize_t r = write(l->evfd, &one, sizeof(one));
    (void)r; /* async-signal context: nothing to do on failure; the next tick sees the flag */
}

bool pgc_evloop_stopping(pgc_evloop *l) { return l->stopping; }

void pgc_ev_init(pgc_ev *o, pgc_evloop *l, const pgc_ev_ops *ops)
{
    memset(o, 0, sizeof(*o));
    atomic_init(&o->woken, false);
    o->ops = ops;
    o->loop = l;
    o->fd = -1;
    o->due = PGC_EV_NEVER;
    o->state = EV_NEW;
}

/* ---------------------------------------------------------------- ready list
 *
 * o->woken is set by the first wake and cleared by the loop just before o's ready runs,
 * so later wakes cost one atomic exchange until then; only the wake that sets it takes
 * the mutex to link o. A pass detaches the whole list at once (one lock) and bumps rgen;
 * an object closed while still on the list is unlinked, one in the detached list is
 * skipped by the pass. A closing object keeps woken set: wakes for it end at once. */

/* under mu; true when the list was empty (the loop may be asleep) */
static bool ready_link(pgc_evloop *l, pgc_ev *o)
{
    bool was_empty = l->rhead == NULL;
    o->queued = true;
    o->rgen = l->rgen;
    o->rnext = NULL;
    o->rprev = l->rtail;
    if (l->rtail)
        l->rtail->rnext = o;
    else
        l->rhead = o;
    l->rtail = o;
    return was_empty;
}

/* under mu */
static void ready_unlink(pgc_evloop *l, pgc_ev *o)
{
    if (!o->queued || o->rgen != l->rgen)
        return; /* not on the list (or in the pass under way, which skips it) */
    if (o->rprev)
        o->rprev->rnext = o->rnext;
    else
        l->rhead = o->rnext;
    if (o->rnext)
        o->rnext->rprev = o->rprev;
    else
        l->rtail = o->rprev;
    o->queued = false;
    o->rnext = o->rprev = NULL;
}

void pgc_ev_wake(pgc_ev *o)
{
    if (atomic_exchange(&o->woken, true))
        return; /* covered by the ready call to come (or closing) */
    pgc_evloop *l = o->loop;
    bool signal = false;
    pthread_mutex_lock(&l->mu);
    if (o->closing) {
        /* nothing more runs for it */
    } else if (o->state != EV_ON_LOOP) {
        o->pending = true; /* delivered once adopted */
    } else {
        signal = ready_link(l, o);
    }
    pthread_mutex_unlock(&l->mu);
    if (signal)
        signal_loop(l);
}

int pgc_evloop_adopt(pgc_ev *o, int fd, uint32_t events)
{
    pgc_evloop *l = o->loop;
    pthread_mutex_lock(&l->mu);
    bool ended = l->ended;
    if (!ended) {
        o->fd = fd;
        o->events = events;
        o->state = EV_INCOMING;
        o->inext = l->incoming;
        l->incoming = o;
    }
    pthread_mutex_unlock(&l->mu);
    /* o may be the loop's (and gone) from here on: only l is used */
    if (ended)
        return -1;
    signal_loop(l);
    return 0;
}

/* ---------------------------------------------------------------- loop thread */

int pgc_ev_set_events(pgc_ev *o, uint32_t events)
{
    if (o->closing || o->fd < 0 || (events == o->events && o->registered == (events != 0)))
        return 0;
    /* no interest at all: out of the set (epoll would still report hang-ups) */
    int op = events == 0 ? EPOLL_CTL_DEL : o->registered ? EPOLL_CTL_MOD : EPOLL_CTL_ADD;
    struct epoll_event ev = {.events = events, .data.ptr = o};
    if (epoll_ctl(o->loop->epfd, op, o->fd, &ev) != 0) {
        PGC_WARN("event loop: epoll_ctl: %s", strerror(errno));
        return -1;
    }
    o->events = events;
    o->registered = events != 0;
    return 0;
}

void pgc_ev_set_due(pgc_ev *o, int64_t when_ms)
{
    o->due = when_ms;
    if (when_ms < o->loop->min_due)
        o->loop->min_due = when_ms;
}

void pgc_ev_fd_closed_on_release(pgc_ev *o) { o->fd_closed_on_release = true; }

void pgc_evloop_on_turn_end(pgc_evloop *l, void (*fn)(void *arg), void *arg)
{
    l->turn_end = fn;
    l->turn_end_arg = arg;
}

void pgc_ev_close(pgc_ev *o)
{
    if (o->closing)
        return;
    pgc_evloop *l = o->loop;
    if (atomic_exchange(&o->woken, true)) {
        /* woken since its last ready call: it may be on the ready list, or a wake may be
         * linking it right now */
        pthread_mutex_lock(&l->mu);
        o->closing = true;
        ready_unlink(l, o);
        pthread_mutex_unlock(&l->mu);
    } else {
        /* not woken since its last ready call, so on no list, and from now on every
         * wake ends at the exchange (woken stays set): nothing to take the mutex for —
         * thousands of long-polls answered in one pass close without contending with
         * the hub's wakes */
        o->closing = true;
    }
    if (o->registered && o->fd_closed_on_release) {
        o->registered = false; /* the release's close takes it out of the set */
    } else if (o->registered) {
        /* no new events for it; those already in this batch are skipped */
        if (epoll_ctl(l->epfd, EPOLL_CTL_DEL, o->fd, NULL) != 0)
            PGC_WARN("event loop: epoll_ctl DEL: %s", strerror(errno));
        o->registered = false;
    }
    o->cnext = l->closed;
    l->closed = o;
}

/* The objects closed during this turn: off the loop's list, then their memory. */
static void release_closed(pgc_evloop *l)
{
    while (l->closed) {
        pgc_ev *o = l->closed;
        l->closed = o->cnext;
        if (o->prev)
            o->prev->next = o->next;
        else
            l->all = o->next;
        if (o->next)
            o->next->prev = o->prev;
        o->next = o->prev = NULL;
        if (o->ops->release)
            o->ops->release(o);
    }
}

static void adopt_incoming(pgc_evloop *l)
{
    pthread_mutex_lock(&l->mu);
    pgc_ev *list = l->incoming;
    l->incoming = NULL;
    pthread_mutex_unlock(&l->mu);
    /* the list is newest first: adopt in hand-over order */
    pgc_ev *rev = NULL;
    while (list) {
        pgc_ev *o = list;
        list = o->inext;
        o->inext = rev;
        rev = o;
    }
    while (rev) {
        pgc_ev *o = rev;
        rev = o->inext;
        o->inext = NULL;
        bool broken = false;
        if (o->fd >= 0) {
            struct epoll_event ev = {.events = o->events, .data.ptr = o};
            if (epoll_ctl(l->epfd, EPOLL_CTL_ADD, o->fd, &ev) == 0) {
                o->registered = true;
            } else {
                PGC_ERROR("event loop: epoll_ctl ADD: %s", strerror(errno));
                broken = true;
            }
        }
        o->next = l->all;
        o->prev = NULL;
        if (l->all)
            l->all->prev = o;
        l->all = o;
        pthread_mutex_lock(&l->mu);
        o->state = EV_ON_LOOP;
        if (o->pending)
            ready_link(l, o); /* woken before: this turn's ready pass runs it */
        o->pending = false;
        pthread_mutex_unlock(&l->mu);
        if (o->ops->start)
            o->ops->start(o);
        if (broken && !o->closing && o->ops->io)
            o->ops->io(o, EPOLLERR); /* cannot be watched: as if its descriptor failed */
        if (l->stopping && !o->closing && o->ops->shutdown)
            o->ops->shutdown(o);
    }
}

/* Runs the objects woken before the pass began, in wake order; wakes during the pass
 * go to the next one. */
static void ready_pass(pgc_evloop *l)
{
    pthread_mutex_lock(&l->mu);
    pgc_ev *o = l->rhead;
    l->rhead = l->rtail = NULL;
    l->rgen++;
    pthread_mutex_unlock(&l->mu);
    while (o) {
        pgc_ev *next = o->rnext; /* o may be linked again by its own ready */
        if (!o->closing) {
            o->queued = false;
            o->rnext = o->rprev = NULL;
            atomic_store(&o->woken, false); /* a wake from now on runs it again */
            if (o->ops->ready)
                o->ops->ready(o);
        }
        o = next;
    }
}

/* Calls the objects whose time has come. Skipped while nothing can be due (min_due):
 * thousands of idle long-polls waiting for deadlines far off cost no pass over them
 * every tick. A pass finds the earliest due time left (set_due during it lowers min_due
 * too). */
static void scan(pgc_evloop *l, int64_t now)
{
    if (now < l->min_due)
        return;
    l->min_due = PGC_EV_NEVER;
    int64_t m = PGC_EV_NEVER;
    for (pgc_ev *o = l->all; o; o = o->next) {
        if (!o->closing && o->due <= now && o->ops->timer)
            o->ops->timer(o, now);
        if (!o->closing && o->ops->timer && o->due < m)
            m = o->due;
    }
    if (m < l->min_due)
        l->min_due = m;
}

static void begin_stop(pgc_evloop *l)
{
    l->stopping = true;
    for (pgc_ev *o = l->all; o; o = o->next)
        if (!o->closing && o->ops->shutdown)
            o->ops->shutdown(o);
}

void pgc_evloop_run(pgc_evloop *l, int grace_ms)
{
    struct epoll_event evs[BATCH];
    int64_t next_scan = pgc_mono_ms() + l->tick_ms, stop_by = 0;
    for (;;) {
        int64_t now = pgc_mono_ms();
        pthread_mutex_lock(&l->mu);
        bool more = l->rhead != NULL || l->incoming != NULL;
        pthread_mutex_unlock(&l->mu);
        int timeout = more ? 0 : next_scan > now ? (int)(next_scan - now) : 0;
        int n = epoll_wait(l->epfd, evs, BATCH, timeout);
        if (n < 0) {
            if (errno != EINTR) {
                PGC_ERROR("event loop: epoll_wait: %s", strerror(errno));
                usleep(10000);
            }
            n = 0;
        }
        for (int i = 0; i < n; i++) {
            if (evs[i].data.ptr == &evfd_tag) {
                uint64_t v;
                if (read(l->evfd, &v, sizeof(v)) < 0 && errno != EAGAIN)
                    PGC_ERROR("event loop: eventfd read: %s", strerror(errno));
                continue;
            }
            pgc_ev *o = evs[i].data.ptr;
            if (!o->closing && o->ops->io) /* a stale event of a closing object is ignored */
                o->ops->io(o, evs[i].events);
        }
        adopt_incoming(l);
        ready_pass(l);
        now = pgc_mono_ms();
        if (now >= next_scan) {
            scan(l, now);
            next_scan = now + l->tick_ms;
        }
        if (!l->stopping && atomic_load(&l->stop)) {
            begin_stop(l);
            stop_by = now + (grace_ms > 0 ? grace_ms : 0);
        }
        release_closed(l);
        if (l->turn_end)
            l->turn_end(l->turn_end_arg);
        if (l->stopping && (!l->all || pgc_mono_ms() >= stop_by))
            break;
    }
    /* the end: nothing more is adopted; what is left is released */
    pthread_mutex_lock(&l->mu);
    l->ended = true;
    pthread_mutex_unlock(&l->mu);
    adopt_incoming(l); /* handed over before the end: started, told, closed below */
    for (pgc_ev *o = l->all; o; o = o->next)
        pgc_ev_close(o);
    release_closed(l);
    if (l->turn_end)
        l->turn_end(l->turn_end_arg);
}
