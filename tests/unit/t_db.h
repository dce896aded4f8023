/* What the C unit tests that talk to PostgreSQL share (with t.h). */
#ifndef PGCAST_TEST_T_DB_H
#define PGCAST_TEST_T_DB_H

#include <libpq-fe.h>
#include <stdio.h>
#include <stdlib.h>

/* The test database (PGCAST_DATABASE_URL, set by tests/run.sh); NULL after a "not ok". */
static inline const char *t_db_url(void)
{
    const char *url = getenv("PGCAST_DATABASE_URL");
    if (!url)
        printf("not ok 1 - PGCAST_DATABASE_URL is not set (run through tests/run.sh)\n");
    return url;
}

/* A connection to url; NULL after a "not ok". */
static inline PGconn *t_connect(const char *url)
{
    PGconn *c = PQconnectdb(url);
    if (PQstatus(c) == CONNECTION_OK)
        return c;
    printf("not ok 1 - connect: %s", PQerrorMessage(c));
    PQfinish(c);
    return NULL;
}

/* Runs q on c: 0 when it succeeded, else -1 with the error as a TAP comment. */
static inline int t_exec(PGconn *c, const char *q)
{
    PGresult *r = PQexec(c, q);
    int ok = PQresultStatus(r) == PGRES_TUPLES_OK || PQresultStatus(r) == PGRES_COMMAND_OK;
    if (!ok)
        printf("# sql failed: %s: %s", q, PQresultErrorMessage(r));
    PQclear(r);
    return ok ? 0 : -1;
}

#endif
