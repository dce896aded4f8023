/* What the FastCGI runtime's own files share (request.c, server.c, stream.c); handlers
 * see only request.h, server.h and stream.h. */
#ifndef PGCAST_FCGI_INTERNAL_H
#define PGCAST_FCGI_INTERNAL_H

#define NO_FCGI_DEFINES
#include <fcgiapp.h>
#include <stdbool.h>

#include "request.h"

struct pgc_request {
    FCGX_Request fcgx; /* FastCGI mode */
    bool cgi;
    bool gone;
    bool drained;  /* the request's stdin was read to its end */
    bool detached; /* a stream loop owns the connection now (stream.c) */
    unsigned long long consumed; /* body bytes read (CGI) */
    char id[24];
};

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

#endif
