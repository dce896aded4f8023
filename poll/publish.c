/* POST {prefix}/publish {"channel","type","payload"} -> 201 {"channel","seq"}.
 * Every check happens before the one INSERT: a refused request writes nothing.
 * Publishes are limited per token subject (poll_subject) across every process and both
 * publish paths: realtime.publish_limited (sql/012) takes a token of the subject's bucket
 * (publish_rate a second, publish_burst at most) in the publish's own statement; without
 * one the answer is 429 rate_limited with Retry-After. */
#include <json.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "channel.h"
#include "poll.h"

void poll_publish(pgc_app *app, pgc_request *r)
{
    if (pgc_app_method(r, "POST") != 0)
        return;
    pgc_token tok;
    if (poll_authenticate(app, r, &tok) != 0)
        return;
    struct json_object *body = poll_json_body(app, r), *payload = NULL;
    if (!body) {
        pgc_token_free(&tok);
        return;
    }
    bool bad = false;
    const char *channel = poll_json_str(body, "channel", &bad);
    const char *type = poll_json_str(body, "type", &bad);
    json_object_object_get_ex(body, "payload", &payload);
    if (bad || !channel || !type || !*type || strlen(type) > 200) {
        pgc_req_send_error(r, 400, "missing_field",
                           "channel (string) and type (string of 1-200 bytes) are required; payload is any JSON", "");
    } else if (pgc_app_check_channel(r, &tok, channel, true) == 0) {
        const char *payload_text =
            payload ? json_object_to_json_string_ext(payload, JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE)
                    : "{}";
        if (strlen(payload_text) > app->cfg.max_payload_bytes) {
            pgc_req_send_error(r, 413, "too_large", "the payload is larger than max_payload_bytes", "");
            json_object_put(body);
            pgc_token_free(&tok);
            return;
        }
        char subject[512], rate[16], burst[16];
        if (poll_subject(r, &tok, subject, sizeof(subject)) != 0) {
            pgc_req_send_error(r, 400, "bad_request", "the token's sub is too long", "");
            json_object_put(body);
            pgc_token_free(&tok);
            return;
        }
        snprintf(rate, sizeof(rate), "%d", app->cfg.publish_rate);
        snprintf(burst, sizeof(burst), "%d", app->cfg.publish_burst);
        const char *params[7] = {subject, rate, burst, tok.tenant, channel, type, payload_text};
        /* publish_rate 0: no limit, and no bucket to take (publish itself) */
        PGresult *res = app->cfg.publish_rate > 0
                            ? pgc_app_query(app, r,
                                            "SELECT seq, retry_after_ms FROM realtime.publish_limited($1, $2, $3, $4, "
                                            "$5, $6, $7::jsonb)",
                                            7, params)
                            : pgc_app_query(app, r, "SELECT realtime.publish($1, $2, $3, $4::jsonb), NULL", 4,
                                            params + 3);
        if (res && PQgetisnull(res, 0, 0)) {
            long ms = strtol(PQgetvalue(res, 0, 1), NULL, 10);
            char hdr[64], msg[128];
            snprintf(hdr, sizeof(hdr), "Retry-After: %ld\r\n", ms <= 0 ? 1 : (ms + 999) / 1000);
            snprintf(msg, sizeof(msg), "too many publishes (at most %d a second); retry in %ld ms", app->cfg.publish_rate,
                     ms);
            pgc_req_send_error(r, 429, "rate_limited", msg, hdr);
            PQclear(res);
        } else if (res) {
            struct json_object *out = json_object_new_object();
            json_object_object_add(out, "channel", json_object_new_string(channel));
            json_object_object_add(out, "seq", json_object_new_int64(strtoll(PQgetvalue(res, 0, 0), NULL, 10)));
            size_t len;
            const char *s = json_object_to_json_string_length(out, JSON_C_TO_STRING_PLAIN, &len);
            pgc_req_send_json(r, 201, s, len, "");
            json_object_put(out);
            PQclear(res);
        }
    }
    json_object_put(body);
    pgc_token_free(&tok);
}
