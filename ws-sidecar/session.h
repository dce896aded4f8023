/* The pgcast protocol of one WebSocket connection (SPEC §5) on top of the transport of
 * loop.c: its token, its hub subscriber, channel filters, presence, the client-message
 * rate limit and the heartbeat interval of its channel types. Loop thread only, except
 * the wakes of the hub and of the database workers (worker.h), which only flag the
 * connection ready. */
#ifndef PGCAST_WS_SESSION_H
#define PGCAST_WS_SESSION_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "config.h"
#include "db.h"
#include "hub.h"
#include "stats.h"
#include "token.h"
#include "worker.h"

typedef struct ws_session ws_session;
typedef struct ws_conn ws_conn;

/* What the session needs from the process. */
typedef struct ws_env {
    const pgc_config *cfg;
    pgc_hub *hub;
    pgc_db_pool *pool;
    ws_workers *workers; /* publish and presence run there */
    pgc_stats *stats;    /* a connection-stats row per connection; may be NULL */
    const pgc_verifier *verifier; /* tokens renewed in-band (auth) */
} ws_env;

/* The transport side, provided by loop.c. */
void ws_conn_send(ws_conn *c, const char *text, size_t len);
/* The same for an item of the hub: its JSON is sent from the item itself, shared with
 * every other connection it goes to (the connection holds a reference until written). */
void ws_conn_send_event(ws_conn *c, pgc_event *e);
void ws_conn_close(ws_conn *c, uint16_t code, const char *reason);
/* Called by the hub's and the workers' wakes (any thread, until ws_session_close has
 * returned): the loop will call ws_session_pump soon. */
void ws_conn_mark_ready(ws_conn *c);

/* Takes ownership of *tok. NULL on no memory. Sends the connected message. */
ws_session *ws_session_open(const ws_env *env, ws_conn *c, pgc_token *tok, const char *connection_id);
/* A complete, UTF-8-valid text message from the client. */
void ws_session_on_text(ws_session *s, const char *text, size_t len);
/* Sends the replies of finished database calls, and moves what the hub queued to the
 * client. */
void ws_session_pump(ws_session *s);
/* The server's ping interval and pong timeout for this connection now. */
void ws_session_heartbeat(ws_session *s, int *interval_ms, int *timeout_ms);
/* Once a second: presence heartbeats (queued to the workers), the stats row's. */
void ws_session_tick(ws_session *s, int64_t now_ms);
/* The connection is gone: queues its presence leaves, frees everything else (jobs still
 * queued run on, their replies dropped). No wake of the connection after this. */
void ws_session_close(ws_session *s);

/* For /metrics. */
uint64_t ws_sessions_subscriptions(void);

#endif
