/* What the FastCGI runtime's own files share (request.c, server.c, stream.c); handlers
 * see only request.h, server.h and stream.h. */
#ifndef PGCAST_FCGI_INTERNAL_H
#define PGCAST_FCGI_INTERNAL_H

#define NO_FCGI_DEFINES
#include <fcgiapp.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>

#include "request.h"

struct pgc_request {
    FCGX_Request fcgx; /* FastCGI mode */
    bool cgi;
    bool gone;
    bool drained;  /* the request's stdin was read to its end */
    bool detached; /* a stream loop owns the connection now (stream.c) */
    unsigned long long consumed; /* body bytes read (CGI) */
    bool head_started; /* the first bytes of the response are written */
    char head_extra[640]; /* header lines added to the response's head (CORS) */
    char id[24];
    int admit_slot; /* the site's stream slot it holds + 1, 0 = none (admit.c) */
};

/* Called before each write of a response: for its first write (the head, which starts
 * with its status line), the length of that status line when head_extra must follow it,
 * else 0. Marks the head as started. */
size_t pgc_req_head_split(pgc_request *r, const char *data, size_t len);

/* printf through a write function (pgc_req_printf, pgc_stream_printf). */
int pgc_vprintf_to(int (*write_fn)(void *, const char *, size_t), void *dst, const char *fmt, va_list ap);

/* pthread_create with SIGTERM/SIGINT blocked in the new thread. 0 or an errno. */
int pgc_fcgi_thread_start(const pthread_attr_t *attr, void *(*fn)(void *), void *arg);

/* Readable once SIGTERM/SIGINT arrived (never reset). */
int pgc_fcgi_shutdown_fd(void);

/* Reads what is left of the request's stdin (at least the empty FCGI_STDIN record that
 * ends it): afterwards anything readable on the connection means the web server closed
 * or aborted it. */
void pgc_req_drain(pgc_request *r);

/* Plain CGI, after the handler: reads the rest of the body (up to a bound). */
void pgc_req_drain_cgi_body(pgc_request *r);

/* Whether poll() revents on the request's connection mean the client went away. */
bool pgc_req_peer_gone(int fd, short revents, bool cgi);

/* A detached request ended (its stream closed the connection): frees it and counts it
 * out of the active requests. */
void pgc_fcgi_detached_done(pgc_request *r);
/* The stream loop takes r over (called on the request's thread, before the hand-over):
 * from then on the loop may finish and free r at any moment, so the thread that ran the
 * handler learns of it from this mark, never by reading r again. */
void pgc_fcgi_mark_detached(pgc_request *r);

#endif
