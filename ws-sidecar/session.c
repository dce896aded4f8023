/* One WebSocket connection's pgcast protocol (see session.h).
 *
 * Database calls (publish, presence) run on the loop thread through the pool: each is
 * one short statement on a warm connection. Event delivery never touches the database
 * here: the hub queues items and wakes the connection. */
#include "clock.h"
#include "session.h"

#include <json.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "channel.h"
#include "envelope.h"
#include "log.h"
#include "loop.h"
#include "message.h"

#define RATE_STRIKES 10 /* messages over the rate before the connection is closed */

typedef struct ws_chan {
    char *name;
    char **events; /* type filter; NULL = every type */
    size_t n_events;
    char *request_id; /* of the subscribe, echoed in `subscribed` */
    bool present;     /* joined presence here */
    bool announced;   /* `subscribed` sent: the hub delivers the channel's presence now */
    bool get_pending; /* presence.get asked before that: answered once announced */
    char *get_request_id;
    struct ws_chan *next;
} ws_chan;

struct ws_session {
    ws_env env;
    ws_conn *conn;
    pgc_token tok;
    char conn_id[64];
    pgc_sub *sub;
    ws_chan *chans;
    int nchans;
    double tokens; /* rate limit bucket */
    int64_t bucket_ms;
    int strikes;
    int64_t next_presence_ms;
};

static _Atomic uint64_t subscriptions;

uint64_t ws_sessions_subscriptions(void) { return atomic_load(&subscriptions); }

static void send_json(ws_session *s, struct json_object *o)
{
    size_t len;
    const char *t = json_object_to_json_string_length(o, JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE, &len);
    if (t)
        ws_conn_send(s->conn, t, len);
    json_object_put(o);
}

static void send_error(ws_session *s, const char *code, const char *message, const char *request_id)
{
    char *e = ws_error_json(code, message, request_id);
    if (e) {
        ws_conn_send(s->conn, e, strlen(e));
        free(e);
    }
}

/* {"type":T,"channel":C,...,"requestId":R} */
static struct json_object *reply(const char *type, const char *channel, const char *request_id)
{
    struct json_object *o = json_object_new_object();
    json_object_object_add(o, "type", json_object_new_string(type));
    if (channel)
        json_object_object_add(o, "channel", json_object_new_string(channel));
    if (request_id)
        json_object_object_add(o, "requestId", json_tokener_parse(request_id));
    return o;
}

static ws_chan *find_chan(ws_session *s, const char *name)
{
    for (ws_chan *c = s->chans; c; c = c->next)
        if (strcmp(c->name, name) == 0)
            return c;
    return NULL;
}

static void free_filter(ws_chan *c)
{
    for (size_t i = 0; i < c->n_events; i++)
        free(c->events[i]);
    free(c->events);
    c->events = NULL;
    c->n_events = 0;
}

static void wake(void *arg) { ws_conn_mark_ready(arg); }

ws_session *ws_session_open(const ws_env *env, ws_conn *c, pgc_token *tok, const char *connection_id)
{
    ws_session *s = calloc(1, sizeof(*s));
    if (!s)
        return NULL;
    s->env = *env;
    s->conn = c;
    s->tok = *tok;
    memset(tok, 0, sizeof(*tok));
    snprintf(s->conn_id, sizeof(s->conn_id), "%s", connection_id);
    s->tokens = env->cfg->client_rate;
    s->bucket_ms = pgc_mono_ms();
    s->sub = pgc_sub_new(env->hub, s->tok.tenant, wake, c);
    if (!s->sub) {
        pgc_token_free(&s->tok);
        free(s);
        return NULL;
    }
    int iv, to;
    ws_session_heartbeat(s, &iv, &to);
    struct json_object *o = reply("connected", NULL, NULL);
    json_object_object_add(o, "connectionId", json_object_new_string(s->conn_id));
    json_object_object_add(o, "tenant", json_object_new_string(s->tok.tenant));
    json_object_object_add(o, "heartbeatIntervalMs", json_object_new_int(iv));
    send_json(s, o);
    return s;
}

void ws_session_heartbeat(ws_session *s, int *interval_ms, int *timeout_ms)
{
    int best_iv = 0, best_to = 0;
    for (ws_chan *c = s->chans; c; c = c->next) {
        char type[PGC_CHANNEL_MAX + 1];
        int iv, to;
        pgc_channel_type(c->name, type, sizeof(type));
        pgc_hub_heartbeat(s->env.hub, type, &iv, &to);
        if (!best_iv || iv < best_iv) {
            best_iv = iv;
            best_to = to;
        }
    }
    if (!best_iv)
        pgc_hub_heartbeat(s->env.hub, "default", &best_iv, &best_to);
    *interval_ms = best_iv;
    *timeout_ms = best_to;
}

/* One statement on a pooled connection; NULL (and an error to the client) on failure. */
static PGresult *query(ws_session *s, const char *sql, int n, const char *const *params, const char *request_id)
{
    PGconn *db = pgc_db_acquire(s->env.pool, 5000);
    if (!db) {
        send_error(s, "unavailable", "the database is unreachable", request_id);
        return NULL;
    }
    PGresult *r = PQexecParams(db, sql, n, NULL, params, NULL, NULL, 0);
    if (PQresultStatus(r) != PGRES_TUPLES_OK) {
        pgc_log(PGC_LOG_WARN, s->conn_id, "query failed: %s", PQresultErrorMessage(r));
        PQclear(r);
        pgc_db_release(s->env.pool, db, PQstatus(db) != CONNECTION_OK);
        send_error(s, "internal", "the database refused the request", request_id);
        return NULL;
    }
    pgc_db_release(s->env.pool, db, false);
    return r;
}

static void do_subscribe(ws_session *s, ws_action *a)
{
    if (!pgc_token_can_subscribe(&s->tok, a->channel)) {
        send_error(s, "forbidden", "the token may not subscribe to this channel", a->request_id);
        return;
    }
    ws_chan *c = find_chan(s, a->channel);
    if (c) { /* already subscribed: new filter and position, same subscription slot */
        pgc_sub_remove(s->sub, c->name);
        atomic_fetch_sub(&subscriptions, 1);
    } else {
        if (s->nchans >= s->env.cfg->max_channels) {
            char msg[80];
            snprintf(msg, sizeof(msg), "at most %d channels per connection", s->env.cfg->max_channels);
            send_error(s, "too_many_channels", msg, a->request_id);
            return;
        }
        c = calloc(1, sizeof(*c));
        if (!c || !(c->name = strdup(a->channel))) {
            free(c);
            send_error(s, "internal", "out of memory", a->request_id);
            return;
        }
        c->next = s->chans;
        s->chans = c;
        s->nchans++;
    }
    free_filter(c);
    c->events = a->events;
    c->n_events = a->n_events;
    a->events = NULL;
    a->n_events = 0;
    free(c->request_id);
    c->request_id = a->request_id;
    a->request_id = NULL;
    c->announced = false;
    if (pgc_sub_add(s->sub, c->name, a->since) != 0) {
        send_error(s, "internal", "could not subscribe", c->request_id);
        return;
    }
    atomic_fetch_add(&subscriptions, 1);
}

static void presence_leave(ws_session *s, ws_chan *c)
{
    const char *p[3] = {s->tok.tenant, c->name, s->conn_id};
    PGresult *r = query(s, "SELECT realtime.presence_leave($1, $2, $3)", 3, p, NULL);
    PQclear(r);
    c->present = false;
}

static void drop_chan(ws_session *s, ws_chan *c)
{
    for (ws_chan **pp = &s->chans; *pp; pp = &(*pp)->next) {
        if (*pp == c) {
            *pp = c->next;
            break;
        }
    }
    s->nchans--;
    free_filter(c);
    free(c->get_request_id);
    free(c->request_id);
    free(c->name);
    free(c);
}

static void do_unsubscribe(ws_session *s, ws_action *a)
{
    ws_chan *c = find_chan(s, a->channel);
    if (!c) {
        send_error(s, "not_subscribed", "not subscribed to this channel", a->request_id);
        return;
    }
    pgc_sub_remove(s->sub, c->name);
    atomic_fetch_sub(&subscriptions, 1);
    if (c->present)
        presence_leave(s, c);
    drop_chan(s, c);
    send_json(s, reply("unsubscribed", a->channel, a->request_id));
}

static void do_publish(ws_session *s, ws_action *a)
{
    if (!pgc_token_can_publish(&s->tok, a->channel)) {
        send_error(s, "forbidden", "the token may not publish to this channel", a->request_id);
        return;
    }
    const char *p[4] = {s->tok.tenant, a->channel, a->event, a->payload ? a->payload : "{}"};
    PGresult *r = query(s, "SELECT realtime.publish($1, $2, $3, $4::jsonb)", 4, p, a->request_id);
    if (!r)
        return;
    struct json_object *o = reply("published", a->channel, NULL);
    json_object_object_add(o, "seq", json_object_new_int64(strtoll(PQgetvalue(r, 0, 0), NULL, 10)));
    if (a->request_id)
        json_object_object_add(o, "requestId", json_tokener_parse(a->request_id));
    PQclear(r);
    send_json(s, o);
}

static void presence_sync(ws_session *s, const char *channel, const char *request_id)
{
    const char *p[2] = {s->tok.tenant, channel};
    PGresult *r = query(s, "SELECT realtime.presence_members($1, $2)", 2, p, request_id);
    if (!r)
        return;
    struct json_object *o = reply("presence.sync", channel, request_id);
    struct json_object *payload = json_object_new_object();
    json_object_object_add(payload, "members", json_tokener_parse(PQgetvalue(r, 0, 0)));
    json_object_object_add(o, "payload", payload);
    PQclear(r);
    send_json(s, o);
}

static void do_presence(ws_session *s, ws_action *a)
{
    if (!pgc_token_can_subscribe(&s->tok, a->channel)) {
        send_error(s, "forbidden", "the token may not use this channel", a->request_id);
        return;
    }
    ws_chan *c = find_chan(s, a->channel);
    if (a->kind == WS_ACT_PRESENCE_GET) {
        /* Right after a subscribe the hub may not deliver the channel's presence yet: a
         * member joining between this read and then would be in neither the list nor
         * the live messages. So the list is read once the subscription is announced. */
        if (c && !c->announced) {
            c->get_pending = true;
            free(c->get_request_id);
            c->get_request_id = a->request_id;
            a->request_id = NULL;
            return;
        }
        presence_sync(s, a->channel, a->request_id);
        return;
    }
    if (!c) {
        send_error(s, "not_subscribed", "subscribe to the channel before joining its presence", a->request_id);
        return;
    }
    if (a->kind == WS_ACT_PRESENCE_LEAVE) {
        if (c->present)
            presence_leave(s, c);
        return;
    }
    const char *p[7] = {s->tok.tenant, a->channel, s->conn_id,         s->tok.sub ? s->tok.sub : s->conn_id,
                        s->tok.name,   a->payload ? a->payload : "{}", pgc_hub_instance_id(s->env.hub)};
    PGresult *r = query(s, "SELECT realtime.presence_join($1, $2, $3, $4, $5, $6::jsonb, $7)", 7, p, a->request_id);
    if (r) {
        c->present = true;
        PQclear(r);
    }
}

/* Token bucket of client_rate messages per second. */
static bool rate_ok(ws_session *s)
{
    int64_t now = pgc_mono_ms();
    double rate = s->env.cfg->client_rate;
    s->tokens += (double)(now - s->bucket_ms) * rate / 1000.0;
    if (s->tokens > rate)
        s->tokens = rate;
    s->bucket_ms = now;
    if (s->tokens >= 1.0) {
        s->tokens -= 1.0;
        return true;
    }
    return false;
}

void ws_session_on_text(ws_session *s, const char *text, size_t len)
{
    if (!rate_ok(s)) {
        if (++s->strikes >= RATE_STRIKES) {
            ws_conn_close(s->conn, 1008, "rate limit exceeded");
            return;
        }
        send_error(s, "rate_limited", "too many messages; slow down", NULL);
        return;
    }
    ws_action a;
    ws_message_parse(text, len, &a);
    switch (a.kind) {
    case WS_ACT_ERROR:
    case WS_ACT_PING: {
        char *r = ws_message_reply(&a);
        if (r) {
            ws_conn_send(s->conn, r, strlen(r));
            free(r);
        }
        break;
    }
    case WS_ACT_SUBSCRIBE: do_subscribe(s, &a); break;
    case WS_ACT_UNSUBSCRIBE: do_unsubscribe(s, &a); break;
    case WS_ACT_PUBLISH: do_publish(s, &a); break;
    case WS_ACT_PRESENCE_JOIN:
    case WS_ACT_PRESENCE_UPDATE:
    case WS_ACT_PRESENCE_LEAVE:
    case WS_ACT_PRESENCE_GET: do_presence(s, &a); break;
    }
    ws_action_free(&a);
}

static bool wanted(const ws_chan *c, const char *type)
{
    if (!c->n_events)
        return true;
    for (size_t i = 0; i < c->n_events; i++)
        if (strcmp(c->events[i], type) == 0)
            return true;
    return false;
}

void ws_session_pump(ws_session *s)
{
    pgc_event *items[64];
    size_t n;
    /* paced by the socket: the loop pumps again once the connection has drained */
    while (!ws_conn_backlogged(s->conn) && (n = pgc_sub_take(s->sub, items, 64)) > 0) {
        for (size_t i = 0; i < n; i++) {
            pgc_event *e = items[i];
            ws_chan *c = find_chan(s, e->channel);
            if (!c) {
                /* unsubscribed meanwhile */
            } else if (e->kind == PGC_ITEM_SUBSCRIBED) {
                struct json_object *o = reply("subscribed", c->name, c->request_id);
                json_object_object_add(o, "seq", json_object_new_int64(e->seq));
                send_json(s, o);
                c->announced = true;
                if (c->get_pending) {
                    c->get_pending = false;
                    presence_sync(s, c->name, c->get_request_id);
                    free(c->get_request_id);
                    c->get_request_id = NULL;
                }
            } else if (e->kind != PGC_ITEM_EVENT || wanted(c, e->type)) {
                ws_conn_send_event(s->conn, e);
            }
            pgc_event_unref(e);
        }
    }
    pgc_sub_state st = pgc_sub_get_state(s->sub);
    if (st == PGC_SUB_OVERFLOW)
        ws_conn_close(s->conn, 1008, "fell too far behind; reconnect with since to resume");
    else if (st == PGC_SUB_CLOSED)
        ws_conn_close(s->conn, 1001, "server shutting down");
}

void ws_session_tick(ws_session *s, int64_t now)
{
    if (now < s->next_presence_ms)
        return;
    int iv, to;
    ws_session_heartbeat(s, &iv, &to);
    s->next_presence_ms = now + to / 3;
    for (ws_chan *c = s->chans; c; c = c->next) {
        if (!c->present)
            continue;
        const char *p[3] = {s->tok.tenant, c->name, s->conn_id};
        PGresult *r = query(s, "SELECT realtime.presence_heartbeat($1, $2, $3)", 3, p, NULL);
        PQclear(r);
    }
}

void ws_session_close(ws_session *s)
{
    if (!s)
        return;
    pgc_sub_free(s->sub); /* no wake after this */
    while (s->chans) {
        ws_chan *c = s->chans;
        atomic_fetch_sub(&subscriptions, 1);
        if (c->present)
            presence_leave(s, c);
        drop_chan(s, c);
    }
    pgc_token_free(&s->tok);
    free(s);
}
