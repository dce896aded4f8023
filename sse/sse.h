/* The SSE handler's parts: main.c checks the request and opens the stream; stream.c is
 * the stream's life (events, heartbeats, limits) as callbacks of fcgi/stream.h. */
#ifndef PGCAST_SSE_H
#define PGCAST_SSE_H

#include <stdbool.h>
#include <stdint.h>

#include "app.h"
#include "cursor.h"
#include "stream.h"

/* Events held until every channel's position is known (hub mode); bounded like the
 * hub's queue (queue_events, queue_bytes). */
typedef struct sse_held {
    pgc_event **v;
    size_t n, cap;
    size_t bytes;
} sse_held;

typedef struct sse_stream {
    pgc_app *app;
    pgc_stream *st;
    pgc_token tok;
    char **chans;
    int nchans;
    pgc_cursor cur;      /* the position after what was sent: every id: line */
    pgc_sub *sub;        /* hub mode */
    int announced;       /* channels whose SUBSCRIBED arrived (hub mode) */
    bool wrote;          /* an event went out since the keepalive was last pushed back */
    bool positioned;     /* cur names every channel's position: id: lines may be sent */
    bool unpadded;       /* written since the last sse_padding_bytes comment */
    const char *failed;  /* the stream could not be set up (e.g. a failed subscription) */
    sse_held held;
    PGconn *cgi_conn;    /* plain CGI: the process's one connection while a read holds it */
    int max_duration_s;  /* sse_max_duration_s as it applies to this stream (0 = none) */
    int hb_ms;
    uint64_t cfg_gen;
    int64_t next_hb, next_ka, next_read, deadline, token_end; /* monotonic ms; 0 = none */
    long sent;
    pgc_stats_conn *stat;
} sse_stream;

/* Callbacks of a stream fed by the process's hub, and of a plain-CGI stream that reads
 * the log itself. */
extern const pgc_stream_ops sse_hub_ops;
extern const pgc_stream_ops sse_cgi_ops;

/* "id: <cursor>" on a block of its own: sets the client's last event id (what it resumes
 * from) without firing an event. Sent once every channel is positioned. */
int sse_write_position(sse_stream *s);

/* Heartbeat interval, maximum duration and token expiry, from now. */
void sse_stream_start_timers(sse_stream *s);

/* Plain CGI: takes the process's one pooled connection into s->cgi_conn (0), or -1
 * when the database is unreachable; and gives it back (the stats writer shares it). */
int sse_cgi_acquire(sse_stream *s);
void sse_cgi_release(sse_stream *s);

/* Frees what the stream state holds (and s). */
void sse_stream_free(sse_stream *s);

#endif
