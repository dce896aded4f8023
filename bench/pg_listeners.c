/* pg_listeners: N connections that LISTEN on realtime_events and drain their
 * notifications as a hub does (PQconsumeInput + PQnotifies on readable sockets), for
 * measuring what each listening connection costs PostgreSQL per publish.
 *
 *   pg_listeners CONNINFO N
 *
 * Prints "ready" once every connection listens; on SIGTERM or SIGINT prints
 * "notifications=TOTAL" and exits. Figures only; never asserts. */
#include <errno.h>
#include <libpq-fe.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static volatile sig_atomic_t stop;

static void on_signal(int sig)
{
    (void)sig;
    stop = 1;
}

int main(int argc, char **argv)
{
    if (argc != 3) {
        fprintf(stderr, "usage: pg_listeners CONNINFO N\n");
        return 2;
    }
    int n = atoi(argv[2]);
    if (n < 1 || n > 100000) {
        fprintf(stderr, "pg_listeners: N must be 1..100000\n");
        return 2;
    }
    PGconn **conns = calloc((size_t)n, sizeof(*conns));
    struct pollfd *fds = calloc((size_t)n, sizeof(*fds));
    if (!conns || !fds) {
        fprintf(stderr, "pg_listeners: out of memory\n");
        return 1;
    }
    for (int i = 0; i < n; i++) {
        conns[i] = PQconnectdb(argv[1]);
        if (PQstatus(conns[i]) != CONNECTION_OK) {
            fprintf(stderr, "pg_listeners: connection %d: %s", i, PQerrorMessage(conns[i]));
            return 1;
        }
        PGresult *r = PQexec(conns[i], "SET application_name = 'pg_listeners'; LISTEN realtime_events");
        if (PQresultStatus(r) != PGRES_COMMAND_OK) {
            fprintf(stderr, "pg_listeners: LISTEN: %s", PQerrorMessage(conns[i]));
            PQclear(r);
            return 1;
        }
        PQclear(r);
        fds[i].fd = PQsocket(conns[i]);
        fds[i].events = POLLIN;
    }
    struct sigaction sa;
    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = on_signal;
    if (sigaction(SIGTERM, &sa, NULL) != 0 || sigaction(SIGINT, &sa, NULL) != 0) {
        perror("pg_listeners: sigaction");
        return 1;
    }
    printf("ready\n");
    fflush(stdout);
    long long total = 0;
    while (!stop) {
        int k = poll(fds, (nfds_t)n, 500);
        if (k < 0) {
            if (errno == EINTR)
                continue;
            perror("pg_listeners: poll");
            return 1;
        }
        for (int i = 0; i < n && k > 0; i++) {
            if (!fds[i].revents)
                continue;
            k--;
            if (!PQconsumeInput(conns[i])) {
                fprintf(stderr, "pg_listeners: connection %d: %s", i, PQerrorMessage(conns[i]));
                return 1;
            }
            PGnotify *nt;
            while ((nt = PQnotifies(conns[i])) != NULL) {
                total++;
                PQfreemem(nt);
            }
        }
    }
    printf("notifications=%lld\n", total);
    for (int i = 0; i < n; i++)
        PQfinish(conns[i]);
    free(conns);
    free(fds);
    return 0;
}
