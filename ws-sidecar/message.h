/* Client messages (SPEC §5): JSON text in, a parsed action out. Pure functions (no I/O,
 * no state), so the fuzz target (tests/fuzz/fuzz_ws_message.c) drives them directly. */
#ifndef PGCAST_WS_MESSAGE_H
#define PGCAST_WS_MESSAGE_H
#include <stddef.h>
#include <stdint.h>

typedef enum ws_action_kind {
    WS_ACT_ERROR = 0,     /* code / message say why */
    WS_ACT_PING,
    WS_ACT_SUBSCRIBE,
    WS_ACT_UNSUBSCRIBE,
    WS_ACT_PUBLISH,
    WS_ACT_PRESENCE_JOIN,
    WS_ACT_PRESENCE_UPDATE,
    WS_ACT_PRESENCE_LEAVE,
    WS_ACT_PRESENCE_GET,
    WS_ACT_AUTH,          /* renew the connection's token before its exp */
} ws_action_kind;

typedef struct ws_action {
    ws_action_kind kind;
    const char *code, *message;   /* ERROR: static strings */
    char *request_id;             /* JSON text of requestId (any JSON value), or NULL */
    char *channel;                /* validated channel name (SPEC §1 grammar) */
    int64_t since;                /* SUBSCRIBE: -1 = live only */
    char **events; size_t n_events; /* SUBSCRIBE: type filter (0 = all) */
    char *event;                  /* PUBLISH: event type */
    char *payload;                /* PUBLISH / PRESENCE_*: JSON text of the object */
    char *timestamp;              /* PING: JSON text of timestamp, echoed as is */
    char *token;                  /* AUTH: the new token */
} ws_action;

/* Always fills *a (kind ERROR on bad input); free with ws_action_free. A payload whose
 * JSON text is longer than max_payload bytes is refused (too_large). */
void ws_message_parse(const char *text, size_t len, size_t max_payload, ws_action *a);
void ws_action_free(ws_action *a);
/* {"type":"error","code":..,"message":..,"requestId":..}: a malloc'd string or NULL. */
char *ws_error_json(const char *code, const char *message, const char *request_id);
/* A reply for actions the loop answers without state (PING, ERROR); NULL otherwise. */
char *ws_message_reply(const ws_action *a);
#endif
