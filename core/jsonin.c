/* Client JSON (see jsonin.h). json-c validates UTF-8 on request; the \u0000 check is a
 * scan of the raw text, because after parsing a key has already been cut at the NUL. */
#include "jsonin.h"

#include <string.h>

/* A \u0000 escape or a raw NUL byte in text. In valid JSON a backslash only begins an
 * escape inside a string, so stepping over each escape finds every \u0000 and nothing
 * else ("\\u0000" is a backslash followed by the letters u0000). */
static bool has_nul(const char *text, size_t len)
{
    if (memchr(text, '\0', len))
        return true;
    for (size_t i = 0; i + 1 < len; i++) {
        if (text[i] != '\\')
            continue;
        if (text[i + 1] == 'u' && i + 5 < len && memcmp(text + i + 2, "0000", 4) == 0)
            return true;
        i++; /* the escaped character */
    }
    return false;
}

struct json_object *pgc_json_parse_client(const char *text, size_t len, const char **why)
{
    *why = "not valid JSON";
    if (len > 0x7fffffff)
        return NULL;
    struct json_tokener *tok = json_tokener_new();
    if (!tok) {
        *why = "out of memory";
        return NULL;
    }
    json_tokener_set_flags(tok, JSON_TOKENER_VALIDATE_UTF8);
    struct json_object *obj = json_tokener_parse_ex(tok, text, (int)len);
    enum json_tokener_error err = json_tokener_get_error(tok);
    bool complete = obj && err == json_tokener_success && json_tokener_get_parse_end(tok) == len;
    json_tokener_free(tok);
    if (err == json_tokener_error_parse_utf8_string)
        *why = "not valid UTF-8";
    if (complete && has_nul(text, len)) {
        complete = false;
        *why = "\\u0000 is not allowed in strings";
    }
    if (!complete) {
        json_object_put(obj);
        return NULL;
    }
    return obj;
}
