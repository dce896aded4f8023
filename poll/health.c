/* GET {prefix}/health: 200 {"status":"ok","database":"ok"}, 503 when the database
 * cannot be reached. No token needed: it says nothing about any tenant.
 *
 * Health answers within HEALTH_BUDGET_MS (plus libpq's 2 s minimum connect timeout when
 * no pooled connection is free): a database that does not answer (a frozen server, a
 * network that drops packets) is a 503, never a hanging request. */
#include <poll.h>
#include <string.h>

#include "clock.h"
#include "poll.h"

#define HEALTH_BUDGET_MS 2000

/* "SELECT 1" on c, waiting at most until deadline (monotonic ms). */
static bool probe(PGconn *c, int64_t deadline)
{
    if (!PQsendQuery(c, "SELECT 1"))
        return false;
    bool ok = false;
    for (;;) {
        while (!PQisBusy(c)) {
            PGresult *res = PQgetResult(c);
            if (!res)
                return ok;
            ok = PQresultStatus(res) == PGRES_TUPLES_OK;
            PQclear(res);
        }
        int64_t left = deadline - pgc_mono_ms();
        if (left <= 0)
            return false; /* the caller drops the connection, mid-query */
        struct pollfd pfd = {PQsocket(c), POLLIN, 0};
        int n = poll(&pfd, 1, (int)left);
        if (n < 0 || (n > 0 && !PQconsumeInput(c)))
            return false;
    }
}

void poll_health(pgc_app *app, pgc_request *r)
{
    if (pgc_app_method(r, "GET") != 0)
        return;
    bool ok = false;
    int64_t deadline = pgc_mono_ms() + HEALTH_BUDGET_MS;
    /* twice: a pooled connection may be stale after a database restart */
    for (int attempt = 0; attempt < 2 && !ok; attempt++) {
        int64_t left = deadline - pgc_mono_ms();
        if (left <= 0)
            break;
        PGconn *c = pgc_db_acquire(app->pool, (int)left);
        if (!c)
            break;
        ok = probe(c, deadline);
        pgc_db_release(app->pool, c, !ok);
    }
    static const char good[] = "{\"status\":\"ok\",\"database\":\"ok\"}";
    static const char bad[] = "{\"status\":\"unavailable\",\"database\":\"unreachable\"}";
    if (ok)
        pgc_req_send_json(r, 200, good, sizeof(good) - 1, "");
    else
        pgc_req_send_json(r, 503, bad, sizeof(bad) - 1, "Retry-After: 1\r\n");
}
