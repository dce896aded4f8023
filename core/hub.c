/*
 * The hub: one database connection and one thread per process (see hub.h). Its wake-ups
 * come from a LISTEN on that connection, or from the host's relay (pgcast-relay) that
 * LISTENs once for every process of the host: see "Notification source" below.
 *
 * Threads. Every structure named h* (channels, subscriptions) belongs to the hub thread
 * alone. Other threads talk to it through a command queue (mutex + eventfd): add,
 * remove, free, feed. A subscriber's queue and state are shared with its consumer under
 * the subscriber's own mutex, which is held only to move pointers. The wake callback is
 * called with no hub lock held, under a per-subscriber wake lock that pgc_sub_free also
 * takes, so no wake can run after pgc_sub_free returns.
 *
 * Notifications are wake-ups, never data (sql/011, docs/protocol.md): any role that can
 * connect may send or read them. 'realtime_events' carries "<tag> <seq>", where tag is a
 * keyed hash of (tenant, channel) under realtime.realtime_secret; the hub loads the
 * secret at connect, tags each channel it serves and keeps tag -> channel. A wake-up
 * for a channel it serves with a seq beyond `last` puts the channel on the read list;
 * what is delivered is always what realtime.read returns, its envelope built from the
 * row. 'realtime_presence' carries "<tag> <id>" of a realtime_presence_events row,
 * which the hub reads (recent rows only) and delivers once; after a switch of source it
 * reads the rows written meanwhile (presence_replay). A forged notification can
 * at most cause a read that finds what is really committed. Without the secret (not
 * readable, or migration 011 not applied) every wake-up on 'realtime_events' reads
 * every channel, and presence rows are matched by their own tenant and channel.
 *
 * Positions. For each channel with local subscribers the hub keeps `last`: the highest
 * seq it has handed to live subscriptions, with every seq before it handed too. A
 * wake-up, a jump, a reconnect: the log is read from `last` on, for all the channels of
 * one tenant that wait in one read. A subscription has its own `pos`; it is live while
 * pos == last and receives live events, otherwise it is behind and is fed from the log
 * as its queue has room.
 *
 * Turns. Reading the log is the hub's only slow work, and it is done in bounded steps:
 * each read is bounded by events and by payload bytes (read_bytes, at least one event).
 * Channels whose log must be read (woken, or after a reconnect) and subscriptions that
 * are behind wait in two round-robin lists; a turn of the thread reads one step for the
 * waiting channels (one read per tenant, up to HUB_READ_CHANNELS channels each), then
 * one step for ONE behind subscription, then takes notifications and commands again.
 * Many wake-ups for one channel within a turn cost one read. So live delivery to everyone else waits
 * at most about one read of read_bytes, however many clients are catching up and
 * however far behind they are. A catch-up fills a queue to half of its bounds (events
 * and bytes), leaving the other half for the live events that follow it, and is fed
 * again when the consumer has taken the queue below a quarter; a full queue ends the
 * subscription's step, never the hub's progress.
 *
 * Lifecycle. pgc_sub_free hands the subscriber to the hub thread (CMD_FREE, allocated
 * with the subscriber so it cannot fail). Once pgc_hub_stop has begun, subscribers
 * freed are parked until the hub thread has ended, and destroyed by pgc_hub_stop; after
 * it, pgc_sub_free destroys at once (nothing of the hub refers to them any more).
 */
#include "clock.h"
#include "hub.h"

#include <errno.h>
#include <inttypes.h>
#include <json.h>
#include <linkhash.h>
#include <libpq-fe.h>
#include <openssl/evp.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "channel.h"
#include "cursor.h"
#include "db.h"
#include "log.h"
#include "pgarray.h"
#include "positions.h"

#define HUB_READ_BATCH 500         /* events per log read */
#define HUB_READ_BYTES (1u << 20)  /* payload bytes per log read, by default */
#define HUB_INSTANCE_REFRESH_MS 5000
#define HUB_SWEEP_EVERY 6 /* refreshes: every 30 s, close what dead processes left */
#define HUB_INSTANCE_STALE "30 seconds"
#define HUB_BACKOFF_MIN_MS 100
#define HUB_BACKOFF_MAX_MS 5000
#define HUB_MAX_HB_TYPES 64
#define HUB_READ_CHANNELS 256      /* channels of one tenant in one log read */
#define HUB_PRESENCE_BATCH 256     /* presence rows asked for in one query */
#define HUB_PRESENCE_SEEN 4096     /* presence ids remembered as delivered */
#define HUB_PRESENCE_WINDOW "60 seconds" /* older presence rows are not delivered */
#define HUB_PRESENCE_REPLAY 2048   /* presence rows read again at a switch of source, at most */
#define HUB_PRESENCE_MARGIN_MS 2000 /* replayed from this much before the old source's last proof */
#define HUB_DRAIN_ROUNDS 8         /* presence reads per drain, then the turn goes on */
#define HUB_WARN_EVERY_MS 10000    /* rate of warnings about notifications */
#define HUB_RELAY_RETRY_MS 2000    /* default relay_retry_ms */
#define HUB_RELAY_START_WAIT_MS 1000 /* at start, for the relay's "L" before LISTENing alone */
#define HUB_RELAY_PING_MS 5000     /* a barrier to the relay this often: is it alive? */
#define HUB_RELAY_TIMEOUT_MS 10000 /* no "L", or no answer to a barrier, this long: dropped */
#define HUB_RELAY_OTHER_MS 30000  /* a relay of another database (or protocol): tried again after */
#define HUB_RELAY_LINE_MAX 16448   /* "N <channel> <payload>": NOTIFY payloads are < 8000 bytes */
#define HUB_RELAY_READ_MAX (256u << 10) /* relay bytes taken in one turn */
#define HUB_RELAY_OUT_MAX (64u << 20)  /* lines for the relay not taken yet: past it, it is stuck */

typedef struct hchan hchan;
typedef struct hsub hsub;

struct hsub {
    pgc_sub *sub;
    hchan *ch;
    int64_t pos;      /* last seq queued to the subscriber */
    int64_t after;    /* as asked; used once the channel's position is known */
    int64_t since_ms; /* when added: presence replayed from before it is not for it */
    bool announced;   /* SUBSCRIBED queued */
    bool in_feed;     /* in the hub's list of subscriptions to feed from the log */
    hsub *cprev, *cnext; /* in the channel */
    hsub *snext;         /* in the subscriber */
    hsub *fprev, *fnext; /* in the feed list */
};

struct hchan {
    char *key; /* tenant \x1f channel */
    char *tenant, *channel;
    int64_t last; /* -1 until read from the database */
    hsub *subs;
    char tag[PGC_HUB_TAG_LEN + 1]; /* its wake-up tag, when tagged */
    bool tagged;                   /* in the hub's tag table */
    bool in_read;        /* in the hub's list of channels whose log must be read */
    hchan *rprev, *rnext;
};

struct cmd;

struct pgc_sub {
    pgc_hub *hub;
    char *tenant;
    pgc_wake_fn wake;
    void *arg;

    pthread_mutex_t mu; /* queue, state, channel names */
    pgc_event **q;      /* ring; grows by doubling up to qmax, so idle subscribers stay small */
    size_t qcap, qmax, qhead, qlen, qbytes;
    pgc_sub_state state;
    char **chans; /* channels subscribed, as the consumer sees them */
    size_t nchans;
    bool feed_when_drained; /* a subscription waits for room to be fed from the log */
    int64_t last_take_ms;   /* when the consumer last took (or was created) */

    pthread_mutex_t wake_mu;
    bool dead;

    size_t all_idx;       /* its place in the hub's all[] (under the hub's subs_mu) */
    struct cmd *free_cmd; /* CMD_FREE, allocated up front so that freeing cannot fail */
    pgc_sub *znext;       /* parked while the hub stops (under the hub's subs_mu) */
    hsub *subs; /* hub thread only */
};

enum cmd_kind { CMD_ADD, CMD_REMOVE, CMD_FREE, CMD_FEED, CMD_SYNC };

struct cmd {
    enum cmd_kind kind;
    pgc_sub *sub;
    char *channel;
    int64_t after;
    pgc_hub_sync_fn sync_cb; /* CMD_SYNC */
    void *sync_arg;
    uint64_t sync_id;        /* CMD_SYNC sent to the relay: the barrier that answers it */
    struct cmd *next;
};

/* Where the wake-ups come from (hub thread only): the relay's socket is OFF (not
 * connected), PENDING (connected, its "L" not come yet), READY ("L" came: it listens;
 * used as soon as the hub's own connection is up and on the same database) or ACTIVE
 * (used: the hub's connection has no LISTEN). In every other state the hub LISTENs on
 * its own connection. */
enum relay_state { RELAY_OFF, RELAY_PENDING, RELAY_READY, RELAY_ACTIVE };

struct hb_entry {
    char type[64];
    int interval_ms, timeout_ms;
};

struct pgc_hub {
    pgc_hub_options opt;
    char *conninfo;
    char *kind;
    char instance_id[128];

    pthread_t thread;
    int efd;
    pthread_mutex_t cmd_mu;
    struct cmd *cmd_head, *cmd_tail;
    bool running; /* under cmd_mu: commands are accepted */
    _Atomic bool stop;

    PGconn *conn; /* hub thread only */
    _Atomic bool db_ok;

    /* hub thread only: the notification source (see "Notification source") */
    bool listening;          /* LISTEN is on conn */
    char db_identity[64];    /* of conn (PGC_RELAY_IDENTITY_SQL); "" when unknown */
    char *relay_path;        /* NULL: no relay */
    int relay_retry_ms;
    int relay_fd;
    enum relay_state relay_state;
    char relay_identity[64];
    char *relay_in;          /* a line being received */
    size_t relay_ilen;
    int64_t next_relay_ms, relay_since_ms, relay_ping_ms;
    uint64_t sync_next_id, relay_ping_id; /* relay_ping_id: 0 when none is waiting */
    char *relay_out;         /* lines for the relay not written yet */
    size_t relay_olen, relay_ooff, relay_ocap;
    bool relay_all_sent;     /* "A 1" is in force: woken for every notification */
    char **tagq;             /* keys of the channels whose "T" went since the last barrier */
    size_t ntagq, tagq_cap;
    struct tagwait {         /* channels to read once the relay answers barrier id */
        uint64_t id;
        char **keys;
        size_t n;
        struct tagwait *next;
    } *tagwait_head, *tagwait_tail;
    struct cmd *sync_head, *sync_tail;   /* barriers asked in this turn */
    struct cmd *rsync_head, *rsync_tail; /* barriers sent to the relay, oldest first */
    _Atomic bool relayed;
    int backoff_ms;
    int64_t next_connect_ms, next_instance_ms, next_stall_ms;
    int refreshes;
    struct lh_table *chans;
    struct lh_table *tags; /* tag -> hchan, for the channels tagged with the secret */

    /* hub thread only: wake-ups and presence */
    unsigned char secret[PGC_HUB_SECRET_LEN];
    bool have_secret;
    bool secret_warned;    /* the secret could not be read: said once per connection */
    bool wake_all;         /* read every channel in the next turn */
    bool drain_more;       /* notifications may wait in libpq: do not sleep */
    hchan **batch;         /* the read list of a turn, sorted by tenant */
    size_t batch_cap;
    struct pres_pending {
        int64_t id;
        char tag[PGC_HUB_TAG_LEN + 1]; /* "" without the secret */
    } *pending;
    size_t npending, pending_cap;
    int64_t seen[HUB_PRESENCE_SEEN]; /* presence ids delivered, oldest overwritten */
    size_t nseen, seen_next;
    int64_t seen_evicted_max; /* ids up to it count as delivered */
    /* presence across a switch of source (presence_replay); times of pgc_mono_ms, 0: none */
    int64_t proof_ms;       /* wake-ups committed before it came from the current source */
    int64_t alive_ms;       /* ... and were all handled (proof_ms, once drained) */
    int64_t replay_from_ms; /* a source was lost: presence written since may be unseen */
    int64_t warn_next_ms;
    unsigned long warn_suppressed;

    pthread_rwlock_t hb_lock;
    struct hb_entry hb[HUB_MAX_HB_TYPES];
    int nhb;
    struct hb_entry hb_default;
    _Atomic uint64_t config_gen;

    pthread_mutex_t subs_mu; /* every live subscriber, to wake them all */
    pgc_sub **all;
    size_t nall, capall;
    enum { HUB_RUNNING, HUB_STOPPING, HUB_STOPPED } phase; /* under subs_mu */
    pgc_sub *parked; /* freed while stopping: destroyed once the thread has ended */

    /* hub thread only: the work of the next turns */
    hchan *read_head, *read_tail; /* channels whose log must be read */
    hsub *feed_head, *feed_tail;  /* subscriptions behind their channel */

    _Atomic uint64_t st_subscriptions, st_events_in, st_deliveries, st_overflows, st_reconnects;
    _Atomic int64_t st_lag_ms;

    pgc_hub *live_next; /* in the list of live hubs (deferred signals), under live_mu */

    pgc_positions *positions; /* channel positions from the wake-ups; NULL when off */
    bool positions_on;        /* hub thread: reset for this LISTEN connection and secret */
    _Atomic uint64_t st_syncs;
};


static void positions_void(pgc_hub *h);
static void positions_listening(pgc_hub *h, const unsigned char key[PGC_HUB_SECRET_LEN]);

static void hub_signal(pgc_hub *h)
{
    uint64_t one = 1;
    ssize_t w = write(h->efd, &one, sizeof(one));
    (void)w; /* EAGAIN means the counter is already non-zero: the hub wakes anyway */
}

/* ---------------------------------------------------------------- deferred signals
 *
 * A thread that sends many commands in a row may defer the signals they need to the end
 * of its batch (pgc_hub_defer_signals): the stream loop releasing thousands of answered
 * long-polls in one turn then wakes the hub thread once, not once per CMD_FREE that
 * found the queue just drained (thousands of wake-ups of a thread that competes for the
 * same cores as the answers). The hub a deferred signal is for may have been released
 * meanwhile (stopped, its last subscriber freed): a flush signals only a hub still in
 * the list of live hubs. */
static pthread_mutex_t live_mu = PTHREAD_MUTEX_INITIALIZER;
static pgc_hub *live_hubs;
static _Thread_local bool defer_signals;
static _Thread_local pgc_hub *deferred_hub;

void pgc_hub_flush_signals(void)
{
    pgc_hub *h = deferred_hub;
    if (!h)
        return;
    deferred_hub = NULL;
    pthread_mutex_lock(&live_mu);
    for (pgc_hub *x = live_hubs; x; x = x->live_next)
        if (x == h) {
            hub_signal(h);
            break;
        }
    pthread_mutex_unlock(&live_mu);
}

void pgc_hub_defer_signals(bool on)
{
    if (!on)
        pgc_hub_flush_signals();
    defer_signals = on;
}

/* The signal a command needs (its queue was empty): now, or at the thread's flush. */
static void hub_signal_cmd(pgc_hub *h)
{
    if (!defer_signals) {
        hub_signal(h);
        return;
    }
    if (deferred_hub && deferred_hub != h)
        pgc_hub_flush_signals();
    deferred_hub = h;
}

static void live_add(pgc_hub *h)
{
    pthread_mutex_lock(&live_mu);
    h->live_next = live_hubs;
    live_hubs = h;
    pthread_mutex_unlock(&live_mu);
}

static void live_remove(pgc_hub *h)
{
    pthread_mutex_lock(&live_mu);
    for (pgc_hub **pp = &live_hubs; *pp; pp = &(*pp)->live_next)
        if (*pp == h) {
            *pp = h->live_next;
            break;
        }
    pthread_mutex_unlock(&live_mu);
}

/* ---------------------------------------------------------------- subscriber queues */

static void sub_wake(pgc_sub *s)
{
    pthread_mutex_lock(&s->wake_mu);
    if (!s->dead && s->wake)
        s->wake(s->arg);
    pthread_mutex_unlock(&s->wake_mu);
}

static bool sub_has_channel_locked(pgc_sub *s, const char *channel)
{
    for (size_t i = 0; i < s->nchans; i++)
        if (strcmp(s->chans[i], channel) == 0)
            return true;
    return false;
}

enum push_result { PUSH_OK, PUSH_DROPPED, PUSH_NO_ROOM, PUSH_DEAD };

/* Doubles the ring (caller holds s->mu and checked qcap < qmax). */
static int queue_grow(pgc_sub *s)
{
    size_t cap = s->qcap * 2 > s->qmax ? s->qmax : s->qcap * 2;
    pgc_event **q = malloc(cap * sizeof(*q));
    if (!q)
        return -1;
    for (size_t k = 0; k < s->qlen; k++)
        q[k] = s->q[(s->qhead + k) % s->qcap];
    free(s->q);
    s->q = q;
    s->qcap = cap;
    s->qhead = 0;
    return 0;
}

/* Appends e (taking a new reference). catchup: when there is no room, say so instead
 * of overflowing — the item stays in the log. Wakes the consumer when the queue was
 * empty: consumers take until the queue is empty after each wake. */
static enum push_result sub_push(pgc_sub *s, pgc_event *e, bool catchup)
{
    pgc_hub *h = s->hub;
    bool wake = false;
    enum push_result res;
    pthread_mutex_lock(&s->mu);
    if (s->state != PGC_SUB_OK) {
        res = PUSH_DEAD;
    } else if (!sub_has_channel_locked(s, e->channel)) {
        res = PUSH_DROPPED; /* unsubscribed meanwhile */
    } else if (s->qlen == s->qmax || (s->qlen > 0 && s->qbytes + e->json_len > h->opt.queue_bytes) ||
               (s->qlen == s->qcap && queue_grow(s) != 0)) {
        /* An event or a gap that finds no room stays in the log: the subscription falls
         * behind and is fed as its consumer drains (a burst does not end a client that
         * reads at its pace; one that stops taking is ended by stall_scan). Items that are
         * not in the log (SUBSCRIBED, presence) cannot wait there. */
        bool in_log = e->kind == PGC_ITEM_EVENT || e->kind == PGC_ITEM_GAP;
        if (catchup || (in_log && h->opt.stall_ms >= 0)) {
            /* fed again once the consumer has taken enough (pgc_sub_take); set under the
             * same lock as the check, so a drain in between cannot be missed */
            s->feed_when_drained = true;
            res = PUSH_NO_ROOM;
        } else {
            s->state = PGC_SUB_OVERFLOW;
            atomic_fetch_add(&h->st_overflows, 1);
            wake = true;
            res = PUSH_DEAD;
        }
    } else {
        pgc_event_ref(e);
        s->q[(s->qhead + s->qlen) % s->qcap] = e;
        s->qlen++;
        s->qbytes += e->json_len;
        wake = s->qlen == 1;
        atomic_fetch_add_explicit(&h->st_deliveries, 1, memory_order_relaxed);
        res = PUSH_OK;
    }
    pthread_mutex_unlock(&s->mu);
    if (wake)
        sub_wake(s);
    return res;
}

/* What a catch-up may add now: up to half of the queue's bounds in events and bytes, the
 * other half being left for the live events that follow. false when there is no such
 * room (then the subscriber asks to be fed when drained, decided under the same lock
 * as the check) or the subscriber is no longer OK. */
static bool sub_feed_room(pgc_sub *s, size_t *events, size_t *bytes)
{
    size_t ev_target = s->qmax / 2 ? s->qmax / 2 : 1;
    size_t by_target = s->hub->opt.queue_bytes / 2 ? s->hub->opt.queue_bytes / 2 : 1;
    pthread_mutex_lock(&s->mu);
    bool ok = s->state == PGC_SUB_OK;
    *events = s->qlen < ev_target ? ev_target - s->qlen : 0;
    *bytes = s->qbytes < by_target ? by_target - s->qbytes : 0;
    bool room = ok && *events > 0 && *bytes > 0;
    if (ok && !room)
        s->feed_when_drained = true;
    pthread_mutex_unlock(&s->mu);
    return room;
}

/* Under cmd_mu. Returns whether the queue was empty: only then must the hub be
 * signalled (it takes the whole queue at each wake-up, so a non-empty queue already has
 * a wake-up on its way — thousands of long-polls ending at once cost one, not one each). */
static bool enqueue_cmd(pgc_hub *h, struct cmd *c)
{
    bool was_empty = h->cmd_head == NULL;
    c->next = NULL;
    if (h->cmd_tail)
        h->cmd_tail->next = c;
    else
        h->cmd_head = c;
    h->cmd_tail = c;
    return was_empty;
}

/* Returns 0, or -1 when the hub no longer takes commands. */
static int send_cmd(pgc_hub *h, enum cmd_kind kind, pgc_sub *s, const char *channel, int64_t after)
{
    struct cmd *c = calloc(1, sizeof(*c));
    if (!c)
        return -1;
    c->kind = kind;
    c->sub = s;
    c->after = after;
    if (channel && !(c->channel = strdup(channel))) {
        free(c);
        return -1;
    }
    pthread_mutex_lock(&h->cmd_mu);
    if (!h->running) {
        pthread_mutex_unlock(&h->cmd_mu);
        free(c->channel);
        free(c);
        return -1;
    }
    bool signal = enqueue_cmd(h, c);
    pthread_mutex_unlock(&h->cmd_mu);
    if (signal)
        hub_signal_cmd(h);
    return 0;
}

pgc_sub *pgc_sub_new(pgc_hub *h, const char *tenant, pgc_wake_fn wake, void *arg)
{
    pgc_sub *s = calloc(1, sizeof(*s));
    if (!s)
        return NULL;
    s->hub = h;
    s->wake = wake;
    s->arg = arg;
    s->qmax = h->opt.queue_events;
    s->qcap = s->qmax < 8 ? s->qmax : 8;
    s->last_take_ms = pgc_mono_ms();
    s->tenant = strdup(tenant);
    s->q = calloc(s->qcap, sizeof(*s->q));
    s->free_cmd = calloc(1, sizeof(*s->free_cmd));
    if (!s->tenant || !s->q || !s->free_cmd || pthread_mutex_init(&s->mu, NULL) != 0) {
        free(s->free_cmd);
        free(s->tenant);
        free(s->q);
        free(s);
        return NULL;
    }
    if (pthread_mutex_init(&s->wake_mu, NULL) != 0) {
        pthread_mutex_destroy(&s->mu);
        free(s->free_cmd);
        free(s->tenant);
        free(s->q);
        free(s);
        return NULL;
    }
    pthread_mutex_lock(&h->subs_mu);
    if (h->nall == h->capall) {
        size_t cap = h->capall ? h->capall * 2 : 64;
        pgc_sub **all = realloc(h->all, cap * sizeof(*all));
        if (!all) {
            pthread_mutex_unlock(&h->subs_mu);
            pthread_mutex_destroy(&s->wake_mu);
            pthread_mutex_destroy(&s->mu);
            free(s->free_cmd);
            free(s->tenant);
            free(s->q);
            free(s);
            return NULL;
        }
        h->all = all;
        h->capall = cap;
    }
    s->all_idx = h->nall;
    h->all[h->nall++] = s;
    if (h->phase != HUB_RUNNING)
        s->state = PGC_SUB_CLOSED; /* no command reaches the hub any more */
    pthread_mutex_unlock(&h->subs_mu);
    return s;
}

int pgc_sub_add(pgc_sub *s, const char *channel, int64_t after)
{
    if (!pgc_channel_valid(channel))
        return -1;
    char *copy = strdup(channel);
    if (!copy)
        return -1;
    pthread_mutex_lock(&s->mu);
    char **chans = sub_has_channel_locked(s, channel) ? NULL : realloc(s->chans, (s->nchans + 1) * sizeof(char *));
    if (!chans) {
        pthread_mutex_unlock(&s->mu);
        free(copy);
        return -1;
    }
    s->chans = chans;
    s->chans[s->nchans++] = copy;
    pthread_mutex_unlock(&s->mu);
    if (send_cmd(s->hub, CMD_ADD, s, channel, after) != 0) {
        pthread_mutex_lock(&s->mu);
        s->nchans--;
        pthread_mutex_unlock(&s->mu);
        free(copy);
        return -1;
    }
    return 0;
}

int pgc_sub_remove(pgc_sub *s, const char *channel)
{
    pthread_mutex_lock(&s->mu);
    size_t i = 0;
    while (i < s->nchans && strcmp(s->chans[i], channel) != 0)
        i++;
    if (i == s->nchans) {
        pthread_mutex_unlock(&s->mu);
        return -1;
    }
    free(s->chans[i]);
    s->chans[i] = s->chans[--s->nchans];
    /* drop what is queued for it: nothing of the channel is seen after this returns */
    size_t kept = 0;
    for (size_t k = 0; k < s->qlen; k++) {
        pgc_event *e = s->q[(s->qhead + k) % s->qcap];
        if (strcmp(e->channel, channel) == 0) {
            s->qbytes -= e->json_len;
            pgc_event_unref(e);
        } else {
            s->q[(s->qhead + kept++) % s->qcap] = e;
        }
    }
    s->qlen = kept;
    pthread_mutex_unlock(&s->mu);
    (void)send_cmd(s->hub, CMD_REMOVE, s, channel, 0);
    return 0;
}

size_t pgc_sub_take(pgc_sub *s, pgc_event **items, size_t max)
{
    pthread_mutex_lock(&s->mu);
    s->last_take_ms = pgc_mono_ms();
    size_t n = 0;
    while (n < max && s->qlen > 0) {
        pgc_event *e = s->q[s->qhead];
        s->qhead = (s->qhead + 1) % s->qcap;
        s->qlen--;
        s->qbytes -= e->json_len;
        items[n++] = e;
    }
    /* a catch-up waiting for room is fed again below a quarter of the bounds; it fills
     * up to half (sub_feed_room) */
    bool feed = s->feed_when_drained && s->qlen <= s->qmax / 4 && s->qbytes <= s->hub->opt.queue_bytes / 4 &&
                s->state == PGC_SUB_OK;
    if (feed)
        s->feed_when_drained = false;
    pthread_mutex_unlock(&s->mu);
    if (feed)
        (void)send_cmd(s->hub, CMD_FEED, s, NULL, 0);
    return n;
}

pgc_sub_state pgc_sub_get_state(pgc_sub *s)
{
    pthread_mutex_lock(&s->mu);
    pgc_sub_state st = s->state;
    pthread_mutex_unlock(&s->mu);
    return st;
}

static void sub_destroy(pgc_sub *s)
{
    for (size_t k = 0; k < s->qlen; k++)
        pgc_event_unref(s->q[(s->qhead + k) % s->qcap]);
    for (size_t i = 0; i < s->nchans; i++)
        free(s->chans[i]);
    free(s->chans);
    free(s->q);
    free(s->tenant);
    free(s->free_cmd);
    pthread_mutex_destroy(&s->mu);
    pthread_mutex_destroy(&s->wake_mu);
    free(s);
}

static void hub_release(pgc_hub *h);

void pgc_sub_free(pgc_sub *s)
{
    if (!s)
        return;
    pgc_hub *h = s->hub;
    pthread_mutex_lock(&s->wake_mu);
    s->dead = true;
    pthread_mutex_unlock(&s->wake_mu);
    pthread_mutex_lock(&h->subs_mu);
    /* by its index, not a scan: thousands of long-polls end at once on one publish */
    size_t i = s->all_idx;
    if (i < h->nall && h->all[i] == s) {
        h->all[i] = h->all[--h->nall];
        h->all[i]->all_idx = i;
    }
    bool destroy = false, last = false;
    if (h->phase == HUB_RUNNING) {
        /* the hub thread unlinks its subscriptions, then destroys (the phase changes
         * under subs_mu, so the command is accepted) */
        struct cmd *c = s->free_cmd;
        s->free_cmd = NULL;
        *c = (struct cmd){.kind = CMD_FREE, .sub = s};
        pthread_mutex_lock(&h->cmd_mu);
        bool signal = enqueue_cmd(h, c);
        pthread_mutex_unlock(&h->cmd_mu);
        if (signal)
            hub_signal_cmd(h);
    } else if (h->phase == HUB_STOPPING) {
        /* the hub thread may still push to it or wake it: pgc_hub_stop destroys it once
         * the thread has ended */
        s->znext = h->parked;
        h->parked = s;
    } else {
        destroy = true; /* stopped: pgc_hub_stop unlinked every subscription */
        last = h->nall == 0;
    }
    pthread_mutex_unlock(&h->subs_mu);
    if (destroy)
        sub_destroy(s);
    if (last)
        hub_release(h);
}

/* ---------------------------------------------------------------- channels */

int pgc_hub_channel_tag(const unsigned char secret[PGC_HUB_SECRET_LEN], const char *tenant, const char *channel,
                        char out[PGC_HUB_TAG_LEN + 1])
{
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int mdlen = 0;
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();
    int ok = ctx && EVP_DigestInit_ex(ctx, EVP_sha256(), NULL) == 1 &&
             EVP_DigestUpdate(ctx, secret, PGC_HUB_SECRET_LEN) == 1 &&
             EVP_DigestUpdate(ctx, tenant, strlen(tenant)) == 1 && EVP_DigestUpdate(ctx, "\x1f", 1) == 1 &&
             EVP_DigestUpdate(ctx, channel, strlen(channel)) == 1 && EVP_DigestFinal_ex(ctx, md, &mdlen) == 1 &&
             mdlen >= PGC_HUB_TAG_LEN / 2;
    EVP_MD_CTX_free(ctx);
    if (!ok)
        return -1;
    static const char hex[] = "0123456789abcdef";
    for (int i = 0; i < PGC_HUB_TAG_LEN / 2; i++) {
        out[2 * i] = hex[md[i] >> 4];
        out[2 * i + 1] = hex[md[i] & 15];
    }
    out[PGC_HUB_TAG_LEN] = '\0';
    return 0;
}

static void relay_tag(pgc_hub *h, hchan *c, bool add);

static void chan_untag(pgc_hub *h, hchan *c)
{
    if (!c->tagged)
        return;
    relay_tag(h, c, false);
    lh_table_delete(h->tags, c->tag);
    c->tagged = false;
}

/* Puts c in the tag table under the current secret (nothing without one). A channel
 * left untagged is still read after a reconnect or a secret change, not on wake-ups. */
static void chan_tag(pgc_hub *h, hchan *c)
{
    chan_untag(h, c);
    if (!h->have_secret)
        return;
    if (pgc_hub_channel_tag(h->secret, c->tenant, c->channel, c->tag) != 0) {
        PGC_ERROR("hub: computing the wake-up tag of %s failed", c->channel);
        return;
    }
    void *other = NULL;
    if (lh_table_lookup_ex(h->tags, c->tag, &other)) {
        PGC_ERROR("hub: two channels share the wake-up tag %s (%s)", c->tag, c->channel); /* 2^-128 */
        return;
    }
    if (lh_table_insert(h->tags, c->tag, c) != 0) {
        PGC_ERROR("hub: out of memory tagging %s", c->channel);
        return;
    }
    c->tagged = true;
    relay_tag(h, c, true);
}

static void chan_free_entry(struct lh_entry *e)
{
    hchan *c = (hchan *)lh_entry_v(e);
    free(c->key);
    free(c->tenant);
    free(c->channel);
    free(c);
}

/* The table key of (tenant, channel): the whole of both, never cut (a channel name has
 * no \x1f). Short keys are built in buf; a longer one is allocated (free it if != buf). */
static char *chan_key(char *buf, size_t buflen, const char *tenant, const char *channel)
{
    size_t lt = strlen(tenant), lc = strlen(channel);
    char *key = lt + lc + 2 <= buflen ? buf : malloc(lt + lc + 2);
    if (!key)
        return NULL;
    memcpy(key, tenant, lt);
    key[lt] = '\x1f';
    memcpy(key + lt + 1, channel, lc + 1);
    return key;
}

static hchan *chan_get(pgc_hub *h, const char *tenant, const char *channel, bool create)
{
    char buf[256];
    char *key = chan_key(buf, sizeof(buf), tenant, channel);
    if (!key)
        return NULL;
    void *v = NULL;
    if (lh_table_lookup_ex(h->chans, key, &v) || !create) {
        if (key != buf)
            free(key);
        return v;
    }
    hchan *c = calloc(1, sizeof(*c));
    if (!c) {
        if (key != buf)
            free(key);
        return NULL;
    }
    c->key = key == buf ? strdup(key) : key;
    c->tenant = strdup(tenant);
    c->channel = strdup(channel);
    c->last = -1;
    if (!c->key || !c->tenant || !c->channel || lh_table_insert(h->chans, c->key, c) != 0) {
        free(c->key);
        free(c->tenant);
        free(c->channel);
        free(c);
        return NULL;
    }
    chan_tag(h, c);
    return c;
}

/* The hub's two lists of work for the next turns (hub thread only). */
static void feed_list_add(pgc_hub *h, hsub *x)
{
    if (x->in_feed)
        return;
    x->in_feed = true;
    x->fnext = NULL;
    x->fprev = h->feed_tail;
    if (h->feed_tail)
        h->feed_tail->fnext = x;
    else
        h->feed_head = x;
    h->feed_tail = x;
}

static void feed_list_remove(pgc_hub *h, hsub *x)
{
    if (!x->in_feed)
        return;
    if (x->fprev)
        x->fprev->fnext = x->fnext;
    else
        h->feed_head = x->fnext;
    if (x->fnext)
        x->fnext->fprev = x->fprev;
    else
        h->feed_tail = x->fprev;
    x->in_feed = false;
    x->fprev = x->fnext = NULL;
}

static void read_list_add(pgc_hub *h, hchan *c)
{
    if (c->in_read)
        return;
    c->in_read = true;
    c->rnext = NULL;
    c->rprev = h->read_tail;
    if (h->read_tail)
        h->read_tail->rnext = c;
    else
        h->read_head = c;
    h->read_tail = c;
}

static void read_list_remove(pgc_hub *h, hchan *c)
{
    if (!c->in_read)
        return;
    if (c->rprev)
        c->rprev->rnext = c->rnext;
    else
        h->read_head = c->rnext;
    if (c->rnext)
        c->rnext->rprev = c->rprev;
    else
        h->read_tail = c->rprev;
    c->in_read = false;
    c->rprev = c->rnext = NULL;
}

static void hsub_unlink(pgc_hub *h, hsub *x)
{
    hchan *c = x->ch;
    feed_list_remove(h, x);
    if (x->cprev)
        x->cprev->cnext = x->cnext;
    else
        c->subs = x->cnext;
    if (x->cnext)
        x->cnext->cprev = x->cprev;
    atomic_fetch_sub(&h->st_subscriptions, 1);
    if (!c->subs) {
        read_list_remove(h, c);
        chan_untag(h, c);
        lh_table_delete(h->chans, c->key); /* frees c */
    }
    free(x);
}

/* ---------------------------------------------------------------- database */

/* Presence across a switch of the wake-up source. Events need nothing (the log is read
 * from each channel's position), but a presence row is read only when a wake-up names
 * it: one sent while the source was failing (a relay frozen, then killed; a LISTEN
 * connection breaking) reaches no one. So the hub remembers up to when its source was
 * proven to bring every wake-up (alive_ms: the barrier or query that proved it, once
 * everything received before it was handled), and when that source goes (source_lost)
 * the new one, once listening (source_started), reads the rows written since then
 * (presence_replay). */
static void source_lost(pgc_hub *h)
{
    if (h->alive_ms > 0 && (h->replay_from_ms == 0 || h->alive_ms < h->replay_from_ms))
        h->replay_from_ms = h->alive_ms; /* the earliest, if several sources went in a row */
    h->alive_ms = h->proof_ms = 0;
}

/* A source listens from now on: what it brings is proven from now. */
static void source_started(pgc_hub *h) { h->alive_ms = h->proof_ms = pgc_mono_ms(); }

static void drop_conn(pgc_hub *h, const char *why)
{
    if (!h->conn)
        return;
    PGC_WARN("hub: database connection lost (%s); reconnecting", why);
    source_lost(h); /* its LISTEN, or what the hub could not read of the relay's wake-ups */
    PQfinish(h->conn);
    h->conn = NULL;
    h->listening = false;
    positions_void(h);
    atomic_store(&h->db_ok, false);
    atomic_fetch_add(&h->st_reconnects, 1);
    h->next_connect_ms = pgc_mono_ms() + h->backoff_ms;
}

/* Runs a command that returns nothing of interest; drops the connection on failure. */
static int hub_exec(pgc_hub *h, const char *sql, int n, const char *const *params)
{
    if (!h->conn)
        return -1;
    int64_t sent = pgc_mono_ms();
    PGresult *r = n ? PQexecParams(h->conn, sql, n, NULL, params, NULL, NULL, 0) : PQexec(h->conn, sql);
    ExecStatusType st = PQresultStatus(r);
    int ok = st == PGRES_COMMAND_OK || st == PGRES_TUPLES_OK;
    if (ok && h->listening)
        h->proof_ms = sent; /* the notifications committed before it came with its answer */
    if (!ok) {
        PGC_WARN("hub: query failed: %s", PQresultErrorMessage(r));
        if (PQstatus(h->conn) != CONNECTION_OK)
            drop_conn(h, "query failed");
    }
    PQclear(r);
    return ok ? 0 : -1;
}

static void load_heartbeat_config(pgc_hub *h)
{
    if (!h->conn)
        return;
    PGresult *r = PQexec(h->conn, "SELECT channel_type, heartbeat_interval_ms, timeout_ms "
                                  "FROM realtime.realtime_heartbeat_config ORDER BY channel_type");
    if (PQresultStatus(r) != PGRES_TUPLES_OK) {
        PGC_WARN("hub: reading realtime_heartbeat_config failed: %s", PQresultErrorMessage(r));
        PQclear(r);
        if (PQstatus(h->conn) != CONNECTION_OK)
            drop_conn(h, "query failed");
        return;
    }
    struct hb_entry hb[HUB_MAX_HB_TYPES];
    struct hb_entry def = {"default", 30000, 90000};
    int n = 0;
    for (int i = 0; i < PQntuples(r); i++) {
        struct hb_entry e;
        snprintf(e.type, sizeof(e.type), "%s", PQgetvalue(r, i, 0));
        e.interval_ms = atoi(PQgetvalue(r, i, 1));
        e.timeout_ms = atoi(PQgetvalue(r, i, 2));
        if (strcmp(e.type, "default") == 0)
            def = e;
        else if (n < HUB_MAX_HB_TYPES)
            hb[n++] = e;
    }
    PQclear(r);
    pthread_rwlock_wrlock(&h->hb_lock);
    bool changed = n != h->nhb || memcmp(hb, h->hb, sizeof(hb[0]) * (size_t)n) != 0 ||
                   memcmp(&def, &h->hb_default, sizeof(def)) != 0;
    memcpy(h->hb, hb, sizeof(hb[0]) * (size_t)n);
    h->nhb = n;
    h->hb_default = def;
    pthread_rwlock_unlock(&h->hb_lock);
    if (!changed)
        return;
    atomic_fetch_add(&h->config_gen, 1);
    PGC_INFO("hub: heartbeat config loaded (%d types + default %d/%d ms)", n, def.interval_ms, def.timeout_ms);
    /* wake everyone so open streams apply the new interval now */
    pthread_mutex_lock(&h->subs_mu);
    size_t nall = h->nall;
    pgc_sub **copy = malloc(nall * sizeof(*copy) + 1);
    if (copy && nall)
        memcpy(copy, h->all, nall * sizeof(*copy));
    pthread_mutex_unlock(&h->subs_mu);
    /* a subscriber freed meanwhile is marked dead first, so sub_wake skips it; it cannot
     * be destroyed before this thread processes its CMD_FREE */
    for (size_t i = 0; copy && i < nall; i++)
        sub_wake(copy[i]);
    free(copy);
}

/* A warning about notifications, at most one line per HUB_WARN_EVERY_MS (anyone who can
 * connect can send them: the log must not become the flood). */
static void warn_limited(pgc_hub *h, const char *what)
{
    int64_t now = pgc_mono_ms();
    if (now < h->warn_next_ms) {
        h->warn_suppressed++;
        return;
    }
    if (h->warn_suppressed)
        PGC_WARN("hub: %s (and %lu more notifications ignored since the last warning)", what, h->warn_suppressed);
    else
        PGC_WARN("hub: %s", what);
    h->warn_suppressed = 0;
    h->warn_next_ms = now + HUB_WARN_EVERY_MS;
}

static void retag_all(pgc_hub *h)
{
    struct lh_entry *e, *tmp;
    lh_foreach_safe(h->chans, e, tmp)
    {
        chan_tag(h, (hchan *)lh_entry_v(e));
    }
}

static int hexval(char c)
{
    return c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
}

/* Loads realtime.realtime_secret; on a change every channel is tagged again and read
 * once (wake-ups sent under the other secret were not recognised). Without it (not
 * readable, or migration 011 not applied) the previous secret stays, or none: every
 * wake-up then reads every channel. */
static void load_secret(pgc_hub *h)
{
    if (!h->conn)
        return;
    PGresult *r = PQexec(h->conn, "SELECT encode(secret, 'hex') FROM realtime.realtime_secret");
    unsigned char key[PGC_HUB_SECRET_LEN];
    bool ok = PQresultStatus(r) == PGRES_TUPLES_OK && PQntuples(r) == 1 &&
              PQgetlength(r, 0, 0) == 2 * PGC_HUB_SECRET_LEN;
    for (int i = 0; ok && i < PGC_HUB_SECRET_LEN; i++) {
        const char *v = PQgetvalue(r, 0, 0);
        int hi = hexval(v[2 * i]), lo = hexval(v[2 * i + 1]);
        ok = hi >= 0 && lo >= 0;
        key[i] = (unsigned char)(hi << 4 | lo);
    }
    if (!ok) {
        if (!h->secret_warned)
            PGC_ERROR("hub: cannot read realtime.realtime_secret (%s): every wake-up reads every channel, "
                      "presence is matched by its rows; apply the migrations and grant the runtime role "
                      "(pgcast-migrate --runtime-role)",
                      PQresultStatus(r) == PGRES_TUPLES_OK ? "no valid row" : PQresultErrorMessage(r));
        h->secret_warned = true;
        PQclear(r);
        if (PQstatus(h->conn) != CONNECTION_OK)
            drop_conn(h, "query failed");
        return;
    }
    PQclear(r);
    positions_listening(h, key);
    if (h->have_secret && memcmp(key, h->secret, sizeof(key)) == 0)
        return;
    bool rotated = h->have_secret;
    memcpy(h->secret, key, sizeof(key));
    h->have_secret = true;
    retag_all(h);
    h->wake_all = true;
    if (rotated)
        PGC_INFO("hub: realtime.realtime_secret changed: channels tagged again");
}

static void refresh_instance(pgc_hub *h)
{
    char pid[16];
    snprintf(pid, sizeof(pid), "%d", (int)getpid());
    char host[256] = "";
    if (gethostname(host, sizeof(host) - 1) != 0)
        snprintf(host, sizeof(host), "unknown");
    const char *p[4] = {h->instance_id, h->kind, host, pid};
    (void)hub_exec(h,
                   "INSERT INTO realtime.realtime_instances (instance_id, kind, hostname, pid) "
                   "VALUES ($1, $2, $3, $4::int) ON CONFLICT (instance_id) DO UPDATE SET last_seen_at = now()",
                   4, p);
    h->next_instance_ms = pgc_mono_ms() + HUB_INSTANCE_REFRESH_MS;
    if (!h->have_secret)
        load_secret(h);
    /* Any live process sweeps: rows and presence members of processes that stopped
     * refreshing (crashed, killed) are closed and removed. */
    if (h->refreshes++ % HUB_SWEEP_EVERY == 0)
        (void)hub_exec(h, "SELECT realtime.sweep_instances(interval '" HUB_INSTANCE_STALE "')", 0, NULL);
}

/* The channel's current seq, from realtime_channels. -1 on error. */
static int64_t query_last_seq(pgc_hub *h, hchan *c)
{
    const char *p[2] = {c->tenant, c->channel};
    PGresult *r = PQexecParams(h->conn,
                               "SELECT last_seq FROM realtime.realtime_channels WHERE tenant_id = $1 AND channel_name = $2",
                               2, NULL, p, NULL, NULL, 0);
    int64_t v = -1;
    if (PQresultStatus(r) == PGRES_TUPLES_OK)
        v = PQntuples(r) ? strtoll(PQgetvalue(r, 0, 0), NULL, 10) : 0;
    else
        PGC_WARN("hub: reading the position of %s failed: %s", c->channel, PQresultErrorMessage(r));
    PQclear(r);
    if (v < 0 && PQstatus(h->conn) != CONNECTION_OK)
        drop_conn(h, "query failed");
    return v;
}

/* ---------------------------------------------------------------- delivery */

/* A live item of channel c (seq == c->last + 1, or a gap starting there): to every
 * subscription that is live. Consumes the reference of e. */
static void deliver_live(pgc_hub *h, hchan *c, pgc_event *e)
{
    int64_t prev = c->last;
    int64_t next = e->kind == PGC_ITEM_GAP ? e->gap_to : e->seq;
    for (hsub *x = c->subs; x; x = x->cnext) {
        if (!x->announced || x->pos != prev)
            continue; /* behind: it will be fed from the log */
        if (sub_push(x->sub, e, false) != PUSH_NO_ROOM)
            x->pos = next;
    }
    c->last = next;
    pgc_event_unref(e);
}

/* Whether a read may have stopped before the end of what there is: it returned limit
 * rows, or its events' bytes reached the byte bound (their envelopes are counted, a
 * little more than the payloads the bound applies to: at worst one read too many). */
static bool read_may_have_more(int n, int limit, size_t bytes, size_t max_bytes)
{
    return n >= limit || (max_bytes > 0 && bytes >= max_bytes);
}

struct catchup_ctx {
    pgc_hub *h;
    const char *tenant;
    size_t bytes;
};

static int catchup_item(pgc_event *e, void *arg)
{
    struct catchup_ctx *cx = arg;
    cx->bytes += e->kind == PGC_ITEM_EVENT ? e->json_len : 0;
    hchan *c = chan_get(cx->h, cx->tenant, e->channel, false);
    if (c && c->last >= 0 && e->seq == c->last + 1) {
        if (e->kind == PGC_ITEM_EVENT) {
            atomic_fetch_add_explicit(&cx->h->st_events_in, 1, memory_order_relaxed);
            atomic_store(&cx->h->st_lag_ms, pgc_wall_ms() - e->ts_ms);
        }
        deliver_live(cx->h, c, e);
    } else {
        pgc_event_unref(e);
    }
    return 0;
}

/* One step of reading the log of n channels of ONE tenant after their `last` (woken,
 * or after a reconnect): one realtime.read, bounded by HUB_READ_BATCH events and
 * read_bytes in all, each event delivered live as it comes. The envelopes are built
 * from the rows (pgc_db_read). Returns true when the log may have more after this step
 * (the read was cut by a bound: any of the channels may have more). */
static bool read_channels_step(pgc_hub *h, hchan **chans, size_t n)
{
    if (!h->conn || n == 0)
        return false;
    pgc_cursor cur;
    pgc_cursor_init(&cur);
    struct catchup_ctx cx = {h, chans[0]->tenant, 0};
    char err[256];
    bool more = false, built = true;
    for (size_t i = 0; built && i < n; i++)
        built = pgc_cursor_set(&cur, chans[i]->channel, chans[i]->last) == 0;
    if (!built) {
        PGC_ERROR("hub: out of memory reading the log");
        more = true; /* try again in the next turn */
    } else {
        int got = pgc_db_read(h->conn, cx.tenant, &cur, HUB_READ_BATCH, h->opt.read_bytes, catchup_item, &cx, err,
                              sizeof(err));
        if (got < 0) {
            PGC_WARN("hub: reading the log of %s%s failed: %s", chans[0]->channel, n > 1 ? " and others" : "", err);
            if (PQstatus(h->conn) != CONNECTION_OK)
                drop_conn(h, "read failed"); /* resync_all reads every channel after reconnecting */
        } else {
            more = read_may_have_more(got, HUB_READ_BATCH, cx.bytes, h->opt.read_bytes);
        }
    }
    pgc_cursor_free(&cur);
    return more;
}

/* The channel's log must be read after c->last: in the next turns, a step at a time. */
static void catchup_channel(pgc_hub *h, hchan *c) { read_list_add(h, c); }

struct feed_ctx {
    hsub *x;
    bool stop; /* the queue refused (full) or the subscriber ended */
    size_t bytes;
};

static int feed_item(pgc_event *e, void *arg)
{
    struct feed_ctx *fx = arg;
    int64_t next = e->kind == PGC_ITEM_GAP ? e->gap_to : e->seq;
    fx->bytes += e->kind == PGC_ITEM_EVENT ? e->json_len : 0;
    if (!fx->stop) {
        enum push_result r = sub_push(fx->x->sub, e, true);
        if (r == PUSH_NO_ROOM || r == PUSH_DEAD)
            fx->stop = true; /* NO_ROOM: fed again when drained (sub_push asked) */
        else
            fx->x->pos = next;
    }
    pgc_event_unref(e);
    return fx->stop ? 1 : 0;
}

/* One step of feeding a subscription that is behind its channel: one read, bounded by
 * the room catch-up may use in its queue (events and bytes) and by read_bytes. Returns
 * true when the subscription should get another step in a later turn; false when it is
 * live, waits for its consumer to drain (pgc_sub_take sends CMD_FEED), or ended. */
static bool feed_step(pgc_hub *h, hsub *x)
{
    hchan *c = x->ch;
    if (!h->conn || !x->announced || x->pos >= c->last)
        return false;
    size_t ev_room, byte_room;
    if (!sub_feed_room(x->sub, &ev_room, &byte_room))
        return false;
    int limit = ev_room < HUB_READ_BATCH ? (int)ev_room : HUB_READ_BATCH;
    size_t max_bytes = byte_room < h->opt.read_bytes ? byte_room : h->opt.read_bytes;
    pgc_cursor cur;
    pgc_cursor_init(&cur);
    struct feed_ctx fx = {x, false, 0};
    int64_t before = x->pos;
    char err[256];
    int n = -1;
    if (pgc_cursor_set(&cur, c->channel, x->pos) == 0) {
        n = pgc_db_read(h->conn, c->tenant, &cur, limit, max_bytes, feed_item, &fx, err, sizeof(err));
        if (n < 0) {
            PGC_WARN("hub: catch-up read of %s failed: %s", c->channel, err);
            if (PQstatus(h->conn) != CONNECTION_OK)
                drop_conn(h, "read failed"); /* resync_all feeds it again after reconnecting */
        }
    }
    pgc_cursor_free(&cur);
    if (n < 0 || fx.stop)
        return false;
    if (x->pos == before)
        return false; /* the log has nothing more (c->last is ahead of what is committed?) */
    return x->pos < c->last;
}

/* A subscription behind its channel is fed in the next turns. */
static void feed(pgc_hub *h, hsub *x)
{
    if (x->announced && x->pos < x->ch->last)
        feed_list_add(h, x);
}

static int chan_cmp_tenant(const void *a, const void *b)
{
    return strcmp((*(hchan *const *)a)->tenant, (*(hchan *const *)b)->tenant);
}

/* One turn of the hub's log work: a step for the channels whose log must be read (live
 * delivery comes first), one read per tenant (HUB_READ_CHANNELS channels at most per
 * read), then a step for the first subscription behind, which then goes to the end of
 * the list. Returns true when work remains for the next turn. */
static bool work_turn(pgc_hub *h)
{
    if (h->wake_all && h->conn) {
        h->wake_all = false;
        struct lh_entry *e, *tmp;
        lh_foreach_safe(h->chans, e, tmp)
        {
            hchan *c = (hchan *)lh_entry_v(e);
            if (c->last >= 0)
                read_list_add(h, c);
        }
    }
    size_t n = 0;
    for (hchan *c = h->read_head; c; c = c->rnext)
        n++;
    if (n > h->batch_cap) {
        hchan **b = realloc(h->batch, n * sizeof(*b));
        if (b) {
            h->batch = b;
            h->batch_cap = n;
        } else {
            n = h->batch_cap; /* the rest waits for the next turn */
        }
    }
    hchan *one[1];
    hchan **batch = h->batch ? h->batch : one;
    if (n == 0 && h->read_head)
        n = 1; /* no memory at all: one channel at a time */
    size_t k = 0;
    while (h->conn && k < n && h->read_head) {
        hchan *c = h->read_head;
        read_list_remove(h, c);
        if (c->last >= 0)
            batch[k++] = c;
    }
    qsort(batch, k, sizeof(*batch), chan_cmp_tenant);
    for (size_t i = 0; i < k && h->conn;) {
        size_t j = i + 1;
        while (j < k && j - i < HUB_READ_CHANNELS && strcmp(batch[j]->tenant, batch[i]->tenant) == 0)
            j++;
        if (read_channels_step(h, batch + i, j - i))
            for (size_t m = i; m < j; m++)
                read_list_add(h, batch[m]);
        i = j;
    }
    /* a lost connection leaves the rest unread: resync_all reads every channel */
    hsub *x = h->feed_head;
    if (h->conn && x) {
        feed_list_remove(h, x);
        if (feed_step(h, x))
            feed_list_add(h, x);
    }
    return h->conn && (h->read_head || h->feed_head);
}

/* Once the channel's position is known: SUBSCRIBED, then from `after` on. */
static void announce(pgc_hub *h, hsub *x)
{
    hchan *c = x->ch;
    pgc_event *e = pgc_event_new_subscribed(c->tenant, c->channel, c->last);
    if (!e)
        return;
    enum push_result r = sub_push(x->sub, e, false);
    pgc_event_unref(e);
    if (r == PUSH_DEAD)
        return;
    x->announced = true;
    x->pos = x->after < 0 ? c->last : x->after;
    feed(h, x);
}

/* A channel's first subscription: learn its position (needs the database). */
static void init_channel(pgc_hub *h, hchan *c)
{
    if (c->last >= 0 || !h->conn)
        return;
    int64_t last = query_last_seq(h, c);
    if (last < 0)
        return;
    c->last = last;
    for (hsub *x = c->subs; x; x = x->cnext)
        if (!x->announced)
            announce(h, x);
}

/* After (re)connecting: every channel's position, then what was missed meanwhile (read
 * in the next turns). */
static void resync_all(pgc_hub *h)
{
    struct lh_entry *e, *tmp;
    lh_foreach_safe(h->chans, e, tmp)
    {
        hchan *c = (hchan *)lh_entry_v(e);
        if (!h->conn)
            return;
        if (c->last < 0)
            init_channel(h, c);
        else
            catchup_channel(h, c);
        for (hsub *x = c->subs; x; x = x->cnext)
            feed(h, x);
    }
}

/* "<tag> <number>": PGC_HUB_TAG_LEN lowercase hex digits, one space, 1-19 decimal
 * digits (1 .. 2^63-1), nothing else. 0, or -1 for anything else. */
static int parse_wakeup(const char *p, char tag[PGC_HUB_TAG_LEN + 1], int64_t *num)
{
    for (int i = 0; i < PGC_HUB_TAG_LEN; i++) {
        if (hexval(p[i]) < 0)
            return -1;
        tag[i] = p[i];
    }
    tag[PGC_HUB_TAG_LEN] = '\0';
    p += PGC_HUB_TAG_LEN;
    if (*p++ != ' ')
        return -1;
    size_t nd = strspn(p, "0123456789");
    if (nd == 0 || nd > 19 || p[nd] != '\0')
        return -1;
    errno = 0;
    long long v = strtoll(p, NULL, 10);
    if (errno != 0 || v < 1)
        return -1;
    *num = v;
    return 0;
}

/* A wake-up on 'realtime_events'. Nothing in it is trusted: a tag of a channel served
 * here with a seq beyond what was delivered puts the channel on the read list, and the
 * read delivers only what the log holds. */
static void on_event_notify(pgc_hub *h, const char *payload)
{
    if (!h->have_secret) {
        h->wake_all = true; /* no tags to tell channels apart: read them all */
        return;
    }
    char tag[PGC_HUB_TAG_LEN + 1];
    int64_t seq;
    if (parse_wakeup(payload, tag, &seq) != 0) {
        warn_limited(h, "ignoring a malformed notification on realtime_events");
        return;
    }
    pgc_positions_notify(h->positions, tag, seq);
    void *v = NULL;
    if (!lh_table_lookup_ex(h->tags, tag, &v))
        return; /* a channel not served here (or a made-up tag) */
    hchan *c = v;
    if (c->last < 0 || seq <= c->last)
        return; /* not started yet (it reads its position), or already delivered */
    catchup_channel(h, c);
}

/* ---------------------------------------------------------------- presence */

/* Whether presence id was delivered here (or is older than what is remembered). */
static bool seen_has(pgc_hub *h, int64_t id)
{
    if (id <= h->seen_evicted_max)
        return true;
    for (size_t i = 0; i < h->nseen; i++)
        if (h->seen[i] == id)
            return true;
    return false;
}

static void seen_add(pgc_hub *h, int64_t id)
{
    if (h->nseen < HUB_PRESENCE_SEEN) {
        h->seen[h->nseen++] = id;
        return;
    }
    /* the oldest goes; ids up to the largest evicted count as delivered from now on (a
     * row committed that much later than HUB_PRESENCE_SEEN others is not delivered) */
    if (h->seen[h->seen_next] > h->seen_evicted_max)
        h->seen_evicted_max = h->seen[h->seen_next];
    h->seen[h->seen_next] = id;
    h->seen_next = (h->seen_next + 1) % HUB_PRESENCE_SEEN;
}

/* A presence row: {"type":"presence.…","channel":C,"payload":member}, written by
 * realtime.presence_announce as jsonb. It is parsed and printed again, so what is sent
 * is valid JSON whatever the row holds. Delivered as an EPHEMERAL item to the channel's
 * announced subscriptions, except those added after written_ms (when the row was
 * written, on the hub's clock; INT64_MAX for a row just woken for). */
static void deliver_presence(pgc_hub *h, hchan *c, const char *text, int64_t written_ms)
{
    struct json_object *o = json_tokener_parse(text), *jtype, *jch;
    const char *type = NULL;
    if (o && json_object_is_type(o, json_type_object) && json_object_object_get_ex(o, "type", &jtype) &&
        json_object_is_type(jtype, json_type_string) && json_object_object_get_ex(o, "channel", &jch) &&
        json_object_is_type(jch, json_type_string) && strcmp(json_object_get_string(jch), c->channel) == 0)
        type = json_object_get_string(jtype);
    if (!type || strncmp(type, "presence.", 9) != 0) {
        warn_limited(h, "ignoring a presence row that is not a presence message");
        json_object_put(o);
        return;
    }
    size_t len = 0;
    const char *m = json_object_to_json_string_length(o, JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE, &len);
    pgc_event *e = m ? pgc_event_new_ephemeral(c->tenant, c->channel, type, m, len) : NULL;
    for (hsub *x = c->subs; e && x; x = x->cnext)
        if (x->announced && x->since_ms <= written_ms)
            (void)sub_push(x->sub, e, false);
    pgc_event_unref(e);
    json_object_put(o);
}

/* Reads the presence rows of the pending wake-ups (one query for HUB_PRESENCE_BATCH)
 * and delivers each once: a row of a channel served here whose tag (with the secret) is
 * the one of the wake-up, written within HUB_PRESENCE_WINDOW. */
static void flush_presence(pgc_hub *h)
{
    while (h->conn && h->npending > 0) {
        size_t n = h->npending < HUB_PRESENCE_BATCH ? h->npending : HUB_PRESENCE_BATCH;
        struct pres_pending *batch = h->pending + (h->npending - n);
        char arr[HUB_PRESENCE_BATCH * 21 + 3], *p = arr;
        *p++ = '{';
        size_t asked = 0;
        for (size_t i = 0; i < n; i++) {
            if (seen_has(h, batch[i].id))
                continue; /* delivered already: a replay costs nothing */
            p += sprintf(p, "%s%" PRId64, asked++ ? "," : "", batch[i].id);
        }
        *p++ = '}';
        *p = '\0';
        if (asked > 0) {
            const char *params[1] = {arr};
            PGresult *r = pgc_db_exec_prepared(
                h->conn, "pgcast_presence_rows",
                "SELECT id, tenant_id, channel, message::text FROM realtime.realtime_presence_events "
                "WHERE id = ANY ($1::bigint[]) AND created_at > now() - interval '" HUB_PRESENCE_WINDOW "' ORDER BY id",
                1, params);
            if (PQresultStatus(r) != PGRES_TUPLES_OK) {
                warn_limited(h, PQresultErrorMessage(r));
                PQclear(r);
                if (PQstatus(h->conn) != CONNECTION_OK)
                    drop_conn(h, "query failed");
                break;
            }
            for (int i = 0; i < PQntuples(r); i++) {
                int64_t id = strtoll(PQgetvalue(r, i, 0), NULL, 10);
                if (seen_has(h, id))
                    continue;
                hchan *c = chan_get(h, PQgetvalue(r, i, 1), PQgetvalue(r, i, 2), false);
                bool tag_ok = c && (!h->have_secret || !c->tagged);
                for (size_t k = 0; c && !tag_ok && k < n; k++)
                    tag_ok = batch[k].id == id && strcmp(batch[k].tag, c->tag) == 0;
                if (!c || !tag_ok)
                    continue; /* not ours, or a wake-up with another channel's tag: no decision */
                seen_add(h, id);
                deliver_presence(h, c, PQgetvalue(r, i, 3), INT64_MAX);
            }
            PQclear(r);
        }
        h->npending -= n;
    }
    h->npending = 0; /* what a lost connection left: read by presence_replay after reconnecting */
}

/* A wake-up on 'realtime_presence': "<tag> <id>" of a realtime_presence_events row,
 * read in flush_presence. With the secret, only tags of channels served here count. */
static void on_presence_notify(pgc_hub *h, const char *payload)
{
    char tag[PGC_HUB_TAG_LEN + 1];
    int64_t id;
    if (parse_wakeup(payload, tag, &id) != 0) {
        warn_limited(h, "ignoring a malformed notification on realtime_presence");
        return;
    }
    if (!h->conn)
        return; /* the relay's, while the connection is down: presence_replay reads them */
    if (h->have_secret) {
        void *v = NULL;
        if (!lh_table_lookup_ex(h->tags, tag, &v))
            return;
    }
    if (seen_has(h, id))
        return;
    if (h->npending == h->pending_cap) {
        size_t cap = h->pending_cap ? h->pending_cap * 2 : 64;
        struct pres_pending *pp = realloc(h->pending, cap * sizeof(*pp));
        if (!pp) {
            flush_presence(h);
            if (h->npending == h->pending_cap) {
                PGC_ERROR("hub: out of memory: a presence message is not delivered");
                return;
            }
        } else {
            h->pending = pp;
            h->pending_cap = cap;
        }
    }
    h->pending[h->npending].id = id;
    memcpy(h->pending[h->npending].tag, h->have_secret ? tag : "", h->have_secret ? sizeof(tag) : 1);
    h->npending++;
}

/* After the source changed (source_switched, a reconnect in try_connect): the presence
 * rows of the channels served here written since the old source was last proven
 * (replay_from_ms, less HUB_PRESENCE_MARGIN_MS, since a row's created_at is the start
 * of its transaction, a little before the commit that notified it; and no older than
 * HUB_PRESENCE_WINDOW), in id order, HUB_PRESENCE_BATCH per query and
 * HUB_PRESENCE_REPLAY in all. One query for every channel, by pages. The rows are
 * authoritative (only the schema's functions write them): no tag is needed. A row
 * delivered already (seen) is not delivered again, and a subscription gets none written
 * before it was added. Wake-ups the new source brought meanwhile wait in libpq; they
 * then find their rows seen. */
static void presence_replay(pgc_hub *h)
{
    if (!h->conn || h->replay_from_ms == 0)
        return;
    /* the keys (tenant \x1f channel) of the channels served here, as a text[] */
    pgc_arr karr = {0};
    size_t nkeys = 0;
    struct lh_entry *e, *tmp;
    lh_foreach_safe(h->chans, e, tmp)
    {
        pgc_arr_text(&karr, ((hchan *)lh_entry_v(e))->key);
        nkeys++;
    }
    const char *keys = pgc_arr_end(&karr);
    if (!keys) {
        free(karr.p);
        PGC_ERROR("hub: out of memory: presence messages sent while the wake-up source changed are not read");
        h->replay_from_ms = 0;
        return;
    }
    int64_t from = h->replay_from_ms - HUB_PRESENCE_MARGIN_MS, last_id = 0;
    size_t total = 0, delivered = 0;
    while (nkeys > 0 && h->conn && total < HUB_PRESENCE_REPLAY) {
        char age[24], after[24], limit[16];
        snprintf(age, sizeof(age), "%" PRId64, pgc_mono_ms() - from);
        snprintf(after, sizeof(after), "%" PRId64, last_id);
        snprintf(limit, sizeof(limit), "%d", HUB_PRESENCE_BATCH);
        const char *params[4] = {age, after, keys, limit};
        /* the rows of the window by its time index (OFFSET 0 keeps the planner from
         * walking the whole table in id order instead), then sorted by id */
        PGresult *r = pgc_db_exec_prepared(
            h->conn, "pgcast_presence_replay",
            "SELECT id, tenant_id, channel, message::text, (extract(epoch FROM now() - created_at) * 1000)::bigint "
            "FROM (SELECT * FROM realtime.realtime_presence_events "
            "WHERE created_at > now() - $1::bigint * interval '1 millisecond' "
            "AND created_at > now() - interval '" HUB_PRESENCE_WINDOW "' "
            "AND tenant_id || chr(31) || channel = ANY ($3::text[]) OFFSET 0) w "
            "WHERE id > $2::bigint ORDER BY id LIMIT $4::int",
            4, params);
        if (PQresultStatus(r) != PGRES_TUPLES_OK) {
            PGC_WARN("hub: reading the presence messages of a switch of source failed: %s", PQresultErrorMessage(r));
            PQclear(r);
            if (PQstatus(h->conn) != CONNECTION_OK)
                drop_conn(h, "query failed"); /* replay_from_ms stays: read after reconnecting */
            break;
        }
        int64_t now = pgc_mono_ms();
        int n = PQntuples(r);
        for (int i = 0; i < n; i++) {
            int64_t id = strtoll(PQgetvalue(r, i, 0), NULL, 10);
            last_id = id;
            hchan *c = chan_get(h, PQgetvalue(r, i, 1), PQgetvalue(r, i, 2), false);
            if (!c || seen_has(h, id))
                continue;
            seen_add(h, id);
            deliver_presence(h, c, PQgetvalue(r, i, 3), now - strtoll(PQgetvalue(r, i, 4), NULL, 10));
            delivered++;
        }
        PQclear(r);
        total += (size_t)n;
        if (n < HUB_PRESENCE_BATCH)
            break;
    }
    if (total > 0)
        PGC_INFO("hub: presence messages of the last %" PRId64 " ms read again: %zu, %zu not delivered before",
                 pgc_mono_ms() - from, total, delivered);
    if (total >= HUB_PRESENCE_REPLAY)
        PGC_WARN("hub: more than %d presence messages written while the wake-up source changed: the later ones "
                 "are not delivered", HUB_PRESENCE_REPLAY);
    free(karr.p);
    if (h->conn)
        h->replay_from_ms = 0;
}

/* A notification, from the hub's own LISTEN or from the relay. */
static void on_notify(pgc_hub *h, const char *relname, const char *extra)
{
    if (strcmp(relname, "realtime_events") == 0)
        on_event_notify(h, extra);
    else if (strcmp(relname, "realtime_config") == 0 && strcmp(extra, "realtime_secret") == 0)
        load_secret(h);
    else if (strcmp(relname, "realtime_config") == 0)
        load_heartbeat_config(h);
    else if (strcmp(relname, "realtime_presence") == 0)
        on_presence_notify(h, extra);
}

/* Takes the notifications libpq holds, then reads the presence rows they named. Those
 * reads may bring more notifications: taken again, HUB_DRAIN_ROUNDS times at most; then
 * drain_more tells the thread not to sleep, so what is left is taken in the next turn
 * (a flood of presence wake-ups cannot hold back the log reads). */
static void drain_notifications(pgc_hub *h)
{
    h->drain_more = false;
    for (int round = 0; h->conn; round++) {
        PGnotify *n;
        while (h->conn && (n = PQnotifies(h->conn)) != NULL) {
            on_notify(h, n->relname, n->extra);
            PQfreemem(n);
        }
        if (h->npending == 0)
            break;
        if (round == HUB_DRAIN_ROUNDS) {
            h->drain_more = true;
            break;
        }
        flush_presence(h);
    }
    /* everything received up to the latest proof of the source is handled */
    if (h->conn && h->npending == 0 && (h->listening || h->relay_state == RELAY_ACTIVE))
        h->alive_ms = h->proof_ms;
}

/* ---------------------------------------------------------------- notification source
 *
 * The wake-ups come from the hub's own LISTEN, or from the host's relay (pgcast-relay,
 * relay/main.c: one LISTEN for every process of the host, forwarded over a Unix
 * socket). The relay is used once it said it listens ("L") on the same database as the
 * hub's connection; the hub then UNLISTENs. It is left when its socket closes (killed,
 * lost its own connection, dropped this process for not reading), when it does not
 * answer a barrier within HUB_RELAY_TIMEOUT_MS, or when it serves another database; the
 * hub LISTENs again at once and tries the relay every relay_retry_ms. Either switch
 * happens once the new source is confirmed listening, and is followed by one read of
 * every channel from its position (source_switched), as after a reconnect: what was
 * notified to neither source in between is read from the log, what both saw is read
 * once (positions), so a switch loses nothing and delivers nothing twice. Presence rows
 * written while wake-ups may have gone astray are read from their table
 * (presence_replay) and delivered unless seen. */

static void syncs_finish(struct cmd **head, struct cmd **tail, bool current, uint64_t upto)
{
    while (*head && (*head)->sync_id <= upto) {
        struct cmd *c = *head;
        *head = c->next;
        if (!*head)
            *tail = NULL;
        c->sync_cb(c->sync_arg, current);
        free(c);
    }
}

/* The source changed: what neither source notified is read from the log, and the
 * presence messages written meanwhile from their table. */
static void source_switched(pgc_hub *h)
{
    load_secret(h);
    load_heartbeat_config(h);
    h->wake_all = true;
    presence_replay(h);
}

static int source_listen_own(pgc_hub *h)
{
    if (!h->conn || h->listening)
        return 0;
    if (hub_exec(h, "LISTEN realtime_events; LISTEN realtime_config; LISTEN realtime_presence; "
                    "SET application_name = 'pgcast-hub'", 0, NULL) != 0)
        return -1;
    h->listening = true;
    source_started(h);
    return 0;
}

static void relay_tags_clear(pgc_hub *h);

static void relay_drop(pgc_hub *h, const char *why)
{
    if (h->relay_fd < 0)
        return;
    bool was_active = h->relay_state == RELAY_ACTIVE;
    close(h->relay_fd);
    h->relay_fd = -1;
    h->relay_state = RELAY_OFF;
    h->relay_ilen = 0;
    h->relay_ping_id = 0;
    h->relay_olen = h->relay_ooff = 0;
    relay_tags_clear(h);
    atomic_store(&h->relayed, false);
    h->next_relay_ms = pgc_mono_ms() + h->relay_retry_ms;
    syncs_finish(&h->rsync_head, &h->rsync_tail, false, UINT64_MAX);
    if (!was_active) {
        PGC_DEBUG("hub: relay at %s not used (%s)", h->relay_path, why);
        return;
    }
    PGC_WARN("hub: the relay at %s is gone (%s): listening on its own connection", h->relay_path, why);
    positions_void(h); /* wake-ups between its end and the own LISTEN were seen by no one */
    source_lost(h);
    if (h->conn) {
        if (source_listen_own(h) != 0) {
            drop_conn(h, "LISTEN failed"); /* try_connect LISTENs and reads everything */
            return;
        }
        source_switched(h);
    }
}

/* Writes what waits for the relay. -1 when the relay was dropped. */
static int relay_flush(pgc_hub *h)
{
    while (h->relay_fd >= 0 && h->relay_ooff < h->relay_olen) {
        ssize_t w = send(h->relay_fd, h->relay_out + h->relay_ooff, h->relay_olen - h->relay_ooff,
                         MSG_NOSIGNAL | MSG_DONTWAIT);
        if (w < 0) {
            if (errno == EINTR)
                continue;
            if (errno == EAGAIN || errno == EWOULDBLOCK)
                return 0;
            relay_drop(h, strerror(errno));
            return -1;
        }
        h->relay_ooff += (size_t)w;
    }
    h->relay_ooff = h->relay_olen = 0;
    return h->relay_fd >= 0 ? 0 : -1;
}

/* Queues a line for the relay (in order with every other); -1 when the relay was dropped
 * (it does not take what it is sent). */
static int relay_queue(pgc_hub *h, const char *line)
{
    if (h->relay_fd < 0)
        return -1;
    size_t len = strlen(line);
    if (h->relay_olen - h->relay_ooff + len > HUB_RELAY_OUT_MAX) {
        relay_drop(h, "it does not read");
        return -1;
    }
    if (h->relay_ooff > 0 && h->relay_olen + len > h->relay_ocap) {
        memmove(h->relay_out, h->relay_out + h->relay_ooff, h->relay_olen - h->relay_ooff);
        h->relay_olen -= h->relay_ooff;
        h->relay_ooff = 0;
    }
    if (h->relay_olen + len > h->relay_ocap) {
        size_t cap = h->relay_ocap ? h->relay_ocap : 4096;
        while (cap < h->relay_olen + len)
            cap *= 2;
        char *o = realloc(h->relay_out, cap);
        if (!o) {
            relay_drop(h, "out of memory");
            return -1;
        }
        h->relay_out = o;
        h->relay_ocap = cap;
    }
    memcpy(h->relay_out + h->relay_olen, line, len);
    h->relay_olen += len;
    return 0;
}

static int relay_send(pgc_hub *h, const char *line)
{
    return relay_queue(h, line) == 0 ? relay_flush(h) : -1;
}

static void tagwait_free(struct tagwait *w)
{
    for (size_t i = 0; i < w->n; i++)
        free(w->keys[i]);
    free(w->keys);
    free(w);
}

/* The relay wakes this process only for the channels it serves ("T <tag>"). A channel
 * tagged while a relay is connected is read once more after the relay answers the
 * barrier that follows its "T" (relay_turn_end): what was committed before the relay
 * knew the tag is then in the log, what comes after is forwarded. */
static void relay_tag(pgc_hub *h, hchan *c, bool add)
{
    if (h->relay_fd < 0)
        return;
    char line[PGC_HUB_TAG_LEN + 4];
    snprintf(line, sizeof(line), "%c %s\n", add ? 'T' : 'U', c->tag);
    if (relay_queue(h, line) != 0 || !add)
        return;
    if (h->ntagq == h->tagq_cap) {
        size_t cap = h->tagq_cap ? h->tagq_cap * 2 : 16;
        char **q = realloc(h->tagq, cap * sizeof(*q));
        if (!q) {
            h->wake_all = true; /* cannot remember it: read everything once */
            return;
        }
        h->tagq = q;
        h->tagq_cap = cap;
    }
    if ((h->tagq[h->ntagq] = strdup(c->key)) != NULL)
        h->ntagq++;
    else
        h->wake_all = true;
}

/* At the end of a turn: "A 1" while the hub has no secret (every wake-up reads every
 * channel) or was asked for every wake-up (relay_all), a barrier after the tags sent in
 * the turn, then everything is written. */
static void relay_turn_end(pgc_hub *h)
{
    if (h->relay_fd < 0)
        return;
    if (h->relay_all_sent != (h->opt.relay_all || !h->have_secret)) {
        h->relay_all_sent = h->opt.relay_all || !h->have_secret;
        if (relay_queue(h, h->relay_all_sent ? "A 1\n" : "A 0\n") != 0)
            return;
    }
    if (h->ntagq > 0) {
        struct tagwait *w = calloc(1, sizeof(*w));
        if (!w) {
            h->wake_all = true;
        } else {
            w->id = ++h->sync_next_id;
            w->keys = h->tagq;
            w->n = h->ntagq;
            char line[32];
            snprintf(line, sizeof(line), "S %" PRIu64 "\n", w->id);
            if (h->tagwait_tail)
                h->tagwait_tail->next = w;
            else
                h->tagwait_head = w;
            h->tagwait_tail = w;
            h->tagq = NULL;
            h->ntagq = h->tagq_cap = 0;
            if (relay_queue(h, line) != 0)
                return;
        }
        for (size_t i = 0; i < h->ntagq; i++)
            free(h->tagq[i]);
        h->ntagq = 0;
    }
    (void)relay_flush(h);
}

/* The relay answered barrier id: the channels tagged before it are read once more. */
static void relay_tags_done(pgc_hub *h, uint64_t id)
{
    while (h->tagwait_head && h->tagwait_head->id <= id) {
        struct tagwait *w = h->tagwait_head;
        h->tagwait_head = w->next;
        if (!h->tagwait_head)
            h->tagwait_tail = NULL;
        for (size_t i = 0; i < w->n; i++) {
            void *v = NULL;
            if (lh_table_lookup_ex(h->chans, w->keys[i], &v) && ((hchan *)v)->last >= 0)
                catchup_channel(h, v);
        }
        tagwait_free(w);
    }
}

static void relay_tags_clear(pgc_hub *h)
{
    for (size_t i = 0; i < h->ntagq; i++)
        free(h->tagq[i]);
    h->ntagq = 0;
    while (h->tagwait_head) {
        struct tagwait *w = h->tagwait_head;
        h->tagwait_head = w->next;
        tagwait_free(w);
    }
    h->tagwait_tail = NULL;
}

/* The relay listens (READY) and the hub's connection is up: use it, if it serves the
 * same database. */
static void relay_activate(pgc_hub *h)
{
    if (h->relay_state != RELAY_READY || !h->conn)
        return;
    if (!h->db_identity[0] || strcmp(h->db_identity, h->relay_identity) != 0) {
        PGC_WARN("hub: the relay at %s listens on another database: not used", h->relay_path);
        relay_drop(h, "another database");
        h->next_relay_ms = pgc_mono_ms() + HUB_RELAY_OTHER_MS;
        return;
    }
    bool was_listening = h->listening;
    if (was_listening)
        source_lost(h); /* its wake-ups end with the UNLISTEN; the relay's count once ACTIVE */
    if (hub_exec(h, was_listening ? "UNLISTEN *; SET application_name = 'pgcast-hub-relayed'"
                                  : "SET application_name = 'pgcast-hub-relayed'", 0, NULL) != 0) {
        /* not knowing what is left of the LISTEN: LISTEN again (re-read if it had gone) */
        relay_drop(h, "UNLISTEN failed");
        h->listening = false;
        if (h->conn && source_listen_own(h) != 0)
            drop_conn(h, "LISTEN failed");
        else if (h->conn)
            source_switched(h);
        return;
    }
    h->listening = false;
    h->relay_state = RELAY_ACTIVE;
    source_started(h);
    h->relay_ping_ms = pgc_mono_ms() + HUB_RELAY_PING_MS;
    atomic_store(&h->relayed, true);
    PGC_INFO("hub: wake-ups through the relay at %s", h->relay_path);
    if (was_listening)
        source_switched(h);
}

/* Just connected (try_connect): the identity of the database, then the source — the
 * relay when it is ready for this database, else an own LISTEN. 0, or -1 (drop). */
static int source_connected(pgc_hub *h)
{
    h->db_identity[0] = '\0';
    if (h->relay_path) {
        PGresult *r = PQexec(h->conn, PGC_RELAY_IDENTITY_SQL);
        if (PQresultStatus(r) == PGRES_TUPLES_OK && PQntuples(r) == 1)
            snprintf(h->db_identity, sizeof(h->db_identity), "%s", PQgetvalue(r, 0, 0));
        else
            PGC_WARN("hub: cannot tell the database's identity (%s): the relay is not used",
                     PQresultErrorMessage(r));
        PQclear(r);
        if (PQstatus(h->conn) != CONNECTION_OK)
            return -1;
    }
    if (h->relay_state == RELAY_ACTIVE)
        h->relay_state = RELAY_READY; /* still listening for us: check it again */
    relay_activate(h);
    if (h->relay_state == RELAY_ACTIVE)
        return 0;
    return source_listen_own(h);
}

static void relay_connect(pgc_hub *h)
{
    h->next_relay_ms = pgc_mono_ms() + h->relay_retry_ms;
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    if (strlen(h->relay_path) >= sizeof(sa.sun_path))
        return;
    strcpy(sa.sun_path, h->relay_path);
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return;
    if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) != 0) {
        close(fd); /* ENOENT, ECONNREFUSED: no relay here (shared hosting); EAGAIN: too busy */
        return;
    }
    h->relay_fd = fd;
    h->relay_state = RELAY_PENDING;
    h->relay_since_ms = pgc_mono_ms();
    h->relay_ilen = 0;
    /* the channels served now, then "H": its "L" comes once they are registered (the
     * switch reads every channel after it: no barrier needed for these) */
    h->relay_all_sent = h->opt.relay_all || !h->have_secret;
    if (relay_queue(h, h->relay_all_sent ? "A 1\n" : "A 0\n") != 0)
        return;
    struct lh_entry *e, *tmp;
    lh_foreach_safe(h->chans, e, tmp)
    {
        hchan *c = (hchan *)lh_entry_v(e);
        if (c->tagged) {
            char line[PGC_HUB_TAG_LEN + 4];
            snprintf(line, sizeof(line), "T %s\n", c->tag);
            if (relay_queue(h, line) != 0)
                return;
        }
    }
    (void)relay_send(h, "H\n");
}

static void relay_line(pgc_hub *h, char *line)
{
    if (line[0] == 'N' && line[1] == ' ') {
        char *sp = strchr(line + 2, ' ');
        if (!sp) {
            relay_drop(h, "a malformed line");
            return;
        }
        *sp = '\0';
        if (h->relay_state == RELAY_ACTIVE)
            on_notify(h, line + 2, sp + 1); /* before ACTIVE, the own LISTEN still counts */
    } else if (line[0] == 'S' && line[1] == ' ') {
        char *end;
        errno = 0;
        unsigned long long id = strtoull(line + 2, &end, 10);
        if (errno || *end) {
            relay_drop(h, "a malformed line");
            return;
        }
        if (h->relay_ping_id && id >= h->relay_ping_id) {
            h->relay_ping_id = 0;
            if (h->relay_state == RELAY_ACTIVE)
                h->proof_ms = h->relay_since_ms; /* the ping's sending: what came before is here */
        }
        relay_tags_done(h, id);
        syncs_finish(&h->rsync_head, &h->rsync_tail, true, id);
    } else if (line[0] == 'L' && line[1] == ' ' && h->relay_state == RELAY_PENDING) {
        char *end;
        long proto = strtol(line + 2, &end, 10);
        if (proto != PGC_RELAY_PROTOCOL || *end != ' ' || strlen(end + 1) >= sizeof(h->relay_identity)) {
            PGC_WARN("hub: the relay at %s speaks another protocol: not used", h->relay_path);
            relay_drop(h, "another protocol");
            h->next_relay_ms = pgc_mono_ms() + HUB_RELAY_OTHER_MS;
            return;
        }
        snprintf(h->relay_identity, sizeof(h->relay_identity), "%s", end + 1);
        h->relay_state = RELAY_READY;
        relay_activate(h);
    } else {
        relay_drop(h, "a malformed line");
    }
}

/* What the relay sent, up to HUB_RELAY_READ_MAX bytes a turn. */
static void relay_read(pgc_hub *h)
{
    char buf[16384];
    for (size_t total = 0; h->relay_fd >= 0 && total < HUB_RELAY_READ_MAX;) {
        ssize_t n = recv(h->relay_fd, buf, sizeof(buf), MSG_DONTWAIT);
        if (n == 0) {
            relay_drop(h, "its socket closed");
            return;
        }
        if (n < 0) {
            if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)
                relay_drop(h, strerror(errno));
            return;
        }
        total += (size_t)n;
        for (ssize_t i = 0; i < n && h->relay_fd >= 0; i++) {
            if (buf[i] == '\n') {
                h->relay_in[h->relay_ilen] = '\0';
                h->relay_ilen = 0;
                relay_line(h, h->relay_in);
            } else if (h->relay_ilen + 1 >= HUB_RELAY_LINE_MAX) {
                relay_drop(h, "a line too long");
            } else {
                h->relay_in[h->relay_ilen++] = buf[i];
            }
        }
        if ((size_t)n < sizeof(buf))
            return;
    }
}

/* Connects when due; drops a relay that does not say it listens, or does not answer. */
static void relay_timers(pgc_hub *h, int64_t now)
{
    if (!h->relay_path)
        return;
    if (h->relay_fd < 0) {
        if (now >= h->next_relay_ms)
            relay_connect(h);
        return;
    }
    if (h->relay_state == RELAY_PENDING && now - h->relay_since_ms >= HUB_RELAY_TIMEOUT_MS) {
        relay_drop(h, "it does not listen");
    } else if (h->relay_state == RELAY_ACTIVE && h->relay_ping_id && now - h->relay_since_ms >= HUB_RELAY_TIMEOUT_MS) {
        relay_drop(h, "it does not answer");
    } else if (h->relay_state == RELAY_ACTIVE && !h->relay_ping_id && now >= h->relay_ping_ms) {
        char line[32];
        h->relay_ping_id = ++h->sync_next_id;
        h->relay_since_ms = now;
        h->relay_ping_ms = now + HUB_RELAY_PING_MS;
        snprintf(line, sizeof(line), "S %" PRIu64 "\n", h->relay_ping_id);
        (void)relay_send(h, line);
    }
}

/* When the relay's timers want the thread back (INT64_MAX: never). */
static int64_t relay_due(pgc_hub *h)
{
    if (!h->relay_path)
        return INT64_MAX;
    if (h->relay_fd < 0)
        return h->next_relay_ms;
    if (h->relay_state == RELAY_PENDING || (h->relay_state == RELAY_ACTIVE && h->relay_ping_id))
        return h->relay_since_ms + HUB_RELAY_TIMEOUT_MS;
    if (h->relay_state == RELAY_ACTIVE)
        return h->relay_ping_ms;
    return INT64_MAX;
}

/* The barriers asked in this turn (pgc_hub_sync): one round trip for all of them. */
static void source_sync(pgc_hub *h)
{
    if (!h->sync_head)
        return;
    struct cmd *head = h->sync_head, *tail = h->sync_tail;
    h->sync_head = h->sync_tail = NULL;
    if (h->relay_state == RELAY_ACTIVE) {
        uint64_t id = ++h->sync_next_id;
        for (struct cmd *c = head; c; c = c->next)
            c->sync_id = id;
        char line[32];
        snprintf(line, sizeof(line), "S %" PRIu64 "\n", id);
        if (relay_send(h, line) == 0) {
            if (h->rsync_tail)
                h->rsync_tail->next = head;
            else
                h->rsync_head = head;
            h->rsync_tail = tail;
            return;
        }
        /* the relay was dropped: the own LISTEN (if any) answers */
    }
    bool current = false;
    if (h->conn && h->listening) {
        /* the answer comes after every notification committed before the query */
        current = hub_exec(h, "SELECT 1", 0, NULL) == 0;
        drain_notifications(h);
        current = current && h->conn;
        if (current)
            atomic_fetch_add_explicit(&h->st_syncs, 1, memory_order_relaxed);
    }
    for (struct cmd *c = head; c; c = c->next)
        c->sync_id = 0;
    syncs_finish(&head, &tail, current, UINT64_MAX);
}

static void try_connect(pgc_hub *h)
{
    PGconn *c = pgc_db_connect(h->conninfo, "pgcast-hub");
    if (!c) {
        h->next_connect_ms = pgc_mono_ms() + h->backoff_ms;
        h->backoff_ms = h->backoff_ms * 2 > HUB_BACKOFF_MAX_MS ? HUB_BACKOFF_MAX_MS : h->backoff_ms * 2;
        return;
    }
    h->conn = c;
    h->listening = false;
    /* the wake-ups flow (own LISTEN, or the relay's) before positions are read: nothing
     * committed after the read is missed */
    if (source_connected(h) != 0) {
        drop_conn(h, "LISTEN failed");
        return;
    }
    h->backoff_ms = HUB_BACKOFF_MIN_MS;
    atomic_store(&h->db_ok, true);
    PGC_INFO("hub: connected, wake-ups %s (instance %s)", h->listening ? "by its own LISTEN" : "through the relay",
             h->instance_id);
    h->secret_warned = false;
    load_secret(h); /* before the positions: tags for every wake-up from the LISTEN on */
    load_heartbeat_config(h);
    refresh_instance(h);
    resync_all(h);
    presence_replay(h); /* what the lost connection (or the relay meanwhile) could not bring */
    drain_notifications(h);
}

/* ---------------------------------------------------------------- commands */

static void do_add(pgc_hub *h, pgc_sub *s, const char *channel, int64_t after)
{
    hchan *c = chan_get(h, s->tenant, channel, true);
    hsub *x = c ? calloc(1, sizeof(*x)) : NULL;
    if (!x) {
        PGC_ERROR("hub: out of memory adding a subscription");
        return;
    }
    x->sub = s;
    x->ch = c;
    x->after = after;
    x->since_ms = pgc_mono_ms();
    x->cnext = c->subs;
    if (c->subs)
        c->subs->cprev = x;
    c->subs = x;
    x->snext = s->subs;
    s->subs = x;
    atomic_fetch_add(&h->st_subscriptions, 1);
    if (c->last < 0)
        init_channel(h, c); /* announces every waiting subscription */
    else
        announce(h, x);
}

static void do_remove(pgc_hub *h, pgc_sub *s, const char *channel)
{
    for (hsub **pp = &s->subs; *pp; pp = &(*pp)->snext) {
        if (strcmp((*pp)->ch->channel, channel) == 0) {
            hsub *x = *pp;
            *pp = x->snext;
            hsub_unlink(h, x);
            return;
        }
    }
}

static void do_free(pgc_hub *h, pgc_sub *s)
{
    while (s->subs) {
        hsub *x = s->subs;
        s->subs = x->snext;
        hsub_unlink(h, x);
    }
    sub_destroy(s);
}

static void do_feed(pgc_hub *h, pgc_sub *s)
{
    for (hsub *x = s->subs; x; x = x->snext)
        feed(h, x);
}

/* stopped: the thread has ended (pgc_hub_stop): only removals and frees are done. */
static void run_commands(pgc_hub *h, bool stopped)
{
    pthread_mutex_lock(&h->cmd_mu);
    struct cmd *c = h->cmd_head;
    h->cmd_head = h->cmd_tail = NULL;
    pthread_mutex_unlock(&h->cmd_mu);
    while (c) {
        struct cmd *next = c->next;
        switch (c->kind) {
        case CMD_ADD:
            if (!stopped)
                do_add(h, c->sub, c->channel, c->after);
            break;
        case CMD_REMOVE: do_remove(h, c->sub, c->channel); break;
        case CMD_FREE: do_free(h, c->sub); break;
        case CMD_FEED:
            if (!stopped)
                do_feed(h, c->sub);
            break;
        case CMD_SYNC:
            c->next = NULL;
            if (stopped) {
                c->sync_cb(c->sync_arg, false);
                free(c);
            } else {
                if (h->sync_tail)
                    h->sync_tail->next = c;
                else
                    h->sync_head = c;
                h->sync_tail = c;
            }
            c = next;
            continue;
        }
        free(c->channel);
        free(c);
        c = next;
    }
    if (!stopped)
        source_sync(h);
}

/* ---------------------------------------------------------------- the thread */

/* Once a second: a subscriber with items waiting for room in its queue (fallen behind,
 * or a catch-up) whose consumer has taken nothing for stall_ms is ended (overflow): it
 * holds its queue, never more, but a client that stopped reading must not hold it for
 * ever. Woken outside subs_mu; a subscriber freed meanwhile is marked dead first, and
 * its memory lasts until this thread runs its CMD_FREE. */
static void stall_scan(pgc_hub *h, int64_t now)
{
    h->next_stall_ms = now + 1000;
    if (h->opt.stall_ms < 0)
        return;
    pthread_mutex_lock(&h->subs_mu);
    size_t n = 0;
    pgc_sub **stalled = NULL;
    for (size_t i = 0; i < h->nall; i++) {
        pgc_sub *s = h->all[i];
        pthread_mutex_lock(&s->mu);
        bool end = s->state == PGC_SUB_OK && s->feed_when_drained && s->qlen > 0 &&
                   now - s->last_take_ms >= h->opt.stall_ms;
        if (end) {
            s->state = PGC_SUB_OVERFLOW;
            atomic_fetch_add(&h->st_overflows, 1);
            PGC_INFO("hub: a subscriber of tenant %s took nothing for %lld ms with %zu items (%zu bytes) "
                     "waiting: ended (overflow)", s->tenant, (long long)(now - s->last_take_ms), s->qlen, s->qbytes);
        }
        pthread_mutex_unlock(&s->mu);
        if (end) {
            pgc_sub **v = realloc(stalled, (n + 1) * sizeof(*v));
            if (v) {
                stalled = v;
                stalled[n++] = s;
            }
        }
    }
    pthread_mutex_unlock(&h->subs_mu);
    for (size_t i = 0; i < n; i++)
        sub_wake(stalled[i]);
    free(stalled);
}

/* At start, a relay that is there is waited for (its "L"), so that a process of a host
 * with a relay never LISTENs alone. */
static void relay_start(pgc_hub *h)
{
    if (!h->relay_path)
        return;
    relay_connect(h);
    int64_t until = pgc_mono_ms() + HUB_RELAY_START_WAIT_MS;
    while (h->relay_state == RELAY_PENDING && !atomic_load(&h->stop)) {
        int64_t now = pgc_mono_ms();
        if (now >= until)
            break;
        struct pollfd p = {h->relay_fd, (short)(POLLIN | (h->relay_olen > h->relay_ooff ? POLLOUT : 0)), 0};
        int n = poll(&p, 1, (int)(until - now));
        if (n < 0 && errno != EINTR)
            break;
        if (n > 0 && (p.revents & POLLOUT))
            (void)relay_flush(h);
        if (n > 0 && h->relay_fd >= 0 && (p.revents & ~POLLOUT))
            relay_read(h);
    }
}

static void *hub_main(void *arg)
{
    pgc_hub *h = arg;
    relay_start(h);
    while (!atomic_load(&h->stop)) {
        int64_t now = pgc_mono_ms();
        if (!h->conn && now >= h->next_connect_ms)
            try_connect(h);
        relay_timers(h, now);
        run_commands(h, false);
        if (h->conn && now >= h->next_instance_ms)
            refresh_instance(h);
        /* notifications that arrived during the queries above wait in libpq, not on the
         * socket: take them, then one turn of log work, then again */
        drain_notifications(h);
        bool more = work_turn(h);
        drain_notifications(h);
        more = more || h->drain_more || h->wake_all;
        if (now >= h->next_stall_ms)
            stall_scan(h, now);

        relay_turn_end(h); /* tags and barriers of this turn go to the relay */
        struct pollfd fds[3] = {{h->efd, POLLIN, 0},
                                {h->conn ? PQsocket(h->conn) : -1, POLLIN, 0},
                                {h->relay_fd, (short)(POLLIN | (h->relay_olen > h->relay_ooff ? POLLOUT : 0)), 0}};
        now = pgc_mono_ms();
        int64_t until = h->conn ? h->next_instance_ms : h->next_connect_ms;
        if (h->next_stall_ms < until)
            until = h->next_stall_ms;
        if (relay_due(h) < until)
            until = relay_due(h);
        int timeout = more ? 0 : until > now ? (int)(until - now) : 0;
        int n = poll(fds, 3, timeout);
        if (n < 0 && errno != EINTR) {
            PGC_ERROR("hub: poll failed: %s", strerror(errno));
            break;
        }
        if (n > 0 && (fds[0].revents & POLLIN)) {
            uint64_t v;
            ssize_t r = read(h->efd, &v, sizeof(v));
            (void)r; /* a non-blocking counter: EAGAIN just means nothing to read */
        }
        if (h->conn && n > 0 && fds[1].revents) {
            if (PQconsumeInput(h->conn) == 0)
                drop_conn(h, PQerrorMessage(h->conn));
            else
                drain_notifications(h);
        }
        if (h->relay_fd >= 0 && n > 0 && (fds[2].revents & POLLOUT))
            (void)relay_flush(h);
        if (h->relay_fd >= 0 && n > 0 && (fds[2].revents & ~POLLOUT)) {
            relay_read(h);
            drain_notifications(h); /* presence rows the relay's wake-ups named */
        }
    }
    return NULL;
}

pgc_hub *pgc_hub_start(const pgc_hub_options *opt, char *err, size_t errlen)
{
    pgc_hub *h = calloc(1, sizeof(*h));
    if (!h) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    h->opt = *opt;
    if (!h->opt.queue_events)
        h->opt.queue_events = 1024;
    if (!h->opt.queue_bytes)
        h->opt.queue_bytes = 8u << 20;
    if (!h->opt.read_bytes)
        h->opt.read_bytes = HUB_READ_BYTES;
    if (!h->opt.stall_ms)
        h->opt.stall_ms = 10000;
    h->conninfo = strdup(opt->conninfo ? opt->conninfo : "");
    h->relay_fd = -1;
    h->relay_retry_ms = opt->relay_retry_ms > 0 ? opt->relay_retry_ms : HUB_RELAY_RETRY_MS;
    if (opt->relay_socket && *opt->relay_socket) {
        h->relay_path = strdup(opt->relay_socket);
        h->relay_in = malloc(HUB_RELAY_LINE_MAX);
        if (!h->relay_path || !h->relay_in) {
            snprintf(err, errlen, "out of memory");
            free(h->relay_path);
            free(h->relay_in);
            free(h->conninfo);
            free(h);
            return NULL;
        }
    }
    h->opt.relay_socket = h->relay_path;
    h->kind = strdup(opt->kind ? opt->kind : "pgcast");
    h->chans = lh_kchar_table_new(256, chan_free_entry);
    h->tags = lh_kchar_table_new(256, NULL);
    h->efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    h->hb_default = (struct hb_entry){"default", 30000, 90000};
    if (opt->positions_max && !(h->positions = pgc_positions_new(opt->positions_max)))
        PGC_WARN("hub: no memory for tracking channel positions: conditional polls ask the database");
    h->backoff_ms = HUB_BACKOFF_MIN_MS;
    char host[64] = "";
    if (gethostname(host, sizeof(host) - 1) != 0)
        snprintf(host, sizeof(host), "host");
    unsigned rnd = (unsigned)pgc_wall_ms() ^ ((unsigned)getpid() << 16) ^ (unsigned)(uintptr_t)h;
    snprintf(h->instance_id, sizeof(h->instance_id), "%s:%d:%08x", host, (int)getpid(), rnd);
    if (!h->conninfo || !h->kind || !h->chans || !h->tags || h->efd < 0 || pthread_mutex_init(&h->cmd_mu, NULL) != 0 ||
        pthread_mutex_init(&h->subs_mu, NULL) != 0 || pthread_rwlock_init(&h->hb_lock, NULL) != 0) {
        snprintf(err, errlen, "cannot start the hub: %s", strerror(errno));
        goto fail;
    }
    h->running = true;
    if (pthread_create(&h->thread, NULL, hub_main, h) != 0) {
        snprintf(err, errlen, "cannot start the hub thread: %s", strerror(errno));
        goto fail;
    }
    live_add(h);
    return h;
fail:
    pgc_positions_free(h->positions);
    if (h->efd >= 0)
        close(h->efd);
    if (h->chans)
        lh_table_free(h->chans);
    if (h->tags)
        lh_table_free(h->tags);
    free(h->conninfo);
    free(h->kind);
    free(h->relay_path);
    free(h->relay_in);
    free(h);
    return NULL;
}

void pgc_hub_stop(pgc_hub *h)
{
    if (!h)
        return;
    pthread_mutex_lock(&h->subs_mu);
    pthread_mutex_lock(&h->cmd_mu);
    h->running = false;
    pthread_mutex_unlock(&h->cmd_mu);
    h->phase = HUB_STOPPING; /* from now on pgc_sub_free parks subscribers */
    pthread_mutex_unlock(&h->subs_mu);
    atomic_store(&h->stop, true);
    hub_signal(h);
    if (pthread_join(h->thread, NULL) != 0)
        PGC_ERROR("hub: joining the hub thread failed");
    run_commands(h, true); /* removals and frees that arrived before the stop */
    syncs_finish(&h->sync_head, &h->sync_tail, false, UINT64_MAX);
    syncs_finish(&h->rsync_head, &h->rsync_tail, false, UINT64_MAX);
    if (h->relay_fd >= 0)
        close(h->relay_fd);
    h->relay_fd = -1;
    if (h->conn) {
        const char *p[1] = {h->instance_id};
        (void)hub_exec(h, "DELETE FROM realtime.realtime_instances WHERE instance_id = $1", 1, p);
        PQfinish(h->conn);
    }
    h->conn = NULL;
    /* subscribers freed while the thread ran on: destroyed now. Subscribers still
     * registered: detach from channels, mark closed, wake; the hub's memory goes with
     * the last of them (pgc_sub_free) */
    pthread_mutex_lock(&h->subs_mu);
    while (h->parked) {
        pgc_sub *s = h->parked;
        h->parked = s->znext;
        do_free(h, s);
    }
    for (size_t i = 0; i < h->nall; i++) {
        pgc_sub *s = h->all[i];
        while (s->subs) {
            hsub *x = s->subs;
            s->subs = x->snext;
            hsub_unlink(h, x);
        }
        pthread_mutex_lock(&s->mu);
        s->state = PGC_SUB_CLOSED;
        pthread_mutex_unlock(&s->mu);
        sub_wake(s);
    }
    lh_table_free(h->chans);
    h->chans = NULL;
    lh_table_free(h->tags); /* its entries pointed into the channels */
    h->tags = NULL;
    /* from here on the last pgc_sub_free may release the hub: nothing below touches it
     * unless no subscriber is left */
    h->phase = HUB_STOPPED;
    bool last = h->nall == 0;
    pthread_mutex_unlock(&h->subs_mu);
    if (last)
        hub_release(h);
}

static void hub_release(pgc_hub *h)
{
    live_remove(h); /* no deferred signal reaches it from now on */
    free(h->all);
    free(h->batch);
    free(h->pending);
    pgc_positions_free(h->positions);
    close(h->efd);
    pthread_mutex_destroy(&h->cmd_mu);
    pthread_mutex_destroy(&h->subs_mu);
    pthread_rwlock_destroy(&h->hb_lock);
    free(h->conninfo);
    free(h->kind);
    free(h->relay_path);
    free(h->relay_in);
    free(h->relay_out);
    relay_tags_clear(h);
    free(h->tagq);
    free(h);
}

bool pgc_hub_db_ok(pgc_hub *h) { return atomic_load(&h->db_ok); }

bool pgc_hub_relayed(pgc_hub *h) { return atomic_load(&h->relayed); }

int pgc_hub_sync(pgc_hub *h, pgc_hub_sync_fn cb, void *arg)
{
    struct cmd *c = calloc(1, sizeof(*c));
    if (!c)
        return -1;
    c->kind = CMD_SYNC;
    c->sync_cb = cb;
    c->sync_arg = arg;
    pthread_mutex_lock(&h->cmd_mu);
    if (!h->running) {
        pthread_mutex_unlock(&h->cmd_mu);
        free(c);
        return -1;
    }
    enqueue_cmd(h, c);
    pthread_mutex_unlock(&h->cmd_mu);
    hub_signal(h);
    return 0;
}

const char *pgc_hub_instance_id(pgc_hub *h) { return h->instance_id; }

void pgc_hub_heartbeat(pgc_hub *h, const char *channel_type, int *interval_ms, int *timeout_ms)
{
    pthread_rwlock_rdlock(&h->hb_lock);
    struct hb_entry e = h->hb_default;
    for (int i = 0; i < h->nhb; i++) {
        if (strcmp(h->hb[i].type, channel_type) == 0) {
            e = h->hb[i];
            break;
        }
    }
    pthread_rwlock_unlock(&h->hb_lock);
    *interval_ms = e.interval_ms;
    *timeout_ms = e.timeout_ms;
}

uint64_t pgc_hub_config_generation(pgc_hub *h) { return atomic_load(&h->config_gen); }

void pgc_hub_get_stats(pgc_hub *h, pgc_hub_stats *out)
{
    pthread_mutex_lock(&h->subs_mu);
    out->subscribers = h->nall;
    pthread_mutex_unlock(&h->subs_mu);
    out->subscriptions = atomic_load(&h->st_subscriptions);
    out->events_in = atomic_load(&h->st_events_in);
    out->deliveries = atomic_load(&h->st_deliveries);
    out->overflows = atomic_load(&h->st_overflows);
    out->reconnects = atomic_load(&h->st_reconnects);
    out->lag_ms = atomic_load(&h->st_lag_ms);
    out->syncs = atomic_load(&h->st_syncs);
}

/* ---------------------------------------------------------------- positions and sync
 *
 * Positions (positions.h): the hub voids them when its LISTEN connection goes, starts a
 * new epoch once the connection listens and the secret is read on it (or the secret
 * changes), and applies every wake-up on 'realtime_events' to them.
 *
 * The sync barrier: PostgreSQL sends a listening session the notifications of every
 * transaction committed before a query of it began, before that query's result (the
 * notifying backend signals its listeners at commit, before its own client hears of the
 * commit; a listener signalled takes its queue before it reports ready). So a trivial
 * query on the LISTEN connection, then the notifications libpq took with its result:
 * everything committed before the query was sent has then been processed. Every sync
 * asked for while one runs waits for the next one, and all those share it: one round
 * trip per batch, however many ask. */

static void positions_void(pgc_hub *h)
{
    h->positions_on = false;
    pgc_positions_reset(h->positions, NULL);
}

/* The secret was read on the LISTEN connection: positions may be learnt (again). */
static void positions_listening(pgc_hub *h, const unsigned char key[PGC_HUB_SECRET_LEN])
{
    bool same = h->positions_on && h->have_secret && memcmp(key, h->secret, PGC_HUB_SECRET_LEN) == 0;
    if (same || !h->conn)
        return;
    pgc_positions_reset(h->positions, key);
    h->positions_on = true;
}

pgc_positions *pgc_hub_positions(pgc_hub *h) { return h->positions; }
