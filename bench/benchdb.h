/* What the benchmark tools that talk to PostgreSQL themselves share: a clock in
 * microseconds, a connection that must succeed, a statement that reports its error. */
#ifndef PGCAST_BENCHDB_H
#define PGCAST_BENCHDB_H

#include <libpq-fe.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

static inline int64_t bench_us(clockid_t id)
{
    struct timespec ts;
    clock_gettime(id, &ts);
    return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

/* Exits when the connection fails: a benchmark cannot go on without it. */
static inline PGconn *bench_connect(const char *conninfo)
{
    PGconn *c = PQconnectdb(conninfo);
    if (PQstatus(c) != CONNECTION_OK) {
        fprintf(stderr, "connect: %s", PQerrorMessage(c));
        exit(1);
    }
    return c;
}

/* 0, or -1 with the statement and its error on stderr. */
static inline int bench_exec(PGconn *c, const char *q)
{
    PGresult *r = PQexec(c, q);
    int ok = PQresultStatus(r) == PGRES_COMMAND_OK || PQresultStatus(r) == PGRES_TUPLES_OK;
    if (!ok)
        fprintf(stderr, "%s: %s", q, PQresultErrorMessage(r));
    PQclear(r);
    return ok ? 0 : -1;
}

#endif
