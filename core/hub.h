/* The hub: per process, ONE connection to PostgreSQL (LISTENing on it, or taking the
 * wake-ups from the host's pgcast-relay: relay_socket) and one thread that fans
 * every committed event out, in memory, to the local subscribers of its
 * (tenant, channel). NOTIFY is only a wake-up and carries nothing readable: an opaque
 * tag of the channel (keyed by realtime.realtime_secret) and a number. On a wake-up,
 * a jump or a reconnect the hub reads the log (realtime.read), one read per tenant for
 * all its channels waiting, never one query per subscriber; every envelope is built
 * from the row read, never from the notification.
 *
 * A subscriber is one client connection (an SSE stream, a long-poll, a WebSocket) with
 * any number of channels of one tenant and ONE bounded queue of items. The hub thread
 * appends; the connection's own thread (or event loop) takes. When the queue is full
 * the subscriber is marked overflowed and gets nothing more: its connection ends with
 * a reason and the client resumes from its cursor. Nothing blocks the hub. */
#ifndef PGCAST_HUB_H
#define PGCAST_HUB_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef enum pgc_item_kind {
    PGC_ITEM_EVENT = 0,   /* an event: json is its envelope (SPEC §2) */
    PGC_ITEM_GAP,         /* retention dropped seq..gap_to: json is the gap message */
    PGC_ITEM_SUBSCRIBED,  /* answer to pgc_sub_add: seq = the channel's current seq; json NULL */
    PGC_ITEM_EPHEMERAL,   /* a message that is not in the log (presence): json as sent */
} pgc_item_kind;

/* Immutable once queued; shared by every subscriber it went to (reference counted). */
typedef struct pgc_event {
    atomic_int refs;
    pgc_item_kind kind;
    int64_t seq;      /* EVENT: its seq; GAP: first missing; SUBSCRIBED: current seq */
    int64_t gap_to;   /* GAP: last missing */
    int64_t ts_ms;    /* EVENT: publish time */
    const char *tenant;
    const char *channel;
    const char *type; /* EVENT: event type; EPHEMERAL: message type; else NULL */
    const char *json; /* the bytes to send (NUL-terminated); NULL for SUBSCRIBED */
    size_t json_len;
} pgc_event;

void pgc_event_ref(pgc_event *e);
void pgc_event_unref(pgc_event *e);

/* Builds an EVENT item (envelope via envelope.h); refs = 1. NULL on allocation failure. */
pgc_event *pgc_event_new_event(const char *tenant, const char *channel, int64_t seq, const char *type,
                               const char *payload_json, size_t payload_len, int64_t ts_ms);
pgc_event *pgc_event_new_gap(const char *tenant, const char *channel, int64_t from, int64_t to);
pgc_event *pgc_event_new_subscribed(const char *tenant, const char *channel, int64_t seq);
/* json is copied; type may be NULL. */
pgc_event *pgc_event_new_ephemeral(const char *tenant, const char *channel, const char *type, const char *json,
                                   size_t len);

typedef struct pgc_hub pgc_hub;
typedef struct pgc_sub pgc_sub;

#define PGC_HUB_SECRET_LEN 32 /* bytes of realtime.realtime_secret */
#define PGC_HUB_TAG_LEN 32    /* hex digits of a wake-up tag */

/* A channel's wake-up tag, as realtime.channel_tag computes it (sql/011): lowercase hex
 * of the first 16 bytes of sha256(secret || tenant || 0x1f || channel). out gets
 * PGC_HUB_TAG_LEN digits and a NUL. 0, or -1 when the digest fails. */
int pgc_hub_channel_tag(const unsigned char secret[PGC_HUB_SECRET_LEN], const char *tenant, const char *channel,
                        char out[PGC_HUB_TAG_LEN + 1]);

typedef struct pgc_hub_options {
    const char *conninfo;     /* libpq conninfo; "" = PG* variables */
    const char *kind;         /* "sse" | "poll" | "ws": recorded in realtime_instances */
    size_t queue_events;      /* per-subscriber queue bound, items (default 1024) */
    size_t queue_bytes;       /* per-subscriber queue bound, bytes (default 8 MiB) */
    size_t read_bytes;        /* payload bytes per log read (default 1 MiB; one event at least) */
    /* A subscriber whose queue is full is not ended: what does not fit stays in the log
     * and is fed to it as it drains. Only one that has taken nothing for stall_ms while
     * items wait for room is ended (PGC_SUB_OVERFLOW). 0: the default, 10 s; < 0: ended
     * as soon as a live item finds its queue full. */
    int stall_ms;
    /* Where the wake-ups come from. relay_socket: the Unix socket of the host's relay
     * (pgcast-relay, one LISTEN for every process of the host); NULL or "" = none, the
     * hub LISTENs on its own connection. With a relay the hub still LISTENs on its own
     * connection whenever the relay is not there (not running, killed, or serving
     * another database) and tries it again every relay_retry_ms (default 2000). A switch
     * either way re-reads every channel from its position once the new source is
     * confirmed listening, so it loses nothing and delivers nothing twice. */
    const char *relay_socket;
    int relay_retry_ms;
    /* Through the relay a process is woken only for the channels it has subscribers on
     * (the relay filters by tag). true: every wake-up, as with an own LISTEN (for a
     * process that follows positions of channels it has no subscriber on). */
    bool relay_all;
    /* Channel positions tracked from the wake-ups for conditional polls (positions.h):
     * at most this many channels; 0: not tracked. */
    size_t positions_max;
} pgc_hub_options;

/* Starts the hub thread; it connects (and reconnects, with backoff) by itself, so this
 * succeeds while the database is down. NULL only on a bad option or no memory. */
pgc_hub *pgc_hub_start(const pgc_hub_options *opt, char *err, size_t errlen);
/* Ends the thread and the connection. Subscribers still registered are woken with
 * state PGC_SUB_CLOSED; they must still be freed (the hub's memory goes with the last).
 * pgc_sub_free may run concurrently with it, from any thread. */
void pgc_hub_stop(pgc_hub *hub);

/* Whether the hub's database connection is up right now. */
bool pgc_hub_db_ok(pgc_hub *hub);
/* Whether the wake-ups come through the host's relay right now (else: own LISTEN). */
bool pgc_hub_relayed(pgc_hub *hub);

/* A barrier on the wake-ups: cb(arg, true) runs once every notification committed before
 * the call has reached the hub and been taken into account (on_event_notify and the
 * like) — through the relay, every notification of the channels the hub serves (those
 * with subscribers), or of all channels with relay_all. With its own LISTEN the hub runs
 * one round trip (SELECT 1) on that connection;
 * through the relay it asks the relay, which does the round trip on its LISTEN
 * connection and answers after forwarding every notification received before it. Calls
 * that meet in one turn share one round trip. cb(arg, false): the barrier could not be
 * had (no connection, the source is switching, the hub is stopping): the caller must
 * read the database itself. cb runs on the hub thread, exactly once, with the same rules
 * as a wake function (quick, no blocking, no call into the hub). Returns 0, or -1 (cb
 * will not run) when the hub is stopping or out of memory. */
typedef void (*pgc_hub_sync_fn)(void *arg, bool current);
int pgc_hub_sync(pgc_hub *hub, pgc_hub_sync_fn cb, void *arg);

/* The identity of a database as the relay and the hub both compute it: a process takes
 * its wake-ups from a relay only when the relay's LISTEN is on the same database
 * (same cluster, port and database name). */
#define PGC_RELAY_IDENTITY_SQL                                                                                   \
    "SELECT md5(current_database() || '/' || current_setting('port') || '/' || "                                 \
    "extract(epoch from pg_postmaster_start_time())::text)"
#define PGC_RELAY_PROTOCOL 1
/* This process's id in realtime_instances / connection stats. */
const char *pgc_hub_instance_id(pgc_hub *hub);

/* realtime_heartbeat_config as cached by the hub (the 'default' row for unknown types;
 * 30000/90000 before the first load). Reloaded within a second of any change. */
void pgc_hub_heartbeat(pgc_hub *hub, const char *channel_type, int *interval_ms, int *timeout_ms);
/* Increases each time the cached config changes; every subscriber is also woken then. */
uint64_t pgc_hub_config_generation(pgc_hub *hub);

typedef struct pgc_hub_stats {
    uint64_t subscribers, subscriptions;
    uint64_t events_in;     /* events the hub received (notified or read from the log) */
    uint64_t deliveries;    /* items queued to subscribers */
    uint64_t overflows;     /* subscribers ended by a full queue */
    uint64_t reconnects;    /* database reconnects */
    int64_t lag_ms;         /* now - publish time of the last live event, when it arrived */
    uint64_t syncs;         /* sync barriers run (pgc_hub_sync), each for a batch of callers */
} pgc_hub_stats;
void pgc_hub_get_stats(pgc_hub *hub, pgc_hub_stats *out);

/* ---- positions and the sync barrier ---- */

struct pgc_positions;
/* The positions the hub keeps current from its wake-ups (positions.h); NULL when
 * positions_max was 0. */
struct pgc_positions *pgc_hub_positions(pgc_hub *hub);
/* They are current for a request once a barrier (pgc_hub_sync, above) asked after it
 * arrived has passed. */

/* ---- subscribers ---- */

/* Called on the hub thread when the subscriber's queue went from empty to non-empty or
 * its state changed (overflow, config change, hub stopping). Must be quick, must not
 * block and must not call into the hub: signal a condition variable, write an eventfd.
 * After a wake the consumer takes until pgc_sub_take returns 0. Do not call
 * pgc_sub_free while holding a lock that the wake function takes. */
typedef void (*pgc_wake_fn)(void *arg);

typedef enum pgc_sub_state {
    PGC_SUB_OK = 0,
    PGC_SUB_OVERFLOW, /* queue overflowed: take what is queued, then end the connection */
    PGC_SUB_CLOSED,   /* the hub is stopping */
} pgc_sub_state;

pgc_sub *pgc_sub_new(pgc_hub *hub, const char *tenant, pgc_wake_fn wake, void *arg);

/* Subscribes to a channel. after >= 0: every event with seq > after, first from the log
 * then live, with no gap and no duplicate at the seam (a GAP item first if retention
 * dropped some). after < 0: only events published from now on. Either way a SUBSCRIBED
 * item with the channel's current seq comes before the channel's first event. Catch-up
 * is fed from the log as the queue drains, to half the queue (events and bytes) at most,
 * so the live events that follow it have room; it never overflows the queue and is read
 * in bounded steps taken in turn with everything else the hub does.
 * Returns 0, -1 when already subscribed or out of memory. Asynchronous: items follow. */
int pgc_sub_add(pgc_sub *s, const char *channel, int64_t after);
/* Stops the channel: no item of it is queued after this returns. 0, or -1 if absent. */
int pgc_sub_remove(pgc_sub *s, const char *channel);

/* Takes up to max queued items, oldest first; the caller unrefs each. */
size_t pgc_sub_take(pgc_sub *s, pgc_event **items, size_t max);
pgc_sub_state pgc_sub_get_state(pgc_sub *s);
/* Unregisters and frees; queued items are released. Safe from any thread; once it
 * returns, wake is never called again for this subscriber. */
void pgc_sub_free(pgc_sub *s);

/* On: what this thread sends the hub from now on (pgc_sub_add, _remove, _take's feed,
 * _free) is queued at once, but the hub thread is woken only at pgc_hub_flush_signals:
 * a thread that ends thousands of subscribers in one batch (the stream loop in one
 * turn) wakes the hub once. Off: flushes, then signals at once again. Per thread. */
void pgc_hub_defer_signals(bool on);
/* Wakes the hubs this thread deferred signals for (any that has been released since is
 * skipped). */
void pgc_hub_flush_signals(void);

#endif
