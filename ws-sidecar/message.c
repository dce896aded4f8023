#include "message.h"

#include <json-c/json.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static char *reply(const char *type, const char *code, json_object *req)
{
    json_object *o = json_object_new_object();
    if (!o) return NULL;
    json_object_object_add(o, "type", json_object_new_string(type));
    if (code) json_object_object_add(o, "code", json_object_new_string(code));
    if (req) json_object_object_add(o, "requestId", json_object_get(req));
    char *s = strdup(json_object_to_json_string_ext(o, JSON_C_TO_STRING_PLAIN));
    json_object_put(o);
    return s;
}

char *ws_message_handle(const char *text, size_t len)
{
    json_tokener *tok = json_tokener_new();
    if (!tok) return NULL;
    json_object *msg = json_tokener_parse_ex(tok, text, (int)(len > 0x7fffffff ? 0x7fffffff : len));
    int bad = json_tokener_get_error(tok) != json_tokener_success || json_tokener_get_parse_end(tok) != len;
    json_tokener_free(tok);
    if (bad || !json_object_is_type(msg, json_type_object)) {
        json_object_put(msg);
        return reply("error", "invalid_json", NULL);
    }
    json_object *type = NULL, *req = NULL;
    json_object_object_get_ex(msg, "requestId", &req);
    char *out;
    if (!json_object_object_get_ex(msg, "type", &type) || !json_object_is_type(type, json_type_string))
        out = reply("error", "missing_field", req);
    else if (strcmp(json_object_get_string(type), "ping") == 0)
        out = reply("pong", NULL, req);
    else
        out = reply("error", "unknown_type", req);
    json_object_put(msg);
    return out;
}
