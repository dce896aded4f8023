/* The hub's notification source against the test's database and the real pgcast-relay
 * ($PGCAST_BIN/pgcast-relay): without a relay the hub LISTENs on its own; with one it
 * takes its wake-ups from it; a relay killed with SIGKILL and started again loses and
 * duplicates nothing; a relay of another database is not used; pgc_hub_sync answers
 * every barrier exactly once in both modes, and false once the hub stops. */
#include <libpq-fe.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "clock.h"
#include "hub.h"
#include "log.h"
#include "t.h"
#include "t_db.h"

static const char *conninfo;
static PGconn *pub;
static char sock_path[256];

static pid_t relay_start(const char *db_url)
{
    const char *bin = getenv("PGCAST_BIN");
    char path[512];
    snprintf(path, sizeof(path), "%s/pgcast-relay", bin && *bin ? bin : "build/asan/bin");
    pid_t p = fork();
    if (p == 0) {
        setenv("PGCAST_CONFIG", "", 1);
        setenv("PGCAST_DATABASE_URL", db_url, 1);
        setenv("PGCAST_LOG_LEVEL", "warn", 1);
        execl(path, "pgcast-relay", "--socket", sock_path, (char *)NULL);
        _exit(127);
    }
    struct stat st;
    for (int i = 0; i < 200 && stat(sock_path, &st) != 0; i++)
        usleep(50000);
    return p;
}

static void relay_kill(pid_t p, int sig)
{
    kill(p, sig);
    waitpid(p, NULL, 0);
}

static bool wait_relayed(pgc_hub *h, bool want, int ms)
{
    int64_t end = pgc_mono_ms() + ms;
    while (pgc_hub_relayed(h) != want && pgc_mono_ms() < end)
        usleep(20000);
    return pgc_hub_relayed(h) == want;
}

/* ---- barriers */

static atomic_int sync_true, sync_false, sync_calls;

static void on_sync(void *arg, bool current)
{
    (void)arg;
    atomic_fetch_add(current ? &sync_true : &sync_false, 1);
    atomic_fetch_add(&sync_calls, 1);
}

/* n barriers at once; true when every one was answered (once) within 20 s */
static bool barriers(pgc_hub *h, int n, int *ntrue)
{
    atomic_store(&sync_true, 0);
    atomic_store(&sync_false, 0);
    atomic_store(&sync_calls, 0);
    for (int i = 0; i < n; i++)
        if (pgc_hub_sync(h, on_sync, NULL) != 0)
            return false;
    int64_t end = pgc_mono_ms() + 20000;
    while (atomic_load(&sync_calls) < n && pgc_mono_ms() < end)
        usleep(10000);
    usleep(100000); /* a second answer to any of them would show now */
    *ntrue = atomic_load(&sync_true);
    return atomic_load(&sync_calls) == n;
}

/* ---- a subscriber that records seqs */

struct rec {
    int efd;
    int64_t seqs[4096];
    int n;
};

static void wake(void *arg)
{
    uint64_t one = 1;
    ssize_t w = write(((struct rec *)arg)->efd, &one, sizeof(one));
    (void)w;
}

static void drain(pgc_sub *s, struct rec *r)
{
    pgc_event *items[64];
    size_t k;
    while ((k = pgc_sub_take(s, items, 64)) > 0) {
        for (size_t i = 0; i < k; i++) {
            if (items[i]->kind == PGC_ITEM_EVENT && r->n < 4096)
                r->seqs[r->n++] = items[i]->seq;
            pgc_event_unref(items[i]);
        }
    }
}

static bool wait_count(pgc_sub *s, struct rec *r, int want, int ms)
{
    int64_t end = pgc_mono_ms() + ms;
    while (r->n < want && pgc_mono_ms() < end) {
        usleep(10000);
        drain(s, r);
    }
    usleep(200000);
    drain(s, r);
    return r->n == want;
}

static bool in_order_from(struct rec *r, int64_t first)
{
    for (int i = 0; i < r->n; i++)
        if (r->seqs[i] != first + i)
            return false;
    return true;
}

static int publish(const char *ch, int n)
{
    char q[256];
    snprintf(q, sizeof(q), "SELECT realtime.publish('ts', '%s', 't', jsonb_build_object('i', g)) FROM generate_series(1, %d) g",
             ch, n);
    return t_exec(pub, q);
}

int main(void)
{
    pgc_log_init("test_hub_sync", PGC_LOG_WARN);
    signal(SIGPIPE, SIG_IGN);
    conninfo = getenv("PGCAST_DATABASE_URL");
    if (!conninfo) {
        printf("1..0 # SKIP no PGCAST_DATABASE_URL\n");
        return 0;
    }
    pub = PQconnectdb(conninfo);
    if (PQstatus(pub) != CONNECTION_OK) {
        printf("not ok 1 - connect: %s", PQerrorMessage(pub));
        return 1;
    }
    const char *work = getenv("PGCAST_TEST_WORK");
    snprintf(sock_path, sizeof(sock_path), "%s/hubsync-%d.sock", work && *work ? work : "/tmp", (int)getpid());
    char ch[64];
    snprintf(ch, sizeof(ch), "sync:%d", (int)getpid());

    /* no relay: own LISTEN */
    char err[256];
    pgc_hub_options o = {.conninfo = conninfo, .kind = "test", .relay_socket = sock_path, .relay_retry_ms = 200};
    pgc_hub *h = pgc_hub_start(&o, err, sizeof(err));
    T_OK(h != NULL, "hub starts with a relay socket that nobody serves");
    if (!h)
        return 1;
    for (int i = 0; i < 500 && !pgc_hub_db_ok(h); i++)
        usleep(20000);
    bool ok1 = pgc_hub_db_ok(h) && !pgc_hub_relayed(h);
    T_OK(ok1, "no relay: the hub listens on its own connection");
    int ntrue = 0;
    bool ok2 = barriers(h, 20, &ntrue) && ntrue == 20;
    T_OK(ok2, "own LISTEN: 20 barriers at once, each answered once, current (%d)",
         ntrue);

    struct rec *r = calloc(1, sizeof(*r));
    r->efd = eventfd(0, EFD_NONBLOCK);
    pgc_sub *s = pgc_sub_new(h, "ts", wake, r);
    bool ok3 = s && pgc_sub_add(s, ch, 0) == 0;
    T_OK(ok3, "a subscriber from seq 0");
    bool ok4 = publish(ch, 10) == 0 && wait_count(s, r, 10, 20000) && in_order_from(r, 1);
    T_OK(ok4, "own LISTEN: 10 events delivered (%d)", r->n);

    /* a relay comes: the hub moves to it */
    pid_t relay = relay_start(conninfo);
    bool ok5 = wait_relayed(h, true, 20000);
    T_OK(ok5, "a relay starts: the hub takes its wake-ups from it");
    bool ok6 = barriers(h, 20, &ntrue) && ntrue == 20;
    T_OK(ok6, "relay: 20 barriers at once, each answered once, current (%d)", ntrue);
    bool ok7 = publish(ch, 10) == 0 && wait_count(s, r, 20, 20000) && in_order_from(r, 1);
    T_OK(ok7, "relay: 10 more events delivered, none twice (%d)", r->n);

    /* channels subscribed while relayed: the relay learns their tags; an event published
     * right after the subscription is delivered (read after the relay's barrier) */
    int fresh_ok = 0;
    for (int i = 0; i < 20; i++) {
        struct rec *r2 = calloc(1, sizeof(*r2));
        r2->efd = eventfd(0, EFD_NONBLOCK);
        pgc_sub *s2 = pgc_sub_new(h, "ts", wake, r2);
        char ch2[80];
        snprintf(ch2, sizeof(ch2), "%s-new%d", ch, i);
        if (s2 && pgc_sub_add(s2, ch2, 0) == 0 && publish(ch2, 1) == 0 && wait_count(s2, r2, 1, 20000))
            fresh_ok++;
        pgc_sub_free(s2);
        close(r2->efd);
        free(r2);
    }
    T_INT(fresh_ok, 20, "relay: 20 channels subscribed while relayed, one event each right after: all delivered");

    /* killed mid-burst */
    char q[256];
    snprintf(q, sizeof(q),
             "DO $$ BEGIN FOR i IN 1..100 LOOP PERFORM realtime.publish('ts', '%s', 't', '{}'); COMMIT; "
             "PERFORM pg_sleep(0.005); END LOOP; END $$", ch);
    PGconn *bg = PQconnectdb(conninfo);
    bool ok8 = PQsendQuery(bg, q) == 1;
    T_OK(ok8, "a burst of 100 transactions begins");
    usleep(150000);
    relay_kill(relay, SIGKILL);
    bool ok9 = wait_relayed(h, false, 20000);
    T_OK(ok9, "the relay killed (SIGKILL): the hub listens on its own again");
    PGresult *res;
    while ((res = PQgetResult(bg)) != NULL)
        PQclear(res);
    PQfinish(bg);
    bool ok10 = wait_count(s, r, 120, 30000) && in_order_from(r, 1);
    T_OK(ok10, "every event of the burst, once, in order (%d of 120)",
         r->n);
    bool ok11 = barriers(h, 5, &ntrue) && ntrue == 5;
    T_OK(ok11, "own LISTEN again: barriers answered (%d)", ntrue);

    /* started again: back to it */
    relay = relay_start(conninfo);
    bool ok12 = wait_relayed(h, true, 20000);
    T_OK(ok12, "the relay started again: the hub moves back to it");
    bool ok13 = publish(ch, 10) == 0 && wait_count(s, r, 130, 20000) && in_order_from(r, 1);
    T_OK(ok13, "after moving back: 10 more events, none lost or twice (%d)", r->n);
    relay_kill(relay, SIGTERM);
    bool ok14 = wait_relayed(h, false, 20000);
    T_OK(ok14, "the relay stopped (SIGTERM): own LISTEN");

    /* a relay on another database is not used */
    char other[1024];
    const char *owner = getenv("PGCAST_TEST_OWNER_URL");
    snprintf(other, sizeof(other), "%s dbname=postgres", owner && *owner ? owner : conninfo);
    relay = relay_start(other);
    usleep(1500000);
    bool ok15 = !pgc_hub_relayed(h);
    T_OK(ok15, "a relay listening on another database is not used");
    bool ok16 = publish(ch, 10) == 0 && wait_count(s, r, 140, 20000) && in_order_from(r, 1);
    T_OK(ok16, "meanwhile events flow by the own LISTEN (%d)", r->n);
    relay_kill(relay, SIGTERM);

    pgc_sub_free(s);
    /* barriers asked as the hub stops: answered (false at worst), exactly once */
    atomic_store(&sync_calls, 0);
    int asked = 0;
    for (int i = 0; i < 10; i++)
        asked += pgc_hub_sync(h, on_sync, NULL) == 0;
    pgc_hub_stop(h);
    T_INT(atomic_load(&sync_calls), asked, "barriers asked as the hub stops are answered once each");
    close(r->efd);
    free(r);
    PQfinish(pub);
    printf("1..%d\n", t_n);
    return T_DONE();
}
