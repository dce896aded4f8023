/* The hub against the test's real PostgreSQL database: fan-out, order, resume, gaps,
 * big events, overflow, config reload, lost connections and (when the runner provides a
 * private cluster) a full server restart. */
#include <libpq-fe.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "clock.h"
#include "hub.h"
#include "log.h"
#include "t.h"
#include "t_db.h"

static const char *conninfo;
static PGconn *pub;

/* A consumer that checks what it gets: SUBSCRIBED first, then seqs in order, no dup. */
typedef struct collector {
    pgc_sub *sub;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int woken;
    int64_t subscribed; /* seq of the SUBSCRIBED item, -1 before */
    int64_t next;       /* next seq expected; 0 = take the first one */
    long events, gaps, errors;
    int64_t gap_from, gap_to;
    size_t last_len;
} collector;

static void wake(void *arg)
{
    collector *c = arg;
    pthread_mutex_lock(&c->mu);
    c->woken++;
    pthread_cond_signal(&c->cv);
    pthread_mutex_unlock(&c->mu);
}

static void collector_init(collector *c, pgc_hub *hub, const char *tenant)
{
    memset(c, 0, sizeof(*c));
    pthread_mutex_init(&c->mu, NULL);
    pthread_cond_init(&c->cv, NULL);
    c->subscribed = -1;
    c->sub = pgc_sub_new(hub, tenant, wake, c);
}

static void collector_drain(collector *c)
{
    pgc_event *items[256];
    size_t n;
    while ((n = pgc_sub_take(c->sub, items, 256)) > 0) {
        for (size_t i = 0; i < n; i++) {
            pgc_event *e = items[i];
            if (e->kind == PGC_ITEM_SUBSCRIBED) {
                c->subscribed = e->seq;
            } else if (e->kind == PGC_ITEM_GAP) {
                c->gaps++;
                c->gap_from = e->seq;
                c->gap_to = e->gap_to;
                c->next = e->gap_to + 1;
            } else if (e->kind == PGC_ITEM_EVENT) {
                if (c->subscribed < 0 || (c->next && e->seq != c->next))
                    c->errors++;
                c->next = e->seq + 1;
                c->events++;
                c->last_len = e->json_len;
            }
            pgc_event_unref(e);
        }
    }
}

static void collector_free(collector *c)
{
    pgc_sub_free(c->sub);
    pthread_mutex_destroy(&c->mu);
    pthread_cond_destroy(&c->cv);
}

/* Drains every collector until each has seen `want` events (or the deadline). */
static int drain_until(collector *cs, int n, long want, int timeout_ms)
{
    int64_t end = pgc_mono_ms() + timeout_ms;
    for (;;) {
        int done = 1;
        for (int i = 0; i < n; i++) {
            collector_drain(&cs[i]);
            if (cs[i].events < want)
                done = 0;
        }
        if (done)
            return 1;
        if (pgc_mono_ms() > end)
            return 0;
        usleep(2000);
    }
}

/* n events in one transaction, payload {"i": k}. */
static int publish_batch(const char *tenant, const char *channel, int n, int payload_bytes)
{
    char q[512];
    if (payload_bytes > 0)
        snprintf(q, sizeof(q),
                 "SELECT realtime.publish('%s', '%s', 'big', json_build_object('i', g, 'pad', repeat('x', %d))::jsonb) "
                 "FROM generate_series(1, %d) g",
                 tenant, channel, payload_bytes, n);
    else
        snprintf(q, sizeof(q),
                 "SELECT realtime.publish('%s', '%s', 't', json_build_object('i', g)::jsonb) FROM generate_series(1, %d) g",
                 tenant, channel, n);
    return t_exec(pub, q);
}

static pgc_hub *start_hub(size_t queue_events)
{
    char err[256];
    /* stall_ms -1: a full queue ends its subscriber at once (test_overflow checks that;
     * the default, ending it only after 10 s without a take, is checked in tests/sse) */
    pgc_hub_options o = {.conninfo = conninfo, .kind = "test", .queue_events = queue_events, .stall_ms = -1};
    pgc_hub *h = pgc_hub_start(&o, err, sizeof(err));
    if (!h)
        printf("# hub: %s\n", err);
    int64_t end = pgc_mono_ms() + 10000;
    while (h && !pgc_hub_db_ok(h) && pgc_mono_ms() < end)
        usleep(10000);
    return h;
}

static void wait_subscribed(collector *cs, int n)
{
    int64_t end = pgc_mono_ms() + 10000;
    for (int i = 0; i < n; i++)
        while (cs[i].subscribed < 0 && pgc_mono_ms() < end) {
            collector_drain(&cs[i]);
            if (cs[i].subscribed < 0)
                usleep(1000);
        }
}

static void test_fanout(pgc_hub *h)
{
    enum { NSUB = 1000, NEV = 10000 };
    collector *cs = calloc(NSUB, sizeof(*cs));
    for (int i = 0; i < NSUB; i++) {
        collector_init(&cs[i], h, "t1");
        pgc_sub_add(cs[i].sub, "project:fan", -1);
    }
    wait_subscribed(cs, NSUB);
    for (int b = 0; b < NEV / 100; b++)
        publish_batch("t1", "project:fan", 100, 0);
    int ok = drain_until(cs, NSUB, NEV, 120000);
    long errors = 0, short_ = 0;
    for (int i = 0; i < NSUB; i++) {
        errors += cs[i].errors;
        short_ += cs[i].events != NEV;
    }
    T_OK(ok && short_ == 0, "1,000 subscribers each received all 10,000 events");
    T_INT(errors, 0, "every subscriber saw them in seq order, no duplicate, SUBSCRIBED first");
    for (int i = 0; i < NSUB; i++)
        collector_free(&cs[i]);
    free(cs);
}

static void test_resume_and_modes(pgc_hub *h)
{
    publish_batch("t1", "project:resume", 20, 0);
    collector old, now, other;
    collector_init(&old, h, "t1");
    collector_init(&now, h, "t1");
    collector_init(&other, h, "t2");
    pgc_sub_add(old.sub, "project:resume", 5);
    pgc_sub_add(now.sub, "project:resume", -1);
    pgc_sub_add(other.sub, "project:resume", 0);
    wait_subscribed(&old, 1);
    wait_subscribed(&now, 1);
    T_INT(now.subscribed, 20, "SUBSCRIBED carries the channel's current seq");
    publish_batch("t1", "project:resume", 10, 0);
    drain_until(&old, 1, 25, 10000);
    drain_until(&now, 1, 10, 10000);
    T_INT(old.events, 25, "a subscriber from position 5 gets 6..30: missed ones then live");
    T_INT(old.errors, 0, "no gap or duplicate at the seam");
    T_INT(now.events, 10, "after=-1 gets only what is published afterwards");
    T_INT(now.errors, 0, "in order");
    collector_drain(&other);
    T_INT(other.events, 0, "another tenant's channel of the same name gets nothing");

    /* remove: nothing more of the channel */
    pgc_sub_remove(now.sub, "project:resume");
    publish_batch("t1", "project:resume", 3, 0);
    drain_until(&old, 1, 28, 10000);
    collector_drain(&now);
    T_INT(now.events, 10, "after pgc_sub_remove nothing more arrives");
    collector_free(&old);
    collector_free(&now);
    collector_free(&other);
}

static void test_gap(pgc_hub *h)
{
    publish_batch("t1", "project:gap", 10, 0);
    t_exec(pub, "SELECT realtime.prune(NULL, 4)");
    collector c;
    collector_init(&c, h, "t1");
    pgc_sub_add(c.sub, "project:gap", 2);
    drain_until(&c, 1, 4, 10000);
    T_INT(c.gaps, 1, "a pruned position gets one GAP item");
    T_OK(c.gap_from == 3 && c.gap_to == 6, "gap covers 3..6 (got %lld..%lld)", (long long)c.gap_from,
         (long long)c.gap_to);
    T_INT(c.events, 4, "then the 4 retained events");
    T_INT(c.errors, 0, "in order");
    collector_free(&c);
}

static void test_big(pgc_hub *h)
{
    collector c;
    collector_init(&c, h, "t1");
    pgc_sub_add(c.sub, "project:big", -1);
    wait_subscribed(&c, 1);
    publish_batch("t1", "project:big", 3, 9000);
    publish_batch("t1", "project:big", 1, 1 << 20);
    drain_until(&c, 1, 4, 20000);
    T_INT(c.events, 4, "events over the NOTIFY limit arrive (read from the log)");
    T_OK(c.last_len > (1u << 20), "a 1 MiB payload arrives whole (%zu bytes)", c.last_len);
    T_INT(c.errors, 0, "in order");
    collector_free(&c);
}

static void test_overflow(void)
{
    pgc_hub *h = start_hub(16);
    collector slow, fast;
    collector_init(&slow, h, "t1");
    collector_init(&fast, h, "t1");
    pgc_sub_add(slow.sub, "project:slow", -1);
    pgc_sub_add(fast.sub, "project:slow", -1);
    wait_subscribed(&slow, 1);
    wait_subscribed(&fast, 1);
    for (int i = 0; i < 10; i++) {
        publish_batch("t1", "project:slow", 10, 0);
        drain_until(&fast, 1, (i + 1) * 10, 10000);
    }
    T_INT(pgc_sub_get_state(slow.sub), PGC_SUB_OVERFLOW, "a subscriber that never takes overflows");
    T_INT(fast.events, 100, "the others keep receiving everything");
    T_INT(fast.errors, 0, "in order");
    pgc_hub_stats st;
    pgc_hub_get_stats(h, &st);
    T_OK(st.overflows >= 1, "the overflow is counted");
    collector_drain(&slow);
    T_OK(slow.events <= 16, "the slow queue never held more than its bound (%ld)", slow.events);
    collector_free(&slow);
    collector_free(&fast);
    pgc_hub_stop(h);
}

static void test_config(pgc_hub *h)
{
    int iv, to;
    pgc_hub_heartbeat(h, "project", &iv, &to);
    T_OK(iv == 30000 && to == 90000, "seeded project heartbeat 30000/90000");
    pgc_hub_heartbeat(h, "widget", &iv, &to);
    T_INT(iv, 30000, "unknown type uses the default row");
    uint64_t gen = pgc_hub_config_generation(h);
    t_exec(pub, "UPDATE realtime.realtime_heartbeat_config SET heartbeat_interval_ms = 1234, timeout_ms = 5000 "
        "WHERE channel_type = 'project'");
    int64_t end = pgc_mono_ms() + 1000;
    do {
        pgc_hub_heartbeat(h, "project", &iv, &to);
        if (iv == 1234)
            break;
        usleep(5000);
    } while (pgc_mono_ms() < end);
    T_INT(iv, 1234, "a config UPDATE is seen within a second");
    T_OK(pgc_hub_config_generation(h) > gen, "config generation moved");
}

/* Kill the hub's backend in the middle of a publishing run. */
static void test_terminate(pgc_hub *h)
{
    enum { NSUB = 50, NEV = 2000 };
    collector cs[NSUB];
    for (int i = 0; i < NSUB; i++) {
        collector_init(&cs[i], h, "t1");
        pgc_sub_add(cs[i].sub, "project:kill", 0);
    }
    wait_subscribed(cs, NSUB);
    pgc_hub_stats before;
    pgc_hub_get_stats(h, &before);
    for (int b = 0; b < NEV / 50; b++) {
        publish_batch("t1", "project:kill", 50, 0);
        if (b == 10 || b == 25) {
            /* the second kill waits until the first one was noticed and repaired */
            pgc_hub_stats st;
            int64_t end = pgc_mono_ms() + 10000;
            do {
                pgc_hub_get_stats(h, &st);
            } while ((st.reconnects < before.reconnects + (b == 25) || !pgc_hub_db_ok(h)) && pgc_mono_ms() < end &&
                     usleep(5000) == 0);
            t_exec(pub, "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = 'pgcast-hub' "
                "AND datname = current_database()");
        }
        drain_until(cs, NSUB, 0, 0);
    }
    int ok = drain_until(cs, NSUB, NEV, 30000);
    long errors = 0, wrong = 0;
    for (int i = 0; i < NSUB; i++) {
        errors += cs[i].errors;
        wrong += cs[i].events != NEV;
    }
    pgc_hub_stats after;
    pgc_hub_get_stats(h, &after);
    T_OK(after.reconnects >= before.reconnects + 2, "the hub reconnected after each kill (%llu)",
         (unsigned long long)(after.reconnects - before.reconnects));
    T_OK(ok && wrong == 0, "every subscriber got all %d events across two killed connections", NEV);
    T_INT(errors, 0, "exactly once and in order");
    for (int i = 0; i < NSUB; i++)
        collector_free(&cs[i]);
}

/* A full restart of the server (the runner gives us a private cluster to restart). */
static void test_restart(pgc_hub *h, const char *restart_cmd)
{
    enum { NSUB = 20, NEV = 600 };
    collector cs[NSUB];
    for (int i = 0; i < NSUB; i++) {
        collector_init(&cs[i], h, "t1");
        pgc_sub_add(cs[i].sub, "project:restart", 0);
    }
    wait_subscribed(cs, NSUB);
    for (int b = 0; b < NEV / 50; b++) {
        if (b == 6) {
            int rc = system(restart_cmd);
            T_INT(rc, 0, "cluster restarted");
            PQreset(pub);
        }
        publish_batch("t1", "project:restart", 50, 0);
    }
    int ok = drain_until(cs, NSUB, NEV, 30000);
    long errors = 0, wrong = 0;
    for (int i = 0; i < NSUB; i++) {
        errors += cs[i].errors;
        wrong += cs[i].events != NEV;
    }
    T_OK(ok && wrong == 0, "every subscriber got all %d events across a server restart", NEV);
    T_INT(errors, 0, "exactly once and in order");
    for (int i = 0; i < NSUB; i++)
        collector_free(&cs[i]);
}

int main(void)
{
    pgc_log_init("test_hub", PGC_LOG_WARN);
    if (!(conninfo = t_db_url()))
        return 1;
    /* publishing and table changes as the owner; the hub as the runtime role */
    const char *owner = getenv("PGCAST_TEST_OWNER_URL");
    pub = PQconnectdb(owner && *owner ? owner : conninfo);
    if (PQstatus(pub) != CONNECTION_OK) {
        printf("not ok 1 - connect: %s", PQerrorMessage(pub));
        return 1;
    }
    const char *restart = getenv("PGCAST_TEST_RESTART_CMD");
    pgc_hub *h = start_hub(16384);
    T_OK(h && pgc_hub_db_ok(h), "hub started and listening");
    if (!h)
        return 1;
    if (restart) {
        test_restart(h, restart);
    } else {
        test_resume_and_modes(h);
        test_gap(h);
        test_big(h);
        test_config(h);
        test_terminate(h);
        test_fanout(h);
        test_overflow();
    }
    /* a live subscriber at stop: woken CLOSED, freed afterwards */
    collector c;
    collector_init(&c, h, "t1");
    pgc_sub_add(c.sub, "project:stop", -1);
    wait_subscribed(&c, 1);
    pgc_hub_stop(h);
    T_INT(pgc_sub_get_state(c.sub), PGC_SUB_CLOSED, "hub stop marks live subscribers closed");
    collector_free(&c);
    PQfinish(pub);
    return T_DONE();
}
