/* The WebSocket transport of upgraded connections on the shared event loop (core/evloop.h):
 * one thread, one epoll, non-blocking sockets, RFC 6455 framing by frame.c, frames written
 * many at a time (sendmsg). */
#ifndef PGCAST_WS_LOOP_H
#define PGCAST_WS_LOOP_H
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "session.h"

typedef struct ws_loop ws_loop;

/* From the session's pump: more than the soft bound waits to be written, so stop taking
 * from the hub subscriber (the backlog then waits in the hub queue). The loop pumps again
 * once the connection has drained. */
bool ws_conn_backlogged(ws_conn *c);

typedef struct ws_loop_stats {
    uint64_t connections, messages_in, messages_out, queue_overflows;
} ws_loop_stats;

/* Ping intervals and timeouts come from each connection's channel types. */
ws_loop *ws_loop_new(const ws_env *env, size_t max_message_bytes, size_t queue_bytes);
/* Called from MHD's thread: hands an upgraded socket (and bytes read past the handshake)
 * to the loop with the verified token. The loop owns fd and the token from then on; on
 * -1 both stay with the caller. */
int ws_loop_adopt(ws_loop *l, int fd, const char *extra, size_t extra_len, pgc_token *tok);
/* Runs until ws_loop_stop; then closes every client with 1001 and returns. */
int ws_loop_run(ws_loop *l);
void ws_loop_stop(ws_loop *l);   /* async-signal-safe */
void ws_loop_get_stats(ws_loop *l, ws_loop_stats *out);
void ws_loop_free(ws_loop *l);
#endif
