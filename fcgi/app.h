/* What every pgcast HTTP handler program shares: command line, configuration, token
 * verifier, the hub (FastCGI mode only), a small database pool, authentication and
 * channel checks. A handler's main() is one call to pgc_app_main. */
#ifndef PGCAST_FCGI_APP_H
#define PGCAST_FCGI_APP_H

#include "config.h"
#include "db.h"
#include "hub.h"
#include "stats.h"
#include "request.h"
#include "token.h"

typedef struct pgc_app {
    const char *program;
    pgc_config cfg;
    pgc_verifier *verifier;
    pgc_hub *hub;        /* NULL in plain-CGI mode: one request per process, no LISTEN */
    pgc_db_pool *pool;
    pgc_stats *stats;    /* realtime_connection_stats, flushed every second */
    bool cgi;
    bool listening;      /* FastCGI on a socket of its own (--listen), not one the web server gave */
} pgc_app;

typedef void (*pgc_app_handler)(pgc_app *app, pgc_request *r);

/* Parses --listen/--help/--version, loads the configuration, starts what the mode
 * needs, serves, and cleans up. kind: "sse" | "poll". Returns the exit code. */
int pgc_app_main(int argc, char **argv, const char *program, const char *kind, const char *usage,
                 pgc_app_handler handler);

/* The Origin rules and CORS of SPEC §3, first thing for every request of an endpoint
 * whose methods (e.g. "GET, HEAD") a page on another origin may use:
 * - an OPTIONS preflight is answered: 204 with Access-Control-Allow-* for an origin in
 *   allowed_origins, 403 origin_not_allowed for any other;
 * - a request whose token would come from the cookie is refused (403
 *   origin_not_allowed) unless its Origin is allowed (a GET or HEAD without Origin, as
 *   browsers send same-origin, passes unless Sec-Fetch-Site says cross-site);
 * - for an allowed Origin, the answer carries Access-Control-Allow-Origin, -Credentials,
 *   -Expose-Headers and Vary: Origin.
 * 0: go on with the request; -1: it is answered. */
int pgc_app_origin(pgc_app *app, pgc_request *r, const char *methods);

/* POST bodies must be application/json (a form or text/plain body is what a page on
 * another site can send without a preflight). 0, or -1 with 415 sent. */
int pgc_app_json_content_type(pgc_request *r);

/* The verified token of the request; on failure answers 401 (with the reason) and
 * returns -1. */
int pgc_app_authenticate(pgc_app *app, pgc_request *r, pgc_token *out);

/* Checks one channel name (400 bad_channel) and the token's right to it (403
 * forbidden; publish=true checks publish patterns). 0, or -1 with the answer sent. */
int pgc_app_check_channel(pgc_request *r, const pgc_token *t, const char *channel, bool publish);

/* The ?channel= values (plus path_channel when not NULL), 1..max_channels of them,
 * each checked as above. Returns the count, or -1 with the answer sent. */
int pgc_app_channels(pgc_app *app, pgc_request *r, const pgc_token *t, const char *path_channel, char ***out);

/* Runs one statement on a pooled connection. On failure answers 503
 * (database_unavailable) or 500 and returns NULL; otherwise the caller PQclear()s. */
PGresult *pgc_app_query(pgc_app *app, pgc_request *r, const char *sql, int nparams, const char *const *params);

/* "GET" etc.; answers 405 with Allow and returns -1 when the method is not in allow
 * (a comma-separated list). */
int pgc_app_method(pgc_request *r, const char *allow);

#endif
