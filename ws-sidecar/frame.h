/* RFC 6455 framing, server side, without I/O: the parser of client frames (masking,
 * fragmentation, control frames between fragments, close codes, UTF-8 of text, the
 * message size limit) and the header of server frames. Pure functions, fuzzed.
 *
 * Our own rather than wslay's: wslay's contexts embed two 4 KiB buffers per connection
 * (more than the whole budget of an idle connection) and copy every outgoing message
 * per connection, while a server frame of an event is the same bytes for every
 * connection: a 2-10 byte header before the event's shared JSON. */
#ifndef PGCAST_WS_FRAME_H
#define PGCAST_WS_FRAME_H
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

enum { WS_OP_CONT = 0, WS_OP_TEXT = 1, WS_OP_BINARY = 2, WS_OP_CLOSE = 8, WS_OP_PING = 9, WS_OP_PONG = 10 };

enum {
    WS_CLOSE_NORMAL = 1000, WS_CLOSE_GOING_AWAY = 1001, WS_CLOSE_PROTOCOL = 1002, WS_CLOSE_UNSUPPORTED = 1003,
    WS_CLOSE_NO_STATUS = 1005, WS_CLOSE_INVALID_DATA = 1007, WS_CLOSE_POLICY = 1008, WS_CLOSE_TOO_BIG = 1009,
    WS_CLOSE_SERVER_ERROR = 1011,
};

typedef struct ws_parser {
    size_t max_msg;     /* a message longer than this is refused with 1009 */
    int msg_op;         /* TEXT/BINARY while a fragmented message is assembled, else 0 */
    unsigned char *msg; /* its bytes so far (allocated only while fragmented) */
    size_t msg_len, msg_cap;
    bool msg_taken;     /* the assembled message was handed out: free it on the next call */
} ws_parser;

/* One unit out of the parser. */
typedef struct ws_frame_event {
    int op;        /* TEXT or BINARY: a complete message; PING, PONG, CLOSE; 0: a fragment */
    const unsigned char *data; /* payload, unmasked; valid until the next call */
    size_t len;
    uint16_t code; /* CLOSE: the code received, WS_CLOSE_NO_STATUS when none */
} ws_frame_event;

/* Parses the frame at buf[0..len), unmasking it in place. Returns the bytes consumed
 * (> 0) with *ev filled; 0 when the frame is not complete yet (call again with more
 * bytes in front of it, see ws_frame_need); or -code: the peer broke the protocol and
 * the connection is to be closed with that code (1002, 1007 or 1009). */
long ws_parse(ws_parser *p, unsigned char *buf, size_t len, ws_frame_event *ev);
/* The size of the frame that starts at buf, once its header is there (else 0). */
size_t ws_frame_need(const unsigned char *buf, size_t len);
void ws_parser_free(ws_parser *p);

/* The header of a final, unmasked frame of op with len payload bytes; out has room for
 * WS_HEADER_MAX bytes. Returns its length. */
#define WS_HEADER_MAX 10
size_t ws_frame_header(unsigned char *out, int op, size_t len);
#endif
