#include "message.h"

#include <json-c/json.h>
#include <stdlib.h>
#include <string.h>

#include "channel.h"
#include "jsonin.h"

static char *dup_json(json_object *o)
{
    const char *s = json_object_to_json_string_ext(o, JSON_C_TO_STRING_PLAIN);
    return s ? strdup(s) : NULL;
}

static void fail(ws_action *a, const char *code, const char *msg)
{
    a->kind = WS_ACT_ERROR;
    a->code = code;
    a->message = msg;
}

static const struct { const char *name; ws_action_kind kind; } kinds[] = {
    { "ping", WS_ACT_PING },
    { "subscribe", WS_ACT_SUBSCRIBE },
    { "unsubscribe", WS_ACT_UNSUBSCRIBE },
    { "publish", WS_ACT_PUBLISH },
    { "presence.join", WS_ACT_PRESENCE_JOIN },
    { "presence.update", WS_ACT_PRESENCE_UPDATE },
    { "presence.leave", WS_ACT_PRESENCE_LEAVE },
    { "presence.get", WS_ACT_PRESENCE_GET },
    { "auth", WS_ACT_AUTH },
};

/* Fields of each kind, after type was recognised. */
static void parse_fields(json_object *msg, size_t max_payload, ws_action *a)
{
    json_object *v;
    if (a->kind == WS_ACT_PING) {
        if (json_object_object_get_ex(msg, "timestamp", &v) && !(a->timestamp = dup_json(v)))
            fail(a, "internal", "out of memory");
        return;
    }
    if (a->kind == WS_ACT_AUTH) {
        if (!json_object_object_get_ex(msg, "token", &v)) return fail(a, "missing_field", "token is required");
        if (!json_object_is_type(v, json_type_string) || json_object_get_string_len(v) == 0)
            return fail(a, "bad_request", "token must be a non-empty string");
        if (!(a->token = strdup(json_object_get_string(v)))) fail(a, "internal", "out of memory");
        return;
    }
    if (!json_object_object_get_ex(msg, "channel", &v)) return fail(a, "missing_field", "channel is required");
    if (!json_object_is_type(v, json_type_string) || !pgc_channel_valid(json_object_get_string(v)))
        return fail(a, "bad_channel", "not a valid channel name");
    if (!(a->channel = strdup(json_object_get_string(v)))) return fail(a, "internal", "out of memory");

    if (a->kind == WS_ACT_SUBSCRIBE) {
        if (json_object_object_get_ex(msg, "since", &v) && !json_object_is_type(v, json_type_null)) {
            if (!json_object_is_type(v, json_type_int) || json_object_get_int64(v) < 0)
                return fail(a, "bad_request", "since must be a non-negative integer");
            a->since = json_object_get_int64(v);
        }
        if (json_object_object_get_ex(msg, "events", &v) && !json_object_is_type(v, json_type_null)) {
            if (!json_object_is_type(v, json_type_array))
                return fail(a, "bad_request", "events must be an array of strings");
            size_t n = json_object_array_length(v);
            if (n > 0 && !(a->events = calloc(n, sizeof *a->events))) return fail(a, "internal", "out of memory");
            for (size_t i = 0; i < n; i++) {
                json_object *e = json_object_array_get_idx(v, i);
                if (!json_object_is_type(e, json_type_string))
                    return fail(a, "bad_request", "events must be an array of strings");
                if (!(a->events[a->n_events++] = strdup(json_object_get_string(e))))
                    return fail(a, "internal", "out of memory");
            }
        }
    } else if (a->kind == WS_ACT_PUBLISH) {
        if (!json_object_object_get_ex(msg, "event", &v)) return fail(a, "missing_field", "event is required");
        if (!json_object_is_type(v, json_type_string) || json_object_get_string_len(v) == 0)
            return fail(a, "bad_request", "event must be a non-empty string");
        if (!(a->event = strdup(json_object_get_string(v)))) return fail(a, "internal", "out of memory");
    }
    if (a->kind == WS_ACT_PUBLISH || a->kind == WS_ACT_PRESENCE_JOIN || a->kind == WS_ACT_PRESENCE_UPDATE) {
        if (!json_object_object_get_ex(msg, "payload", &v) || json_object_is_type(v, json_type_null)) {
            if (a->kind == WS_ACT_PUBLISH) return fail(a, "missing_field", "payload is required");
            v = NULL;
        } else if (!json_object_is_type(v, json_type_object)) {
            return fail(a, "bad_request", "payload must be an object");
        }
        if (!(a->payload = v ? dup_json(v) : strdup("{}"))) return fail(a, "internal", "out of memory");
        if (strlen(a->payload) > max_payload) return fail(a, "too_large", "the payload is larger than max_payload_bytes");
    }
}

void ws_message_parse(const char *text, size_t len, size_t max_payload, ws_action *a)
{
    memset(a, 0, sizeof *a);
    a->since = -1;
    /* trailing bytes after the object, a truncated one, \u0000 in a string: all refused */
    const char *why;
    json_object *msg = pgc_json_parse_client(text, len, &why);
    if (!msg || !json_object_is_type(msg, json_type_object)) {
        json_object_put(msg);
        return fail(a, "invalid_json", msg ? "a message is one JSON object" : why);
    }
    json_object *type = NULL, *req = NULL;
    if (json_object_object_get_ex(msg, "requestId", &req) && !(a->request_id = dup_json(req))) {
        json_object_put(msg);
        return fail(a, "internal", "out of memory");
    }
    if (!json_object_object_get_ex(msg, "type", &type)) {
        fail(a, "missing_field", "type is required");
    } else if (!json_object_is_type(type, json_type_string)) {
        fail(a, "unknown_type", "type must be a string");
    } else {
        const char *t = json_object_get_string(type);
        size_t i;
        for (i = 0; i < sizeof kinds / sizeof kinds[0]; i++)
            if (strcmp(t, kinds[i].name) == 0) break;
        if (i == sizeof kinds / sizeof kinds[0]) {
            fail(a, "unknown_type", "unknown message type");
        } else {
            a->kind = kinds[i].kind;
            parse_fields(msg, max_payload, a);
        }
    }
    json_object_put(msg);
}

void ws_action_free(ws_action *a)
{
    free(a->request_id);
    free(a->channel);
    for (size_t i = 0; i < a->n_events; i++) free(a->events[i]);
    free(a->events);
    free(a->event);
    free(a->payload);
    free(a->timestamp);
    free(a->token);
    memset(a, 0, sizeof *a);
}

char *ws_error_json(const char *code, const char *message, const char *request_id)
{
    json_object *o = json_object_new_object();
    if (!o) return NULL;
    json_object_object_add(o, "type", json_object_new_string("error"));
    json_object_object_add(o, "code", json_object_new_string(code));
    json_object_object_add(o, "message", json_object_new_string(message));
    if (request_id) json_object_object_add(o, "requestId", json_tokener_parse(request_id));
    char *s = dup_json(o);
    json_object_put(o);
    return s;
}

char *ws_message_reply(const ws_action *a)
{
    if (a->kind == WS_ACT_ERROR) return ws_error_json(a->code, a->message, a->request_id);
    if (a->kind != WS_ACT_PING) return NULL;
    json_object *o = json_object_new_object();
    if (!o) return NULL;
    json_object_object_add(o, "type", json_object_new_string("pong"));
    if (a->timestamp) json_object_object_add(o, "timestamp", json_tokener_parse(a->timestamp));
    if (a->request_id) json_object_object_add(o, "requestId", json_tokener_parse(a->request_id));
    char *s = dup_json(o);
    json_object_put(o);
    return s;
}
