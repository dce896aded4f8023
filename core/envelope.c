/* The client-facing JSON bytes, built with json-c. The event payload arrives as JSON text
 * from PostgreSQL (jsonb's canonical output), so it is embedded raw through a custom
 * serializer rather than parsed and printed again: the same bytes on every transport,
 * and no second parse of a 1 MiB payload.
 *
 * Why embedding it unparsed is safe: the only caller is the log reader (pgc_db_read),
 * whose payload column is realtime_events_log.event_data::text, a jsonb column. jsonb
 * accepts only valid JSON and prints one JSON value on one line (control characters in
 * strings are escaped, so it never holds a raw CR or LF that could end an SSE data line),
 * with each key once. Nothing received by NOTIFY reaches this function (sql/011: a
 * notification is only a wake-up). Every other field (type, channel) goes through json-c
 * as a string and is escaped. */
#include "envelope.h"

#include <json.h>
#include <stdlib.h>
#include <string.h>

struct raw_json {
    const char *text;
    size_t len;
};

static int raw_serializer(struct json_object *jso, struct printbuf *pb, int level, int flags)
{
    struct raw_json *raw = json_object_get_userdata(jso);
    return printbuf_memappend(pb, raw->text, (int)raw->len) < 0 ? -1 : 0;
}

/* Serialises obj (which it releases) into a malloc'd copy. */
static char *finish(struct json_object *obj, size_t *len)
{
    if (!obj)
        return NULL;
    size_t n = 0;
    const char *s = json_object_to_json_string_length(obj, JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE, &n);
    char *out = NULL;
    if (s && (out = malloc(n + 1)) != NULL) {
        memcpy(out, s, n + 1);
        if (len)
            *len = n;
    }
    json_object_put(obj);
    return out;
}

/* json_object_object_add fails only on allocation failure; one check at the end. */
static int add(struct json_object *obj, const char *key, struct json_object *val)
{
    if (!val)
        return -1;
    if (json_object_object_add(obj, key, val) != 0) {
        json_object_put(val);
        return -1;
    }
    return 0;
}

char *pgc_envelope_event(const char *type, const char *channel, int64_t seq, const char *payload_json,
                         size_t payload_len, int64_t ts_ms, size_t *len)
{
    struct json_object *obj = json_object_new_object();
    if (!obj)
        return NULL;
    struct raw_json raw = {payload_json, payload_len};
    struct json_object *payload = json_object_new_object();
    if (payload)
        json_object_set_serializer(payload, raw_serializer, &raw, NULL);
    int rc = add(obj, "type", json_object_new_string(type)) | add(obj, "channel", json_object_new_string(channel)) |
             add(obj, "seq", json_object_new_int64(seq)) | add(obj, "payload", payload) |
             add(obj, "timestamp", json_object_new_int64(ts_ms));
    if (rc != 0) {
        json_object_put(obj);
        return NULL;
    }
    return finish(obj, len);
}

char *pgc_envelope_gap(const char *channel, int64_t from, int64_t to, size_t *len)
{
    struct json_object *obj = json_object_new_object();
    if (!obj)
        return NULL;
    int rc = add(obj, "type", json_object_new_string("gap")) | add(obj, "channel", json_object_new_string(channel)) |
             add(obj, "from", json_object_new_int64(from)) | add(obj, "to", json_object_new_int64(to));
    if (rc != 0) {
        json_object_put(obj);
        return NULL;
    }
    return finish(obj, len);
}

char *pgc_envelope_heartbeat(int64_t ts_ms, size_t *len)
{
    struct json_object *obj = json_object_new_object();
    if (!obj)
        return NULL;
    if ((add(obj, "type", json_object_new_string("heartbeat")) | add(obj, "timestamp", json_object_new_int64(ts_ms))) != 0) {
        json_object_put(obj);
        return NULL;
    }
    return finish(obj, len);
}

char *pgc_envelope_http_error(const char *code, const char *message, size_t *len)
{
    struct json_object *obj = json_object_new_object();
    struct json_object *err = json_object_new_object();
    if (!obj || !err) {
        json_object_put(obj);
        json_object_put(err);
        return NULL;
    }
    int rc = add(err, "code", json_object_new_string(code)) | add(err, "message", json_object_new_string(message));
    if (rc != 0 || add(obj, "error", err) != 0) {
        if (rc != 0)
            json_object_put(err);
        json_object_put(obj);
        return NULL;
    }
    return finish(obj, len);
}

char *pgc_envelope_error(const char *code, const char *message, const char *request_id, size_t *len)
{
    struct json_object *obj = json_object_new_object();
    if (!obj)
        return NULL;
    int rc = add(obj, "type", json_object_new_string("error")) | add(obj, "code", json_object_new_string(code)) |
             add(obj, "message", json_object_new_string(message));
    if (request_id)
        rc |= add(obj, "requestId", json_object_new_string(request_id));
    if (rc != 0) {
        json_object_put(obj);
        return NULL;
    }
    return finish(obj, len);
}
