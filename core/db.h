/* Request-time database access shared by the handlers: a small pool of connections
 * (publish, presence, polling reads, stats, health) — never one per subscriber — and
 * the reader of the event log by position, used by the hub's catch-up, the poll handler
 * and plain-CGI streams. */
#ifndef PGCAST_DB_H
#define PGCAST_DB_H

#include <libpq-fe.h>
#include <stdbool.h>

#include "cursor.h"
#include "hub.h"

typedef struct pgc_db_pool pgc_db_pool;

/* One connection (conninfo "" = the PG* variables), connect_timeout 5 s. NULL on failure. */
PGconn *pgc_db_connect(const char *conninfo, const char *application_name);

/* size connections at most, opened lazily. */
pgc_db_pool *pgc_db_pool_new(const char *conninfo, int size);
void pgc_db_pool_free(pgc_db_pool *p);
/* A connected connection, or NULL when the database cannot be reached (or none is free
 * within timeout_ms). Release it with broken=true after a connection-level error. */
PGconn *pgc_db_acquire(pgc_db_pool *p, int timeout_ms);
void pgc_db_release(pgc_db_pool *p, PGconn *c, bool broken);

/* Reads what follows the positions of cursor (realtime.read): GAP items first, then up
 * to limit EVENT items in publish order, each passed to fn (which takes the reference;
 * a non-zero return stops the walk). max_bytes bounds the events' payloads read (and so
 * what libpq holds for the result): events stop once their payloads reach it; at least
 * one event is always returned when there is one; 0 = no byte bound. Returns the number
 * of rows read (GAP rows count), 0 when fn stopped the walk (so a caller reading on
 * while n > 0 stops too), or -1 on a database error (message in err).
 * A read returned everything there is when it returned fewer than limit events and
 * (with max_bytes) their payloads sum to less than max_bytes. */
typedef int (*pgc_item_fn)(pgc_event *item, void *arg);
int pgc_db_read(PGconn *c, const char *tenant, const pgc_cursor *after, int limit, size_t max_bytes,
                pgc_item_fn fn, void *arg, char *err, size_t errlen);

/* PQexecParams of a named prepared statement: prepared on the connection the first time
 * it runs there (and again after a PQreset), so parse and plan are paid once per
 * connection, not per call. name must always go with the same sql, and live as long as
 * the connection (a string literal). */
PGresult *pgc_db_exec_prepared(PGconn *c, const char *name, const char *sql, int nparams,
                               const char *const *params);

#endif
