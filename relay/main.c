/*
 * pgcast-relay: ONE LISTEN connection per host, shared by every pgcast process on it.
 *
 * Command line (stable):
 *
 *     pgcast-relay [--config FILE] [--socket PATH]
 *
 *   --config FILE   the pgcast configuration (default: found as every pgcast program finds
 *                   it: PGCAST_CONFIG, pgcast.conf next to the program, /etc/pgcast/pgcast.conf)
 *   --socket PATH   the Unix socket to serve (default: relay_socket of the configuration,
 *                   /run/pgcast-relay/relay.sock); overrides PGCAST_RELAY_SOCKET and the file
 *
 * Keys used: database_url, relay_socket, relay_client_buffer, relay_client_tags,
 * relay_max_clients, log_level.
 * It runs in the foreground, logs to stderr and ends on SIGTERM/SIGINT (removing its
 * socket). Killed (kill -9) it loses nothing: the processes fall back to their own LISTEN
 * and re-read their channels from their positions. A second relay on the same socket
 * refuses to start while the first one answers there; a socket left by a dead relay is
 * replaced.
 *
 * The socket is created mode 0660 (owner and group: the pgcast user and the web server's
 * group); its directory should be writable by the pgcast user only (systemd:
 * RuntimeDirectory=pgcast-relay, see systemd/pgcast-relay.service.in). The relay forwards nothing but
 * the payloads of the notifications it LISTENs to (wake-ups: "<tag> <seq>", never data).
 *
 * Protocol: lines ending in '\n'.
 *   process -> relay  "T <tag>"                  wake me for this tag (32 hex digits: a
 *                                               channel I serve, sql/011)
 *                     "U <tag>"                  no more
 *                     "A 1" / "A 0"              wake me for every notification (a process
 *                                               without the secret) / only for my tags
 *                     "H"                        hello: answer "L" once listening (the lines
 *                                               before it are registered by then)
 *                     "S <id>"                   a barrier (id: 1 to 20 digits): the relay
 *                                               runs a round trip (SELECT 1) on its LISTEN
 *                                               connection; requests that meet share one
 *   relay -> process  "L <protocol> <identity>"  listening now; identity: PGC_RELAY_IDENTITY_SQL
 *                     "N <channel> <payload>"    a notification: realtime_events only for the
 *                                               process's tags (or all with "A 1"); every
 *                                               realtime_config and realtime_presence one
 *                     "S <id>"                   answer to a barrier: every notification
 *                                               received before the barrier (and every line
 *                                               the process sent before it) went first
 * So a process wakes only for the channels it serves: the relay's work per notification
 * is one table lookup and a write to the processes that serve the channel, not to all.
 * When its database connection is lost (or a barrier stays unanswered for 10 s) the relay
 * closes every process's connection (they LISTEN on their own meanwhile) and accepts them
 * again once it listens. A process whose output reaches relay_client_buffer (it does not
 * read) is disconnected, as is one that sends anything else or more than RELAY_SYNC_MAX
 * barriers at once.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <libpq-fe.h>
#include <linkhash.h>
#include <poll.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "clock.h"
#include "config.h"
#include "db.h"
#include "hub.h"
#include "log.h"

#define RELAY_SYNC_MAX 64     /* barriers one process may have waiting */
#define RELAY_IN_MAX 64       /* a process's line: "T " and 32 hex digits, "S " and 20 digits */
#define RELAY_TAG_LEN PGC_HUB_TAG_LEN
#define RELAY_BACKOFF_MIN_MS 100
#define RELAY_BACKOFF_MAX_MS 5000
#define RELAY_READ_CHUNK 4096
#define RELAY_ROUND_TIMEOUT_MS 10000 /* a barrier's SELECT 1 unanswered this long: the connection is dead */

struct sync_req {
    char id[24];
    uint64_t round; /* answered once rounds_done reaches it */
};

struct client;

/* A tag some process asked for, with the processes that asked (in the relay's table). */
struct tagent {
    char tag[RELAY_TAG_LEN + 1];
    struct client **v;
    size_t n, cap;
};

struct client {
    int fd;
    bool hello; /* "H" came: "L" is due once listening */
    bool ready; /* "L" sent: gets notifications */
    bool all;   /* "A 1": every notification */
    struct lh_table *mine; /* its tags: tag -> struct tagent */
    bool drop;
    bool slow; /* dropped for relay_client_buffer */
    char *out;
    size_t olen, ooff, ocap;
    char in[RELAY_IN_MAX];
    size_t ilen;
    struct sync_req sync[RELAY_SYNC_MAX];
    size_t shead, slen;
};

static struct {
    pgc_config cfg;
    const char *path;
    int lfd;
    PGconn *conn;
    char identity[64];
    int backoff_ms;
    int64_t next_connect_ms;
    struct client **clients;
    size_t nclients;
    struct lh_table *tags; /* tag -> struct tagent */
    uint64_t rounds_sent, rounds_done;
    bool inflight;
    int64_t round_sent_ms;
    size_t waiting; /* barriers not answered, every client */
    uint64_t dropped_slow, refused_full, forwarded;
} R = {.lfd = -1};

static volatile sig_atomic_t g_stop;

static void on_signal(int sig)
{
    (void)sig;
    g_stop = 1;
}

/* ---------------------------------------------------------------- clients */

/* c no longer wants te (its own table is the caller's). */
static void tag_drop(struct client *c, struct tagent *te)
{
    for (size_t k = 0; k < te->n; k++) {
        if (te->v[k] == c) {
            te->v[k] = te->v[--te->n];
            break;
        }
    }
    if (te->n == 0)
        lh_table_delete(R.tags, te->tag); /* frees te */
}

static void tagent_free(struct lh_entry *e)
{
    struct tagent *te = (struct tagent *)lh_entry_v(e);
    free(te->v);
    free(te);
}

/* "T <tag>" / "U <tag>"; false on a bad tag or past RELAY_MAX_TAGS. */
static bool client_tag(struct client *c, const char *tag, bool add)
{
    if (strlen(tag) != RELAY_TAG_LEN || strspn(tag, "0123456789abcdef") != RELAY_TAG_LEN)
        return false;
    void *v = NULL;
    bool have = lh_table_lookup_ex(c->mine, tag, &v);
    if (!add) {
        if (have) {
            struct tagent *te = v;
            lh_table_delete(c->mine, te->tag);
            tag_drop(c, te);
        }
        return true;
    }
    if (have)
        return true;
    if (c->mine->count >= R.cfg.relay_client_tags) {
        PGC_WARN("relay: a process asked for more than relay_client_tags (%d) tags: disconnected",
                 R.cfg.relay_client_tags);
        return false;
    }
    struct tagent *te = NULL;
    if (lh_table_lookup_ex(R.tags, tag, &v)) {
        te = v;
    } else {
        te = calloc(1, sizeof(*te));
        if (!te)
            return false;
        memcpy(te->tag, tag, RELAY_TAG_LEN + 1);
        if (lh_table_insert(R.tags, te->tag, te) != 0) {
            free(te);
            return false;
        }
    }
    if (te->n == te->cap) {
        size_t cap = te->cap ? te->cap * 2 : 2;
        struct client **nv = realloc(te->v, cap * sizeof(*nv));
        if (!nv) {
            if (te->n == 0)
                lh_table_delete(R.tags, te->tag);
            return false;
        }
        te->v = nv;
        te->cap = cap;
    }
    te->v[te->n++] = c;
    if (lh_table_insert(c->mine, te->tag, te) != 0) {
        tag_drop(c, te);
        return false;
    }
    return true;
}

static void client_close(size_t i, const char *why)
{
    struct client *c = R.clients[i];
    if (why)
        PGC_INFO("relay: a process disconnected (%s)", why);
    if (c->mine) {
        struct lh_entry *e, *tmp;
        lh_foreach_safe(c->mine, e, tmp)
        {
            tag_drop(c, (struct tagent *)lh_entry_v(e));
        }
        lh_table_free(c->mine);
    }
    R.waiting -= c->slen;
    close(c->fd);
    free(c->out);
    free(c);
    R.clients[i] = R.clients[--R.nclients];
}

static void close_all(const char *why)
{
    while (R.nclients > 0)
        client_close(R.nclients - 1, NULL);
    if (why)
        PGC_WARN("relay: every process disconnected (%s): they listen on their own meanwhile", why);
}

/* Appends to c's output; past relay_client_buffer, c is marked to be dropped. */
static void client_put(struct client *c, const char *data, size_t len)
{
    if (c->drop)
        return;
    if (c->olen - c->ooff + len > R.cfg.relay_client_buffer) {
        c->drop = c->slow = true;
        R.dropped_slow++;
        return;
    }
    if (c->ooff > 0 && c->olen + len > c->ocap) {
        memmove(c->out, c->out + c->ooff, c->olen - c->ooff);
        c->olen -= c->ooff;
        c->ooff = 0;
    }
    if (c->olen + len > c->ocap) {
        size_t cap = c->ocap ? c->ocap : 4096;
        while (cap < c->olen + len)
            cap *= 2;
        char *o = realloc(c->out, cap);
        if (!o) {
            c->drop = true;
            return;
        }
        c->out = o;
        c->ocap = cap;
    }
    memcpy(c->out + c->olen, data, len);
    c->olen += len;
}

/* Writes what c holds; false when c must be closed. */
static bool client_flush(struct client *c)
{
    while (c->ooff < c->olen) {
        ssize_t w = send(c->fd, c->out + c->ooff, c->olen - c->ooff, MSG_NOSIGNAL);
        if (w < 0) {
            if (errno == EINTR)
                continue;
            return errno == EAGAIN || errno == EWOULDBLOCK;
        }
        c->ooff += (size_t)w;
    }
    c->ooff = c->olen = 0;
    if (c->ocap > (64u << 10)) { /* a burst is over: give its memory back */
        free(c->out);
        c->out = NULL;
        c->ocap = 0;
    }
    return true;
}

static void client_hello(struct client *c)
{
    char line[128];
    int n = snprintf(line, sizeof(line), "L %d %s\n", PGC_RELAY_PROTOCOL, R.identity);
    client_put(c, line, (size_t)n);
    c->ready = true;
}

static void client_hello(struct client *c);

/* A process's line; false: close it. "S <id>": a barrier, answered after the next round
 * trip that starts after it. */
static bool client_line(struct client *c, const char *line)
{
    if ((line[0] == 'T' || line[0] == 'U') && line[1] == ' ')
        return client_tag(c, line + 2, line[0] == 'T');
    if (line[0] == 'A' && line[1] == ' ' && (line[2] == '0' || line[2] == '1') && line[3] == '\0') {
        c->all = line[2] == '1';
        return true;
    }
    if (line[0] == 'H' && line[1] == '\0') {
        c->hello = true;
        if (R.conn && !c->ready)
            client_hello(c);
        return true;
    }
    if (line[0] != 'S')
        return false;
    size_t nd = strspn(line + 2, "0123456789");
    if (line[0] != 'S' || line[1] != ' ' || nd == 0 || nd > 20 || line[2 + nd] != '\0')
        return false;
    if (c->slen == RELAY_SYNC_MAX)
        return false;
    struct sync_req *s = &c->sync[(c->shead + c->slen) % RELAY_SYNC_MAX];
    memcpy(s->id, line + 2, nd + 1);
    s->round = R.rounds_sent + 1;
    c->slen++;
    R.waiting++;
    return true;
}

/* false: close c (end of stream, error, or a line that is not a barrier). */
static bool client_read(struct client *c)
{
    char buf[RELAY_READ_CHUNK];
    ssize_t n = recv(c->fd, buf, sizeof(buf), 0);
    if (n == 0)
        return false;
    if (n < 0)
        return errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR;
    for (ssize_t i = 0; i < n; i++) {
        if (buf[i] == '\n') {
            c->in[c->ilen] = '\0';
            if (!client_line(c, c->in))
                return false;
            c->ilen = 0;
        } else if (c->ilen + 1 >= sizeof(c->in)) {
            return false;
        } else {
            c->in[c->ilen++] = buf[i];
        }
    }
    return true;
}

static void accept_clients(void)
{
    for (;;) {
        int fd = accept4(R.lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0) {
            if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR && errno != ECONNABORTED)
                PGC_WARN("relay: accept: %s", strerror(errno));
            return;
        }
        if (R.nclients >= (size_t)R.cfg.relay_max_clients) {
            if (R.refused_full++ % 100 == 0)
                PGC_WARN("relay: relay_max_clients (%d) processes connected: one more refused (it listens on its own)",
                         R.cfg.relay_max_clients);
            close(fd);
            continue;
        }
        struct client *c = calloc(1, sizeof(*c));
        struct client **v = c ? realloc(R.clients, (R.nclients + 1) * sizeof(*v)) : NULL;
        if (!v) {
            PGC_ERROR("relay: out of memory accepting a process");
            free(c);
            close(fd);
            continue;
        }
        R.clients = v;
        c->fd = fd;
        c->mine = lh_kchar_table_new(16, NULL);
        if (!c->mine) {
            PGC_ERROR("relay: out of memory accepting a process");
            free(c);
            close(fd);
            continue;
        }
        R.clients[R.nclients++] = c;
        PGC_DEBUG("relay: a process connected (%zu now)", R.nclients);
    }
}

/* ---------------------------------------------------------------- database */

static void db_lost(const char *why)
{
    PGC_WARN("relay: database connection lost (%s); reconnecting", why);
    PQfinish(R.conn);
    R.conn = NULL;
    R.inflight = false;
    R.next_connect_ms = pgc_mono_ms() + R.backoff_ms;
    close_all("the relay is not listening");
}

static void db_connect(void)
{
    PGconn *c = pgc_db_connect(R.cfg.database_url, "pgcast-relay");
    PGresult *r = NULL;
    if (c) {
        r = PQexec(c, "LISTEN realtime_events; LISTEN realtime_config; LISTEN realtime_presence");
        bool ok = PQresultStatus(r) == PGRES_COMMAND_OK;
        PQclear(r);
        r = ok ? PQexec(c, PGC_RELAY_IDENTITY_SQL) : NULL;
        if (!r || PQresultStatus(r) != PGRES_TUPLES_OK || PQntuples(r) != 1 ||
            (size_t)PQgetlength(r, 0, 0) >= sizeof(R.identity)) {
            PGC_WARN("relay: LISTEN failed: %s", r ? PQresultErrorMessage(r) : PQerrorMessage(c));
            PQclear(r);
            PQfinish(c);
            c = NULL;
        } else {
            snprintf(R.identity, sizeof(R.identity), "%s", PQgetvalue(r, 0, 0));
            PQclear(r);
        }
    }
    if (!c) {
        R.next_connect_ms = pgc_mono_ms() + R.backoff_ms;
        R.backoff_ms = R.backoff_ms * 2 > RELAY_BACKOFF_MAX_MS ? RELAY_BACKOFF_MAX_MS : R.backoff_ms * 2;
        return;
    }
    if (PQsetnonblocking(c, 1) != 0) {
        PGC_WARN("relay: cannot make the database connection non-blocking");
        PQfinish(c);
        R.next_connect_ms = pgc_mono_ms() + R.backoff_ms;
        return;
    }
    R.conn = c;
    R.backoff_ms = RELAY_BACKOFF_MIN_MS;
    /* barriers asked before: the next round trip answers them */
    for (size_t i = 0; i < R.nclients; i++) {
        struct client *cl = R.clients[i];
        for (size_t k = 0; k < cl->slen; k++)
            cl->sync[(cl->shead + k) % RELAY_SYNC_MAX].round = R.rounds_done + 1;
    }
    R.rounds_sent = R.rounds_done;
    PGC_INFO("relay: listening on the database; serving %s", R.path);
    for (size_t i = 0; i < R.nclients; i++)
        if (R.clients[i]->hello && !R.clients[i]->ready)
            client_hello(R.clients[i]);
}

/* Every notification libpq holds, to every ready process ("N <channel> <payload>"). */
static void forward_notifications(void)
{
    PGnotify *n;
    while (R.conn && (n = PQnotifies(R.conn)) != NULL) {
        size_t cl = strlen(n->relname), pl = strlen(n->extra);
        if (!strchr(n->extra, '\n') && cl + pl + 4 <= 16384) {
            char line[16384];
            line[0] = 'N';
            line[1] = ' ';
            memcpy(line + 2, n->relname, cl);
            line[2 + cl] = ' ';
            memcpy(line + 3 + cl, n->extra, pl);
            line[3 + cl + pl] = '\n';
            size_t len = cl + pl + 4;
            if (strcmp(n->relname, "realtime_events") == 0) {
                /* the processes serving the tag, and those that want everything */
                void *v = NULL;
                char tag[RELAY_TAG_LEN + 1];
                if (pl > RELAY_TAG_LEN && n->extra[RELAY_TAG_LEN] == ' ') {
                    memcpy(tag, n->extra, RELAY_TAG_LEN);
                    tag[RELAY_TAG_LEN] = '\0';
                    if (lh_table_lookup_ex(R.tags, tag, &v)) {
                        struct tagent *te = v;
                        for (size_t k = 0; k < te->n; k++)
                            if (te->v[k]->ready && !te->v[k]->all)
                                client_put(te->v[k], line, len);
                    }
                }
                for (size_t i = 0; i < R.nclients; i++)
                    if (R.clients[i]->ready && R.clients[i]->all)
                        client_put(R.clients[i], line, len);
            } else {
                for (size_t i = 0; i < R.nclients; i++)
                    if (R.clients[i]->ready)
                        client_put(R.clients[i], line, len);
            }
            R.forwarded++;
        }
        PQfreemem(n);
    }
}

/* Answers the barriers covered by the round trips done ("S <id>"). */
static void answer_syncs(void)
{
    for (size_t i = 0; i < R.nclients; i++) {
        struct client *c = R.clients[i];
        while (c->slen > 0 && c->sync[c->shead].round <= R.rounds_done) {
            char line[32];
            int n = snprintf(line, sizeof(line), "S %s\n", c->sync[c->shead].id);
            client_put(c, line, (size_t)n);
            c->shead = (c->shead + 1) % RELAY_SYNC_MAX;
            c->slen--;
            R.waiting--;
        }
    }
}

static void start_round(void)
{
    if (!R.conn || R.inflight || R.waiting == 0)
        return;
    if (PQsendQuery(R.conn, "SELECT 1") != 1) {
        db_lost(PQerrorMessage(R.conn));
        return;
    }
    R.inflight = true;
    R.round_sent_ms = pgc_mono_ms();
    R.rounds_sent++;
    if (PQflush(R.conn) < 0)
        db_lost(PQerrorMessage(R.conn));
}

static void db_input(void)
{
    if (PQconsumeInput(R.conn) != 1) {
        db_lost(PQerrorMessage(R.conn));
        return;
    }
    bool done = false;
    while (R.inflight && !PQisBusy(R.conn)) {
        PGresult *r = PQgetResult(R.conn);
        if (!r) {
            R.inflight = false;
            done = true;
            break;
        }
        if (PQresultStatus(r) != PGRES_TUPLES_OK)
            PGC_WARN("relay: barrier query failed: %s", PQresultErrorMessage(r));
        PQclear(r);
    }
    /* every notification that came before the round trip's answer is parsed by now */
    forward_notifications();
    if (done) {
        R.rounds_done = R.rounds_sent;
        answer_syncs();
    }
    if (PQstatus(R.conn) != CONNECTION_OK)
        db_lost("connection closed");
}

/* ---------------------------------------------------------------- socket */

static int open_socket(const char *path)
{
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    if (strlen(path) >= sizeof(sa.sun_path)) {
        PGC_ERROR("relay: socket path too long: %s", path);
        return -1;
    }
    strcpy(sa.sun_path, path);
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        PGC_ERROR("relay: socket: %s", strerror(errno));
        return -1;
    }
    /* a relay already answering there: do not steal its socket */
    if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0) {
        PGC_ERROR("relay: another pgcast-relay is serving %s", path);
        close(fd);
        return -1;
    }
    if (errno == ECONNREFUSED && unlink(path) != 0 && errno != ENOENT) {
        PGC_ERROR("relay: cannot remove the stale socket %s: %s", path, strerror(errno));
        close(fd);
        return -1;
    }
    close(fd);
    fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        PGC_ERROR("relay: socket: %s", strerror(errno));
        return -1;
    }
    mode_t old = umask(0117); /* srw-rw----: the pgcast user and its group only */
    int b = bind(fd, (struct sockaddr *)&sa, sizeof(sa));
    int berr = errno;
    umask(old);
    if (b != 0 || chmod(path, 0660) != 0 || listen(fd, 512) != 0) {
        PGC_ERROR("relay: cannot serve %s: %s", path, strerror(b != 0 ? berr : errno));
        close(fd);
        return -1;
    }
    return fd;
}

static void usage(FILE *f)
{
    fprintf(f, "usage: pgcast-relay [--config FILE] [--socket PATH]\n"
               "One LISTEN connection for every pgcast process of this host: the processes take their\n"
               "wake-ups from it over a Unix socket, each only for the channels it serves, and LISTEN\n"
               "on their own whenever it is not there (docs/operations.md, \"One LISTEN per host\").\n"
               "  --config FILE  the pgcast configuration (default: PGCAST_CONFIG, pgcast.conf next to\n"
               "                 the program, /etc/pgcast/pgcast.conf)\n"
               "  --socket PATH  the socket to serve (default: relay_socket, /run/pgcast-relay/relay.sock)\n"
               "Keys: database_url, relay_socket, relay_client_buffer, relay_client_tags,\n"
               "relay_max_clients, log_level. Runs in the foreground; SIGTERM ends it.\n");
}

int main(int argc, char **argv)
{
    const char *config = NULL, *socket_path = NULL;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--config") == 0 && i + 1 < argc)
            config = argv[++i];
        else if (strcmp(argv[i], "--socket") == 0 && i + 1 < argc)
            socket_path = argv[++i];
        else if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
            usage(stdout);
            return 0;
        } else {
            usage(stderr);
            return 2;
        }
    }
    pgc_log_init("pgcast-relay", PGC_LOG_INFO);
    char err[512];
    if (pgc_config_load(&R.cfg, config, err, sizeof(err)) != 0) {
        PGC_ERROR("configuration: %s", err);
        return 2;
    }
    pgc_log_set_level((enum pgc_log_level)R.cfg.log_level);
    R.path = socket_path ? socket_path : R.cfg.relay_socket;
    if (!R.path || !*R.path) {
        PGC_ERROR("relay: no socket: relay_socket is empty and --socket not given");
        pgc_config_free(&R.cfg);
        return 2;
    }
    struct sigaction sa = {.sa_handler = on_signal};
    sigemptyset(&sa.sa_mask);
    struct sigaction ign = {.sa_handler = SIG_IGN};
    sigemptyset(&ign.sa_mask);
    if (sigaction(SIGTERM, &sa, NULL) != 0 || sigaction(SIGINT, &sa, NULL) != 0 ||
        sigaction(SIGPIPE, &ign, NULL) != 0) {
        PGC_ERROR("relay: sigaction: %s", strerror(errno));
        pgc_config_free(&R.cfg);
        return 1;
    }
    R.tags = lh_kchar_table_new(1024, tagent_free);
    R.lfd = R.tags ? open_socket(R.path) : -1;
    if (R.lfd < 0) {
        if (R.tags)
            lh_table_free(R.tags);
        pgc_config_free(&R.cfg);
        return 1;
    }
    R.backoff_ms = RELAY_BACKOFF_MIN_MS;
    PGC_INFO("relay: serving %s (pid %d)", R.path, (int)getpid());

    struct pollfd *fds = NULL;
    size_t fcap = 0;
    int rc = 0;
    while (!g_stop) {
        int64_t now = pgc_mono_ms();
        if (!R.conn && now >= R.next_connect_ms)
            db_connect();
        if (R.conn && R.inflight && now - R.round_sent_ms >= RELAY_ROUND_TIMEOUT_MS)
            db_lost("a barrier went unanswered for 10 s"); /* a connection dead without a word */
        start_round();
        if (fcap < R.nclients + 2) {
            size_t cap = (R.nclients + 2) * 2;
            struct pollfd *v = realloc(fds, cap * sizeof(*v));
            if (!v) {
                PGC_ERROR("relay: out of memory");
                rc = 1;
                break;
            }
            fds = v;
            fcap = cap;
        }
        fds[0] = (struct pollfd){R.lfd, POLLIN, 0};
        fds[1] = (struct pollfd){R.conn ? PQsocket(R.conn) : -1, POLLIN, 0};
        if (R.conn && PQflush(R.conn) == 1)
            fds[1].events |= POLLOUT;
        size_t nc = R.nclients;
        for (size_t i = 0; i < nc; i++) {
            struct client *c = R.clients[i];
            fds[2 + i] = (struct pollfd){c->fd, (short)(POLLIN | (c->olen > c->ooff ? POLLOUT : 0)), 0};
        }
        now = pgc_mono_ms();
        int timeout = R.conn ? 1000 : (R.next_connect_ms > now ? (int)(R.next_connect_ms - now) : 0);
        int n = poll(fds, 2 + nc, timeout);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            PGC_ERROR("relay: poll: %s", strerror(errno));
            rc = 1;
            break;
        }
        /* clients first (their index is their pollfd's), then the database, then accept */
        for (size_t i = nc; i-- > 0;) {
            struct client *c = R.clients[i];
            short re = fds[2 + i].revents;
            if (re & POLLIN) {
                if (!client_read(c)) {
                    client_close(i, NULL);
                    continue;
                }
            } else if (re & (POLLHUP | POLLERR | POLLNVAL)) {
                client_close(i, NULL);
                continue;
            }
        }
        if (R.conn && fds[1].revents)
            db_input();
        if (fds[0].revents & POLLIN)
            accept_clients();
        for (size_t i = R.nclients; i-- > 0;) {
            struct client *c = R.clients[i];
            if (!c->drop && !client_flush(c))
                c->drop = true;
            if (c->drop)
                client_close(i, c->slow ? "it did not read: relay_client_buffer reached" : NULL);
        }
    }
    PGC_INFO("relay: stopping (%" PRIu64 " notifications forwarded, %" PRIu64 " slow processes dropped)",
             R.forwarded, R.dropped_slow);
    close_all(NULL);
    lh_table_free(R.tags);
    free(R.clients);
    free(fds);
    if (R.conn)
        PQfinish(R.conn);
    close(R.lfd);
    if (unlink(R.path) != 0 && errno != ENOENT)
        PGC_WARN("relay: cannot remove %s: %s", R.path, strerror(errno));
    pgc_config_free(&R.cfg);
    return rc;
}
