/* Connection stats against the test database: rows written in batches (nothing per
 * message), closes, and the sweep of a dead instance's rows and presence members. */
#include <libpq-fe.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "db.h"
#include "log.h"
#include "stats.h"
#include "t.h"
#include "t_db.h"

static PGconn *db;

/* The first column of the first row of q, as a number; -999 on error or no row. */
static long long num(const char *q)
{
    PGresult *r = PQexec(db, q);
    long long v = -999;
    if (PQresultStatus(r) == PGRES_TUPLES_OK && PQntuples(r) > 0 && !PQgetisnull(r, 0, 0))
        v = atoll(PQgetvalue(r, 0, 0));
    else if (PQresultStatus(r) != PGRES_TUPLES_OK)
        printf("# %s: %s", q, PQresultErrorMessage(r));
    PQclear(r);
    return v;
}

int main(void)
{
    pgc_log_init("test_stats", PGC_LOG_WARN);
    const char *conninfo = t_db_url();
    if (!conninfo || !(db = t_connect(conninfo)))
        return 1;
    T_INT(t_exec(db, "INSERT INTO realtime.realtime_instances (instance_id, kind, hostname, pid) "
              "VALUES ('live:1', 'sse', 'live', 1)"),
          0, "a live instance row");

    pgc_db_pool *pool = pgc_db_pool_new(conninfo, 2);
    pgc_stats *st = pgc_stats_new(pool, "live:1", 60000); /* flushed by hand below */
    T_OK(pool && st, "stats started");
    pgc_stats_conn *a = pgc_stats_open(st, "c-a", "acme", "u1", "sse", "project:1", "{\"ua\": \"x \\\"y\\\"\"}");
    pgc_stats_conn *b = pgc_stats_open(st, "c-b", "acme", NULL, "ws", NULL, NULL);
    T_OK(a && b, "two connections opened");
    T_INT(num("SELECT count(*) FROM realtime.realtime_connection_stats"), 0, "nothing written before a flush");
    T_INT(pgc_stats_flush(st), 0, "flush");
    T_INT(num("SELECT count(*) FROM realtime.realtime_connection_stats WHERE instance_id = 'live:1' "
              "AND disconnected_at IS NULL"),
          2, "one open row per connection");
    T_INT(num("SELECT count(*) FROM realtime.realtime_connection_stats WHERE connection_id = 'c-a' "
              "AND client_info->>'ua' = 'x \"y\"' AND channel = 'project:1' AND transport = 'sse'"),
          1, "row fields as given (client info with quotes)");

    for (int i = 0; i < 1000; i++)
        pgc_stats_count(a, 1);
    pgc_stats_count(b, 7);
    pgc_stats_heartbeat(b);
    T_INT(num("SELECT message_count FROM realtime.realtime_connection_stats WHERE connection_id = 'c-a'"), 0,
          "counting writes nothing by itself");
    T_INT(pgc_stats_flush(st), 0, "flush");
    T_INT(num("SELECT message_count FROM realtime.realtime_connection_stats WHERE connection_id = 'c-a'"), 1000,
          "1000 messages in one update");
    T_INT(num("SELECT message_count FROM realtime.realtime_connection_stats WHERE connection_id = 'c-b'"), 7,
          "7 messages");

    pgc_stats_count(a, 5);
    pgc_stats_close(a, "client gone");
    T_INT(pgc_stats_flush(st), 0, "flush");
    T_INT(num("SELECT count(*) FROM realtime.realtime_connection_stats WHERE connection_id = 'c-a' "
              "AND disconnected_at IS NOT NULL AND disconnect_reason = 'client gone' AND message_count = 1005"),
          1, "close written with its reason and last count");

    /* A process that died: its instance row is stale, its rows open, its members present. */
    T_INT(t_exec(db, "INSERT INTO realtime.realtime_instances (instance_id, kind, hostname, pid, last_seen_at) "
              "VALUES ('dead:2', 'ws', 'dead', 2, now() - interval '1 minute');"
              "INSERT INTO realtime.realtime_connection_stats (connection_id, instance_id, transport) "
              "VALUES ('c-d1', 'dead:2', 'ws'), ('c-d2', 'dead:2', 'ws');"
              "INSERT INTO realtime.realtime_presence (tenant_id, channel, connection_id, user_id, "
              "instance_id, expires_at) VALUES ('acme', 'project:1', 'c-d1', 'u9', 'dead:2', "
              "now() + interval '1 hour')"),
          0, "a dead instance's rows");
    char err[256] = "";
    T_INT(pgc_stats_sweep(db, 30, err, sizeof(err)), 2, "the sweep closes the dead instance's 2 rows %s", err);
    T_INT(num("SELECT count(*) FROM realtime.realtime_presence WHERE instance_id = 'dead:2'"), 0,
          "and removes its presence members");
    T_INT(num("SELECT count(*) FROM realtime.realtime_instances WHERE instance_id = 'dead:2'"), 0,
          "and its instance row");
    T_INT(num("SELECT count(*) FROM realtime.realtime_connection_stats WHERE instance_id = 'live:1' "
              "AND disconnected_at IS NULL"),
          1, "a live instance's open row is left alone");
    T_INT(pgc_stats_sweep(db, 30, err, sizeof(err)), 0, "a second sweep finds nothing");

    pgc_stats_free(st);
    T_INT(num("SELECT count(*) FROM realtime.realtime_connection_stats WHERE connection_id = 'c-b' "
              "AND disconnect_reason = 'shutdown' AND message_count = 7"),
          1, "stopping closes what is still open");
    pgc_db_pool_free(pool);
    PQfinish(db);
    return T_DONE();
}
