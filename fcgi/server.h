/* The FastCGI runtime both HTTP handlers share (see server.c for the design). */
#ifndef PGCAST_FCGI_SERVER_H
#define PGCAST_FCGI_SERVER_H

#include <stdbool.h>

#include "request.h"

typedef void (*pgc_handler_fn)(pgc_request *r, void *ctx);

enum pgc_fcgi_mode {
    PGC_MODE_FCGI_INHERITED, /* spawned by the web server: the listening socket is fd 0 */
    PGC_MODE_FCGI_LISTEN,    /* --listen PATH|HOST:PORT (spawn-fcgi, Apache mod_proxy_fcgi) */
    PGC_MODE_CGI,            /* plain CGI: one request per process */
};

/* From the command line (--listen) and the environment. */
enum pgc_fcgi_mode pgc_fcgi_detect_mode(const char *listen);

/* Serves requests until SIGTERM/SIGINT (FastCGI) or the one request (CGI). Each
 * FastCGI request runs on a thread of its own with a small stack. Returns the exit code. */
int pgc_fcgi_serve(enum pgc_fcgi_mode mode, const char *listen, pgc_handler_fn handler, void *ctx);

/* Requests being handled right now (FastCGI mode). */
int pgc_fcgi_active(void);
/* True once SIGTERM/SIGINT arrived. */
bool pgc_fcgi_shutting_down(void);

#endif
