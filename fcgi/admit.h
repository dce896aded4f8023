/* The site's share for long-lived requests: SSE streams and waiting long-polls.
 *
 * Every such request holds a worker of the web server for its whole life (Apache's
 * mod_proxy_fcgi, mod_cgi(d) and mod_fcgid relay synchronously), and in CGI modes a
 * process too. Without a bound, streams take every worker and the site's own pages and
 * /health stop answering. site_max_streams bounds them across every handler process
 * of the site (SSE and poll, CGI processes, mod_fcgid children, daemons): beyond it a
 * new one is told to come back later (SSE: 200 with retry: and a "busy" message, which
 * EventSource honours; a long-poll: 503 with Retry-After).
 *
 * The count is kept by the kernel, as open-file-description locks on one byte each of
 * a small file the processes share (site_streams_file): a slot is held while its
 * request runs and freed when it ends, and with the process whatever way it ends
 * (kill -9 included): nothing to clean up, nothing that drifts. */
#ifndef PGCAST_FCGI_ADMIT_H
#define PGCAST_FCGI_ADMIT_H

#include <stdbool.h>

#include "config.h"
#include "request.h"

/* The bound for this request: the smaller of the web server's PGCAST_SITE_MAX_STREAMS
 * parameter (apache-conf/pgcast-capacity.conf sets it next to MaxRequestWorkers) and
 * site_max_streams (0 there: none); when neither is set (site_max_streams -1, auto) 100 under
 * Apache (two thirds of Debian's MaxRequestWorkers 150) and none under other servers
 * (lighttpd holds streams without a worker each). 0 = no bound. */
int pgc_admit_bound(const pgc_config *cfg, pgc_request *r);

/* Takes a slot for r, held until r ends (the runtime gives it back). true: admitted
 * (also when there is no bound, or the slot file cannot be used: that is logged and
 * the request admitted); false: the site is full, answer "come back later". */
bool pgc_admit_take(const pgc_config *cfg, pgc_request *r);

/* Gives back what r holds (the runtime calls it when a request ends). */
void pgc_admit_release(pgc_request *r);

/* How long a refused client should wait, in ms: site_busy_retry_s with +-50% jitter so
 * that refused clients do not all come back at once. */
int pgc_admit_retry_ms(const pgc_config *cfg);

#endif
