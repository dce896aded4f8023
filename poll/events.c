/* GET {prefix}/events: what follows a cursor, as {"events":[...],"cursor":"..."}.
 *
 * Cheap first: the channels' current positions (realtime_channels only; one query shared
 * by the requests in flight, positions.c).
 * When nothing is new that answers the request — 304 when If-None-Match holds the
 * cursor's ETag (RFC 9110: weak comparison, lists, "*"), an empty page otherwise —
 * without reading any event body. With ?wait=S a request with nothing new waits,
 * whatever If-None-Match says (a matching tag gets its 304 at the deadline): in FastCGI
 * mode as a hub subscriber (no database work while it waits, no thread: it waits on the
 * FastCGI runtime's stream loop; woken by the hub, answered from the items it queues),
 * in plain-CGI mode by re-checking the positions every cgi_poll_interval_ms. HEAD gets
 * GET's answer without its body. A long-poll that waits has a connection-stats row. */
#include <errno.h>
#include <json.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "clock.h"
#include "cursor.h"
#include "pgarray.h"
#include "log.h"
#include "poll.h"
#include "positions.h"
#include "server.h"
#include "admit.h"
#include "stream.h"
#include "strutil.h"

struct page {
    pgc_buf text;     /* the entries, comma-separated */
    int count, limit; /* count: events (gaps do not count against the limit) */
    size_t max_bytes; /* the page ends once its entries reach this (poll_page_bytes) */
    int items;        /* entries written, for the separators */
    pgc_cursor *cur;
};

/* The position an EVENT or GAP item moves cur's channel to, when it is after cur; else 0
 * (another kind of item, or one the cursor is past). */
static int64_t item_pos_after(const pgc_cursor *cur, const pgc_event *e)
{
    if (e->kind != PGC_ITEM_EVENT && e->kind != PGC_ITEM_GAP)
        return 0;
    int64_t pos = e->kind == PGC_ITEM_GAP ? e->gap_to : e->seq;
    return pos > pgc_cursor_get(cur, e->channel) ? pos : 0;
}

/* Adds an EVENT or GAP item and moves the cursor; takes the reference. */
static int page_item(pgc_event *e, void *arg)
{
    struct page *p = arg;
    int64_t pos = item_pos_after(p->cur, e);
    if (pos) {
        pgc_buf_put(&p->text, ",", p->items++ ? 1 : 0);
        pgc_buf_put(&p->text, e->json, e->json_len);
        if (pgc_cursor_set(p->cur, e->channel, pos) != 0)
            p->text.oom = true;
        p->count += e->kind == PGC_ITEM_EVENT;
    }
    pgc_event_unref(e);
    return 0;
}

/* W/"..." from the tenant and the cursor (as formatted): the same cursor, the same page. */
static void etag_of(const char *tenant, const char *cursor_text, char out[40])
{
    uint64_t h = 1469598103934665603ULL;
    const char *parts[2] = {tenant, cursor_text};
    for (int i = 0; i < 2; i++) {
        for (const char *s = parts[i]; *s; s++)
            h = (h ^ (unsigned char)*s) * 1099511628211ULL;
        h = (h ^ 0x1f) * 1099511628211ULL;
    }
    snprintf(out, 40, "W/\"%016" PRIx64 "\"", h);
}

/* If-None-Match (RFC 9110 §13.1.2) against our tag: "*" or any listed tag with the same
 * opaque part; the comparison is weak (W/ on either side is ignored). */
static bool none_match_fails(const char *inm, const char *etag)
{
    if (!inm)
        return false;
    const char *ours = strchr(etag, '"');
    size_t olen = strlen(ours);
    for (const char *p = inm; *p;) {
        while (*p == ' ' || *p == '\t' || *p == ',')
            p++;
        if (*p == '*')
            return true;
        if (strncmp(p, "W/", 2) == 0)
            p += 2;
        if (*p != '"')
            return false; /* malformed: no match */
        const char *end = strchr(p + 1, '"');
        if (!end)
            return false;
        if ((size_t)(end + 1 - p) == olen && strncmp(p, ours, olen) == 0)
            return true;
        p = end + 1;
    }
    return false;
}

/* The answer of a page: 200 with its events and cursor, or 304 when If-None-Match holds
 * its ETag; written by send (to a request or to a stream), the head only for HEAD. */
typedef void (*json_sender)(void *dst, int status, const char *json, size_t len, const char *hdr);

#define NOT_MODIFIED "Status: 304 Not Modified\r\n%sCache-Control: no-store\r\n\r\n"

static void to_request(void *r, int status, const char *json, size_t len, const char *hdr)
{
    if (status == 304) {
        pgc_req_printf(r, NOT_MODIFIED, hdr);
        pgc_req_flush(r);
    } else {
        pgc_req_send_json(r, status, json, len, hdr); /* the head only for HEAD */
    }
}

static void to_stream(void *st, int status, const char *json, size_t len, const char *hdr)
{
    if (status == 304)
        pgc_stream_printf(st, NOT_MODIFIED, hdr);
    else
        pgc_stream_send_json(st, status, json, len, hdr);
}

static void to_stream_head(void *st, int status, const char *json, size_t len, const char *hdr)
{
    (void)json;
    if (status == 304)
        pgc_stream_printf(st, NOT_MODIFIED, hdr);
    else
        pgc_stream_printf(st, PGC_JSON_HEAD, status, pgc_http_reason(status), len, hdr);
}

static void emit_page(json_sender send, void *dst, const char *tenant, struct page *p, const char *inm)
{
    static const char oom[] = "{\"error\":{\"code\":\"internal\",\"message\":\"out of memory\"}}";
    char *cur = pgc_cursor_format(p->cur);
    pgc_buf out = {0};
    char etag[40], hdr[64];
    if (cur && !p->text.oom) {
        etag_of(tenant, cur, etag);
        snprintf(hdr, sizeof(hdr), "ETag: %s\r\n", etag);
        /* the tag names the cursor state: only an answer with nothing after the
         * request's cursor is "not modified" (a page with events never is) */
        if (!p->text.len && none_match_fails(inm, etag)) {
            send(dst, 304, NULL, 0, hdr);
            free(cur);
            return;
        }
        pgc_buf_put(&out, "{\"events\":[", 11);
        if (p->text.len)
            pgc_buf_put(&out, p->text.p, p->text.len);
        pgc_buf_put(&out, "],\"cursor\":\"", 12);
        pgc_buf_put(&out, cur, strlen(cur)); /* channel grammar and digits: nothing to escape */
        pgc_buf_put(&out, "\"}", 2);
    }
    if (!cur || p->text.oom || out.oom)
        send(dst, 500, oom, sizeof(oom) - 1, "");
    else
        send(dst, 200, out.p, out.len, hdr);
    free(cur);
    free(out.p);
}

static void send_page(pgc_request *r, const char *tenant, struct page *p)
{
    emit_page(to_request, r, tenant, p, pgc_req_param(r, "HTTP_IF_NONE_MATCH"));
}

/* 1: something after the cursor (an event, or a gap), 0: nothing, -1: answered (error). */
static int anything_new(pgc_app *app, pgc_request *r, const char *tenant, const pgc_cursor *cur)
{
    bool unreachable;
    int news = poll_anything_after(app, tenant, cur, &unreachable);
    if (news < 0 && unreachable)
        pgc_req_send_error(r, 503, "database_unavailable", "the database is unreachable", "Retry-After: 1\r\n");
    else if (news < 0)
        pgc_req_send_error(r, 500, "internal", "the database refused the request", "");
    return news;
}

static void read_page(pgc_app *app, pgc_request *r, const char *tenant, struct page *p)
{
    PGconn *c = pgc_db_acquire(app->pool, 5000);
    if (!c) {
        pgc_req_send_error(r, 503, "database_unavailable", "the database is unreachable", "Retry-After: 1\r\n");
        return;
    }
    char err[256];
    pgc_cursor after;
    pgc_cursor_init(&after);
    int rc = 0;
    for (size_t i = 0; rc == 0 && i < p->cur->n; i++)
        rc = pgc_cursor_set(&after, p->cur->v[i].channel, p->cur->v[i].seq);
    int n = rc == 0 ? pgc_db_read(c, tenant, &after, p->limit, p->max_bytes, page_item, p, err, sizeof(err)) : -1;
    pgc_cursor_free(&after);
    pgc_db_release(app->pool, c, n < 0 && PQstatus(c) != CONNECTION_OK);
    if (n < 0) {
        pgc_log(PGC_LOG_WARN, pgc_req_id(r), "reading events: %s", rc ? "out of memory" : err);
        pgc_req_send_error(r, 503, "database_unavailable", "the events could not be read", "");
        return;
    }
    /* nothing after all: a position known beyond what the log holds (a forged wake-up)
     * is read again from the database at the next question */
    for (size_t i = 0; p->text.len == 0 && app->hub && i < p->cur->n; i++)
        pgc_positions_forget(pgc_hub_positions(app->hub), tenant, p->cur->v[i].channel);
    send_page(r, tenant, p);
}

/* FastCGI long-poll: a hub subscriber from the cursor, answered with the first items it
 * queues or empty at the deadline. It waits as a stream of the FastCGI runtime
 * (fcgi/stream.h): on the process's stream loop, no thread held while it waits. */
typedef struct long_poll {
    pgc_stream *st;
    pgc_sub *sub;
    char *tenant;
    pgc_cursor cur;
    struct page p;   /* its bounds and count; text stays empty (the items below) */
    pgc_event **items; /* what the answer holds, in order (references held) */
    size_t nitems, items_cap;
    size_t items_bytes; /* their entries' bytes with separators, as the page text would be */
    int64_t deadline;
    char *inm;  /* If-None-Match, or NULL */
    bool head;  /* HEAD: the answer's head only */
    pgc_stats_conn *stat;
} long_poll;

/* The last long-poll answer built, for the next one with the same tenant, items and
 * cursor after them: a publish wakes every long-poll waiting on its channel, and those
 * that waited from the same cursor (all of them, on a busy channel) get the same bytes,
 * built once instead of once per waiter (the cursor's text, its ETag, the JSON and the
 * head were a tenth of the process's CPU per answer). The items are held, so no other
 * item can take their addresses while they are the key. One entry: at most one page
 * (poll_page_bytes) and its items stay in memory after the last long-poll. Streams on
 * the loop and on threads (FCGI_KEEP_CONN) share it, under its mutex. */
static struct {
    pthread_mutex_t mu;
    char *tenant;
    pgc_cursor cur;
    pgc_event **items;
    size_t n;
    char *answer; /* head and body */
    size_t len, head_len;
} lp_cache = {.mu = PTHREAD_MUTEX_INITIALIZER};

static bool lp_cache_matches(const long_poll *lp)
{
    if (!lp_cache.answer || lp_cache.n != lp->nitems || lp_cache.cur.n != lp->cur.n ||
        strcmp(lp_cache.tenant, lp->tenant) != 0)
        return false;
    for (size_t i = 0; i < lp->nitems; i++)
        if (lp_cache.items[i] != lp->items[i])
            return false;
    for (size_t i = 0; i < lp->cur.n; i++)
        if (lp_cache.cur.v[i].seq != lp->cur.v[i].seq || strcmp(lp_cache.cur.v[i].channel, lp->cur.v[i].channel) != 0)
            return false;
    return true;
}

/* The cached answer written to lp's stream when it is lp's. */
static bool lp_cache_write(long_poll *lp)
{
    pthread_mutex_lock(&lp_cache.mu);
    bool hit = lp_cache_matches(lp);
    if (hit)
        pgc_stream_write(lp->st, lp_cache.answer, lp->head ? lp_cache.head_len : lp_cache.len);
    pthread_mutex_unlock(&lp_cache.mu);
    return hit;
}

/* Takes answer (malloc'd) as the cached answer of lp's key; dropped when out of memory. */
static void lp_cache_store(const long_poll *lp, char *answer, size_t len, size_t head_len)
{
    pgc_event **items = malloc(lp->nitems * sizeof(*items));
    char *tenant = strdup(lp->tenant);
    pgc_cursor cur;
    pgc_cursor_init(&cur);
    int rc = items && tenant ? 0 : -1;
    for (size_t i = 0; rc == 0 && i < lp->cur.n; i++)
        rc = pgc_cursor_set(&cur, lp->cur.v[i].channel, lp->cur.v[i].seq);
    if (rc != 0) {
        free(items);
        free(tenant);
        pgc_cursor_free(&cur);
        free(answer);
        return;
    }
    for (size_t i = 0; i < lp->nitems; i++) {
        items[i] = lp->items[i];
        pgc_event_ref(items[i]);
    }
    pthread_mutex_lock(&lp_cache.mu);
    pgc_event **old_items = lp_cache.items;
    size_t old_n = lp_cache.n;
    char *old_answer = lp_cache.answer, *old_tenant = lp_cache.tenant;
    pgc_cursor old_cur = lp_cache.cur;
    lp_cache.items = items;
    lp_cache.n = lp->nitems;
    lp_cache.tenant = tenant;
    lp_cache.cur = cur;
    lp_cache.answer = answer;
    lp_cache.len = len;
    lp_cache.head_len = head_len;
    pthread_mutex_unlock(&lp_cache.mu);
    for (size_t i = 0; i < old_n; i++)
        pgc_event_unref(old_items[i]);
    free(old_items);
    free(old_answer);
    free(old_tenant);
    pgc_cursor_free(&old_cur);
}

/* A long-poll's 200 answer with its items: from the cache, else built (as emit_page
 * builds it: the same head, ETag and JSON) and cached. */
static void lp_answer_items(long_poll *lp)
{
    if (lp_cache_write(lp))
        return;
    char *cur = pgc_cursor_format(&lp->cur);
    pgc_buf out = {0};
    char etag[40], head[256];
    size_t body_len = 11 + lp->items_bytes + 12 + (cur ? strlen(cur) : 0) + 2;
    int head_len = -1;
    if (cur) {
        etag_of(lp->tenant, cur, etag);
        char hdr[64];
        snprintf(hdr, sizeof(hdr), "ETag: %s\r\n", etag);
        head_len = snprintf(head, sizeof(head), PGC_JSON_HEAD, 200, pgc_http_reason(200), body_len, hdr);
    }
    if (head_len > 0 && (size_t)head_len < sizeof(head)) {
        pgc_buf_put(&out, head, (size_t)head_len);
        pgc_buf_put(&out, "{\"events\":[", 11);
        for (size_t i = 0; i < lp->nitems; i++) {
            pgc_buf_put(&out, ",", i ? 1 : 0);
            pgc_buf_put(&out, lp->items[i]->json, lp->items[i]->json_len);
        }
        pgc_buf_put(&out, "],\"cursor\":\"", 12);
        pgc_buf_put(&out, cur, strlen(cur)); /* channel grammar and digits: nothing to escape */
        pgc_buf_put(&out, "\"}", 2);
    }
    free(cur);
    if (head_len <= 0 || (size_t)head_len >= sizeof(head) || out.oom || out.len != (size_t)head_len + body_len) {
        free(out.p);
        lp->p.text.oom = true; /* emit_page answers 500 */
        emit_page(lp->head ? to_stream_head : to_stream, lp->st, lp->tenant, &lp->p, lp->inm);
        return;
    }
    pgc_stream_write(lp->st, out.p, lp->head ? (size_t)head_len : out.len);
    lp_cache_store(lp, out.p, out.len, (size_t)head_len);
}

static void lp_answer(long_poll *lp)
{
    if (lp->nitems && !lp->p.text.oom)
        lp_answer_items(lp);
    else /* nothing (empty page or 304), or out of memory (500) */
        emit_page(lp->head ? to_stream_head : to_stream, lp->st, lp->tenant, &lp->p, lp->inm);
    if (lp->stat)
        pgc_stats_count(lp->stat, (uint64_t)lp->p.count);
}

/* An item taken from the queue: kept for the answer when it is after the cursor (which
 * moves past it), else dropped. Takes the reference. */
static void lp_take(long_poll *lp, pgc_event *e)
{
    int64_t pos = item_pos_after(&lp->cur, e);
    if (!pos) {
        pgc_event_unref(e);
        return;
    }
    if (lp->nitems == lp->items_cap) {
        size_t cap = lp->items_cap ? lp->items_cap * 2 : 4;
        pgc_event **v = realloc(lp->items, cap * sizeof(*v));
        if (!v) {
            lp->p.text.oom = true;
            pgc_event_unref(e);
            return;
        }
        lp->items = v;
        lp->items_cap = cap;
    }
    if (pgc_cursor_set(&lp->cur, e->channel, pos) != 0) {
        lp->p.text.oom = true;
        pgc_event_unref(e);
        return;
    }
    lp->items_bytes += e->json_len + (lp->nitems ? 1 : 0);
    lp->items[lp->nitems++] = e;
    lp->p.count += e->kind == PGC_ITEM_EVENT;
}

static const char *lp_pump(pgc_stream *st, void *arg)
{
    (void)st;
    long_poll *lp = arg;
    pgc_event *item;
    /* one at a time: what is not taken stays queued for the next request to read */
    while (lp->p.count < lp->p.limit && lp->items_bytes < lp->p.max_bytes && !lp->p.text.oom &&
           pgc_sub_take(lp->sub, &item, 1) > 0)
        lp_take(lp, item);
    if (lp->nitems == 0 && !lp->p.text.oom && pgc_sub_get_state(lp->sub) == PGC_SUB_OK)
        return NULL;
    lp_answer(lp); /* something to answer (an overflowed queue answers what it got) */
    return "answered";
}

static const char *lp_tick(pgc_stream *st, void *arg, int64_t now)
{
    long_poll *lp = arg;
    if (now < lp->deadline) {
        pgc_stream_set_due(st, lp->deadline);
        return NULL;
    }
    lp_answer(lp);
    return "deadline";
}

static void lp_shutdown(pgc_stream *st, void *arg)
{
    (void)st;
    lp_answer(arg);
}

static void lp_free(long_poll *lp)
{
    if (lp->sub)
        pgc_sub_free(lp->sub);
    for (size_t i = 0; i < lp->nitems; i++)
        pgc_event_unref(lp->items[i]);
    free(lp->items);
    free(lp->inm);
    free(lp->p.text.p);
    pgc_cursor_free(&lp->cur);
    free(lp->tenant);
    free(lp);
}

static void lp_done(pgc_stream *st, void *arg, const char *reason)
{
    (void)st;
    long_poll *lp = arg;
    if (lp->stat)
        pgc_stats_close(lp->stat, reason);
    lp_free(lp);
}

static const pgc_stream_ops long_poll_ops = {lp_pump, lp_tick, lp_shutdown, lp_done};

/* A connection-stats row for a long-poll (transport "long-poll"); NULL without stats. */
static pgc_stats_conn *lp_stats_open(pgc_app *app, pgc_request *r, const pgc_token *tok, char **chans, int n)
{
    if (!app->stats)
        return NULL;
    pgc_buf list = {0};
    for (int i = 0; i < n; i++) {
        pgc_buf_put(&list, ",", i ? 1 : 0);
        pgc_buf_put(&list, chans[i], strlen(chans[i]));
    }
    pgc_stats_conn *c = pgc_stats_open(app->stats, pgc_req_id(r), tok->tenant, tok->sub, "long-poll",
                                       list.oom ? NULL : list.p, NULL);
    free(list.p);
    return c;
}

static void long_poll_hub(pgc_app *app, pgc_request *r, const pgc_token *tok, char **chans, int n, struct page *p,
                          int wait_s)
{
    const char *tenant = tok->tenant;
    long_poll *lp = calloc(1, sizeof(*lp));
    int rc = lp && (lp->tenant = strdup(tenant)) ? 0 : -1;
    if (rc == 0) {
        pgc_cursor_init(&lp->cur);
        for (size_t i = 0; rc == 0 && i < p->cur->n; i++)
            rc = pgc_cursor_set(&lp->cur, p->cur->v[i].channel, p->cur->v[i].seq);
        lp->p = (struct page){.cur = &lp->cur, .limit = p->limit, .max_bytes = p->max_bytes};
        lp->deadline = pgc_mono_ms() + (int64_t)wait_s * 1000;
        lp->head = pgc_req_is_head(r);
        const char *inm = pgc_req_param(r, "HTTP_IF_NONE_MATCH");
        if (inm && !(lp->inm = strdup(inm)))
            rc = -1;
    }
    if (rc == 0 && !(lp->st = pgc_stream_new(r, &long_poll_ops, lp)))
        rc = -1;
    if (rc == 0 && !(lp->sub = pgc_sub_new(app->hub, tenant, pgc_stream_wake, lp->st)))
        rc = -1;
    for (int i = 0; rc == 0 && i < n; i++)
        rc = pgc_sub_add(lp->sub, chans[i], pgc_cursor_get(&lp->cur, chans[i]));
    if (rc != 0) {
        pgc_stream *st = lp ? lp->st : NULL;
        if (lp)
            lp_free(lp); /* the subscriber first: no wake after this */
        if (st)
            pgc_stream_discard(st);
        pgc_req_send_error(r, 503, "unavailable", "out of resources", "Retry-After: 1\r\n");
        return;
    }
    lp->stat = lp_stats_open(app, r, tok, chans, n);
    pgc_stream_run(lp->st); /* lp belongs to the stream now */
}

/* Plain-CGI long-poll: no hub, re-check the positions now and then. */
static void long_poll_cgi(pgc_app *app, pgc_request *r, const pgc_token *tok, char **chans, int n, struct page *p,
                          int wait_s)
{
    const char *tenant = tok->tenant;
    pgc_stats_conn *stat = lp_stats_open(app, r, tok, chans, n);
    const char *reason = "deadline";
    int64_t deadline = pgc_mono_ms() + (int64_t)wait_s * 1000;
    for (;;) {
        int64_t now = pgc_mono_ms();
        if (now >= deadline)
            break;
        int step = app->cfg.cgi_poll_interval_ms;
        if (now + step > deadline)
            step = (int)(deadline - now);
        enum pgc_wait_result w = pgc_req_wait(r, -1, step);
        if (w == PGC_WAIT_GONE) {
            reason = "client gone";
            goto out;
        }
        if (w == PGC_WAIT_SHUTDOWN) {
            reason = "shutdown";
            break;
        }
        int news = anything_new(app, r, tenant, p->cur);
        if (news < 0) {
            reason = "database error";
            goto out;
        }
        if (news) {
            read_page(app, r, tenant, p);
            reason = "answered";
            goto out;
        }
    }
    send_page(r, tenant, p);
out:
    if (stat) {
        pgc_stats_count(stat, (uint64_t)p->count);
        pgc_stats_close(stat, reason);
    }
}

static int int_param(pgc_request *r, const char *query, const char *name, int def, int min, int max, int *out)
{
    char *v = pgc_query_get(query, name);
    if (!v) {
        *out = def;
        return 0;
    }
    char *end;
    errno = 0;
    long n = strtol(v, &end, 10);
    bool bad = errno || end == v || *end || n < min;
    free(v);
    if (bad) {
        char msg[96];
        snprintf(msg, sizeof(msg), "%s must be an integer >= %d", name, min);
        pgc_req_send_error(r, 400, "bad_request", msg, "");
        return -1;
    }
    *out = n > max ? max : (int)n;
    return 0;
}

/* limit=0: no events, only the channels' current cursor — where a client that starts
 * live (as SSE and WebSocket subscriptions do without since) polls from. */
static void send_position(pgc_app *app, pgc_request *r, const char *tenant, char **chans, int n)
{
    pgc_arr a = {0};
    for (int i = 0; i < n; i++)
        pgc_arr_text(&a, chans[i]);
    const char *lit = pgc_arr_end(&a);
    if (!lit) {
        free(a.p);
        pgc_req_send_error(r, 500, "internal", "out of memory", "");
        return;
    }
    const char *params[2] = {tenant, lit};
    PGresult *res = pgc_app_query(app, r, "SELECT realtime.cursor($1, $2::text[])", 2, params);
    free(a.p);
    if (!res)
        return; /* answered */
    struct json_object *o = json_object_new_object();
    json_object_object_add(o, "events", json_object_new_array());
    json_object_object_add(o, "cursor", json_object_new_string(PQgetvalue(res, 0, 0)));
    PQclear(res);
    size_t len;
    const char *s = json_object_to_json_string_length(o, JSON_C_TO_STRING_PLAIN, &len);
    pgc_req_send_json(r, 200, s, len, "Cache-Control: no-store\r\n");
    json_object_put(o);
}

void poll_events(pgc_app *app, pgc_request *r, const char *path_channel)
{
    if (pgc_app_method(r, "GET, HEAD") != 0)
        return;
    pgc_token tok;
    if (poll_authenticate(app, r, &tok) != 0)
        return;
    char **chans = NULL;
    int n = pgc_app_channels(app, r, &tok, path_channel, &chans);
    if (n < 0) {
        pgc_token_free(&tok);
        return;
    }
    const char *query = pgc_req_param(r, "QUERY_STRING");
    pgc_cursor since, cur;
    pgc_cursor_init(&since);
    pgc_cursor_init(&cur);
    char err[256];
    int limit, wait_s;
    char *since_text = pgc_query_get(query, "since");
    if (since_text && pgc_cursor_parse(&since, since_text, (size_t)app->cfg.max_channels, err, sizeof(err)) != 0) {
        pgc_req_send_error(r, 400, "bad_cursor", err, "");
    } else if (int_param(r, query, "limit", 100, 0, app->cfg.poll_max_limit, &limit) != 0) {
        /* answered */
    } else if (limit == 0) {
        send_position(app, r, tok.tenant, chans, n);
    } else if (int_param(r, query, "wait", 0, 0, app->cfg.poll_max_wait_s, &wait_s) == 0) {
        /* a long-poll ends by its token's exp at the latest (SPEC §3: every transport);
         * the next request is then refused with token_expired */
        int64_t left = tok.exp ? tok.exp - (int64_t)time(NULL) : wait_s;
        if (left < wait_s)
            wait_s = left > 0 ? (int)left : 0;
        /* the page's cursor: every requested channel, in request order; channels the
         * cursor does not name start at 0 (everything retained) */
        int rc = 0;
        for (int i = 0; rc == 0 && i < n; i++) {
            int64_t s = pgc_cursor_get(&since, chans[i]);
            rc = pgc_cursor_set(&cur, chans[i], s < 0 ? 0 : s);
        }
        struct page p = {.cur = &cur, .limit = limit, .max_bytes = app->cfg.poll_page_bytes};
        int news = rc == 0 ? anything_new(app, r, tok.tenant, &cur) : -1;
        if (rc != 0) {
            pgc_req_send_error(r, 500, "internal", "out of memory", "");
        } else if (news == 1) {
            read_page(app, r, tok.tenant, &p);
        } else if (news == 0 && wait_s > 0 && !pgc_admit_take(&app->cfg, r)) {
            /* a waiting long-poll holds a web server worker like a stream: the site's
             * share (site_max_streams) is taken, come back later (held until r ends) */
            char hdr[64];
            int ms = pgc_admit_retry_ms(&app->cfg);
            snprintf(hdr, sizeof(hdr), "Retry-After: %d\r\n", (ms + 999) / 1000);
            pgc_req_send_error(r, 503, "busy", "the site holds as many long-polls and streams as it may; come back later",
                               hdr);
        } else if (news == 0 && wait_s > 0 && app->hub) {
            /* nothing new yet: wait for it, whatever If-None-Match says (a matching tag
             * gets 304 at the deadline, not at once) */
            long_poll_hub(app, r, &tok, chans, n, &p, wait_s);
        } else if (news == 0 && wait_s > 0) {
            long_poll_cgi(app, r, &tok, chans, n, &p, wait_s);
        } else if (news == 0) {
            send_page(r, tok.tenant, &p); /* 304 when If-None-Match holds its tag */
        }
        free(p.text.p);
    }
    free(since_text);
    pgc_cursor_free(&since);
    pgc_cursor_free(&cur);
    pgc_query_free(chans, n);
    pgc_token_free(&tok);
}
