/*
 * One SSE stream's life (SPEC §4): each event as "id: <cursor after it>" + "data:
 * <envelope>", heartbeats at the smallest interval of the stream's channel types, the
 * maximum duration, the token's expiry, and a last error message when the server ends
 * the stream (the client reconnects with Last-Event-ID and resumes).
 *
 * The cursor goes out from the start: once every channel's position is known, a block
 * holding only "id: <cursor>" (it sets the client's last event id and fires no event),
 * and every heartbeat carries it again. A stream that never carried an event still
 * resumes where it was, so nothing published while the client reconnects is lost.
 * Between heartbeats a comment line (":") every sse_keepalive_ms makes the web server
 * write to the client, which is how it notices one that left.
 *
 * Hub mode (FastCGI): the stream is a hub subscriber woken through pgc_stream_wake; it
 * runs on the process's stream loop. Plain CGI: a process per stream must not hold a
 * LISTEN connection (every listener slows every NOTIFY), so a CGI stream reads the log
 * by position every cgi_poll_interval_ms on one ordinary connection: events arrive up to
 * that late, and each stream costs one indexed query per interval — fine for the tens
 * of streams a shared-hosting site has, not for thousands (use FastCGI for those).
 * A CGI process has a pool of exactly one connection: the stream takes it for each read
 * and gives it back, so the stats writer (connection rows, once a second) shares it and
 * a CGI stream holds one PostgreSQL connection, not two.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "channel.h"
#include "clock.h"
#include "envelope.h"
#include "log.h"
#include "pgarray.h"
#include "sse.h"

#define TAKE_BATCH 64
#define CGI_READ_LIMIT 500

/* "=<seq>" in decimal (seqs are never negative). */
static size_t format_seq(char *buf, int64_t seq)
{
    char rev[20];
    size_t n = 0;
    uint64_t v = seq < 0 ? 0 : (uint64_t)seq;
    do {
        rev[n++] = (char)('0' + v % 10);
        v /= 10;
    } while (v);
    buf[0] = '=';
    for (size_t i = 0; i < n; i++)
        buf[1 + i] = rev[n - 1 - i];
    return n + 1;
}

/* "id: " + the cursor ("a=1,b=2"), written in pieces: no format string, no allocation
 * (this runs once per delivery). */
static int write_id(sse_stream *s)
{
    int rc = pgc_stream_write(s->st, "id: ", 4);
    for (size_t i = 0; rc == 0 && i < s->cur.n; i++) {
        char num[24];
        size_t len = format_seq(num, s->cur.v[i].seq);
        if (i)
            rc = pgc_stream_write(s->st, ",", 1);
        if (rc == 0)
            rc = pgc_stream_write(s->st, s->cur.v[i].channel, strlen(s->cur.v[i].channel));
        if (rc == 0)
            rc = pgc_stream_write(s->st, num, len);
    }
    return rc;
}

int sse_write_position(sse_stream *s)
{
    s->positioned = true;
    s->unpadded = true;
    int rc = write_id(s);
    return rc == 0 ? pgc_stream_write(s->st, "\n\n", 2) : rc;
}

/* "id: <cursor>\ndata: <json>\n\n" for items with a position, "data: ...\n\n" otherwise. */
static int write_item(sse_stream *s, const pgc_event *e)
{
    if (e->kind == PGC_ITEM_SUBSCRIBED)
        return 0;
    int rc = 0;
    s->unpadded = true;
    if (e->kind != PGC_ITEM_EPHEMERAL) {
        if (pgc_cursor_set(&s->cur, e->channel, e->kind == PGC_ITEM_GAP ? e->gap_to : e->seq) != 0)
            return -1;
        rc = write_id(s);
        if (rc == 0)
            rc = pgc_stream_write(s->st, "\n", 1);
        s->sent++;
        s->wrote = true;
        if (s->stat)
            pgc_stats_count(s->stat, 1);
    }
    if (rc == 0)
        rc = pgc_stream_write(s->st, "data: ", 6);
    if (rc == 0)
        rc = pgc_stream_write(s->st, e->json, e->json_len);
    if (rc == 0)
        rc = pgc_stream_write(s->st, "\n\n", 2);
    return rc;
}

/* A last message before the server ends the stream. */
static void write_end(sse_stream *s, const char *code, const char *message)
{
    size_t len;
    char *body = pgc_envelope_error(code, message, NULL, &len);
    if (body)
        pgc_stream_printf(s->st, "data: %s\n\n", body);
    free(body);
}

/* The smallest heartbeat interval of the stream's channel types, as the hub caches it. */
static int hub_heartbeat_ms(sse_stream *s)
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

/* The same from the table (CGI: no hub). */
static int cgi_heartbeat_ms(sse_stream *s)
{
    pgc_arr types = {0};
    for (int i = 0; i < s->nchans; i++) {
        char t[PGC_CHANNEL_MAX + 1];
        pgc_channel_type(s->chans[i], t, sizeof(t));
        pgc_arr_text(&types, t);
    }
    const char *p[1] = {pgc_arr_end(&types)};
    int ms = 0;
    if (p[0]) {
        PGresult *res = PQexecParams(s->cgi_conn, "SELECT min(h.heartbeat_interval_ms) FROM unnest($1::text[]) t, "
                                     "LATERAL realtime.heartbeat_for(t) h", 1, NULL, p, NULL, NULL, 0);
        ms = PQresultStatus(res) == PGRES_TUPLES_OK && PQntuples(res) ? atoi(PQgetvalue(res, 0, 0)) : 0;
        PQclear(res);
    }
    free(types.p);
    return ms > 0 ? ms : s->hb_ms;
}

/* Heartbeats at most every sse_heartbeat_max_ms: under a web server's I/O timeout (a
 * host's FcgidIOTimeout 40), whatever the channel types say. */
static int capped_heartbeat(const sse_stream *s, int ms)
{
    int cap = s->app->cfg.sse_heartbeat_max_ms;
    return cap > 0 && ms > cap ? cap : ms;
}

static int64_t earliest(int64_t a, int64_t b) { return !a ? b : !b ? a : a < b ? a : b; }

static int64_t next_due(sse_stream *s)
{
    return earliest(earliest(earliest(s->next_hb, s->next_ka), s->deadline), earliest(s->token_end, s->next_read));
}

/* A stream that carries events needs no keepalive comment (nor a tick for one): the
 * next one is due a full interval after the last event. */
static void keepalive_after_events(sse_stream *s)
{
    if (!s->wrote)
        return;
    s->wrote = false;
    int ka = s->app->cfg.sse_keepalive_ms;
    if (ka > 0) {
        s->next_ka = pgc_mono_ms() + ka;
        pgc_stream_set_due(s->st, next_due(s));
    }
}

/* sse_padding_bytes: after what the client must see now (the start, events, a
 * heartbeat; not keepalives), a comment line that long. A web server that holds a
 * response's output until it has that many bytes (mod_fcgid's FcgidOutputBufferSize,
 * 64 KiB by default, which a hosting account cannot change) then passes it on at once.
 * -1 when the client is gone. */
static int pad(sse_stream *s)
{
    int want = (int)s->app->cfg.sse_padding_bytes; /* at most 1 MiB (config bound) */
    if (!s->unpadded || want <= 0)
        return 0;
    s->unpadded = false;
    char spaces[1024];
    memset(spaces, ' ', sizeof(spaces));
    int rc = pgc_stream_write(s->st, ":", 1);
    for (int left = want; rc == 0 && left > 0; left -= (int)sizeof(spaces))
        rc = pgc_stream_write(s->st, spaces, left < (int)sizeof(spaces) ? (size_t)left : sizeof(spaces));
    return rc == 0 ? pgc_stream_write(s->st, "\n", 1) : rc;
}

/* Heartbeat (with the cursor once positioned), keepalive comment, maximum duration,
 * token expiry: shared by both modes. */
static const char *timers(sse_stream *s, int64_t now)
{
    int ka = s->app->cfg.sse_keepalive_ms;
    if (now >= s->next_hb) {
        size_t len;
        char *hb = pgc_envelope_heartbeat(pgc_wall_ms(), &len);
        int rc = hb ? 0 : -1;
        if (rc == 0 && s->positioned && (rc = write_id(s)) == 0)
            rc = pgc_stream_write(s->st, "\n", 1);
        if (rc == 0)
            rc = pgc_stream_printf(s->st, "data: %s\n\n", hb);
        free(hb);
        if (rc != 0)
            return "client gone";
        s->unpadded = true;
        if (s->stat)
            pgc_stats_heartbeat(s->stat);
        s->next_hb = now + s->hb_ms;
        s->next_ka = ka > 0 ? now + ka : 0;
    } else if (s->next_ka && now >= s->next_ka) {
        if (pgc_stream_write(s->st, ":\n", 2) != 0)
            return "client gone";
        s->next_ka = now + ka;
    }
    if (s->deadline && now >= s->deadline)
        return "maximum duration";
    if (s->token_end && now >= s->token_end) {
        write_end(s, "token_expired", "the token expired");
        return "token expired";
    }
    if (pad(s) != 0)
        return "client gone";
    pgc_stream_set_due(s->st, next_due(s));
    return NULL;
}

static void on_shutdown(pgc_stream *st, void *arg)
{
    (void)st;
    write_end(arg, "shutdown", "the server is restarting; reconnect");
}

static void on_done(pgc_stream *st, void *arg, const char *reason)
{
    sse_stream *s = arg;
    if (s->stat)
        pgc_stats_close(s->stat, reason);
    pgc_log(PGC_LOG_DEBUG, pgc_stream_id(st), "stream closed after %ld events: %s", s->sent, reason);
    sse_stream_free(s);
}

/* ---------------------------------------------------------------- hub mode */

/* Keeps e (its reference) until every channel is positioned; -1 past the hub queue's
 * bound (s->failed says why) or out of memory. */
static int hold(sse_stream *s, pgc_event *e)
{
    sse_held *h = &s->held;
    size_t bytes = e->json_len + sizeof(*e);
    if (h->n + 1 > (size_t)s->app->cfg.queue_events || h->bytes + bytes > s->app->cfg.queue_bytes) {
        s->failed = "queue overflow";
        return -1;
    }
    if (h->n == h->cap) {
        size_t cap = h->cap ? h->cap * 2 : 64;
        pgc_event **v = realloc(h->v, cap * sizeof(*v));
        if (!v) {
            s->failed = "out of memory";
            return -1;
        }
        h->v = v;
        h->cap = cap;
    }
    h->v[h->n++] = e;
    h->bytes += bytes;
    return 0;
}

/* One item taken from the hub. Until every channel is announced, events wait in `held`
 * so that the first id: line already names every channel's position. */
static int take_item(sse_stream *s, pgc_event *e)
{
    int rc = 0;
    if (e->kind == PGC_ITEM_SUBSCRIBED) {
        if (pgc_cursor_get(&s->cur, e->channel) < 0)
            rc = pgc_cursor_set(&s->cur, e->channel, e->seq);
        if (++s->announced == s->nchans) {
            if (rc == 0)
                rc = sse_write_position(s);
            for (size_t k = 0; k < s->held.n; k++) {
                if (rc == 0)
                    rc = write_item(s, s->held.v[k]);
                pgc_event_unref(s->held.v[k]);
            }
            s->held.n = 0;
            s->held.bytes = 0;
        }
    } else if (s->announced < s->nchans) {
        if (hold(s, e) == 0)
            return 0; /* keeps the reference */
        rc = -1;
    } else {
        rc = write_item(s, e);
    }
    pgc_event_unref(e);
    return rc;
}

static const char *hub_pump(pgc_stream *st, void *arg)
{
    sse_stream *s = arg;
    pgc_event *items[TAKE_BATCH];
    size_t n = 0;
    if (s->failed) {
        write_end(s, "unavailable", "the stream could not be set up; reconnect");
        return s->failed;
    }
    while (!pgc_stream_backlogged(st) && (n = pgc_sub_take(s->sub, items, TAKE_BATCH)) > 0) {
        int rc = 0;
        for (size_t i = 0; i < n; i++) {
            if (rc == 0)
                rc = take_item(s, items[i]);
            else
                pgc_event_unref(items[i]);
        }
        if (rc != 0 && s->failed && strcmp(s->failed, "queue overflow") == 0) {
            /* a channel was never positioned while the others' events piled up */
            write_end(s, "overflow", "the stream could not start; reconnect to resume");
            return s->failed;
        }
        if (rc != 0)
            return s->failed ? s->failed : "client gone";
    }
    pgc_sub_state state = pgc_sub_get_state(s->sub);
    if (state == PGC_SUB_OVERFLOW && n == 0 && !pgc_stream_backlogged(st)) {
        write_end(s, "overflow", "the stream fell too far behind; reconnect to resume");
        return "queue overflow";
    }
    if (state == PGC_SUB_CLOSED)
        return "hub stopped";
    /* a heartbeat-config change wakes every subscriber: apply it to the next heartbeat */
    uint64_t gen = pgc_hub_config_generation(s->app->hub);
    if (gen != s->cfg_gen) {
        s->cfg_gen = gen;
        int hb = capped_heartbeat(s, hub_heartbeat_ms(s));
        s->next_hb += hb - s->hb_ms;
        s->hb_ms = hb;
        pgc_stream_set_due(st, next_due(s));
    }
    keepalive_after_events(s);
    return pad(s) == 0 ? NULL : "client gone";
}

static const char *hub_tick(pgc_stream *st, void *arg, int64_t now)
{
    (void)st;
    sse_stream *s = arg;
    if (s->failed) {
        write_end(s, "unavailable", "the stream could not be set up; reconnect");
        return s->failed;
    }
    return timers(s, now);
}

const pgc_stream_ops sse_hub_ops = {hub_pump, hub_tick, on_shutdown, on_done};

/* ---------------------------------------------------------------- plain CGI */

static int cgi_item(pgc_event *e, void *arg)
{
    int rc = write_item(arg, e);
    pgc_event_unref(e);
    return rc;
}

static const char *cgi_pump(pgc_stream *st, void *arg)
{
    (void)st;
    (void)arg;
    return NULL; /* nothing wakes a CGI stream: its tick reads the log */
}

static const char *cgi_tick(pgc_stream *st, void *arg, int64_t now)
{
    (void)st;
    sse_stream *s = arg;
    if (now >= s->next_read) {
        /* the process's one connection, shared with the stats writer: held for this read */
        if (sse_cgi_acquire(s) == 0) {
            char err[256];
            int n;
            do {
                n = pgc_db_read(s->cgi_conn, s->tok.tenant, &s->cur, CGI_READ_LIMIT, s->app->cfg.catchup_read_bytes,
                                cgi_item, s, err, sizeof(err));
            } while (n > 0); /* a read bounded by bytes may end before the log does */
            if (n < 0)
                PGC_WARN("reading the log: %s", err);
            s->hb_ms = capped_heartbeat(s, cgi_heartbeat_ms(s));
            sse_cgi_release(s);
        } else {
            PGC_WARN("reading the log: the database is unreachable");
        }
        s->next_read = now + s->app->cfg.cgi_poll_interval_ms;
    }
    keepalive_after_events(s);
    return timers(s, now);
}

const pgc_stream_ops sse_cgi_ops = {cgi_pump, cgi_tick, on_shutdown, on_done};

/* ---------------------------------------------------------------- */

void sse_stream_start_timers(sse_stream *s)
{
    pgc_app *app = s->app;
    int64_t start = pgc_mono_ms();
    s->hb_ms = 30000;
    if (app->hub) {
        s->cfg_gen = pgc_hub_config_generation(app->hub);
        s->hb_ms = hub_heartbeat_ms(s);
    } else if (s->cgi_conn) {
        s->hb_ms = cgi_heartbeat_ms(s);
    }
    s->hb_ms = capped_heartbeat(s, s->hb_ms);
    s->next_hb = start + s->hb_ms;
    s->next_ka = app->cfg.sse_keepalive_ms > 0 ? start + app->cfg.sse_keepalive_ms : 0;
    s->deadline = s->max_duration_s > 0 ? start + (int64_t)s->max_duration_s * 1000 : 0;
    s->token_end = s->tok.exp ? start + (s->tok.exp * 1000 - pgc_wall_ms()) : 0;
    if (s->token_end && s->token_end <= start)
        s->token_end = start + 1;
}

void sse_stream_free(sse_stream *s)
{
    if (s->sub)
        pgc_sub_free(s->sub);
    for (size_t k = 0; k < s->held.n; k++)
        pgc_event_unref(s->held.v[k]);
    free(s->held.v);
    sse_cgi_release(s);
    pgc_query_free(s->chans, s->nchans);
    pgc_cursor_free(&s->cur);
    pgc_token_free(&s->tok);
    free(s);
}

int sse_cgi_acquire(sse_stream *s)
{
    if (!s->cgi_conn)
        s->cgi_conn = pgc_db_acquire(s->app->pool, 5000);
    return s->cgi_conn ? 0 : -1;
}

void sse_cgi_release(sse_stream *s)
{
    if (s->cgi_conn)
        pgc_db_release(s->app->pool, s->cgi_conn, PQstatus(s->cgi_conn) != CONNECTION_OK);
    s->cgi_conn = NULL;
}
