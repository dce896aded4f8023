/* A small connection pool for request-time queries, and the event-log reader. */
#include "db.h"

#include <errno.h>
#include <libpq-events.h>
#include <stdbool.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "log.h"
#include "pgarray.h"

struct pgc_db_pool {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    char *conninfo;
    int size, open; /* open = connections handed out or idle */
    PGconn **idle;
    int nidle;
};

pgc_db_pool *pgc_db_pool_new(const char *conninfo, int size)
{
    pgc_db_pool *p = calloc(1, sizeof(*p));
    if (!p)
        return NULL;
    p->size = size > 0 ? size : 4;
    p->conninfo = strdup(conninfo ? conninfo : "");
    p->idle = calloc((size_t)p->size, sizeof(PGconn *));
    if (!p->conninfo || !p->idle || pthread_mutex_init(&p->mu, NULL) != 0) {
        free(p->conninfo);
        free(p->idle);
        free(p);
        return NULL;
    }
    pthread_condattr_t ca;
    if (pthread_condattr_init(&ca) != 0 || pthread_condattr_setclock(&ca, CLOCK_MONOTONIC) != 0 ||
        pthread_cond_init(&p->cv, &ca) != 0) {
        pthread_mutex_destroy(&p->mu);
        free(p->conninfo);
        free(p->idle);
        free(p);
        return NULL;
    }
    pthread_condattr_destroy(&ca);
    return p;
}

void pgc_db_pool_free(pgc_db_pool *p)
{
    if (!p)
        return;
    for (int i = 0; i < p->nidle; i++)
        PQfinish(p->idle[i]);
    pthread_cond_destroy(&p->cv);
    pthread_mutex_destroy(&p->mu);
    free(p->idle);
    free(p->conninfo);
    free(p);
}

/* connect_timeout bounds how long a request waits for an unreachable database (libpq
 * counts whole seconds, at least 2). */
static PGconn *connect_within(const char *conninfo, const char *application_name, int timeout_s)
{
    char secs[16];
    snprintf(secs, sizeof(secs), "%d", timeout_s < 2 ? 2 : timeout_s);
    const char *keys[] = {"dbname", "application_name", "connect_timeout", NULL};
    const char *vals[] = {conninfo && *conninfo ? conninfo : NULL, application_name, secs, NULL};
    if (!vals[0]) {
        keys[0] = "application_name";
        vals[0] = application_name;
        keys[1] = "connect_timeout";
        vals[1] = secs;
        keys[2] = NULL;
    }
    PGconn *c = PQconnectdbParams(keys, vals, 1);
    if (!c)
        return NULL;
    if (PQstatus(c) != CONNECTION_OK) {
        PGC_DEBUG("database connection failed: %s", PQerrorMessage(c));
        PQfinish(c);
        return NULL;
    }
    return c;
}

PGconn *pgc_db_connect(const char *conninfo, const char *application_name)
{
    return connect_within(conninfo, application_name, 5);
}

/* An idle connection has nothing to read: input there is the server's goodbye (a
 * terminated backend's FATAL message, a closed socket). Such a connection would fail its
 * next query, and the request with it. */
static bool idle_usable(PGconn *c)
{
    if (PQstatus(c) != CONNECTION_OK)
        return false;
    struct pollfd pfd = {PQsocket(c), POLLIN, 0};
    int n = poll(&pfd, 1, 0);
    return n == 0; /* readable, hung up, or poll failed: do not trust it */
}

PGconn *pgc_db_acquire(pgc_db_pool *p, int timeout_ms)
{
    struct timespec deadline;
    if (clock_gettime(CLOCK_MONOTONIC, &deadline) != 0)
        return NULL;
    int connect_s = (timeout_ms + 999) / 1000;
    deadline.tv_sec += timeout_ms / 1000;
    deadline.tv_nsec += (long)(timeout_ms % 1000) * 1000000L;
    if (deadline.tv_nsec >= 1000000000L) {
        deadline.tv_sec++;
        deadline.tv_nsec -= 1000000000L;
    }
    if (pthread_mutex_lock(&p->mu) != 0)
        return NULL;
    for (;;) {
        if (p->nidle > 0) {
            PGconn *c = p->idle[--p->nidle];
            pthread_mutex_unlock(&p->mu);
            if (idle_usable(c))
                return c;
            /* the server went away or ended it while it was idle: a new one instead */
            PGC_DEBUG("pooled database connection is stale; reconnecting");
            PQfinish(c);
            c = connect_within(p->conninfo, "pgcast", connect_s);
            if (c)
                return c;
            pthread_mutex_lock(&p->mu);
            p->open--;
            pthread_cond_signal(&p->cv);
            pthread_mutex_unlock(&p->mu);
            return NULL;
        }
        if (p->open < p->size) {
            p->open++;
            pthread_mutex_unlock(&p->mu);
            PGconn *c = connect_within(p->conninfo, "pgcast", connect_s);
            if (!c) {
                pthread_mutex_lock(&p->mu);
                p->open--;
                pthread_cond_signal(&p->cv);
                pthread_mutex_unlock(&p->mu);
            }
            return c;
        }
        int rc = pthread_cond_timedwait(&p->cv, &p->mu, &deadline);
        if (rc == ETIMEDOUT) {
            pthread_mutex_unlock(&p->mu);
            return NULL;
        }
    }
}

void pgc_db_release(pgc_db_pool *p, PGconn *c, bool broken)
{
    if (!c)
        return;
    if (!broken && PQtransactionStatus(c) != PQTRANS_IDLE)
        broken = true; /* a connection left inside a transaction is not reusable */
    pthread_mutex_lock(&p->mu);
    if (broken || PQstatus(c) != CONNECTION_OK) {
        p->open--;
        pthread_mutex_unlock(&p->mu);
        PQfinish(c);
        pthread_mutex_lock(&p->mu);
    } else {
        p->idle[p->nidle++] = c;
    }
    pthread_cond_signal(&p->cv);
    pthread_mutex_unlock(&p->mu);
}

/* The statements prepared on a connection, kept with it by libpq (libpq-events: the
 * instance data of an event procedure), forgotten when PQreset gives it a new session
 * and freed by PQfinish. Knowing them, a statement is prepared before its first use,
 * instead of after a failed first execution: that failure was an ERROR in the
 * server's log for every new connection (every request, for a CGI program). */
#define PREPARED_MAX 16
struct prepared {
    int n;
    const char *names[PREPARED_MAX]; /* the callers' string literals */
};

static int prepared_proc(PGEventId id, void *info, void *arg)
{
    (void)arg;
    if (id == PGEVT_CONNRESET) {
        struct prepared *p = PQinstanceData(((PGEventConnReset *)info)->conn, prepared_proc);
        if (p)
            p->n = 0;
    } else if (id == PGEVT_CONNDESTROY) {
        free(PQinstanceData(((PGEventConnDestroy *)info)->conn, prepared_proc));
    }
    return 1;
}

/* c's list of prepared statements, made on first use; NULL when out of memory. */
static struct prepared *prepared_of(PGconn *c)
{
    struct prepared *p = PQinstanceData(c, prepared_proc);
    if (p)
        return p;
    if (!PQregisterEventProc(c, prepared_proc, "pgcast prepared statements", NULL))
        return NULL;
    if (!(p = calloc(1, sizeof(*p))))
        return NULL;
    if (!PQsetInstanceData(c, prepared_proc, p)) {
        free(p);
        return NULL;
    }
    return p;
}

static bool prepared_has(const struct prepared *p, const char *name)
{
    for (int i = 0; p && i < p->n; i++)
        if (strcmp(p->names[i], name) == 0)
            return true;
    return false;
}

/* Inside a transaction block a failed Bind would abort the caller's transaction, so
 * there the statement is sent unnamed, as an unprepared one. A statement the list says
 * exists but the session lost (DISCARD ALL by a pooler: 26000) is prepared again. */
PGresult *pgc_db_exec_prepared(PGconn *c, const char *name, const char *sql, int nparams, const char *const *params)
{
    if (PQtransactionStatus(c) != PQTRANS_IDLE)
        return PQexecParams(c, sql, nparams, NULL, params, NULL, NULL, 0);
    struct prepared *p = prepared_of(c);
    if (prepared_has(p, name)) {
        PGresult *r = PQexecPrepared(c, name, nparams, params, NULL, NULL, 0);
        const char *state = PQresultErrorField(r, PG_DIAG_SQLSTATE);
        if (PQresultStatus(r) != PGRES_FATAL_ERROR || !state || strcmp(state, "26000") != 0)
            return r;
        PQclear(r);
        p->n = 0; /* the session lost them all */
    }
    PGresult *r = PQprepare(c, name, sql, nparams, NULL);
    const char *state = PQresultErrorField(r, PG_DIAG_SQLSTATE);
    if (PQresultStatus(r) != PGRES_COMMAND_OK) {
        if (!state || strcmp(state, "42P05") != 0) /* 42P05: it exists (the list was lost) */
            return r;
    }
    PQclear(r);
    if (p && !prepared_has(p, name) && p->n < PREPARED_MAX)
        p->names[p->n++] = name;
    return PQexecPrepared(c, name, nparams, params, NULL, NULL, 0);
}

int pgc_db_read(PGconn *c, const char *tenant, const pgc_cursor *after, int limit, size_t max_bytes,
                pgc_item_fn fn, void *arg, char *err, size_t errlen)
{
    pgc_arr chans = {0}, seqs = {0};
    for (size_t i = 0; i < after->n; i++) {
        pgc_arr_text(&chans, after->v[i].channel);
        pgc_arr_int(&seqs, after->v[i].seq, false);
    }
    const char *chans_lit = pgc_arr_end(&chans), *seqs_lit = pgc_arr_end(&seqs);
    char lim[16], bytes[24];
    snprintf(lim, sizeof(lim), "%d", limit);
    snprintf(bytes, sizeof(bytes), "%zu", max_bytes);
    if (!chans_lit || !seqs_lit) {
        free(chans.p);
        free(seqs.p);
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    const char *params[5] = {tenant, chans_lit, seqs_lit, lim, bytes};
    PGresult *r = pgc_db_exec_prepared(c, "pgcast_read_bounded",
                                "SELECT kind, channel, seq, gap_to, event_type, payload, ts_ms "
                                "FROM realtime.read($1, $2::text[], $3::bigint[], $4::int, $5::bigint)",
                                5, params);
    free(chans.p);
    free(seqs.p);
    if (PQresultStatus(r) != PGRES_TUPLES_OK) {
        snprintf(err, errlen, "%s", PQresultErrorMessage(r));
        PQclear(r);
        return -1;
    }
    int n = PQntuples(r);
    for (int i = 0; i < n; i++) {
        const char *kind = PQgetvalue(r, i, 0), *channel = PQgetvalue(r, i, 1);
        int64_t seq = strtoll(PQgetvalue(r, i, 2), NULL, 10);
        pgc_event *e;
        if (kind[0] == 'g')
            e = pgc_event_new_gap(tenant, channel, seq, strtoll(PQgetvalue(r, i, 3), NULL, 10));
        else
            e = pgc_event_new_event(tenant, channel, seq, PQgetvalue(r, i, 4), PQgetvalue(r, i, 5),
                                    (size_t)PQgetlength(r, i, 5), strtoll(PQgetvalue(r, i, 6), NULL, 10));
        if (!e) {
            snprintf(err, errlen, "out of memory");
            PQclear(r);
            return -1;
        }
        if (fn(e, arg) != 0) {
            n = 0;
            break;
        }
    }
    PQclear(r);
    return n;
}
