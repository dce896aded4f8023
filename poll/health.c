/* GET {prefix}/health: 200 {"status":"ok","database":"ok"}, 503 when the database
 * cannot be reached. No token needed: it says nothing about any tenant. */
#include <string.h>

#include "poll.h"

void poll_health(pgc_app *app, pgc_request *r)
{
    if (pgc_app_method(r, "GET") != 0)
        return;
    bool ok = false;
    /* twice: a pooled connection may be stale after a database restart */
    for (int attempt = 0; attempt < 2 && !ok; attempt++) {
        PGconn *c = pgc_db_acquire(app->pool, 3000);
        if (!c)
            break;
        PGresult *res = PQexec(c, "SELECT 1");
        ok = PQresultStatus(res) == PGRES_TUPLES_OK;
        PQclear(res);
        pgc_db_release(app->pool, c, !ok);
    }
    static const char good[] = "{\"status\":\"ok\",\"database\":\"ok\"}";
    static const char bad[] = "{\"status\":\"unavailable\",\"database\":\"unreachable\"}";
    if (ok)
        pgc_req_send_json(r, 200, good, sizeof(good) - 1, "");
    else
        pgc_req_send_json(r, 503, bad, sizeof(bad) - 1, "Retry-After: 1\r\n");
}
