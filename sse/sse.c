/*
 * pgcast-sse.fcgi: GET {prefix}/sse — Server-Sent Events (SPEC §4).
 *
 * FastCGI: each stream is a hub subscriber; the hub wakes the stream's eventfd when
 * events are queued. Plain CGI: a process per stream must not hold a LISTEN connection
 * (every listener slows every NOTIFY), so a CGI stream reads the log by position every
 * cgi_poll_interval_ms on one ordinary connection: events arrive up to that late, and
 * each stream costs one indexed query per interval — fine for the tens of streams a
 * shared-hosting site has, not for thousands (use FastCGI for those).
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <time.h>
#include <unistd.h>

#include "clock.h"
#include "app.h"
#include "channel.h"
#include "cursor.h"
#include "envelope.h"
#include "log.h"
#include "server.h"

static const char usage[] =
    "usage: pgcast-sse.fcgi [--listen PATH|HOST:PORT]\n"
    "\n"
    "pgcast's Server-Sent Events handler: GET {prefix}/sse?channel=C[&channel=D][&since=CURSOR][&token=T]\n"
    "\n"
    "Runs as FastCGI on the socket the web server passes (lighttpd bin-path, Apache mod_fcgid),\n"
    "as FastCGI on a socket of its own with --listen (spawn-fcgi, Apache mod_proxy_fcgi), or as\n"
    "plain CGI (one request per process) when started by a web server's CGI module.\n"
    "\n"
    "Configuration: the file named by PGCAST_CONFIG and PGCAST_* variables\n"
    "(see pgcast.conf.example). SIGTERM ends every stream and the process.\n";

#define TAKE_BATCH 64

typedef struct stream {
    pgc_app *app;
    pgc_request *r;
    pgc_token tok;
    char **chans;
    int nchans;
    pgc_cursor cur;
    int announced; /* channels whose SUBSCRIBED arrived (hub mode) */
    int efd;
    int hb_ms;
    uint64_t cfg_gen;
    long sent;
    pgc_stats_conn *stat;
} stream;

/* "id: <cursor>\ndata: <json>\n\n" for items with a position, "data: ...\n\n" otherwise. */
static int write_item(stream *s, const pgc_event *e)
{
    if (e->kind == PGC_ITEM_SUBSCRIBED)
        return 0;
    if (e->kind == PGC_ITEM_EPHEMERAL)
        return pgc_req_printf(s->r, "data: %s\n\n", e->json);
    if (pgc_cursor_set(&s->cur, e->channel, e->kind == PGC_ITEM_GAP ? e->gap_to : e->seq) != 0)
        return -1;
    char *id = pgc_cursor_format(&s->cur);
    if (!id)
        return -1;
    int rc = pgc_req_printf(s->r, "id: %s\ndata: ", id);
    free(id);
    if (rc == 0)
        rc = pgc_req_write(s->r, e->json, e->json_len);
    if (rc == 0)
        rc = pgc_req_write(s->r, "\n\n", 2);
    s->sent++;
    if (s->stat)
        pgc_stats_count(s->stat, 1);
    return rc;
}

static int write_heartbeat(stream *s)
{
    size_t len;
    char *hb = pgc_envelope_heartbeat(pgc_wall_ms(), &len);
    int rc = hb ? pgc_req_printf(s->r, "data: %s\n\n", hb) : -1;
    free(hb);
    if (s->stat)
        pgc_stats_heartbeat(s->stat);
    return rc == 0 ? pgc_req_flush(s->r) : -1;
}

/* A last message before the server ends the stream (the client reconnects). */
static void write_end(stream *s, const char *code, const char *message)
{
    size_t len;
    char *body = pgc_envelope_error(code, message, NULL, &len);
    if (body)
        pgc_req_printf(s->r, "data: %s\n\n", body);
    free(body);
    pgc_req_flush(s->r);
}

/* The smallest heartbeat interval of the stream's channel types. */
static int heartbeat_ms(stream *s)
{
    int best = 0;
    for (int i = 0; i < s->nchans; i++) {
        char type[PGC_CHANNEL_MAX + 1];
        int iv, to;
        pgc_channel_type(s->chans[i], type, sizeof(type));
        pgc_hub_heartbeat(s->app->hub, type, &iv, &to);
        if (!best || iv < best)
            best = iv;
    }
    return best ? best : 30000;
}

/* Until every channel is announced, events wait in `held` so that the first id: line
 * already names every channel's position. */
struct held {
    pgc_event **v;
    size_t n, cap;
};

static int hold(struct held *h, pgc_event *e)
{
    if (h->n == h->cap) {
        size_t cap = h->cap ? h->cap * 2 : 64;
        pgc_event **v = realloc(h->v, cap * sizeof(*v));
        if (!v)
            return -1;
        h->v = v;
        h->cap = cap;
    }
    h->v[h->n++] = e;
    return 0;
}

/* Takes what the hub queued and writes it. -1 when the client is gone. */
static int pump(stream *s, pgc_sub *sub, struct held *held)
{
    pgc_event *items[TAKE_BATCH];
    size_t n;
    int rc = 0;
    while (rc == 0 && (n = pgc_sub_take(sub, items, TAKE_BATCH)) > 0) {
        for (size_t i = 0; i < n; i++) {
            pgc_event *e = items[i];
            if (rc == 0 && e->kind == PGC_ITEM_SUBSCRIBED) {
                if (pgc_cursor_get(&s->cur, e->channel) < 0)
                    rc = pgc_cursor_set(&s->cur, e->channel, e->seq);
                if (++s->announced == s->nchans) {
                    for (size_t k = 0; k < held->n; k++) {
                        if (rc == 0)
                            rc = write_item(s, held->v[k]);
                        pgc_event_unref(held->v[k]);
                    }
                    held->n = 0;
                }
            } else if (rc == 0 && s->announced < s->nchans) {
                if (hold(held, e) == 0)
                    continue; /* keeps the reference */
                rc = -1;
            } else if (rc == 0) {
                rc = write_item(s, e);
            }
            pgc_event_unref(e);
        }
    }
    return rc == 0 ? pgc_req_flush(s->r) : -1;
}

static const char *run_hub_stream(stream *s, int64_t deadline, int64_t token_end)
{
    s->efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    pgc_sub *sub = s->efd >= 0 ? pgc_sub_new(s->app->hub, s->tok.tenant, pgc_wake_eventfd, &s->efd) : NULL;
    if (!sub) {
        if (s->efd >= 0)
            close(s->efd);
        return "out of resources";
    }
    for (int i = 0; i < s->nchans; i++)
        pgc_sub_add(sub, s->chans[i], pgc_cursor_get(&s->cur, s->chans[i]));
    struct held held = {0};
    s->cfg_gen = pgc_hub_config_generation(s->app->hub);
    s->hb_ms = heartbeat_ms(s);
    int64_t next_hb = pgc_mono_ms() + s->hb_ms;
    const char *reason = NULL;
    while (!reason) {
        int64_t now = pgc_mono_ms();
        int64_t until = next_hb;
        if (deadline && deadline < until)
            until = deadline;
        if (token_end && token_end < until)
            until = token_end;
        enum pgc_wait_result w = pgc_req_wait(s->r, s->efd, until > now ? (int)(until - now) : 0);
        if (w == PGC_WAIT_GONE) {
            reason = "client gone";
            break;
        }
        if (w == PGC_WAIT_SHUTDOWN) {
            write_end(s, "shutdown", "the server is restarting; reconnect");
            reason = "shutdown";
            break;
        }
        if (pump(s, sub, &held) != 0) {
            reason = "client gone";
            break;
        }
        pgc_sub_state st = pgc_sub_get_state(sub);
        if (st == PGC_SUB_OVERFLOW) {
            write_end(s, "overflow", "the stream fell too far behind; reconnect to resume");
            reason = "queue overflow";
        } else if (st == PGC_SUB_CLOSED) {
            reason = "hub stopped";
        }
        now = pgc_mono_ms();
        uint64_t gen = pgc_hub_config_generation(s->app->hub);
        if (gen != s->cfg_gen) {
            s->cfg_gen = gen;
            int hb = heartbeat_ms(s);
            next_hb += hb - s->hb_ms;
            s->hb_ms = hb;
        }
        if (!reason && now >= next_hb) {
            if (write_heartbeat(s) != 0)
                reason = "client gone";
            next_hb = now + s->hb_ms;
        }
        if (!reason && deadline && now >= deadline)
            reason = "maximum duration";
        if (!reason && token_end && now >= token_end) {
            write_end(s, "token_expired", "the token expired");
            reason = "token expired";
        }
    }
    for (size_t k = 0; k < held.n; k++)
        pgc_event_unref(held.v[k]);
    free(held.v);
    pgc_sub_free(sub);
    close(s->efd);
    return reason;
}

/* Plain CGI: no hub. Positions come from realtime.cursor, events from the log. */
static int cgi_item(pgc_event *e, void *arg)
{
    stream *s = arg;
    int rc = write_item(s, e);
    pgc_event_unref(e);
    return rc;
}

static int cgi_heartbeat_ms(stream *s, PGconn *c)
{
    char types[PGC_CHANNEL_MAX * 50 + 64] = "{";
    for (int i = 0; i < s->nchans; i++) {
        char t[PGC_CHANNEL_MAX + 1];
        pgc_channel_type(s->chans[i], t, sizeof(t));
        size_t l = strlen(types);
        snprintf(types + l, sizeof(types) - l, "%s\"%s\"", i ? "," : "", t);
    }
    strcat(types, "}");
    const char *p[1] = {types};
    PGresult *res = PQexecParams(c, "SELECT min(h.heartbeat_interval_ms) FROM unnest($1::text[]) t, "
                                    "LATERAL realtime.heartbeat_for(t) h", 1, NULL, p, NULL, NULL, 0);
    int ms = PQresultStatus(res) == PGRES_TUPLES_OK && PQntuples(res) ? atoi(PQgetvalue(res, 0, 0)) : 0;
    PQclear(res);
    return ms > 0 ? ms : s->hb_ms;
}

static const char *run_cgi_stream(stream *s, PGconn *c, int64_t deadline, int64_t token_end)
{
    int poll_ms = s->app->cfg.cgi_poll_interval_ms;
    s->hb_ms = 30000;
    s->hb_ms = cgi_heartbeat_ms(s, c);
    int64_t next_hb = pgc_mono_ms() + s->hb_ms, next_read = 0;
    char err[256];
    for (;;) {
        int64_t now = pgc_mono_ms();
        if (now >= next_read) {
            int n;
            do {
                n = pgc_db_read(c, s->tok.tenant, &s->cur, 500, cgi_item, s, err, sizeof(err));
            } while (n == 500);
            if (n < 0) {
                PGC_WARN("reading the log: %s", err);
                if (PQstatus(c) != CONNECTION_OK)
                    PQreset(c);
            }
            if (pgc_req_flush(s->r) != 0)
                return "client gone";
            s->hb_ms = cgi_heartbeat_ms(s, c);
            next_read = now + poll_ms;
        }
        if (now >= next_hb) {
            if (write_heartbeat(s) != 0)
                return "client gone";
            next_hb = now + s->hb_ms;
        }
        if (deadline && now >= deadline)
            return "maximum duration";
        if (token_end && now >= token_end) {
            write_end(s, "token_expired", "the token expired");
            return "token expired";
        }
        int64_t until = next_read < next_hb ? next_read : next_hb;
        if (deadline && deadline < until)
            until = deadline;
        enum pgc_wait_result w = pgc_req_wait(s->r, -1, until > now ? (int)(until - now) : 0);
        if (w == PGC_WAIT_GONE)
            return "client gone";
        if (w == PGC_WAIT_SHUTDOWN)
            return "shutdown";
    }
}

/* Channels of the stream that the cursor does not position start where they are now. */
static int cgi_initial_positions(stream *s, PGconn *c)
{
    char chans[PGC_CHANNEL_MAX * 50 * 3 + 8] = "{";
    for (int i = 0; i < s->nchans; i++) {
        size_t l = strlen(chans);
        snprintf(chans + l, sizeof(chans) - l, "%s\"%s\"", i ? "," : "", s->chans[i]);
    }
    strcat(chans, "}");
    const char *p[2] = {s->tok.tenant, chans};
    PGresult *res = PQexecParams(c, "SELECT realtime.cursor($1, $2::text[])", 2, NULL, p, NULL, NULL, 0);
    if (PQresultStatus(res) != PGRES_TUPLES_OK) {
        PQclear(res);
        return -1;
    }
    pgc_cursor now;
    pgc_cursor_init(&now);
    char err[128];
    int rc = pgc_cursor_parse(&now, PQgetvalue(res, 0, 0), (size_t)s->nchans, err, sizeof(err));
    PQclear(res);
    for (size_t i = 0; rc == 0 && i < now.n; i++)
        if (pgc_cursor_get(&s->cur, now.v[i].channel) < 0)
            rc = pgc_cursor_set(&s->cur, now.v[i].channel, now.v[i].seq);
    pgc_cursor_free(&now);
    return rc;
}

static void handle(pgc_app *app, pgc_request *r)
{
    if (pgc_app_method(r, "GET") != 0)
        return;
    stream s = {.app = app, .r = r, .efd = -1};
    pgc_cursor_init(&s.cur);
    if (pgc_app_authenticate(app, r, &s.tok) != 0)
        return;
    s.nchans = pgc_app_channels(app, r, &s.tok, NULL, &s.chans);
    if (s.nchans < 0) {
        pgc_token_free(&s.tok);
        return;
    }
    /* Last-Event-ID (what browsers send on reconnect) wins over ?since= */
    const char *last_id = pgc_req_param(r, "HTTP_LAST_EVENT_ID");
    char *since = last_id && *last_id ? strdup(last_id) : pgc_query_get(pgc_req_param(r, "QUERY_STRING"), "since");
    char err[256];
    PGconn *cgi_conn = NULL;
    const char *fail_code = NULL;
    int fail_status = 0;
    if (since && pgc_cursor_parse(&s.cur, since, (size_t)app->cfg.max_channels, err, sizeof(err)) != 0) {
        fail_status = 400;
        fail_code = "bad_cursor";
    } else if (app->cgi) {
        cgi_conn = pgc_db_acquire(app->pool, 5000);
        if (!cgi_conn || cgi_initial_positions(&s, cgi_conn) != 0) {
            fail_status = 503;
            fail_code = "database_unavailable";
            snprintf(err, sizeof(err), "the database is unreachable");
        }
    }
    free(since);
    if (fail_code) {
        pgc_req_send_error(r, fail_status, fail_code, err, "");
    } else {
        pgc_req_printf(r,
                       "Status: 200 OK\r\nContent-Type: text/event-stream\r\nCache-Control: no-cache\r\n"
                       "X-Accel-Buffering: no\r\n\r\nretry: %d\n\n",
                       app->cfg.sse_retry_ms);
        pgc_req_flush(r);
        int64_t start = pgc_mono_ms();
        int64_t deadline = app->cfg.sse_max_duration_s ? start + (int64_t)app->cfg.sse_max_duration_s * 1000 : 0;
        int64_t token_end = s.tok.exp ? start + (s.tok.exp * 1000 - pgc_wall_ms()) : 0;
        if (token_end && token_end <= start)
            token_end = start + 1;
        pgc_log(PGC_LOG_DEBUG, pgc_req_id(r), "stream open: tenant %s, %d channels", s.tok.tenant, s.nchans);
        char chans[512] = "";
        for (int i = 0; i < s.nchans; i++) {
            size_t l = strlen(chans);
            snprintf(chans + l, sizeof(chans) - l, "%s%s", i ? "," : "", s.chans[i]);
        }
        if (app->stats)
            s.stat = pgc_stats_open(app->stats, pgc_req_id(r), s.tok.tenant, s.tok.sub, "sse", chans, NULL);
        const char *reason = app->cgi ? run_cgi_stream(&s, cgi_conn, deadline, token_end)
                                      : run_hub_stream(&s, deadline, token_end);
        if (s.stat)
            pgc_stats_close(s.stat, reason);
        pgc_log(PGC_LOG_DEBUG, pgc_req_id(r), "stream closed after %ld events: %s", s.sent, reason);
    }
    if (cgi_conn)
        pgc_db_release(app->pool, cgi_conn, PQstatus(cgi_conn) != CONNECTION_OK);
    pgc_query_free(s.chans, s.nchans);
    pgc_cursor_free(&s.cur);
    pgc_token_free(&s.tok);
}

int main(int argc, char **argv)
{
    return pgc_app_main(argc, argv, "pgcast-sse", "sse", usage, handle);
}
