/* GET {prefix}/presence?channel=C -> {"channel","members":[...]}
 * POST {prefix}/presence {"channel","action":"join|heartbeat|leave","connectionId","data"}
 * lets polling clients be present: members expire after the channel type's timeout_ms
 * without a heartbeat. Presence lives in PostgreSQL (sql/005, sql/012), shared with the
 * WebSocket sidecars.
 *
 * An entry belongs to the token's subject: its connection id is namespaced by the server
 * ("poll:" + sub + ":" + the body's connectionId, one per tab; "poll:~:" + id for a token
 * without sub, whose userId is then that connection id), and its owner (poll_subject) is
 * passed to the SQL functions, which act only on an entry of the same owner. A join past
 * presence_max_per_subject / presence_max_per_channel is refused with 429
 * too_many_members; a join over another subject's entry with 403 forbidden. */
#include <json.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "channel.h"
#include "log.h"
#include "poll.h"

int poll_subject(pgc_request *r, const pgc_token *tok, char *buf, size_t len)
{
    const char *addr = pgc_req_param(r, "REMOTE_ADDR");
    int n = tok->sub ? snprintf(buf, len, "sub:%s", tok->sub)
                     : snprintf(buf, len, "addr:%s", addr && *addr ? addr : "unknown");
    return n > 0 && (size_t)n < len ? 0 : -1;
}

/* A client's own part of a connection id: 1-64 bytes of [A-Za-z0-9_.-]. */
static bool client_id_ok(const char *id)
{
    size_t n = strlen(id);
    if (n < 1 || n > 64)
        return false;
    for (const char *p = id; *p; p++)
        if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9') || *p == '_' ||
              *p == '.' || *p == '-'))
            return false;
    return true;
}

/* One statement whose refusals the client must see as such: 403 when the entry is
 * another subject's (PC403), 429 at a cap (PC429); otherwise as pgc_app_query. */
static PGresult *presence_query(pgc_app *app, pgc_request *r, const char *sql, int n, const char *const *p)
{
    PGconn *c = pgc_db_acquire(app->pool, 5000);
    if (!c) {
        pgc_req_send_error(r, 503, "database_unavailable", "the database is unreachable", "Retry-After: 1\r\n");
        return NULL;
    }
    PGresult *res = PQexecParams(c, sql, n, NULL, p, NULL, NULL, 0);
    if (PQresultStatus(res) == PGRES_TUPLES_OK) {
        pgc_db_release(app->pool, c, false);
        return res;
    }
    const char *st = PQresultErrorField(res, PG_DIAG_SQLSTATE);
    bool broken = PQstatus(c) != CONNECTION_OK;
    if (st && strcmp(st, "PC429") == 0) {
        char msg[160];
        const char *m = PQresultErrorField(res, PG_DIAG_MESSAGE_PRIMARY);
        snprintf(msg, sizeof(msg), "%s", m && strncmp(m, "pgcast: ", 8) == 0 ? m + 8 : "too many presence members");
        pgc_req_send_error(r, 429, "too_many_members", msg, "Retry-After: 10\r\n");
    } else if (st && strcmp(st, "PC403") == 0) {
        pgc_req_send_error(r, 403, "forbidden", "this presence entry belongs to another subject", "");
    } else {
        pgc_log(PGC_LOG_WARN, pgc_req_id(r), "query failed: %s", PQresultErrorMessage(res));
        if (broken)
            pgc_req_send_error(r, 503, "database_unavailable", "the database is unreachable", "Retry-After: 1\r\n");
        else
            pgc_req_send_error(r, 500, "internal", "the database refused the request", "");
    }
    PQclear(res);
    pgc_db_release(app->pool, c, broken);
    return NULL;
}

static void members(pgc_app *app, pgc_request *r, const pgc_token *tok, const char *channel)
{
    const char *params[2] = {tok->tenant, channel};
    PGresult *res = pgc_app_query(app, r, "SELECT realtime.presence_members($1, $2)", 2, params);
    if (!res)
        return;
    struct json_object *out = json_object_new_object();
    json_object_object_add(out, "channel", json_object_new_string(channel));
    json_object_object_add(out, "members", json_tokener_parse(PQgetvalue(res, 0, 0)));
    size_t len;
    const char *s = json_object_to_json_string_length(out, JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE, &len);
    pgc_req_send_json(r, 200, s, len, "");
    json_object_put(out);
    PQclear(res);
}

static void get_presence(pgc_app *app, pgc_request *r, const pgc_token *tok)
{
    char *channel = pgc_query_get(pgc_req_param(r, "QUERY_STRING"), "channel");
    if (!channel)
        pgc_req_send_error(r, 400, "missing_channel", "channel is required", "");
    else if (pgc_app_check_channel(r, tok, channel, false) == 0)
        members(app, r, tok, channel);
    free(channel);
}

static void post_presence(pgc_app *app, pgc_request *r, const pgc_token *tok)
{
    struct json_object *body = poll_json_body(app, r), *data = NULL;
    if (!body)
        return;
    bool bad = false;
    const char *channel = poll_json_str(body, "channel", &bad);
    const char *action = poll_json_str(body, "action", &bad);
    const char *conn = poll_json_str(body, "connectionId", &bad);
    json_object_object_get_ex(body, "data", &data);
    char connbuf[256], owner[512];
    snprintf(connbuf, sizeof(connbuf), "poll:%.128s:%s", tok->sub ? tok->sub : "~", conn && *conn ? conn : "default");
    if (conn && *conn && !client_id_ok(conn)) {
        pgc_req_send_error(r, 400, "bad_request", "connectionId must be 1-64 bytes of [A-Za-z0-9_.-]", "");
        json_object_put(body);
        return;
    }
    if (poll_subject(r, tok, owner, sizeof(owner)) != 0 || (tok->sub && strlen(tok->sub) > 128)) {
        pgc_req_send_error(r, 400, "bad_request", "the token's sub is too long for presence", "");
        json_object_put(body);
        return;
    }
    conn = connbuf;
    if (bad || !channel || !action) {
        pgc_req_send_error(r, 400, "missing_field", "channel and action (join, heartbeat or leave) are required", "");
    } else if (data && !json_object_is_type(data, json_type_object)) {
        pgc_req_send_error(r, 400, "bad_request", "data must be a JSON object", "");
    } else if (data && strlen(json_object_to_json_string_ext(data, JSON_C_TO_STRING_PLAIN)) > app->cfg.max_payload_bytes) {
        pgc_req_send_error(r, 413, "too_large", "data is larger than max_payload_bytes", "");
    } else if (strcmp(action, "join") && strcmp(action, "heartbeat") && strcmp(action, "leave")) {
        pgc_req_send_error(r, 400, "bad_action", "action must be join, heartbeat or leave", "");
    } else if (pgc_app_check_channel(r, tok, channel, false) == 0) {
        PGresult *res;
        if (strcmp(action, "join") == 0) {
            const char *data_text = data ? json_object_to_json_string_ext(data, JSON_C_TO_STRING_PLAIN) : "{}";
            char per_owner[16], per_channel[16];
            snprintf(per_owner, sizeof(per_owner), "%d", app->cfg.presence_max_per_subject);
            snprintf(per_channel, sizeof(per_channel), "%d", app->cfg.presence_max_per_channel);
            const char *p[9] = {tok->tenant, channel, conn, owner, tok->sub ? tok->sub : conn, tok->name,
                                data_text, per_owner, per_channel};
            res = presence_query(app, r,
                                 "SELECT realtime.presence_join($1, $2, $3, $4, $5, $6, $7::jsonb, NULL, $8, $9)",
                                 9, p);
        } else {
            const char *p[4] = {tok->tenant, channel, conn, owner};
            res = presence_query(app, r,
                                 strcmp(action, "leave") == 0 ? "SELECT realtime.presence_leave($1, $2, $3, $4)"
                                                              : "SELECT realtime.presence_heartbeat($1, $2, $3, $4)",
                                 4, p);
            if (res && strcmp(action, "heartbeat") == 0 && strcmp(PQgetvalue(res, 0, 0), "t") != 0) {
                PQclear(res);
                res = NULL;
                pgc_req_send_error(r, 404, "not_present", "not a member (expired or never joined): join again", "");
            }
        }
        if (res) {
            PQclear(res);
            members(app, r, tok, channel);
        }
    }
    json_object_put(body);
}

void poll_presence(pgc_app *app, pgc_request *r)
{
    if (pgc_app_method(r, "GET, POST") != 0)
        return;
    pgc_token tok;
    if (poll_authenticate(app, r, &tok) != 0)
        return;
    if (strcmp(pgc_req_param(r, "REQUEST_METHOD"), "GET") == 0)
        get_presence(app, r, &tok);
    else
        post_presence(app, r, &tok);
    pgc_token_free(&tok);
}
