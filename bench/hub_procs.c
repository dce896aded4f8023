/* hub_procs: K hubs (each what one pgcast process runs: its own LISTEN connection and
 * hub thread, reading woken channels from the log) with one subscriber each on the given
 * channels, drained continuously, for measuring the database work each serving process
 * adds per publish.
 *
 *   hub_procs CONNINFO K TENANT CHANNEL...
 *
 * HUB_RELAY_SOCKET: the hubs take their wake-ups from the pgcast-relay serving that
 * socket (none LISTENs on its own while it is there). Prints "ready" once every hub is
 * connected and subscribed; on SIGTERM or SIGINT prints "events=TOTAL" (events taken by
 * all subscribers) and exits. Figures only. */
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "hub.h"
#include "log.h"

static volatile sig_atomic_t stop;

static void on_signal(int sig)
{
    (void)sig;
    stop = 1;
}

static void no_wake(void *arg) { (void)arg; }

int main(int argc, char **argv)
{
    if (argc < 5) {
        fprintf(stderr, "usage: hub_procs CONNINFO K TENANT CHANNEL...\n");
        return 2;
    }
    int k = atoi(argv[2]);
    if (k < 1 || k > 10000) {
        fprintf(stderr, "hub_procs: K must be 1..10000\n");
        return 2;
    }
    pgc_hub **hubs = calloc((size_t)k, sizeof(*hubs));
    pgc_sub **subs = calloc((size_t)k, sizeof(*subs));
    if (!hubs || !subs) {
        fprintf(stderr, "hub_procs: out of memory\n");
        return 1;
    }
    for (int i = 0; i < k; i++) {
        char err[256];
        pgc_hub_options o = {.conninfo = argv[1], .kind = "bench", .queue_events = 1 << 16,
                             .queue_bytes = (size_t)1 << 28, .relay_socket = getenv("HUB_RELAY_SOCKET"),
                             .relay_retry_ms = 500};
        if (!(hubs[i] = pgc_hub_start(&o, err, sizeof(err)))) {
            fprintf(stderr, "hub_procs: hub %d: %s\n", i, err);
            return 1;
        }
        if (!(subs[i] = pgc_sub_new(hubs[i], argv[3], no_wake, NULL))) {
            fprintf(stderr, "hub_procs: out of memory\n");
            return 1;
        }
        for (int c = 4; c < argc; c++)
            if (pgc_sub_add(subs[i], argv[c], -1) != 0) {
                fprintf(stderr, "hub_procs: subscribe failed\n");
                return 1;
            }
    }
    struct sigaction sa;
    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = on_signal;
    if (sigaction(SIGTERM, &sa, NULL) != 0 || sigaction(SIGINT, &sa, NULL) != 0) {
        perror("hub_procs: sigaction");
        return 1;
    }
    /* ready: every hub connected and every subscription confirmed (SUBSCRIBED items) */
    long long total = 0, subscribed = 0, want = (long long)k * (argc - 4);
    pgc_event *items[256];
    for (int tries = 0; subscribed < want && tries < 6000 && !stop; tries++) {
        for (int i = 0; i < k; i++) {
            size_t n;
            while ((n = pgc_sub_take(subs[i], items, 256)) > 0)
                for (size_t j = 0; j < n; j++) {
                    subscribed += items[j]->kind == PGC_ITEM_SUBSCRIBED;
                    pgc_event_unref(items[j]);
                }
        }
        usleep(10000);
    }
    if (subscribed < want) {
        fprintf(stderr, "hub_procs: %lld of %lld subscriptions confirmed\n", subscribed, want);
        return 1;
    }
    printf("ready\n");
    fflush(stdout);
    while (!stop) {
        for (int i = 0; i < k; i++) {
            size_t n;
            while ((n = pgc_sub_take(subs[i], items, 256)) > 0)
                for (size_t j = 0; j < n; j++) {
                    total += items[j]->kind == PGC_ITEM_EVENT;
                    pgc_event_unref(items[j]);
                }
        }
        usleep(2000);
    }
    printf("events=%lld\n", total);
    fflush(stdout);
    for (int i = 0; i < k; i++) {
        pgc_sub_free(subs[i]);
        pgc_hub_stop(hubs[i]);
    }
    free(subs);
    free(hubs);
    return 0;
}
