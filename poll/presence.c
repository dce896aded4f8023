/* GET {prefix}/presence?channel=C -> {"channel","members":[...]}
 * POST {prefix}/presence {"channel","action":"join|heartbeat|leave","data"} lets polling
 * clients be present: members expire after the channel type's timeout_ms without a
 * heartbeat. The member's connectionId is the body's "connectionId" when given (a tab),
 * else "poll:" + the token's sub. Presence lives in PostgreSQL (sql/005_presence.sql),
 * shared with the WebSocket sidecars. */
#include <json.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "channel.h"
#include "poll.h"

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
    char connbuf[256];
    snprintf(connbuf, sizeof(connbuf), "poll:%s", tok->sub ? tok->sub : "anonymous");
    if (!conn || !*conn || strlen(conn) > 200)
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
            const char *p[6] = {tok->tenant, channel, conn, tok->sub ? tok->sub : conn, tok->name, data_text};
            res = pgc_app_query(app, r, "SELECT realtime.presence_join($1, $2, $3, $4, $5, $6::jsonb)", 6, p);
        } else {
            const char *p[3] = {tok->tenant, channel, conn};
            res = pgc_app_query(app, r,
                                strcmp(action, "leave") == 0 ? "SELECT realtime.presence_leave($1, $2, $3)"
                                                             : "SELECT realtime.presence_heartbeat($1, $2, $3)",
                                3, p);
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
