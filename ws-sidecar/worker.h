/* Database calls of the sidecar's connections (publish, presence), off the loop thread.
 *
 * A few threads take jobs from one queue; each job runs on a connection of the pool.
 * The jobs of one WebSocket connection form a lane: they run one at a time, in the order
 * submitted, and the loop thread takes them back finished in that same order, so a
 * connection's replies keep the order of its requests and its presence join and leave
 * reach the database in the order sent. Both the queue (jobs of every lane not yet
 * finished) and each lane (jobs not yet taken back) are bounded.
 *
 * When a job finishes, the lane's notify function is called (on the worker) so that the
 * loop thread comes and takes it. A lane closed by its connection never notifies again;
 * its jobs still run (a presence leave must reach the database) and are freed there. */
#ifndef PGCAST_WS_WORKER_H
#define PGCAST_WS_WORKER_H

#include <stdbool.h>
#include <stddef.h>

#include "db.h"

typedef struct ws_workers ws_workers;
typedef struct ws_lane ws_lane;
typedef struct ws_job ws_job;

/* Embedded first in the caller's job. */
struct ws_job {
    /* On a worker; db is NULL when no connection could be had (the database is
     * unreachable, or the pool stayed busy). NULL: nothing to run (a reply that only
     * keeps its place in the lane): finished at once. */
    void (*run)(ws_job *j, PGconn *db);
    void (*free)(ws_job *j);
    /* worker.c */
    ws_job *next;
    bool done, forced;
};

/* threads >= 1; max_queued: jobs with a run function not yet finished, all lanes. */
ws_workers *ws_workers_new(pgc_db_pool *pool, int threads, int max_queued);
/* Takes no more jobs; the threads run what is queued for up to grace_ms, then queries
 * still running are cancelled and what is left is dropped. Every lane must be closed. */
void ws_workers_free(ws_workers *w, int grace_ms);

/* max_jobs: jobs submitted (not forced) and not yet taken back. NULL on no memory. */
ws_lane *ws_lane_new(ws_workers *w, int max_jobs, void (*notify)(void *arg), void *arg);

enum {
    WS_JOB_OK = 0,
    WS_JOB_LANE_FULL = -1, /* the lane holds max_jobs */
    WS_JOB_BUSY = -2,      /* the queue holds max_queued, or it is stopping */
};
/* Loop thread. On WS_JOB_OK the lane owns j; otherwise the caller keeps it.
 * force: past both bounds; the caller bounds such jobs itself (one per purpose). */
int ws_lane_submit(ws_lane *l, ws_job *j, bool force);
/* Loop thread: the finished jobs at the front of the lane, in submission order, linked
 * through next (NULL: none). The caller frees them. */
ws_job *ws_lane_take(ws_lane *l);
/* Loop thread: jobs submitted and not yet taken back. */
size_t ws_lane_count(ws_lane *l);
/* Loop thread: no notify after this returns; the lane goes with its last job. */
void ws_lane_close(ws_lane *l);

/* For /metrics: jobs queued or running, and jobs refused because a bound was reached. */
void ws_workers_stats(ws_workers *w, unsigned long long *queued, unsigned long long *refused);

#endif
