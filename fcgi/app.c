/* The shared shell of the HTTP handler programs. */
#include "app.h"

#include <getopt.h>
#include <strings.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "channel.h"
#include "log.h"
#include "origin.h"
#include "server.h"
#include "version.h"

static pgc_app the_app;
static pgc_app_handler the_handler;

static void dispatch(pgc_request *r, void *ctx) { the_handler((pgc_app *)ctx, r); }

int pgc_app_main(int argc, char **argv, const char *program, const char *kind, const char *usage,
                 pgc_app_handler handler)
{
    const char *listen = NULL;
    static const struct option opts[] = {{"listen", required_argument, NULL, 'l'},
                                         {"help", no_argument, NULL, 'h'},
                                         {"version", no_argument, NULL, 'V'},
                                         {NULL, 0, NULL, 0}};
    int c;
    while ((c = getopt_long(argc, argv, "l:hV", opts, NULL)) != -1) {
        switch (c) {
        case 'l': listen = optarg; break;
        case 'h': fputs(usage, stdout); return 0;
        case 'V': printf("%s %s\n", program, pgc_version()); return 0;
        default: fputs(usage, stderr); return 2;
        }
    }
    pgc_app *app = &the_app;
    the_handler = handler;
    app->program = program;
    char err[512];
    pgc_log_init(program, PGC_LOG_INFO);
    if (pgc_config_load(&app->cfg, NULL, err, sizeof(err)) != 0) {
        PGC_ERROR("configuration: %s", err);
        return 1;
    }
    pgc_log_set_level((enum pgc_log_level)app->cfg.log_level);
    if (!(app->verifier = pgc_verifier_new(&app->cfg, err, sizeof(err)))) {
        PGC_ERROR("tokens: %s", err);
        pgc_config_free(&app->cfg);
        return 1;
    }
    enum pgc_fcgi_mode mode = pgc_fcgi_detect_mode(listen);
    app->cgi = mode == PGC_MODE_CGI;
    app->pool = pgc_db_pool_new(app->cfg.database_url, app->cgi ? 2 : 8); /* CGI: the stream + stats */
    if (!app->cgi) {
        pgc_hub_options o = {.conninfo = app->cfg.database_url,
                             .kind = kind,
                             .queue_events = (size_t)app->cfg.queue_events,
                             .queue_bytes = app->cfg.queue_bytes,
                             .read_bytes = app->cfg.catchup_read_bytes,
                             .stall_ms = app->cfg.queue_stall_ms,
                             .relay_socket = app->cfg.relay_socket,
                             .relay_retry_ms = app->cfg.relay_retry_ms};
        if (!(app->hub = pgc_hub_start(&o, err, sizeof(err)))) {
            PGC_ERROR("hub: %s", err);
            return 1;
        }
    }
    if (app->pool) {
        char cgi_id[96];
        snprintf(cgi_id, sizeof(cgi_id), "%s-cgi:%d", kind, (int)getpid());
        app->stats = pgc_stats_new(app->pool, app->hub ? pgc_hub_instance_id(app->hub) : cgi_id, 1000);
    }
    int rc = app->pool ? pgc_fcgi_serve(mode, listen, dispatch, app) : 1;
    if (pgc_fcgi_active() > 0) {
        /* Requests or streams outlived the grace period: their threads and the stream
         * loop still use the hub, the pool, the stats and the config. Nothing is freed
         * under them, and no exit handler or destructor runs under them either: the
         * process ends here and takes it all (the hub's row in realtime_instances is
         * swept by the other processes). */
        PGC_WARN("%d requests still running: exiting without freeing what they use", pgc_fcgi_active());
        fflush(stdout);
        fflush(stderr);
        _exit(rc);
    }
    pgc_stats_free(app->stats);
    if (app->hub)
        pgc_hub_stop(app->hub);
    pgc_db_pool_free(app->pool);
    pgc_verifier_free(app->verifier);
    pgc_config_free(&app->cfg);
    return rc;
}

int pgc_app_authenticate(pgc_app *app, pgc_request *r, pgc_token *out)
{
    const char *query = pgc_req_param(r, "QUERY_STRING");
    char *qtok = pgc_query_get(query, "token");
    char *tok = pgc_token_from_request(pgc_req_param(r, "HTTP_AUTHORIZATION"), qtok, pgc_req_param(r, "HTTP_COOKIE"),
                                       app->cfg.token_cookie);
    free(qtok);
    pgc_token_status st = pgc_token_verify(app->verifier, tok, (int64_t)time(NULL), out);
    free(tok);
    if (st == PGC_TOKEN_OK)
        return 0;
    pgc_log(PGC_LOG_INFO, pgc_req_id(r), "401: %s", pgc_token_status_str(st));
    pgc_req_send_error(r, 401, st == PGC_TOKEN_MISSING ? "unauthorized" : "invalid_token", pgc_token_status_str(st),
                       "WWW-Authenticate: Bearer\r\n");
    return -1;
}

int pgc_app_check_channel(pgc_request *r, const pgc_token *t, const char *channel, bool publish)
{
    char msg[300];
    if (!pgc_channel_valid(channel)) {
        snprintf(msg, sizeof(msg), "invalid channel name '%.60s': 1-200 bytes of letters, digits and _ . : @ / -",
                 channel);
        pgc_req_send_error(r, 400, "bad_channel", msg, "");
        return -1;
    }
    if (publish ? !pgc_token_can_publish(t, channel) : !pgc_token_can_subscribe(t, channel)) {
        snprintf(msg, sizeof(msg), "the token may not %s channel %s", publish ? "publish to" : "subscribe to", channel);
        pgc_req_send_error(r, 403, "forbidden", msg, "");
        return -1;
    }
    return 0;
}

int pgc_app_channels(pgc_app *app, pgc_request *r, const pgc_token *t, const char *path_channel, char ***out)
{
    int n = pgc_query_all(pgc_req_param(r, "QUERY_STRING"), "channel", out);
    if (n < 0) {
        pgc_req_send_error(r, 400, "bad_request", "malformed query string", "");
        return -1;
    }
    if (path_channel) {
        char **v = realloc(*out, (size_t)(n + 1) * sizeof(char *));
        char *copy = strdup(path_channel);
        if (!v || !copy) {
            free(copy);
            if (v)
                *out = v;
            pgc_query_free(*out, n);
            pgc_req_send_error(r, 500, "internal", "out of memory", "");
            return -1;
        }
        *out = v;
        (*out)[n++] = copy;
    }
    char msg[128];
    if (n == 0 || n > app->cfg.max_channels) {
        snprintf(msg, sizeof(msg), n ? "at most %d channels per connection" : "at least one channel is required",
                 app->cfg.max_channels);
        pgc_req_send_error(r, 400, n ? "too_many_channels" : "missing_channel", msg, "");
        pgc_query_free(*out, n);
        return -1;
    }
    for (int i = 0; i < n; i++) {
        for (int k = 0; k < i; k++) {
            if (strcmp((*out)[i], (*out)[k]) == 0) {
                pgc_req_send_error(r, 400, "duplicate_channel", "a channel is named twice", "");
                pgc_query_free(*out, n);
                return -1;
            }
        }
        if (pgc_app_check_channel(r, t, (*out)[i], false) != 0) {
            pgc_query_free(*out, n);
            return -1;
        }
    }
    return n;
}

int pgc_app_method(pgc_request *r, const char *allow)
{
    const char *m = pgc_req_param(r, "REQUEST_METHOD");
    size_t ml = m ? strlen(m) : 0;
    for (const char *p = allow; m && *p;) {
        size_t l = strcspn(p, ",");
        if (l == ml && strncmp(p, m, l) == 0)
            return 0;
        p += l;
        while (*p == ',' || *p == ' ')
            p++;
    }
    char hdr[128], msg[128];
    snprintf(hdr, sizeof(hdr), "Allow: %s\r\n", allow);
    snprintf(msg, sizeof(msg), "method %s is not allowed here (allowed: %s)", m ? m : "?", allow);
    pgc_req_send_error(r, 405, "method_not_allowed", msg, hdr);
    return -1;
}

PGresult *pgc_app_query(pgc_app *app, pgc_request *r, const char *sql, int nparams, const char *const *params)
{
    PGconn *c = pgc_db_acquire(app->pool, 5000);
    if (!c) {
        pgc_req_send_error(r, 503, "database_unavailable", "the database is unreachable", "Retry-After: 1\r\n");
        return NULL;
    }
    PGresult *res = PQexecParams(c, sql, nparams, NULL, params, NULL, NULL, 0);
    ExecStatusType st = PQresultStatus(res);
    if (st == PGRES_TUPLES_OK || st == PGRES_COMMAND_OK) {
        pgc_db_release(app->pool, c, false);
        return res;
    }
    bool broken = PQstatus(c) != CONNECTION_OK;
    pgc_log(PGC_LOG_WARN, pgc_req_id(r), "query failed: %s", PQresultErrorMessage(res));
    PQclear(res);
    pgc_db_release(app->pool, c, broken);
    if (broken)
        pgc_req_send_error(r, 503, "database_unavailable", "the database is unreachable", "Retry-After: 1\r\n");
    else
        pgc_req_send_error(r, 500, "internal", "the database refused the request", "");
    return NULL;
}

/* The origin this request was addressed to: scheme and Host as the web server passes them. */
static const char *self_scheme(pgc_request *r)
{
    const char *scheme = pgc_req_param(r, "REQUEST_SCHEME");
    if (scheme && (strcasecmp(scheme, "http") == 0 || strcasecmp(scheme, "https") == 0))
        return scheme;
    const char *https = pgc_req_param(r, "HTTPS");
    return https && strcasecmp(https, "on") == 0 ? "https" : "http";
}

/* Whether the token of this request would be the cookie's (no Bearer, no ?token=). */
static bool cookie_token(pgc_app *app, pgc_request *r)
{
    const char *cookie = pgc_req_param(r, "HTTP_COOKIE");
    if (!cookie || !*cookie || !app->cfg.token_cookie || !*app->cfg.token_cookie ||
        !strstr(cookie, app->cfg.token_cookie))
        return false;
    char *qtok = pgc_query_get(pgc_req_param(r, "QUERY_STRING"), "token");
    char *t = pgc_token_from_request(pgc_req_param(r, "HTTP_AUTHORIZATION"), qtok, NULL, NULL);
    free(qtok);
    if (t) {
        free(t);
        return false;
    }
    t = pgc_token_from_request(NULL, NULL, cookie, app->cfg.token_cookie);
    bool from_cookie = t && *t;
    free(t);
    return from_cookie;
}

static void refuse_origin(pgc_request *r, const char *origin, const char *why)
{
    char msg[256];
    snprintf(msg, sizeof(msg), "%s%.120s%s", origin ? "the origin " : "", origin ? origin : "", why);
    pgc_log(PGC_LOG_INFO, pgc_req_id(r), "403: %s", msg);
    pgc_req_send_error(r, 403, "origin_not_allowed", msg, "Vary: Origin\r\n");
}

int pgc_app_origin(pgc_app *app, pgc_request *r, const char *methods)
{
    const char *origin = pgc_req_param(r, "HTTP_ORIGIN");
    const char *method = pgc_req_param(r, "REQUEST_METHOD");
    bool allowed = origin && *origin &&
                   pgc_origin_allowed(app->cfg.allowed_origins, origin, self_scheme(r), pgc_req_param(r, "HTTP_HOST"));
    if (method && strcmp(method, "OPTIONS") == 0) {
        if (!origin || !*origin) { /* not a CORS preflight: what the URL allows */
            pgc_req_printf(r, "Status: 204 No Content\r\nAllow: %s, OPTIONS\r\n\r\n", methods);
        } else if (!allowed) {
            refuse_origin(r, origin, " is not in allowed_origins");
            return -1;
        } else {
            pgc_req_printf(r,
                           "Status: 204 No Content\r\n"
                           "Access-Control-Allow-Origin: %s\r\n"
                           "Access-Control-Allow-Credentials: true\r\n"
                           "Access-Control-Allow-Methods: %s\r\n"
                           "Access-Control-Allow-Headers: Authorization, Content-Type, Last-Event-ID, If-None-Match\r\n"
                           "Access-Control-Max-Age: 600\r\n"
                           "Vary: Origin\r\n\r\n",
                           origin, methods);
        }
        pgc_req_flush(r);
        return -1;
    }
    if (!allowed && cookie_token(app, r)) {
        const char *site = pgc_req_param(r, "HTTP_SEC_FETCH_SITE");
        bool safe = method && (strcmp(method, "GET") == 0 || strcmp(method, "HEAD") == 0);
        if (origin && *origin) {
            refuse_origin(r, origin, " may not use the token cookie (allowed_origins)");
            return -1;
        }
        if (!safe || (site && strcasecmp(site, "cross-site") == 0)) {
            refuse_origin(r, NULL, "a request with the token cookie needs an allowed Origin");
            return -1;
        }
    }
    if (allowed) {
        char lines[600];
        snprintf(lines, sizeof(lines),
                 "Access-Control-Allow-Origin: %s\r\nAccess-Control-Allow-Credentials: true\r\n"
                 "Access-Control-Expose-Headers: ETag, Retry-After\r\nVary: Origin\r\n",
                 origin);
        pgc_req_add_head(r, lines);
    } else if (origin && *origin) {
        pgc_req_add_head(r, "Vary: Origin\r\n");
    }
    return 0;
}

int pgc_app_json_content_type(pgc_request *r)
{
    const char *ct = pgc_req_param(r, "CONTENT_TYPE");
    if (ct) {
        while (*ct == ' ' || *ct == '\t')
            ct++;
        size_t n = strcspn(ct, "; \t");
        if (n == 16 && strncasecmp(ct, "application/json", 16) == 0)
            return 0;
    }
    pgc_req_send_error(r, 415, "unsupported_media_type", "the body must be sent as Content-Type: application/json", "");
    return -1;
}
