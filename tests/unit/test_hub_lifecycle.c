/* The hub against the test's PostgreSQL database, for what must hold whatever the
 * timing: subscribers freed while the hub stops and while it pushes to them (ASan
 * reports any use after free), tenants whose names share a long prefix never share a
 * channel, and a subscriber that never takes, behind on big events, never stops the
 * hub from delivering to the others; signals deferred by a thread reach live hubs only. */
#include <libpq-fe.h>
#include <pthread.h>
#include <stdatomic.h>
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
static PGconn *pub, *owner;
static char seam_ch[64];

static int publish(const char *tenant, const char *channel, int n, int pad)
{
    size_t len = strlen(tenant) + strlen(channel) + 256;
    char *q = malloc(len);
    snprintf(q, len,
             "SELECT realtime.publish('%s', '%s', 't', json_build_object('i', g, 'pad', repeat('x', %d))::jsonb) "
             "FROM generate_series(1, %d) g",
             tenant, channel, pad, n);
    int rc = t_exec(pub, q);
    free(q);
    return rc;
}

static pgc_hub *start_hub(size_t queue_events, size_t queue_bytes)
{
    char err[256];
    pgc_hub_options o = {.conninfo = conninfo, .kind = "test", .queue_events = queue_events, .queue_bytes = queue_bytes};
    pgc_hub *h = pgc_hub_start(&o, err, sizeof(err));
    if (!h)
        printf("# hub: %s\n", err);
    for (int i = 0; h && i < 500 && !pgc_hub_db_ok(h); i++)
        usleep(10000);
    return h;
}

static atomic_long wakes;
static void count_wake(void *arg)
{
    (void)arg;
    atomic_fetch_add(&wakes, 1);
}

/* A consumer on the test's thread: counts events, checks their order. */
typedef struct taker {
    pgc_sub *sub;
    bool subscribed;
    long events, errors;
    int64_t next;
} taker;

static void take_all(taker *t)
{
    pgc_event *items[64];
    size_t n;
    while ((n = pgc_sub_take(t->sub, items, 64)) > 0) {
        for (size_t i = 0; i < n; i++) {
            if (items[i]->kind == PGC_ITEM_SUBSCRIBED) {
                t->subscribed = true;
            } else if (items[i]->kind == PGC_ITEM_EVENT) {
                if (t->next && items[i]->seq != t->next)
                    t->errors++;
                t->next = items[i]->seq + 1;
                t->events++;
            }
            pgc_event_unref(items[i]);
        }
    }
}

static bool take_until(taker *t, long events, int timeout_ms)
{
    int64_t end = pgc_mono_ms() + timeout_ms;
    for (;;) {
        take_all(t);
        if (t->subscribed && t->events >= events)
            return true;
        if (pgc_mono_ms() > end)
            return false;
        usleep(2000);
    }
}

/* Waits for a subscriber's SUBSCRIBED without taking anything else. */
static bool wait_subscribed_only(pgc_sub *s, int timeout_ms)
{
    int64_t end = pgc_mono_ms() + timeout_ms;
    while (pgc_mono_ms() < end) {
        pgc_event *e;
        if (pgc_sub_take(s, &e, 1) == 1) {
            bool ok = e->kind == PGC_ITEM_SUBSCRIBED;
            pgc_event_unref(e);
            return ok;
        }
        usleep(2000);
    }
    return false;
}

static void *stopper(void *arg)
{
    pgc_hub_stop(arg);
    return NULL;
}

/* Subscribers freed from another thread while pgc_hub_stop runs and while the hub thread
 * still pushes a burst to them: nothing may touch a freed subscriber. */
static void test_free_during_stop(void)
{
    enum { ITER = 12, NS = 12, BURST = 2000 };
    int clean = 0;
    for (int it = 0; it < ITER; it++) {
        pgc_hub *h = start_hub(1 << 16, 1u << 30);
        if (!h)
            break;
        pgc_sub *subs[NS];
        int ok = 1;
        for (int i = 0; i < NS; i++) {
            subs[i] = pgc_sub_new(h, "t1", count_wake, NULL);
            ok &= subs[i] && pgc_sub_add(subs[i], "project:race", -1) == 0;
        }
        for (int i = 0; ok && i < NS; i++)
            ok &= wait_subscribed_only(subs[i], 10000);
        if (!ok) {
            printf("# iteration %d: subscribers not ready\n", it);
            break;
        }
        long before = atomic_load(&wakes);
        publish("t1", "project:race", BURST, 10); /* one transaction: one burst of notifications */
        /* the hub is pushing once a subscriber was woken */
        for (int i = 0; i < 5000 && atomic_load(&wakes) == before; i++)
            usleep(1000);
        /* a few freed the ordinary way, the others while the hub stops */
        for (int i = 0; i < NS / 3; i++)
            pgc_sub_free(subs[i]);
        pthread_t t;
        if (pthread_create(&t, NULL, stopper, h) != 0)
            break;
        usleep(it % 4 * 300); /* vary where in the stop the frees land */
        for (int i = NS / 3; i < NS; i++)
            pgc_sub_free(subs[i]);
        pthread_join(t, NULL);
        clean++;
    }
    T_INT(clean, ITER, "subscribers freed during pgc_hub_stop and during pushes (%d rounds, ASan watching)", ITER);

    /* and the other order: the hub stopped first, subscribers freed after (the last
     * one releases the hub) */
    pgc_hub *h = start_hub(64, 0);
    pgc_sub *a = pgc_sub_new(h, "t1", count_wake, NULL), *b = pgc_sub_new(h, "t1", count_wake, NULL);
    pgc_sub_add(a, "project:race", -1);
    pgc_sub_add(b, "project:race", 0);
    pgc_hub_stop(h);
    T_INT(pgc_sub_get_state(a), PGC_SUB_CLOSED, "a subscriber alive at stop is closed");
    pgc_sub_free(a);
    pgc_sub_free(b);
    T_OK(1, "freed after the stop");
}

/* An event as realtime.publish writes it, and its wake-up, for a tenant of any length:
 * publish itself refuses tenants over 200 bytes, the hub must not depend on that. The
 * rows are written by the owner (the runtime role may not). */
static int publish_raw(const char *tenant, const char *channel, int seq)
{
    size_t len = 3 * strlen(tenant) + 3 * strlen(channel) + 1024;
    char *q = malloc(len);
    snprintf(q, len,
             "INSERT INTO realtime.realtime_channels (tenant_id, channel_name, channel_type, last_seq) "
             "VALUES ('%s', '%s', 'project', %d) ON CONFLICT (tenant_id, channel_name) DO UPDATE SET last_seq = %d; "
             "INSERT INTO realtime.realtime_events_log (tenant_id, channel, seq, event_type, event_data, published_at) "
             "VALUES ('%s', '%s', %d, 't', jsonb_build_object('i', %d), clock_timestamp()); "
             "SELECT pg_notify('realtime_events', realtime.channel_tag('%s', '%s') || ' ' || %d)",
             tenant, channel, seq, seq, tenant, channel, seq, seq, tenant, channel, seq);
    PGresult *r = PQexec(owner, q);
    int ok = PQresultStatus(r) == PGRES_TUPLES_OK;
    if (!ok)
        printf("# sql failed: %s", PQresultErrorMessage(r));
    PQclear(r);
    free(q);
    return ok ? 0 : -1;
}

/* The hub's wake-up tags are realtime.channel_tag's, byte for byte (UTF-8 tenants too). */
static void test_tag_matches_sql(void)
{
    PGresult *r = PQexec(owner, "SELECT encode(secret, 'hex'), realtime.channel_tag('t1', 'project:a'), "
                                "realtime.channel_tag('ten\u00e4nt-\u65e5\u672c', 'entity:User:x@y.z') "
                                "FROM realtime.realtime_secret");
    bool ok = PQresultStatus(r) == PGRES_TUPLES_OK && PQntuples(r) == 1 && PQgetlength(r, 0, 0) == 64;
    T_OK(ok, "the secret and the SQL tags are read (%s)", PQresultErrorMessage(r));
    if (ok) {
        unsigned char key[PGC_HUB_SECRET_LEN];
        const char *hx = PQgetvalue(r, 0, 0);
        for (int i = 0; i < PGC_HUB_SECRET_LEN; i++) {
            unsigned v;
            sscanf(hx + 2 * i, "%2x", &v);
            key[i] = (unsigned char)v;
        }
        char t1[PGC_HUB_TAG_LEN + 1], t2[PGC_HUB_TAG_LEN + 1];
        T_OK(pgc_hub_channel_tag(key, "t1", "project:a", t1) == 0 && strcmp(t1, PQgetvalue(r, 0, 1)) == 0,
             "C and SQL agree on a tag (%s / %s)", t1, PQgetvalue(r, 0, 1));
        T_OK(pgc_hub_channel_tag(key, "ten\xc3\xa4nt-\xe6\x97\xa5\xe6\x9c\xac", "entity:User:x@y.z", t2) == 0 &&
                 strcmp(t2, PQgetvalue(r, 0, 2)) == 0,
             "and on a UTF-8 tenant's (%s / %s)", t2, PQgetvalue(r, 0, 2));
        T_OK(strcmp(t1, t2) != 0, "different channels, different tags");
    }
    PQclear(r);
}

/* Two tenants whose names share their first 520 bytes: a notification of one never
 * reaches a subscriber of the other. */
static void test_long_tenants(void)
{
    char ta[600], tb[600];
    memset(ta, 'x', 520);
    memcpy(tb, ta, 520);
    strcpy(ta + 520, "A");
    strcpy(tb + 520, "B");
    pgc_hub *h = start_hub(1024, 0);
    taker a = {0}, b = {0};
    a.sub = pgc_sub_new(h, ta, count_wake, NULL);
    b.sub = pgc_sub_new(h, tb, count_wake, NULL);
    pgc_sub_add(a.sub, "project:shared-name", -1);
    T_OK(take_until(&a, 0, 10000), "tenant A subscribed");
    publish_raw(tb, "project:shared-name", 1);
    publish_raw(tb, "project:shared-name", 2);
    usleep(300000);
    take_all(&a);
    T_INT(a.events, 0, "tenant A gets no event of tenant B (same channel, same first 520 bytes)");
    pgc_sub_add(b.sub, "project:shared-name", -1);
    T_OK(take_until(&b, 0, 10000), "tenant B subscribed");
    publish_raw(tb, "project:shared-name", 3);
    publish_raw(ta, "project:shared-name", 1);
    T_OK(take_until(&b, 1, 10000), "tenant B gets its event (%ld)", b.events);
    T_OK(take_until(&a, 1, 10000), "tenant A gets its event (%ld)", a.events);
    usleep(300000);
    take_all(&a);
    take_all(&b);
    T_OK(a.events == 1 && b.events == 1, "one each (A %ld, B %ld)", a.events, b.events);
    pgc_sub_free(a.sub);
    pgc_sub_free(b.sub);
    pgc_hub_stop(h);
}

/* A subscriber that never takes, resuming behind on events bigger than its queue's byte
 * bound allows in number: the hub goes on delivering to everyone else, also after that
 * subscriber is freed. */
static void test_stuck_catchup(void)
{
    pgc_hub *h = start_hub(1024, 64 * 1024);
    publish("t1", "project:stuck", 40, 12000); /* 480 KB behind, 12 KB each */
    pgc_sub *stuck = pgc_sub_new(h, "t1", count_wake, NULL);
    pgc_sub_add(stuck, "project:stuck", 0);
    taker live = {0};
    live.sub = pgc_sub_new(h, "t1", count_wake, NULL);
    pgc_sub_add(live.sub, "project:unstuck", -1);
    bool ok = take_until(&live, 0, 10000);
    T_OK(ok, "another subscriber of the process subscribes while one is stuck behind");
    publish("t1", "project:unstuck", 5, 1);
    ok = ok && take_until(&live, 5, 10000);
    T_OK(ok, "and gets its live events (%ld of 5)", live.events);
    if (!ok) {
        printf("# the hub is stuck: ending here\n");
        fflush(stdout);
        _exit(1);
    }
    pgc_sub_free(stuck);
    publish("t1", "project:unstuck", 5, 1);
    T_OK(take_until(&live, 10, 10000), "also after the stuck one left (%ld of 10)", live.events);
    T_INT(live.errors, 0, "in order");
    pgc_sub_free(live.sub);
    pgc_hub_stop(h);
}

/* A subscriber resuming behind by more than half its queue, whose consumer pauses (a
 * stream whose client reads at its own pace): catch-up stops at half the queue, so the
 * live events published during the pause find room and nothing overflows at the seam
 * between catch-up and live. */
static void test_seam_headroom(void)
{
    pgc_hub *h = start_hub(64, 0);
    snprintf(seam_ch, sizeof(seam_ch), "project:seam-%d", (int)getpid()); /* a fresh channel */
    publish("t1", seam_ch, 50, 1);
    taker t = {0};
    t.sub = pgc_sub_new(h, "t1", count_wake, NULL);
    pgc_sub_add(t.sub, seam_ch, 0);
    usleep(300000); /* the consumer pauses: the hub feeds what it may */
    publish("t1", seam_ch, 20, 1);
    usleep(300000);
    T_INT(pgc_sub_get_state(t.sub), PGC_SUB_OK, "live events during a paused catch-up do not overflow the queue");
    T_OK(take_until(&t, 70, 10000), "the consumer then gets every event (%ld of 70)", t.events);
    T_INT(t.errors, 0, "in order, none twice");
    T_INT(pgc_sub_get_state(t.sub), PGC_SUB_OK, "and stays live");
    pgc_sub_free(t.sub);
    pgc_hub_stop(h);
}

/* Signals deferred by a thread (pgc_hub_defer_signals, as the stream loop does): what it
 * sent is done once it flushes; a flush for a hub released meanwhile (stopped, its last
 * subscriber freed) touches nothing of it (ASan watching). */
static void test_deferred_signals(void)
{
    pgc_hub *h = start_hub(64, 0);
    if (!h) {
        T_OK(0, "hub for deferred signals");
        return;
    }
    pgc_hub_defer_signals(true);
    pgc_sub *s = pgc_sub_new(h, "t1", count_wake, NULL);
    bool added = s && pgc_sub_add(s, "project:deferred", -1) == 0;
    T_OK(added, "subscribed with the signal deferred");
    pgc_hub_flush_signals();
    bool took = added && wait_subscribed_only(s, 10000);
    T_OK(took, "flushed: the hub took the command");
    pgc_sub_free(s); /* its CMD_FREE's signal waits for the flush below */
    pgc_hub_stop(h); /* no subscriber left: the hub is released */
    pgc_hub_flush_signals();
    T_OK(1, "a flush after the hub was released skips it");
    pgc_hub_defer_signals(false);

    /* two hubs in one batch: each is signalled */
    pgc_hub *a = start_hub(64, 0), *b = start_hub(64, 0);
    pgc_hub_defer_signals(true);
    pgc_sub *sa = pgc_sub_new(a, "t1", count_wake, NULL), *sb = pgc_sub_new(b, "t1", count_wake, NULL);
    pgc_sub_add(sa, "project:deferred", -1);
    pgc_sub_add(sb, "project:deferred", -1);
    pgc_hub_defer_signals(false); /* flushes */
    took = wait_subscribed_only(sa, 10000) && wait_subscribed_only(sb, 10000);
    T_OK(took, "two hubs deferred in one batch: both took their commands");
    pgc_sub_free(sa);
    pgc_sub_free(sb);
    pgc_hub_stop(a);
    pgc_hub_stop(b);
}

int main(void)
{
    setvbuf(stdout, NULL, _IOLBF, 0); /* every line out before a sanitizer report ends the run */
    pgc_log_init("test_hub_lifecycle", PGC_LOG_WARN);
    if (!(conninfo = t_db_url()))
        return 1;
    pub = PQconnectdb(conninfo);
    const char *owner_url = getenv("PGCAST_TEST_OWNER_URL");
    owner = PQconnectdb(owner_url && *owner_url ? owner_url : conninfo);
    if (PQstatus(pub) != CONNECTION_OK || PQstatus(owner) != CONNECTION_OK) {
        printf("not ok 1 - connect: %s%s", PQerrorMessage(pub), PQerrorMessage(owner));
        return 1;
    }
    test_stuck_catchup();
    test_seam_headroom();
    test_tag_matches_sql();
    test_long_tenants();
    test_free_during_stop();
    test_deferred_signals();
    PQfinish(pub);
    PQfinish(owner);
    return T_DONE();
}
