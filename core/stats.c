/* Connection stats in batches (see stats.h). Opening, counting and closing touch only
 * memory; one thread writes the changes every flush_ms: new rows with ids drawn from
 * the sequence, then one UPDATE from arrays for the rows already written. */
#include "pgarray.h"
#include "strutil.h"
#include "clock.h"
#include "stats.h"

#include <inttypes.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "log.h"

struct pgc_stats_conn {
    pgc_stats *st;
    pgc_stats_conn *next;
    char *connection_id, *tenant, *user_id, *transport, *channel, *client_info;
    int64_t connected_ms;
    _Atomic uint64_t count;
    _Atomic int64_t hb_ms;
    /* under st->mu */
    bool closed;
    char *reason;
    int64_t closed_ms;
    /* flush only */
    int64_t row_id; /* 0 until written */
    uint64_t flushed_count;
    int64_t flushed_hb;
    bool closed_in_snap; /* the flush under way took it closed: freed once written */
};

struct pgc_stats {
    pgc_db_pool *pool;
    char *instance_id;
    int flush_ms;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    bool stop;
    pgc_stats_conn *conns;
    pthread_mutex_t flush_mu; /* one flush at a time */
    bool failing;             /* under flush_mu: the last flush failed (said once per run of failures) */
    pthread_t thread;
};

/* A snapshot of one connection taken under st->mu, written without it. */
struct snap {
    pgc_stats_conn *c;
    uint64_t count;
    int64_t hb_ms;
    bool closed;
    char *reason;
    int64_t closed_ms;
};


/* ---- lifecycle ---- */

static void conn_free(pgc_stats_conn *c)
{
    free(c->connection_id);
    free(c->tenant);
    free(c->user_id);
    free(c->transport);
    free(c->channel);
    free(c->client_info);
    free(c->reason);
    free(c);
}


pgc_stats_conn *pgc_stats_open(pgc_stats *st, const char *connection_id, const char *tenant,
                               const char *user_id, const char *transport, const char *channel,
                               const char *client_info_json)
{
    if (!st || !connection_id || !transport)
        return NULL;
    pgc_stats_conn *c = calloc(1, sizeof(*c));
    if (!c)
        return NULL;
    bool oom = false;
    c->st = st;
    c->connection_id = pgc_strdup_opt(connection_id, &oom);
    c->tenant = pgc_strdup_opt(tenant, &oom);
    c->user_id = pgc_strdup_opt(user_id, &oom);
    c->transport = pgc_strdup_opt(transport, &oom);
    c->channel = pgc_strdup_opt(channel, &oom);
    c->client_info = pgc_strdup_opt(client_info_json ? client_info_json : "{}", &oom);
    if (oom) {
        conn_free(c);
        return NULL;
    }
    c->connected_ms = pgc_wall_ms();
    atomic_init(&c->count, 0);
    atomic_init(&c->hb_ms, c->connected_ms);
    c->flushed_hb = c->connected_ms;
    pthread_mutex_lock(&st->mu);
    c->next = st->conns;
    st->conns = c;
    pthread_mutex_unlock(&st->mu);
    return c;
}

void pgc_stats_count(pgc_stats_conn *c, uint64_t n)
{
    if (c)
        atomic_fetch_add_explicit(&c->count, n, memory_order_relaxed);
}

void pgc_stats_heartbeat(pgc_stats_conn *c)
{
    if (c)
        atomic_store_explicit(&c->hb_ms, pgc_wall_ms(), memory_order_relaxed);
}

void pgc_stats_close(pgc_stats_conn *c, const char *reason)
{
    if (!c)
        return;
    char *r = strdup(reason ? reason : "closed"); /* NULL on no memory: the row says nothing */
    pgc_stats *st = c->st;
    pthread_mutex_lock(&st->mu);
    if (!c->closed) {
        c->closed = true;
        c->reason = r;
        c->closed_ms = pgc_wall_ms();
        r = NULL;
    }
    pthread_mutex_unlock(&st->mu);
    free(r);
}

/* ---- flush ---- */

static int exec_ok(PGconn *db, const char *sql, int n, const char *const *params, ExecStatusType want,
                   PGresult **out)
{
    PGresult *r = PQexecParams(db, sql, n, NULL, params, NULL, NULL, 0);
    if (PQresultStatus(r) != want) {
        PGC_WARN("stats: %s", PQerrorMessage(db));
        PQclear(r);
        return -1;
    }
    if (out)
        *out = r;
    else
        PQclear(r);
    return 0;
}

/* New rows, with ids taken first so each row's id is known without relying on the
 * order RETURNING gives. */
static int write_new(PGconn *db, pgc_stats *st, struct snap *v, size_t n, int64_t *ids)
{
    size_t nnew = 0;
    for (size_t i = 0; i < n; i++)
        if (!v[i].c->row_id)
            nnew++;
    if (!nnew)
        return 0;
    char cnt[32];
    snprintf(cnt, sizeof(cnt), "%zu", nnew);
    const char *p1[] = {cnt};
    PGresult *r = NULL;
    if (exec_ok(db,
                "SELECT nextval(pg_get_serial_sequence('realtime.realtime_connection_stats', 'id')) "
                "FROM generate_series(1, $1::int)",
                1, p1, PGRES_TUPLES_OK, &r) != 0)
        return -1;
    pgc_arr a[12] = {{0}};
    size_t k = 0;
    for (size_t i = 0; i < n; i++) {
        pgc_stats_conn *c = v[i].c;
        if (c->row_id)
            continue;
        ids[i] = strtoll(PQgetvalue(r, (int)k++, 0), NULL, 10);
        pgc_arr_int(&a[0], ids[i], false);
        pgc_arr_text(&a[1], c->connection_id);
        pgc_arr_text(&a[2], st->instance_id);
        pgc_arr_text(&a[3], c->tenant);
        pgc_arr_text(&a[4], c->user_id);
        pgc_arr_text(&a[5], c->transport);
        pgc_arr_text(&a[6], c->channel);
        pgc_arr_text(&a[7], c->client_info);
        pgc_arr_int(&a[8], c->connected_ms, false);
        pgc_arr_int(&a[9], v[i].hb_ms, false);
        pgc_arr_int(&a[10], (int64_t)v[i].count, false);
        pgc_arr_int(&a[11], v[i].closed_ms, !v[i].closed);
    }
    PQclear(r);
    pgc_arr reasons = {0};
    for (size_t i = 0; i < n; i++)
        if (!v[i].c->row_id)
            pgc_arr_text(&reasons, v[i].closed ? v[i].reason : NULL);
    const char *p[13];
    bool oom = false;
    for (int i = 0; i < 12; i++)
        if (!(p[i] = pgc_arr_end(&a[i])))
            oom = true;
    if (!(p[12] = pgc_arr_end(&reasons)))
        oom = true;
    int rc = oom ? -1
                 : exec_ok(db,
                           "INSERT INTO realtime.realtime_connection_stats (id, connection_id, instance_id, "
                           "tenant_id, user_id, transport, channel, client_info, connected_at, "
                           "last_heartbeat_at, message_count, disconnected_at, disconnect_reason) "
                           "SELECT u.id, u.cid, u.inst, u.ten, u.usr, u.tr, u.ch, u.info::jsonb, "
                           "to_timestamp(u.c_ms / 1000.0), to_timestamp(u.hb_ms / 1000.0), u.n, "
                           "to_timestamp(u.d_ms / 1000.0), u.why "
                           "FROM unnest($1::bigint[], $2::text[], $3::text[], $4::text[], $5::text[], "
                           "$6::text[], $7::text[], $8::text[], $9::bigint[], $10::bigint[], $11::bigint[], "
                           "$12::bigint[], $13::text[]) "
                           "AS u(id, cid, inst, ten, usr, tr, ch, info, c_ms, hb_ms, n, d_ms, why)",
                           13, p, PGRES_COMMAND_OK, NULL);
    for (int i = 0; i < 12; i++)
        free(a[i].p);
    free(reasons.p);
    return rc;
}

/* Rows already written whose count, heartbeat or end changed: one UPDATE. */
static int write_changes(PGconn *db, struct snap *v, size_t n)
{
    pgc_arr a[5] = {{0}};
    size_t k = 0;
    for (size_t i = 0; i < n; i++) {
        pgc_stats_conn *c = v[i].c;
        if (!c->row_id ||
            (v[i].count == c->flushed_count && v[i].hb_ms == c->flushed_hb && !v[i].closed))
            continue;
        k++;
        pgc_arr_int(&a[0], c->row_id, false);
        pgc_arr_int(&a[1], (int64_t)v[i].count, false);
        pgc_arr_int(&a[2], v[i].hb_ms, false);
        pgc_arr_int(&a[3], v[i].closed_ms, !v[i].closed);
        pgc_arr_text(&a[4], v[i].closed ? v[i].reason : NULL);
    }
    int rc = 0;
    if (k) {
        const char *p[5];
        bool oom = false;
        for (int i = 0; i < 5; i++)
            if (!(p[i] = pgc_arr_end(&a[i])))
                oom = true;
        rc = oom ? -1
                 : exec_ok(db,
                           "UPDATE realtime.realtime_connection_stats s SET message_count = u.n, "
                           "last_heartbeat_at = greatest(s.last_heartbeat_at, to_timestamp(u.hb_ms / 1000.0)), "
                           "disconnected_at = coalesce(to_timestamp(u.d_ms / 1000.0), s.disconnected_at), "
                           "disconnect_reason = coalesce(u.why, s.disconnect_reason) "
                           "FROM unnest($1::bigint[], $2::bigint[], $3::bigint[], $4::bigint[], $5::text[]) "
                           "AS u(id, n, hb_ms, d_ms, why) WHERE s.id = u.id",
                           5, p, PGRES_COMMAND_OK, NULL);
    }
    for (int i = 0; i < 5; i++)
        free(a[i].p);
    return rc;
}

int pgc_stats_flush(pgc_stats *st)
{
    pthread_mutex_lock(&st->flush_mu);
    pthread_mutex_lock(&st->mu);
    size_t n = 0;
    for (pgc_stats_conn *c = st->conns; c; c = c->next)
        n++;
    struct snap *v = n ? calloc(n, sizeof(*v)) : NULL;
    int64_t *ids = n ? calloc(n, sizeof(*ids)) : NULL;
    if (n && (!v || !ids)) {
        pthread_mutex_unlock(&st->mu);
        pthread_mutex_unlock(&st->flush_mu);
        free(v);
        free(ids);
        return -1;
    }
    size_t i = 0;
    for (pgc_stats_conn *c = st->conns; c; c = c->next, i++) {
        c->closed_in_snap = c->closed;
        v[i].c = c;
        v[i].count = atomic_load_explicit(&c->count, memory_order_relaxed);
        v[i].hb_ms = atomic_load_explicit(&c->hb_ms, memory_order_relaxed);
        v[i].closed = c->closed;
        v[i].reason = c->reason; /* stays valid: only a flush frees a closed connection */
        v[i].closed_ms = c->closed_ms;
    }
    pthread_mutex_unlock(&st->mu);

    int rc = 0;
    if (n) {
        PGconn *db = pgc_db_acquire(st->pool, 2000);
        if (!db) {
            if (!st->failing)
                PGC_WARN("stats: no database connection for the flush; the rows of %zu connections wait for "
                         "the next one",
                         n);
            rc = -1;
        } else {
            bool broken = false;
            rc = exec_ok(db, "BEGIN", 0, NULL, PGRES_COMMAND_OK, NULL);
            if (rc == 0)
                rc = write_new(db, st, v, n, ids);
            if (rc == 0)
                rc = write_changes(db, v, n);
            if (rc == 0)
                rc = exec_ok(db, "COMMIT", 0, NULL, PGRES_COMMAND_OK, NULL);
            if (rc != 0) {
                PGresult *r = PQexec(db, "ROLLBACK");
                broken = PQresultStatus(r) != PGRES_COMMAND_OK || PQstatus(db) != CONNECTION_OK;
                PQclear(r);
            }
            pgc_db_release(st->pool, db, broken);
        }
    }
    if (rc != 0)
        st->failing = true;
    else if (st->failing) {
        PGC_INFO("stats: written again");
        st->failing = false;
    }
    if (rc == 0 && n) {
        pthread_mutex_lock(&st->mu);
        for (i = 0; i < n; i++) {
            pgc_stats_conn *c = v[i].c;
            if (ids[i])
                c->row_id = ids[i];
            c->flushed_count = v[i].count;
            c->flushed_hb = v[i].hb_ms;
        }
        /* one pass (not one per snapshot entry: with thousands of connections that was
         * quadratic, under the mutex every open and close takes) */
        for (pgc_stats_conn **pp = &st->conns; *pp;) {
            pgc_stats_conn *c = *pp;
            if (c->closed_in_snap) {
                *pp = c->next;
                conn_free(c);
            } else {
                pp = &c->next;
            }
        }
        pthread_mutex_unlock(&st->mu);
    }
    free(v);
    free(ids);
    pthread_mutex_unlock(&st->flush_mu);
    return rc;
}

static void *stats_main(void *arg)
{
    pgc_stats *st = arg;
    pthread_mutex_lock(&st->mu);
    while (!st->stop) {
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        ts.tv_sec += st->flush_ms / 1000;
        ts.tv_nsec += (long)(st->flush_ms % 1000) * 1000000L;
        if (ts.tv_nsec >= 1000000000L) {
            ts.tv_sec++;
            ts.tv_nsec -= 1000000000L;
        }
        while (!st->stop && pthread_cond_timedwait(&st->cv, &st->mu, &ts) == 0)
            ;
        if (st->stop)
            break;
        pthread_mutex_unlock(&st->mu);
        (void)pgc_stats_flush(st);
        pthread_mutex_lock(&st->mu);
    }
    pthread_mutex_unlock(&st->mu);
    return NULL;
}

pgc_stats *pgc_stats_new(pgc_db_pool *pool, const char *instance_id, int flush_ms)
{
    pgc_stats *st = calloc(1, sizeof(*st));
    if (!st)
        return NULL;
    st->pool = pool;
    st->flush_ms = flush_ms > 0 ? flush_ms : 5000;
    st->instance_id = strdup(instance_id ? instance_id : "");
    pthread_condattr_t ca;
    bool ok = st->instance_id && pthread_mutex_init(&st->mu, NULL) == 0;
    ok = ok && pthread_mutex_init(&st->flush_mu, NULL) == 0;
    ok = ok && pthread_condattr_init(&ca) == 0 && pthread_condattr_setclock(&ca, CLOCK_MONOTONIC) == 0 &&
         pthread_cond_init(&st->cv, &ca) == 0;
    if (ok && pthread_create(&st->thread, NULL, stats_main, st) != 0)
        ok = false;
    if (!ok) { /* the objects are trivial on Linux: destroying them is not needed to free */
        free(st->instance_id);
        free(st);
        return NULL;
    }
    pthread_condattr_destroy(&ca);
    return st;
}

void pgc_stats_free(pgc_stats *st)
{
    if (!st)
        return;
    pthread_mutex_lock(&st->mu);
    st->stop = true;
    pthread_cond_signal(&st->cv);
    pthread_mutex_unlock(&st->mu);
    pthread_join(st->thread, NULL);
    for (pgc_stats_conn *c = st->conns; c; c = c->next)
        pgc_stats_close(c, "shutdown");
    if (pgc_stats_flush(st) != 0)
        PGC_WARN("stats: the last flush failed; open rows are left to the sweep");
    while (st->conns) {
        pgc_stats_conn *c = st->conns;
        st->conns = c->next;
        conn_free(c);
    }
    pthread_cond_destroy(&st->cv);
    pthread_mutex_destroy(&st->mu);
    pthread_mutex_destroy(&st->flush_mu);
    free(st->instance_id);
    free(st);
}

int pgc_stats_sweep(PGconn *c, int stale_s, char *err, size_t errlen)
{
    char secs[32];
    snprintf(secs, sizeof(secs), "%d seconds", stale_s > 0 ? stale_s : 30);
    const char *p[] = {secs};
    PGresult *r = PQexecParams(c, "SELECT realtime.sweep_instances($1::interval)", 1, NULL, p, NULL, NULL, 0);
    if (PQresultStatus(r) != PGRES_TUPLES_OK || PQntuples(r) != 1) {
        snprintf(err, errlen, "sweep: %s", PQerrorMessage(c));
        PQclear(r);
        return -1;
    }
    int n = atoi(PQgetvalue(r, 0, 0));
    PQclear(r);
    return n;
}
