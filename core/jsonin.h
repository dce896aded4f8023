/* JSON from clients (HTTP bodies, WebSocket messages), parsed once, the same way on
 * every path: exactly one JSON value, valid UTF-8, and no \u0000 anywhere — PostgreSQL's
 * jsonb cannot store it, and json-c cuts object keys at it, so "a\u0000b" would be read
 * as "a". What is refused gets a reason a client can act on. */
#ifndef PGCAST_JSONIN_H
#define PGCAST_JSONIN_H

#include <json.h>
#include <stdbool.h>
#include <stddef.h>

/* The value in text[0..len), or NULL with *why set to a static reason. */
struct json_object *pgc_json_parse_client(const char *text, size_t len, const char **why);

#endif
