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

/* pgc_app_authenticate, remembering accepted tokens by their text until they expire
 * (auth.c): 0 with *out filled, or -1 with the 401 sent. */
int poll_authenticate(pgc_app *app, pgc_request *r, pgc_token *out);

/* Whether an event or a gap follows cur (every requested channel, seq >= 0) for the
 * tenant, from the channels' positions only; concurrent requests share one query
 * (positions.c). 1 yes, 0 no, -1 the database failed (*unreachable: could not be
 * reached at all). */
int poll_anything_after(pgc_app *app, const char *tenant, const pgc_cursor *cur, bool *unreachable);

/* Who a request acts as, for presence ownership and the publish rate limit: "sub:" + the
 * token's sub, or "addr:" + the client's address for a token without sub
 * (presence.c). 0, or -1 when it does not fit in len. */
int poll_subject(pgc_request *r, const pgc_token *tok, char *buf, size_t len);

/* The request body as a JSON object: 415 unless sent as application/json, 413 over max_message_bytes, 400 when not an
 * object. NULL with the answer sent. */
struct json_object *poll_json_body(pgc_app *app, pgc_request *r);
/* A string member of obj, or NULL; *bad set when present but not a string. */
const char *poll_json_str(struct json_object *obj, const char *key, bool *bad);

#endif
