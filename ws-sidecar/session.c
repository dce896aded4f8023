/* One WebSocket connection's pgcast protocol (see session.h).
 *
 * Database calls (publish, presence) never run on the loop thread: each becomes a job
 * of the connection's lane (worker.h), run by a worker on a pooled connection; its reply
 * comes back through ws_session_pump, in the order of the requests. Event delivery never
 * touches the database here: the hub queues items and wakes the connection. */
#include "clock.h"
#include "session.h"

#include <json.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "channel.h"
#include "conncap.h"
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
    bool present;     /* joined presence here (from the moment the join is queued) */
    unsigned presence_gen; /* joins and leaves queued: a failed join only undoes itself */
    bool announced;   /* `subscribed` sent: the hub delivers the channel's presence now */
    bool get_pending; /* presence.get asked before that: answered once announced */
    char *get_request_id;
    struct ws_chan *next;
} ws_chan;

/* What the jobs of a connection need to know of it; shared by them and the session,
 * freed with the last (a job may outlive its connection). */
typedef struct ws_who {
    _Atomic int refs;
    char *tenant, *conn_id, *user_id, *name, *instance_id;
    char *owner; /* the subject it acts as (presence owner, publish rate limit) */
    char rate[16], burst[16], per_owner[16], per_channel[16];
} ws_who;

struct ws_session {
    ws_env env;
    ws_conn *conn;
    pgc_token tok;
    char conn_id[64];
    pgc_sub *sub;
    ws_lane *lane; /* with who: made for the first database call (an idle connection */
    ws_who *who;   /* that never makes one pays for neither) */
    pgc_stats_conn *stat;
    const char *close_reason;
    ws_chan *chans;
    int nchans;
    double tokens; /* rate limit bucket */
    int64_t bucket_ms;
    int strikes;
    int publish_strikes;   /* publishes refused in a row by the per-subject rate limit */
    ws_cap_ticket *cap;    /* its place under the connection caps (conncap.h); may be NULL */
    int64_t next_presence_ms, next_stats_ms;
    bool heartbeat_queued; /* a presence heartbeat job is in the lane */
    bool expired;          /* the token's exp passed: closing */
};

static _Atomic uint64_t subscriptions;

uint64_t ws_sessions_subscriptions(void) { return atomic_load(&subscriptions); }

static void send_text(ws_session *s, const char *text, size_t len)
{
    ws_conn_send(s->conn, text, len);
    pgc_stats_count(s->stat, 1);
}

static void send_event(ws_session *s, pgc_event *e)
{
    ws_conn_send_event(s->conn, e);
    pgc_stats_count(s->stat, 1);
}

static void close_conn(ws_session *s, uint16_t code, const char *reason)
{
    if (!s->close_reason)
        s->close_reason = reason;
    ws_conn_close(s->conn, code, reason);
}

static void send_json(ws_session *s, struct json_object *o)
{
    size_t len;
    const char *t = json_object_to_json_string_length(o, JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE, &len);
    if (t)
        send_text(s, t, len);
    json_object_put(o);
}

static void send_error(ws_session *s, const char *code, const char *message, const char *request_id)
{
    char *e = ws_error_json(code, message, request_id);
    if (e) {
        send_text(s, e, strlen(e));
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

/* The JSON text of o (a malloc'd copy, NULL on no memory); o is released. */
static char *json_text(struct json_object *o)
{
    const char *t = json_object_to_json_string_ext(o, JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE);
    char *copy = t ? strdup(t) : NULL;
    json_object_put(o);
    return copy;
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

static void who_unref(ws_who *w)
{
    if (!w || atomic_fetch_sub(&w->refs, 1) != 1)
        return;
    free(w->tenant);
    free(w->conn_id);
    free(w->user_id);
    free(w->name);
    free(w->instance_id);
    free(w->owner);
    free(w);
}

/* owner: the connection's subject (ws_cap_subject), or NULL: then the connection itself. */
static ws_who *who_new(const pgc_token *tok, const char *conn_id, const char *instance_id, const char *owner,
                       const pgc_config *cfg)
{
    ws_who *w = calloc(1, sizeof(*w));
    if (!w)
        return NULL;
    atomic_init(&w->refs, 1);
    w->tenant = strdup(tok->tenant);
    w->conn_id = strdup(conn_id);
    w->user_id = strdup(tok->sub ? tok->sub : conn_id);
    w->name = tok->name ? strdup(tok->name) : NULL;
    w->instance_id = strdup(instance_id);
    if (owner) {
        w->owner = strdup(owner);
    } else { /* not from a handshake of main.c (no caps): the sub, or the connection */
        size_t n = strlen(tok->sub ? tok->sub : conn_id) + 6;
        if ((w->owner = malloc(n)))
            snprintf(w->owner, n, "%s%s", tok->sub ? "sub:" : "conn:", tok->sub ? tok->sub : conn_id);
    }
    snprintf(w->rate, sizeof(w->rate), "%d", cfg->publish_rate);
    snprintf(w->burst, sizeof(w->burst), "%d", cfg->publish_burst);
    snprintf(w->per_owner, sizeof(w->per_owner), "%d", cfg->presence_max_per_subject);
    snprintf(w->per_channel, sizeof(w->per_channel), "%d", cfg->presence_max_per_channel);
    if (!w->tenant || !w->conn_id || !w->user_id || (tok->name && !w->name) || !w->instance_id || !w->owner) {
        who_unref(w);
        return NULL;
    }
    return w;
}

/* ---------------------------------------------------------------- database jobs */

typedef enum job_kind {
    JOB_REPLY,     /* a reply that keeps its place behind earlier requests' replies */
    JOB_PUBLISH,
    JOB_JOIN,      /* presence.join and presence.update */
    JOB_LEAVE,     /* presence.leave, an unsubscribe of a present channel, the close */
    JOB_SYNC,      /* presence.get */
    JOB_HEARTBEAT, /* presence heartbeats of every present channel */
} job_kind;

typedef struct sjob {
    ws_job base; /* first */
    job_kind kind;
    ws_who *who;
    char *request_id; /* JSON text */
    char **chans;     /* JOB_LEAVE, JOB_HEARTBEAT: several; otherwise one */
    size_t nchans;
    char *event, *payload;
    unsigned gen;     /* JOB_JOIN: the channel's presence_gen when queued */
    bool ok;
    bool limited;     /* JOB_PUBLISH: refused by the per-subject rate limit */
    char *reply;      /* JSON text sent when the job is taken back (NULL: nothing) */
} sjob;

static void job_free(ws_job *b)
{
    sjob *j = (sjob *)b;
    who_unref(j->who);
    free(j->request_id);
    for (size_t i = 0; i < j->nchans; i++)
        free(j->chans[i]);
    free(j->chans);
    free(j->event);
    free(j->payload);
    free(j->reply);
    free(j);
}

/* The failure of a statement, as the client sees it: the database could not be reached,
 * or the connection was lost (a server that stopped, a backend that was terminated),
 * is `unavailable`; anything the database refused is `internal`. */
static const char *failure_code(PGconn *db, const PGresult *r)
{
    if (!db || PQstatus(db) != CONNECTION_OK)
        return "unavailable";
    const char *st = r ? PQresultErrorField(r, PG_DIAG_SQLSTATE) : NULL;
    if (!st) /* libpq's own: the connection broke before an answer */
        return "unavailable";
    if (strcmp(st, "PC429") == 0) /* a presence cap (sql/012) */
        return "too_many_members";
    if (strcmp(st, "PC403") == 0) /* another subject's presence entry */
        return "forbidden";
    if (strncmp(st, "08", 2) == 0    /* connection exception */
        || strncmp(st, "57P", 3) == 0 /* admin/crash shutdown, cannot connect now */
        || strcmp(st, "57014") == 0   /* cancelled (at shutdown) */
        || strncmp(st, "53", 2) == 0) /* insufficient resources (too many connections) */
        return "unavailable";
    return "internal";
}

static void job_fail(sjob *j, const char *code)
{
    free(j->reply);
    const char *msg = strcmp(code, "unavailable") == 0        ? "the database is unreachable"
                      : strcmp(code, "too_many_members") == 0 ? "too many presence members (per subject or per channel)"
                      : strcmp(code, "forbidden") == 0        ? "this presence entry belongs to another subject"
                                                              : "the database refused the request";
    j->reply = ws_error_json(code, msg, j->request_id);
    j->ok = false;
}

/* One statement; NULL on failure (with j->reply the error, when report). */
static PGresult *job_query(sjob *j, PGconn *db, const char *sql, int n, const char *const *p, bool report)
{
    if (!db) {
        if (report)
            job_fail(j, "unavailable");
        return NULL;
    }
    PGresult *r = PQexecParams(db, sql, n, NULL, p, NULL, NULL, 0);
    if (PQresultStatus(r) != PGRES_TUPLES_OK) {
        const char *code = failure_code(db, r);
        pgc_log(PGC_LOG_WARN, j->who->conn_id, "query failed (%s): %s", code, PQresultErrorMessage(r));
        PQclear(r);
        if (report)
            job_fail(j, code);
        return NULL;
    }
    return r;
}

static void run_publish(ws_job *b, PGconn *db)
{
    sjob *j = (sjob *)b;
    ws_who *w = j->who;
    const char *p[7] = {w->owner, w->rate, w->burst, w->tenant, j->chans[0], j->event, j->payload ? j->payload : "{}"};
    PGresult *r = strcmp(w->rate, "0") != 0 /* publish_rate 0: no limit, no bucket to take */
                      ? job_query(j, db,
                                  "SELECT seq, retry_after_ms FROM realtime.publish_limited($1, $2, $3, $4, $5, $6, "
                                  "$7::jsonb)",
                                  7, p, true)
                      : job_query(j, db, "SELECT realtime.publish($1, $2, $3, $4::jsonb), NULL", 4, p + 3, true);
    if (!r)
        return;
    if (PQgetisnull(r, 0, 0)) { /* the subject's publishes, on every connection and over HTTP */
        char msg[128];
        snprintf(msg, sizeof(msg), "too many publishes (at most %s a second); retry in %s ms", w->rate,
                 PQgetvalue(r, 0, 1));
        PQclear(r);
        j->reply = ws_error_json("rate_limited", msg, j->request_id);
        j->limited = true;
        return;
    }
    struct json_object *o = reply("published", j->chans[0], NULL);
    json_object_object_add(o, "seq", json_object_new_int64(strtoll(PQgetvalue(r, 0, 0), NULL, 10)));
    if (j->request_id)
        json_object_object_add(o, "requestId", json_tokener_parse(j->request_id));
    PQclear(r);
    j->reply = json_text(o);
    j->ok = true;
}

static void run_join(ws_job *b, PGconn *db)
{
    sjob *j = (sjob *)b;
    ws_who *w = j->who;
    const char *p[10] = {w->tenant,   j->chans[0], w->conn_id,     w->owner,       w->user_id,
                         w->name,     j->payload ? j->payload : "{}", w->instance_id, w->per_owner,
                         w->per_channel};
    PGresult *r = job_query(j, db, "SELECT realtime.presence_join($1, $2, $3, $4, $5, $6, $7::jsonb, $8, $9, $10)",
                            10, p, true);
    j->ok = r != NULL;
    PQclear(r);
}

/* Every channel of the job; a failure is reported for a presence.leave only (an
 * unsubscribe is answered anyway, the member expiring if the leave was lost). */
static void run_leave(ws_job *b, PGconn *db)
{
    sjob *j = (sjob *)b;
    j->ok = true;
    for (size_t i = 0; i < j->nchans; i++) {
        const char *p[4] = {j->who->tenant, j->chans[i], j->who->conn_id, j->who->owner};
        PGresult *r = job_query(j, db, "SELECT realtime.presence_leave($1, $2, $3, $4)", 4, p, !j->reply);
        j->ok = j->ok && r;
        PQclear(r);
    }
}

static void run_heartbeat(ws_job *b, PGconn *db)
{
    sjob *j = (sjob *)b;
    for (size_t i = 0; i < j->nchans; i++) {
        const char *p[4] = {j->who->tenant, j->chans[i], j->who->conn_id, j->who->owner};
        PQclear(job_query(j, db, "SELECT realtime.presence_heartbeat($1, $2, $3, $4)", 4, p, false));
    }
}

static void run_sync(ws_job *b, PGconn *db)
{
    sjob *j = (sjob *)b;
    const char *p[2] = {j->who->tenant, j->chans[0]};
    PGresult *r = job_query(j, db, "SELECT realtime.presence_members($1, $2)", 2, p, true);
    if (!r)
        return;
    struct json_object *o = reply("presence.sync", j->chans[0], j->request_id);
    struct json_object *payload = json_object_new_object();
    json_object_object_add(payload, "members", json_tokener_parse(PQgetvalue(r, 0, 0)));
    json_object_object_add(o, "payload", payload);
    PQclear(r);
    j->reply = json_text(o);
    j->ok = true;
}

/* A job of kind for s, with room for nchans channel names. NULL on no memory. */
static sjob *job_new(ws_session *s, job_kind kind, size_t nchans)
{
    static void (*const runs[])(ws_job *, PGconn *) = {
        [JOB_REPLY] = NULL,         [JOB_PUBLISH] = run_publish, [JOB_JOIN] = run_join,
        [JOB_LEAVE] = run_leave,    [JOB_SYNC] = run_sync,       [JOB_HEARTBEAT] = run_heartbeat,
    };
    if (!s->lane) {
        if (!s->who && !(s->who = who_new(&s->tok, s->conn_id, pgc_hub_instance_id(s->env.hub),
                                          s->cap ? ws_cap_subject(s->cap) : NULL, s->env.cfg)))
            return NULL;
        if (!(s->lane = ws_lane_new(s->env.workers, s->env.cfg->ws_db_pending, wake, s->conn)))
            return NULL;
    }
    sjob *j = calloc(1, sizeof(*j));
    if (!j)
        return NULL;
    if (nchans && !(j->chans = calloc(nchans, sizeof(char *)))) {
        free(j);
        return NULL;
    }
    j->base.run = runs[kind];
    j->base.free = job_free;
    j->kind = kind;
    atomic_fetch_add(&s->who->refs, 1);
    j->who = s->who;
    return j;
}

static bool job_add_chan(sjob *j, const char *name)
{
    return (j->chans[j->nchans] = strdup(name)) != NULL ? (j->nchans++, true) : false;
}

/* Queues j behind the connection's earlier requests. On failure j is freed and the client
 * told why (with request_id): too many requests of its own waiting, or too many of
 * everyone's. force: past the bounds (the caller bounds such jobs). */
static bool submit(ws_session *s, sjob *j, const char *request_id, bool force)
{
    int rc = ws_lane_submit(s->lane, &j->base, force);
    if (rc == WS_JOB_OK)
        return true;
    if (rc == WS_JOB_LANE_FULL)
        send_error(s, "rate_limited", "too many requests waiting for the database; wait for their replies",
                   request_id);
    else
        send_error(s, "unavailable", "the database is busy; try again", request_id);
    job_free(&j->base); /* (request_id may be the job's) */
    return false;
}

/* Sends the replies of the jobs that finished, in the order of the requests. */
static void deliver(ws_session *s)
{
    ws_job *b = s->lane ? ws_lane_take(s->lane) : NULL;
    while (b) {
        sjob *j = (sjob *)b;
        b = b->next;
        if (j->kind == JOB_JOIN && !j->ok) {
            ws_chan *c = find_chan(s, j->chans[0]);
            if (c && c->presence_gen == j->gen) /* nothing queued since: not a member */
                c->present = false;
        } else if (j->kind == JOB_HEARTBEAT) {
            s->heartbeat_queued = false;
        } else if (j->kind == JOB_PUBLISH && j->ok) {
            s->publish_strikes = 0;
        }
        bool too_many = j->kind == JOB_PUBLISH && j->limited && ++s->publish_strikes >= RATE_STRIKES;
        if (j->reply)
            send_text(s, j->reply, strlen(j->reply));
        job_free(&j->base);
        if (too_many) /* it went on past rate_limited: the error, then the close */
            close_conn(s, 1008, "publish rate limit exceeded");
    }
}

/* A reply (a malloc'd JSON text, taken) to a request that needs no database call: sent
 * now, or after the replies still owed to earlier requests. */
static void reply_in_order(ws_session *s, char *text)
{
    if (!text)
        return;
    if (s->lane && ws_lane_count(s->lane) > 0) {
        sjob *j = job_new(s, JOB_REPLY, 0);
        if (j) {
            j->reply = text;
            if (ws_lane_submit(s->lane, &j->base, false) == WS_JOB_OK)
                return;
            j->reply = NULL;
            job_free(&j->base);
        }
    }
    send_text(s, text, strlen(text)); /* (a connection at its bound gets it out of order) */
    free(text);
}

static void error_in_order(ws_session *s, const char *code, const char *message, const char *request_id)
{
    reply_in_order(s, ws_error_json(code, message, request_id));
}

/* ---------------------------------------------------------------- session */

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
    s->cap = ws_caps_claim(s->tok.tenant); /* parked by the handshake (conncap.h) */
    s->tokens = env->cfg->client_rate;
    s->bucket_ms = pgc_mono_ms();
    s->sub = pgc_sub_new(env->hub, s->tok.tenant, wake, c);
    if (!s->sub) {
        pgc_token_free(&s->tok);
        free(s);
        return NULL;
    }
    if (env->stats) /* NULL on no memory: the connection goes on without its row */
        s->stat = pgc_stats_open(env->stats, s->conn_id, s->tok.tenant, s->tok.sub, "websocket", NULL, NULL);
    int iv, to;
    ws_session_heartbeat(s, &iv, &to);
    s->next_stats_ms = pgc_mono_ms() + iv;
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

/* Leaves presence in c (queued behind the connection's earlier requests). Without force
 * it is refused when the connection has ws_db_pending requests waiting (the caller then
 * does nothing), never for the size of the shared queue: there is at most one per join
 * that was accepted. reply_text (taken): sent when it is done; false: refused (told). */
static bool queue_leave(ws_session *s, ws_chan *c, char *reply_text, const char *request_id, bool force)
{
    sjob *j = job_new(s, JOB_LEAVE, 1);
    if (!j || !job_add_chan(j, c->name)) {
        if (j)
            job_free(&j->base);
        free(reply_text);
        send_error(s, "internal", "out of memory", request_id);
        return false;
    }
    j->reply = reply_text;
    if (!reply_text && request_id && !(j->request_id = strdup(request_id))) {
        job_free(&j->base);
        send_error(s, "internal", "out of memory", request_id);
        return false;
    }
    int rc = ws_lane_submit(s->lane, &j->base, force);
    if (rc == WS_JOB_BUSY)
        rc = ws_lane_submit(s->lane, &j->base, true);
    if (rc != WS_JOB_OK) {
        job_free(&j->base);
        send_error(s, "rate_limited", "too many requests waiting for the database; wait for their replies",
                   request_id);
        return false;
    }
    c->present = false;
    c->presence_gen++;
    return true;
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

/* A channel is in s->chans exactly while it counts in `subscriptions`. */
static void do_subscribe(ws_session *s, ws_action *a)
{
    if (!pgc_token_can_subscribe(&s->tok, a->channel)) {
        error_in_order(s, "forbidden", "the token may not subscribe to this channel", a->request_id);
        return;
    }
    ws_chan *c = find_chan(s, a->channel);
    if (c) { /* already subscribed: new filter and position, same subscription slot */
        pgc_sub_remove(s->sub, c->name);
    } else {
        if (s->nchans >= s->env.cfg->max_channels) {
            char msg[80];
            snprintf(msg, sizeof(msg), "at most %d channels per connection", s->env.cfg->max_channels);
            error_in_order(s, "too_many_channels", msg, a->request_id);
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
        atomic_fetch_add(&subscriptions, 1);
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
        /* not subscribed, even if it was before */
        error_in_order(s, "internal", "could not subscribe", c->request_id);
        if (c->present)
            (void)queue_leave(s, c, NULL, NULL, true);
        atomic_fetch_sub(&subscriptions, 1);
        drop_chan(s, c);
    }
}

static void do_unsubscribe(ws_session *s, ws_action *a)
{
    ws_chan *c = find_chan(s, a->channel);
    if (!c) {
        error_in_order(s, "not_subscribed", "not subscribed to this channel", a->request_id);
        return;
    }
    struct json_object *o = reply("unsubscribed", a->channel, a->request_id);
    if (c->present) {
        /* answered once the leave is done; refused (still subscribed) when the
         * connection has too many requests waiting */
        char *text = json_text(o);
        if (!text) {
            send_error(s, "internal", "out of memory", a->request_id);
            return;
        }
        if (!queue_leave(s, c, text, a->request_id, false))
            return;
        o = NULL;
    }
    pgc_sub_remove(s->sub, c->name);
    atomic_fetch_sub(&subscriptions, 1);
    drop_chan(s, c);
    if (o)
        reply_in_order(s, json_text(o));
}

static void do_publish(ws_session *s, ws_action *a)
{
    if (!pgc_token_can_publish(&s->tok, a->channel)) {
        error_in_order(s, "forbidden", "the token may not publish to this channel", a->request_id);
        return;
    }
    sjob *j = job_new(s, JOB_PUBLISH, 1);
    if (!j || !job_add_chan(j, a->channel)) {
        if (j)
            job_free(&j->base);
        send_error(s, "internal", "out of memory", a->request_id);
        return;
    }
    j->event = a->event;
    j->payload = a->payload;
    j->request_id = a->request_id;
    a->event = a->payload = NULL;
    a->request_id = NULL;
    (void)submit(s, j, j->request_id, false);
}

/* presence.get's answer, queued (request_id is copied). */
static void presence_sync(ws_session *s, const char *channel, const char *request_id)
{
    sjob *j = job_new(s, JOB_SYNC, 1);
    if (!j || !job_add_chan(j, channel) || (request_id && !(j->request_id = strdup(request_id)))) {
        if (j)
            job_free(&j->base);
        send_error(s, "internal", "out of memory", request_id);
        return;
    }
    (void)submit(s, j, request_id, false);
}

static void do_presence(ws_session *s, ws_action *a)
{
    if (!pgc_token_can_subscribe(&s->tok, a->channel)) {
        error_in_order(s, "forbidden", "the token may not use this channel", a->request_id);
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
        error_in_order(s, "not_subscribed", "subscribe to the channel before joining its presence", a->request_id);
        return;
    }
    if (a->kind == WS_ACT_PRESENCE_LEAVE) {
        if (c->present)
            (void)queue_leave(s, c, NULL, a->request_id, false);
        return;
    }
    sjob *j = job_new(s, JOB_JOIN, 1);
    if (!j || !job_add_chan(j, a->channel)) {
        if (j)
            job_free(&j->base);
        send_error(s, "internal", "out of memory", a->request_id);
        return;
    }
    j->payload = a->payload;
    j->request_id = a->request_id;
    a->payload = NULL;
    a->request_id = NULL;
    j->gen = c->presence_gen + 1;
    if (submit(s, j, j->request_id, false)) {
        /* a member from now on: a leave or a close after this is queued behind it */
        c->present = true;
        c->presence_gen++;
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

/* {"type":"auth","token":T}: a fresh token for the same tenant and sub, before the
 * current one expires (SPEC §3). It must still allow every channel subscribed now; its
 * patterns apply from here on. A refused renewal leaves the current token in force. */
static void do_auth(ws_session *s, ws_action *a)
{
    pgc_token t;
    pgc_token_status st = pgc_token_verify(s->env.verifier, a->token, (int64_t)time(NULL), &t);
    if (st != PGC_TOKEN_OK) {
        error_in_order(s, "invalid_token", pgc_token_status_str(st), a->request_id);
        return;
    }
    bool same = strcmp(t.tenant, s->tok.tenant) == 0 &&
                ((!t.sub && !s->tok.sub) || (t.sub && s->tok.sub && strcmp(t.sub, s->tok.sub) == 0));
    const char *why = same ? NULL : "the new token must have the same tenant and sub";
    for (ws_chan *c = s->chans; !why && c; c = c->next)
        if (!pgc_token_can_subscribe(&t, c->name))
            why = "the new token does not allow every subscribed channel; unsubscribe first";
    if (why) {
        pgc_token_free(&t);
        error_in_order(s, "forbidden", why, a->request_id);
        return;
    }
    pgc_token_free(&s->tok);
    s->tok = t;
    struct json_object *o = reply("authed", NULL, a->request_id);
    json_object_object_add(o, "exp", json_object_new_int64(s->tok.exp));
    reply_in_order(s, json_text(o)); /* (json_text releases o) */
}

void ws_session_on_text(ws_session *s, const char *text, size_t len)
{
    if (!rate_ok(s)) {
        if (++s->strikes >= RATE_STRIKES) {
            close_conn(s, 1008, "rate limit exceeded");
            return;
        }
        send_error(s, "rate_limited", "too many messages; slow down", NULL);
        return;
    }
    deliver(s); /* what finished first: fewer replies to hold back behind the lane */
    ws_action a;
    ws_message_parse(text, len, s->env.cfg->max_payload_bytes, &a);
    switch (a.kind) {
    case WS_ACT_ERROR: reply_in_order(s, ws_message_reply(&a)); break;
    case WS_ACT_PING: { /* answered at once, whatever waits */
        char *r = ws_message_reply(&a);
        if (r) {
            send_text(s, r, strlen(r));
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
    case WS_ACT_AUTH: do_auth(s, &a); break;
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
    deliver(s);
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
                send_event(s, e);
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

/* A job with every present channel of s (NULL when there is none). */
static sjob *present_job(ws_session *s, job_kind kind)
{
    size_t n = 0;
    for (ws_chan *c = s->chans; c; c = c->next)
        n += c->present;
    if (!n)
        return NULL;
    sjob *j = job_new(s, kind, n);
    for (ws_chan *c = s->chans; j && c; c = c->next) {
        if (c->present && !job_add_chan(j, c->name)) {
            job_free(&j->base);
            j = NULL;
        }
    }
    if (!j)
        pgc_log(PGC_LOG_WARN, s->conn_id, "out of memory for presence");
    return j;
}

void ws_session_tick(ws_session *s, int64_t now)
{
    int iv, to;
    if (!s->expired && s->tok.exp && (int64_t)time(NULL) >= s->tok.exp) {
        s->expired = true; /* SPEC §3: every transport ends at exp, with this reason */
        send_error(s, "token_expired", "the token expired; renew it with auth before exp, or reconnect", NULL);
        close_conn(s, 1008, "token expired");
        return;
    }
    if (now >= s->next_stats_ms) {
        ws_session_heartbeat(s, &iv, &to);
        pgc_stats_heartbeat(s->stat);
        s->next_stats_ms = now + iv;
    }
    if (now < s->next_presence_ms || s->heartbeat_queued)
        return;
    ws_session_heartbeat(s, &iv, &to);
    s->next_presence_ms = now + to / 3;
    /* At most one in the lane: past the bounds, so a client's own requests never
     * starve its presence (a stalled database delays it like any other job). */
    sjob *j = present_job(s, JOB_HEARTBEAT);
    if (!j)
        return;
    if (ws_lane_submit(s->lane, &j->base, true) == WS_JOB_OK)
        s->heartbeat_queued = true;
    else
        job_free(&j->base);
}

void ws_session_close(ws_session *s)
{
    if (!s)
        return;
    pgc_sub_free(s->sub); /* no wake after this */
    /* the leave of every present channel, after what the connection asked before */
    sjob *j = present_job(s, JOB_LEAVE);
    if (j && ws_lane_submit(s->lane, &j->base, true) != WS_JOB_OK) {
        pgc_log(PGC_LOG_WARN, s->conn_id, "shutting down: its presence members expire instead of leaving");
        job_free(&j->base);
    }
    ws_lane_close(s->lane); /* no wake after this either; its jobs run on */
    while (s->chans) {
        atomic_fetch_sub(&subscriptions, 1);
        drop_chan(s, s->chans);
    }
    pgc_stats_close(s->stat, s->close_reason ? s->close_reason : "closed");
    who_unref(s->who);
    ws_caps_release(s->cap);
    pgc_token_free(&s->tok);
    free(s);
}
