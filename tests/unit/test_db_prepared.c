/* pgc_db_exec_prepared against the test database: a new connection prepares before the
 * first execution (no failed statement: no ErrorResponse, nothing in the server's
 * log), prepares once, prepares again after PQreset and after DISCARD ALL (a
 * pooler's reset), and inside a transaction block runs the statement unnamed. */
#include <libpq-fe.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "db.h"
#include "log.h"
#include "t.h"
#include "t_db.h"

#define Q "SELECT $1::int + 1"

/* The protocol messages libpq exchanges on c, traced to a file: errors_in() counts the
 * server's ErrorResponses among them (a failed statement; each is also an ERROR line in
 * the server's log). */
static FILE *trace_start(PGconn *c)
{
    FILE *f = tmpfile();
    if (f)
        PQtrace(c, f);
    return f;
}

static int errors_in(PGconn *c, FILE *f)
{
    if (!f)
        return -1;
    PQuntrace(c);
    rewind(f);
    char line[4096];
    int n = 0;
    while (fgets(line, sizeof line, f))
        if (strstr(line, "ErrorResponse"))
            n++;
    fclose(f);
    return n;
}

static int run(PGconn *c, const char *arg)
{
    const char *p[1] = {arg};
    PGresult *r = pgc_db_exec_prepared(c, "t_plus_one", Q, 1, p);
    int v = PQresultStatus(r) == PGRES_TUPLES_OK && PQntuples(r) == 1 ? atoi(PQgetvalue(r, 0, 0)) : -1;
    if (v < 0)
        printf("# %s", PQresultErrorMessage(r));
    PQclear(r);
    return v;
}

static int nprepared(PGconn *c)
{
    PGresult *r = PQexec(c, "SELECT count(*) FROM pg_prepared_statements WHERE name = 't_plus_one'");
    int v = PQresultStatus(r) == PGRES_TUPLES_OK ? atoi(PQgetvalue(r, 0, 0)) : -1;
    PQclear(r);
    return v;
}

int main(void)
{
    pgc_log_init("test_db_prepared", PGC_LOG_WARN);
    const char *conninfo = t_db_url();
    PGconn *c = conninfo ? t_connect(conninfo) : NULL;
    if (!c)
        return 1;
    FILE *f = trace_start(c);
    T_INT(run(c, "1"), 2, "the first execution on a new connection answers");
    T_INT(run(c, "41"), 42, "and the second");
    T_INT(nprepared(c), 1, "the statement is prepared once on the connection");
    T_INT(errors_in(c, f), 0, "no statement failed on the server for it (no ErrorResponse)");

    T_INT(t_exec(c, "DISCARD ALL"), 0, "a pooler's DISCARD ALL drops the session's statements");
    T_INT(run(c, "2"), 3, "the statement is prepared again and answers");
    T_INT(nprepared(c), 1, "once");

    PQreset(c);
    T_OK(PQstatus(c) == CONNECTION_OK, "PQreset: a new session on the same connection");
    T_INT(nprepared(c), 0, "which has no statement");
    f = trace_start(c);
    T_INT(run(c, "3"), 4, "the statement is prepared on the new session and answers");
    T_INT(errors_in(c, f), 0, "without a failed first execution");

    T_INT(t_exec(c, "BEGIN"), 0, "in a transaction block");
    T_INT(run(c, "4"), 5, "the statement runs");
    T_INT(t_exec(c, "COMMIT"), 0, "and the block commits");

    PQfinish(c); /* frees the list (LeakSanitizer would say otherwise) */
    return T_DONE();
}
