/* What the C unit tests that talk to PostgreSQL share (with t.h). */
#ifndef PGCAST_TEST_T_DB_H
#define PGCAST_TEST_T_DB_H

#include <libpq-fe.h>
#include <stdio.h>

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
