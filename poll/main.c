/* pgcast-poll.fcgi: polling, long-polling, publish, presence and health (SPEC §4).
 * Routes by the request path: the first segment named events, publish, presence or
 * health; what follows events/ is a channel name. */
#include <json.h>
#include <stdlib.h>
#include <string.h>

#include "jsonin.h"
#include "poll.h"

static const char usage[] =
    "usage: pgcast-poll.fcgi [--listen PATH|HOST:PORT]\n"
    "\n"
    "pgcast's polling handler:\n"
    "  GET  {prefix}/events?channel=C[&channel=D][&since=CURSOR][&limit=N][&wait=S]\n"
    "  GET  {prefix}/events/{channel}\n"
    "  POST {prefix}/publish      {\"channel\",\"type\",\"payload\"}\n"
    "  GET  {prefix}/presence?channel=C\n"
    "  POST {prefix}/presence     {\"channel\",\"action\":\"join|heartbeat|leave\",\"data\"}\n"
    "  GET  {prefix}/health\n"
    "\n"
    "Runs as FastCGI on the socket the web server passes (lighttpd bin-path, Apache mod_fcgid),\n"
    "as FastCGI on a socket of its own with --listen (spawn-fcgi, Apache mod_proxy_fcgi), or as\n"
    "plain CGI (one request per process).\n"
    "\n"
    "Configuration: the file named by PGCAST_CONFIG and PGCAST_* variables\n"
    "(see pgcast.conf.example). SIGTERM ends the process after the requests in flight.\n";

struct json_object *poll_json_body(pgc_app *app, pgc_request *r)
{
    if (pgc_app_json_content_type(r) != 0)
        return NULL;
    char *body;
    size_t len;
    int rc = pgc_req_read_body(r, &body, &len, app->cfg.max_message_bytes);
    if (rc == -2) {
        pgc_req_send_error(r, 413, "too_large", "the body is larger than max_message_bytes", "");
        return NULL;
    }
    if (rc != 0) {
        pgc_req_send_error(r, 400, "bad_request", "the body could not be read", "");
        return NULL;
    }
    const char *why;
    struct json_object *obj = pgc_json_parse_client(body, len, &why);
    free(body);
    if (!obj || !json_object_is_type(obj, json_type_object)) {
        char msg[128];
        snprintf(msg, sizeof(msg), "the body must be one JSON object%s%s", obj ? "" : ": ", obj ? "" : why);
        json_object_put(obj);
        pgc_req_send_error(r, 400, "invalid_json", msg, "");
        return NULL;
    }
    return obj;
}

const char *poll_json_str(struct json_object *obj, const char *key, bool *bad)
{
    struct json_object *v;
    if (!json_object_object_get_ex(obj, key, &v) || json_object_is_type(v, json_type_null))
        return NULL;
    if (!json_object_is_type(v, json_type_string)) {
        *bad = true;
        return NULL;
    }
    return json_object_get_string(v);
}

static void route(pgc_app *app, pgc_request *r)
{
    const char *uri = pgc_req_param(r, "REQUEST_URI");
    char *path = strndup(uri ? uri : "", uri ? strcspn(uri, "?") : 0);
    if (!path || pgc_url_decode(path) != 0) {
        free(path);
        pgc_req_send_error(r, 400, "bad_request", "malformed URL", "");
        return;
    }
    static const char *const names[] = {"events", "publish", "presence", "health"};
    int which = -1;
    const char *rest = NULL;
    for (char *seg = path; which < 0 && seg && *seg;) {
        while (*seg == '/')
            seg++;
        size_t len = strcspn(seg, "/");
        for (int i = 0; i < 4; i++) {
            if (strlen(names[i]) == len && strncmp(seg, names[i], len) == 0) {
                which = i;
                rest = seg[len] == '/' ? seg + len + 1 : NULL;
                break;
            }
        }
        seg = seg[len] ? seg + len : NULL;
    }
    static const char *const methods[] = {"GET, HEAD", "POST", "GET, POST"};
    if (which >= 0 && which < 3 && pgc_app_origin(app, r, methods[which]) != 0) {
        free(path);
        return;
    }
    /* a body over the bound is refused before anything else (no token needed): a
     * web server that streams bodies to the handler then stops sending it */
    const char *cl = pgc_req_param(r, "CONTENT_LENGTH");
    if (which >= 0 && cl && *cl && strtoull(cl, NULL, 10) > app->cfg.max_message_bytes) {
        char *body;
        size_t len;
        if (pgc_req_read_body(r, &body, &len, app->cfg.max_message_bytes) == 0)
            free(body);
        pgc_req_send_error(r, 413, "too_large", "the body is larger than max_message_bytes", "");
        free(path);
        return;
    }
    switch (which) {
    case 0: poll_events(app, r, rest && *rest ? rest : NULL); break;
    case 1: poll_publish(app, r); break;
    case 2: poll_presence(app, r); break;
    case 3: poll_health(app, r); break;
    default: pgc_req_send_error(r, 404, "not_found", "no such endpoint (events, publish, presence, health)", "");
    }
    free(path);
}

int main(int argc, char **argv)
{
    return pgc_app_main(argc, argv, "pgcast-poll", "poll", usage, route);
}
