/* The poll handler's routes (one file each). */
#ifndef PGCAST_POLL_H
#define PGCAST_POLL_H

#include "app.h"

/* GET {prefix}/events and {prefix}/events/{channel}; path_channel may be NULL. */
void poll_events(pgc_app *app, pgc_request *r, const char *path_channel);
/* POST {prefix}/publish */
void poll_publish(pgc_app *app, pgc_request *r);
/* GET and POST {prefix}/presence */
void poll_presence(pgc_app *app, pgc_request *r);
/* GET {prefix}/health */
void poll_health(pgc_app *app, pgc_request *r);

/* The request body as a JSON object: 413 over max_message_bytes, 400 when not an
 * object. NULL with the answer sent. */
struct json_object *poll_json_body(pgc_app *app, pgc_request *r);
/* A string member of obj, or NULL; *bad set when present but not a string. */
const char *poll_json_str(struct json_object *obj, const char *key, bool *bad);

#endif
