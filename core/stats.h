/* Connection stats (realtime_connection_stats): a row per client connection, written in
 * batches so a busy stream costs no query per message. Opening, counting and closing
 * only touch memory; a background thread flushes every flush_ms (new rows, message
 * counts, last heartbeat, closes) in one transaction through the pool. A row left open
 * by a process that died is closed by pgc_stats_sweep, run by any live process. */
#ifndef PGCAST_STATS_H
#define PGCAST_STATS_H

#include <libpq-fe.h>
#include <stdint.h>

#include "db.h"

typedef struct pgc_stats pgc_stats;
typedef struct pgc_stats_conn pgc_stats_conn;

/* instance_id as in realtime_instances (pgc_hub_instance_id). flush_ms <= 0: 5000.
 * NULL on no memory or when the thread cannot start. */
pgc_stats *pgc_stats_new(pgc_db_pool *pool, const char *instance_id, int flush_ms);
/* Closes what is still open (reason "shutdown"), flushes once more, ends the thread. */
void pgc_stats_free(pgc_stats *st);

/* A connection opened now. Any of tenant, user_id, channel, client_info_json may be
 * NULL. NULL on no memory (the caller goes on without stats). */
pgc_stats_conn *pgc_stats_open(pgc_stats *st, const char *connection_id, const char *tenant,
                               const char *user_id, const char *transport, const char *channel,
                               const char *client_info_json);
/* n more messages sent; and a heartbeat sent now. Lock-free, any thread. */
void pgc_stats_count(pgc_stats_conn *c, uint64_t n);
void pgc_stats_heartbeat(pgc_stats_conn *c);
/* The connection ended; c is no longer usable (freed after the next flush). */
void pgc_stats_close(pgc_stats_conn *c, const char *reason);

/* Writes everything pending now. 0, or -1 when the database could not be written (the
 * pending changes are kept for the next flush). */
int pgc_stats_flush(pgc_stats *st);

/* Closes the open rows and deletes the presence rows of instances not seen for
 * stale_s seconds (realtime.sweep_instances). Number of rows closed, -1 on error. */
int pgc_stats_sweep(PGconn *c, int stale_s, char *err, size_t errlen);

#endif
