/* Long-lived responses (SSE streams) of the FastCGI runtime.
 *
 * A handler writes the response head with the request API, then describes the rest of
 * the response as callbacks and hands it to pgc_stream_run. In FastCGI mode the stream
 * leaves the request's thread for the process's one event loop (core/evloop.h; stream.c
 * frames its FastCGI records): an idle stream costs no thread and a few hundred bytes,
 * and a wake-up costs one write to the web server, no context switch. A stream that ends
 * is released (done, then its memory) only after the loop's current batch. In plain-CGI mode, and for a connection the web
 * server wants to keep for further requests (FCGI_KEEP_CONN), the same callbacks run
 * on the request's own thread. The handler's code is the same either way.
 *
 * Every callback runs on one thread at a time (the loop's or the request's), never
 * concurrently with another callback of the same stream. */
#ifndef PGCAST_FCGI_STREAM_H
#define PGCAST_FCGI_STREAM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "request.h"

typedef struct pgc_stream pgc_stream;

typedef struct pgc_stream_ops {
    /* Woken (pgc_stream_wake) or the output has room again: write what is ready, and
     * stop early once pgc_stream_backlogged says so. NULL to go on, or the reason to
     * end the stream (what was written is still sent). */
    const char *(*pump)(pgc_stream *st, void *arg);
    /* Time-based work, called at the latest pgc_stream_set_due asked for (up to
     * PGC_STREAM_TICK_MS late). NULL or a reason to end, as pump. */
    const char *(*tick)(pgc_stream *st, void *arg, int64_t now_ms);
    /* The process is stopping: a last message for the client (the stream then ends). */
    void (*shutdown)(pgc_stream *st, void *arg);
    /* The stream ended (reason: the callback's, "client gone", "shutdown", ...): free
     * what arg holds. No callback of this stream runs after it. */
    void (*done)(pgc_stream *st, void *arg, const char *reason);
} pgc_stream_ops;

/* How late a tick may run on the stream loop: the loop checks its streams' due times
 * this often, not at every stream's own instant (one scan serves thousands). */
#define PGC_STREAM_TICK_MS 50

/* A stream for r, whose head the handler has written already. Wakes may be sent from
 * now on (e.g. a hub subscriber made with pgc_stream_wake and the stream as argument);
 * no callback runs before pgc_stream_run. NULL when out of memory. */
pgc_stream *pgc_stream_new(pgc_request *r, const pgc_stream_ops *ops, void *arg);

/* Frees a stream that was never run (no callback is called); wakes must have stopped. */
void pgc_stream_discard(pgc_stream *st);

/* Runs the stream: on the stream loop (returns at once; r must not be used after) or
 * on this thread (returns when the stream has ended). done is called either way. */
void pgc_stream_run(pgc_stream *st);

/* A pgc_wake_fn (hub.h): safe from any thread, cheap, never blocks. pump follows. */
void pgc_stream_wake(void *stream);

/* Response bytes; from callbacks only. -1 once the client is gone. */
int pgc_stream_write(pgc_stream *st, const char *data, size_t len);
int pgc_stream_printf(pgc_stream *st, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* A whole JSON response (head and body) for a stream that has written nothing yet, as
 * pgc_req_send_json (fcgi/http.c). */
int pgc_stream_send_json(pgc_stream *st, int status, const char *json, size_t len, const char *extra_headers);
/* More than the loop's soft bound is waiting to be written: pump should stop taking
 * (a slow client then fills its own hub queue, never the process's memory). A true
 * answer is remembered: pump runs again, unwoken, once the output is back under the
 * bound (on room on the socket, after a tick's flush or a wake). */
bool pgc_stream_backlogged(pgc_stream *st);
/* When tick should run next (monotonic ms, pgc_mono_ms); from callbacks. */
void pgc_stream_set_due(pgc_stream *st, int64_t when_ms);
/* The request's id (logs, connection stats). */
const char *pgc_stream_id(pgc_stream *st);

/* Streams open in this process right now (on the loop and on threads). */
int pgc_stream_count(void);

#endif
