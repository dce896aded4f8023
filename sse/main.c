/*
 * pgcast-sse.fcgi: GET {prefix}/sse — Server-Sent Events (SPEC §4).
 *
 * This file checks the request (method, token, channels, cursor) and answers its errors
 * as JSON before any stream starts; then it writes the head and hands the stream to the
 * FastCGI runtime (fcgi/stream.h), whose callbacks are in stream.c.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "admit.h"
#include "channel.h"
#include "log.h"
#include "pgarray.h"
#include "server.h"
#include "sse.h"
#include "strutil.h"

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

/* Channels of the stream that the cursor does not position start where they are now. */
static int cgi_initial_positions(sse_stream *s)
{
    pgc_arr chans = {0};
    for (int i = 0; i < s->nchans; i++)
        pgc_arr_text(&chans, s->chans[i]);
    const char *p[2] = {s->tok.tenant, pgc_arr_end(&chans)};
    if (!p[1]) {
        free(chans.p);
        return -1;
    }
    PGresult *res = PQexecParams(s->cgi_conn, "SELECT realtime.cursor($1, $2::text[])", 2, NULL, p, NULL, NULL, 0);
    free(chans.p);
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

/* The stream's source: a hub subscriber (FastCGI) or a connection to read the log on
 * (CGI). 0, or -1 with the error answered. */
static int open_source(sse_stream *s, pgc_request *r)
{
    pgc_app *app = s->app;
    if (app->cgi) {
        /* held until the timers are set (the heartbeat interval is read on it) */
        if (sse_cgi_acquire(s) != 0 || cgi_initial_positions(s) != 0) {
            pgc_req_send_error(r, 503, "database_unavailable", "the database is unreachable", "");
            return -1;
        }
        return 0;
    }
    s->sub = pgc_sub_new(app->hub, s->tok.tenant, pgc_stream_wake, s->st);
    if (!s->sub) {
        pgc_req_send_error(r, 503, "unavailable", "out of resources", "");
        return -1;
    }
    return 0;
}

/* sse_max_duration_s as it applies to this stream. -1 (the default) means: streams of a
 * web server's own process (plain CGI, or Apache's mod_fcgid, whose FcgidBusyTimeout
 * of 300 s ends a longer request with an error) end after HOSTED_MAX_DURATION_S and
 * resume; streams of a FastCGI daemon (--listen, lighttpd) never end by themselves. */
#define HOSTED_MAX_DURATION_S 240
static int max_duration_s(pgc_app *app, pgc_request *r)
{
    int v = app->cfg.sse_max_duration_s;
    if (v >= 0)
        return v;
    if (app->cgi)
        return HOSTED_MAX_DURATION_S;
    const char *sw = pgc_req_param(r, "SERVER_SOFTWARE");
    bool inherited = !app->listening;
    return inherited && sw && strncmp(sw, "Apache", 6) == 0 ? HOSTED_MAX_DURATION_S : 0;
}

#define SSE_HEAD "Status: 200 OK\r\nContent-Type: text/event-stream\r\nCache-Control: no-cache\r\nX-Accel-Buffering: no\r\n\r\n"

/* "Come back later" for a stream over the site's or the process's bound. Not a 503:
 * EventSource gives up for good on any status but 200. A 200 event stream that sets
 * retry:, says why and ends makes EventSource reconnect after that long by itself, with
 * the Last-Event-ID it had (no id: line here: the resume point is unchanged); pgcast.js
 * reads the message and backs off (client/pgcast.js, _sseBusy). */
static void answer_busy(pgc_app *app, pgc_request *r, const char *why)
{
    int ms = pgc_admit_retry_ms(&app->cfg);
    pgc_req_printf(r,
                   "Status: 200 OK\r\nContent-Type: text/event-stream\r\nCache-Control: no-cache\r\n"
                   "X-Accel-Buffering: no\r\nRetry-After: %d\r\n\r\n"
                   ": busy: %s; come back later\n"
                   "retry: %d\n"
                   "data: {\"type\":\"error\",\"code\":\"busy\",\"message\":\"%s; come back later\","
                   "\"retryMs\":%d}\n\n",
                   (ms + 999) / 1000, why, ms, why, ms);
    pgc_req_flush(r);
}

static void handle(pgc_app *app, pgc_request *r)
{
    if (pgc_app_origin(app, r, "GET, HEAD") != 0)
        return;
    if (pgc_app_method(r, "GET, HEAD") != 0)
        return;
    const char *method = pgc_req_param(r, "REQUEST_METHOD");
    bool head = method && strcmp(method, "HEAD") == 0;
    sse_stream *s = calloc(1, sizeof(*s));
    if (!s) {
        pgc_req_send_error(r, 503, "unavailable", "out of memory", "");
        return;
    }
    s->app = app;
    pgc_cursor_init(&s->cur);
    if (pgc_app_authenticate(app, r, &s->tok) != 0) {
        sse_stream_free(s);
        return;
    }
    s->nchans = pgc_app_channels(app, r, &s->tok, NULL, &s->chans);
    if (s->nchans < 0) {
        s->nchans = 0;
        s->chans = NULL; /* freed already */
        sse_stream_free(s);
        return;
    }
    /* Last-Event-ID (what browsers send on reconnect) wins over ?since= */
    const char *last_id = pgc_req_param(r, "HTTP_LAST_EVENT_ID");
    char *since = last_id && *last_id ? strdup(last_id) : pgc_query_get(pgc_req_param(r, "QUERY_STRING"), "since");
    char err[256];
    int bad = since && pgc_cursor_parse(&s->cur, since, (size_t)app->cfg.max_channels, err, sizeof(err)) != 0;
    free(since);
    if (bad) {
        pgc_req_send_error(r, 400, "bad_cursor", err, "");
        sse_stream_free(s);
        return;
    }
    if (head) { /* the head a GET would have, without a stream */
        pgc_req_puts(r, SSE_HEAD);
        pgc_req_flush(r);
        sse_stream_free(s);
        return;
    }
    int max = app->cfg.sse_max_streams;
    if (!app->cgi && max > 0 && pgc_stream_count() >= max) {
        pgc_log(PGC_LOG_WARN, pgc_req_id(r), "busy: %d streams open (sse_max_streams)", pgc_stream_count());
        answer_busy(app, r, "this server holds as many streams as it may");
        sse_stream_free(s);
        return;
    }
    if (!pgc_admit_take(&app->cfg, r)) { /* the site's share (site_max_streams) is taken */
        answer_busy(app, r, "the site holds as many streams as it may");
        sse_stream_free(s);
        return;
    }
    s->st = pgc_stream_new(r, app->cgi ? &sse_cgi_ops : &sse_hub_ops, s);
    if (!s->st) {
        pgc_req_send_error(r, 503, "unavailable", "out of memory", "");
        sse_stream_free(s);
        return;
    }
    if (open_source(s, r) != 0) {
        pgc_stream *st = s->st;
        sse_stream_free(s); /* frees the subscriber first: no wake after this */
        pgc_stream_discard(st);
        return;
    }
    pgc_req_printf(r, SSE_HEAD "retry: %d\n\n", app->cfg.sse_retry_ms);
    if (app->cgi) /* every channel is positioned already */
        sse_write_position(s);
    s->max_duration_s = max_duration_s(app, r);
    sse_stream_start_timers(s);
    sse_cgi_release(s); /* the stats writer shares the process's one connection */
    pgc_buf chans = {0};
    for (int i = 0; i < s->nchans; i++) {
        pgc_buf_put(&chans, ",", i ? 1 : 0);
        pgc_buf_put(&chans, s->chans[i], strlen(s->chans[i]));
    }
    if (app->stats)
        s->stat = pgc_stats_open(app->stats, pgc_req_id(r), s->tok.tenant, s->tok.sub, "sse",
                                 chans.oom ? NULL : chans.p, NULL);
    free(chans.p);
    pgc_log(PGC_LOG_DEBUG, pgc_req_id(r), "stream open: tenant %s, %d channels, ends after %d s (0: never)",
            s->tok.tenant, s->nchans, s->max_duration_s);
    for (int i = 0; s->sub && !s->failed && i < s->nchans; i++) {
        if (pgc_sub_add(s->sub, s->chans[i], pgc_cursor_get(&s->cur, s->chans[i])) != 0) {
            pgc_log(PGC_LOG_WARN, pgc_req_id(r), "subscribing to %s failed; ending the stream", s->chans[i]);
            s->failed = "subscribe failed";
        }
    }
    pgc_stream_run(s->st); /* s belongs to the stream now; freed by its done callback */
}

int main(int argc, char **argv)
{
    return pgc_app_main(argc, argv, "pgcast-sse", "sse", usage, handle);
}
