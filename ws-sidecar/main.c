/* pgcast-ws: the WebSocket sidecar. libmicrohttpd answers HTTP (handshake, /health,
 * /metrics); upgraded sockets go to one epoll loop (loop.c); publish and presence calls
 * to a few database workers (worker.c). */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <libpq-fe.h>
#include <microhttpd.h>
#include <arpa/inet.h>
#include <netdb.h>
#include <openssl/evp.h>
#include <openssl/sha.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "config.h"
#include "conncap.h"
#include "db.h"
#include "hub.h"
#include "log.h"
#include "loop.h"
#include "origin.h"
#include "stats.h"
#include "token.h"
#include "version.h"

static ws_loop *g_loop;
static pgc_config g_cfg;
static pgc_verifier *g_verifier;
static pgc_hub *g_hub;
static pgc_db_pool *g_pool;
static ws_workers *g_workers;
static pgc_stats *g_stats;

/* Per HTTP request: the token verified at the handshake, handed to the loop on upgrade. */
struct req_state {
    bool has_token;
    pgc_token tok;
    ws_cap_ticket *ticket; /* its place under the connection caps, until the session takes it */
};

static const char *usage =
    "NAME\n"
    "    pgcast-ws - WebSocket sidecar of pgcast\n\n"
    "SYNOPSIS\n"
    "    pgcast-ws [--listen HOST:PORT] [--config FILE] [--help] [--version]\n\n"
    "DESCRIPTION\n"
    "    Accepts WebSocket connections on GET /ws (RFC 6455), after checking the client's\n"
    "    token (Authorization: Bearer, ?token=, or the token cookie) before switching\n"
    "    protocols; GET /{prefix}/ws (one path segment, as a web server passes it) too.\n"
    "    A handshake with an Origin outside allowed_origins is refused (403).\n"
    "    Also serves GET /health, and GET /metrics (Prometheus text) to the addresses in\n"
    "    metrics_allow (default loopback) when no proxy forwarded the request.\n\n"
    "OPTIONS\n"
    "    --listen HOST:PORT   address to listen on (default: ws_listen, 127.0.0.1:8081)\n"
    "    --config FILE        configuration file (default: $PGCAST_CONFIG)\n"
    "    --help               this text\n"
    "    --version            the version\n\n"
    "ENVIRONMENT\n"
    "    PGCAST_CONFIG        configuration file\n"
    "    PGCAST_<KEY>         overrides the key of the configuration file\n"
    "                         (e.g. PGCAST_DATABASE_URL, PGCAST_JWT_SECRET, PGCAST_WS_LISTEN)\n"
    "    PG*                  libpq variables when database_url is empty\n\n"
    "FILES\n"
    "    pgcast.conf          see pgcast.conf.example for every key\n\n"
    "SIGNALS\n"
    "    SIGTERM, SIGINT      close every client with 1001 (going away), then exit 0\n\n"
    "EXIT STATUS\n"
    "    0  clean shutdown    1  runtime error    2  bad usage or configuration\n";

static void on_signal(int sig)
{
    (void)sig;
    if (g_loop) ws_loop_stop(g_loop);
}

static enum MHD_Result respond(struct MHD_Connection *conn, unsigned status, const char *ctype, const char *body)
{
    struct MHD_Response *r =
        MHD_create_response_from_buffer(strlen(body), (void *)body, MHD_RESPMEM_MUST_COPY);
    if (!r) return MHD_NO;
    MHD_add_response_header(r, "Content-Type", ctype);
    MHD_add_response_header(r, "Cache-Control", "no-store");
    enum MHD_Result ret = MHD_queue_response(conn, status, r);
    MHD_destroy_response(r);
    return ret;
}

static enum MHD_Result json_error(struct MHD_Connection *conn, unsigned status, const char *code, const char *msg)
{
    char body[256];
    snprintf(body, sizeof body, "{\"error\":{\"code\":\"%s\",\"message\":\"%s\"}}", code, msg);
    return respond(conn, status, "application/json", body);
}

static enum MHD_Result json_error_hdr(struct MHD_Connection *conn, unsigned status, const char *code, const char *msg,
                                      const char *hname, const char *hvalue)
{
    char body[256];
    snprintf(body, sizeof body, "{\"error\":{\"code\":\"%s\",\"message\":\"%s\"}}", code, msg);
    struct MHD_Response *r = MHD_create_response_from_buffer(strlen(body), body, MHD_RESPMEM_MUST_COPY);
    if (!r) return MHD_NO;
    if (MHD_add_response_header(r, "Content-Type", "application/json") != MHD_YES ||
        MHD_add_response_header(r, "Cache-Control", "no-store") != MHD_YES ||
        MHD_add_response_header(r, hname, hvalue) != MHD_YES) {
        MHD_destroy_response(r);
        return MHD_NO;
    }
    enum MHD_Result ret = MHD_queue_response(conn, status, r);
    MHD_destroy_response(r);
    return ret;
}

/* Does a comma-separated header list contain token (case-insensitive)? */
static int header_has(const char *list, const char *tok)
{
    size_t n = strlen(tok);
    for (const char *p = list; p && *p;) {
        while (*p == ' ' || *p == ',' || *p == '\t') p++;
        const char *e = p;
        while (*e && *e != ',') e++;
        const char *t = e;
        while (t > p && (t[-1] == ' ' || t[-1] == '\t')) t--;
        if ((size_t)(t - p) == n && strncasecmp(p, tok, n) == 0) return 1;
        p = e;
    }
    return 0;
}

/* ---------------------------------------------------------------- handshake limits
 *
 * Before a WebSocket is authenticated it may cost the sidecar only a little and only for
 * a while:
 * - every HTTP connection has at most ws_handshake_memory (MHD's pool: headers and all);
 * - an absolute deadline, ws_handshake_timeout_s from accept (or from the end of the
 *   previous request on a kept-alive connection) to the upgrade: MHD's own timeout is an
 *   idle timeout that a byte now and then renews, so a watcher thread shuts down the
 *   socket of every connection past it (MHD then closes it);
 * - at most ws_handshakes_per_ip HTTP connections at once per peer address (trusted
 *   proxies excepted: every client behind them shares their address);
 * - after the token: the connection caps per client address and per token subject
 *   (conncap.h), and room in the descriptor limit, or the upgrade is refused (429/503)
 *   before 101. */

struct hs_conn {
    struct MHD_Connection *conn;
    int fd;
    int64_t start_ms;
    bool upgraded; /* the socket is the loop's now: never shut down here */
    bool shot;
    char peer[64]; /* counted in ws_handshakes_per_ip; "" when not */
    struct hs_conn *prev, *next;
};

static pthread_mutex_t g_hs_mu = PTHREAD_MUTEX_INITIALIZER;
static struct hs_conn *g_hs_list;
static size_t g_hs_count; /* HTTP connections of MHD now */
static rlim_t g_fd_limit = 1024;
static atomic_bool g_hs_stop;
static _Atomic unsigned long g_hs_deadline_closed;

static int64_t mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void addr_text(const struct sockaddr *sa, char *out, size_t len)
{
    out[0] = '\0';
    if (!sa)
        return;
    if (sa->sa_family == AF_INET)
        inet_ntop(AF_INET, &((const struct sockaddr_in *)(const void *)sa)->sin_addr, out, (socklen_t)len);
    else if (sa->sa_family == AF_INET6)
        inet_ntop(AF_INET6, &((const struct sockaddr_in6 *)(const void *)sa)->sin6_addr, out, (socklen_t)len);
}

/* HTTP connections at once per peer (MHD's thread only: accept, start and close run there). */
static struct { char peer[64]; int n; } *g_hs_peers;
static size_t g_hs_npeers;

static int *peer_count(const char *peer, bool create)
{
    for (size_t i = 0; i < g_hs_npeers; i++)
        if (strcmp(g_hs_peers[i].peer, peer) == 0)
            return &g_hs_peers[i].n;
    if (!create)
        return NULL;
    void *grown = realloc(g_hs_peers, (g_hs_npeers + 1) * sizeof(*g_hs_peers));
    if (!grown)
        return NULL;
    g_hs_peers = grown;
    snprintf(g_hs_peers[g_hs_npeers].peer, sizeof(g_hs_peers[0].peer), "%s", peer);
    g_hs_peers[g_hs_npeers].n = 0;
    return &g_hs_peers[g_hs_npeers++].n;
}

static void peer_forget(const char *peer)
{
    for (size_t i = 0; i < g_hs_npeers; i++) {
        if (strcmp(g_hs_peers[i].peer, peer) == 0 && --g_hs_peers[i].n <= 0) {
            g_hs_peers[i] = g_hs_peers[--g_hs_npeers];
            return;
        }
    }
}

static enum MHD_Result accept_policy(void *cls, const struct sockaddr *addr, socklen_t addrlen)
{
    (void)cls;
    (void)addrlen;
    if (g_cfg.ws_handshakes_per_ip <= 0)
        return MHD_YES;
    char peer[64];
    addr_text(addr, peer, sizeof(peer));
    if (!*peer || ws_caps_trusted(peer))
        return MHD_YES;
    int *n = peer_count(peer, false);
    if (n && *n >= g_cfg.ws_handshakes_per_ip) {
        pgc_log(PGC_LOG_DEBUG, NULL, "refused a connection from %s: %d handshakes at once", peer, *n);
        return MHD_NO;
    }
    return MHD_YES;
}

static void on_connection(void *cls, struct MHD_Connection *conn, void **socket_context,
                          enum MHD_ConnectionNotificationCode toe)
{
    (void)cls;
    struct hs_conn *h = *socket_context;
    if (toe == MHD_CONNECTION_NOTIFY_STARTED) {
        h = calloc(1, sizeof(*h));
        if (!h)
            return; /* (no deadline for it; MHD's idle timeout still applies) */
        const union MHD_ConnectionInfo *fi = MHD_get_connection_info(conn, MHD_CONNECTION_INFO_CONNECTION_FD);
        const union MHD_ConnectionInfo *ai = MHD_get_connection_info(conn, MHD_CONNECTION_INFO_CLIENT_ADDRESS);
        h->conn = conn;
        h->fd = fi ? fi->connect_fd : -1;
        h->start_ms = mono_ms();
        char peer[64];
        addr_text(ai ? ai->client_addr : NULL, peer, sizeof(peer));
        int *n;
        if (g_cfg.ws_handshakes_per_ip > 0 && *peer && !ws_caps_trusted(peer) && (n = peer_count(peer, true))) {
            (*n)++;
            snprintf(h->peer, sizeof(h->peer), "%s", peer);
        }
        pthread_mutex_lock(&g_hs_mu);
        h->next = g_hs_list;
        if (g_hs_list)
            g_hs_list->prev = h;
        g_hs_list = h;
        g_hs_count++;
        pthread_mutex_unlock(&g_hs_mu);
        *socket_context = h;
    } else if (h) { /* closed: MHD closes the socket after this returns */
        pthread_mutex_lock(&g_hs_mu);
        if (h->prev)
            h->prev->next = h->next;
        else
            g_hs_list = h->next;
        if (h->next)
            h->next->prev = h->prev;
        g_hs_count--;
        pthread_mutex_unlock(&g_hs_mu);
        if (*h->peer)
            peer_forget(h->peer);
        free(h);
        *socket_context = NULL;
    }
}

static struct hs_conn *hs_of(struct MHD_Connection *conn)
{
    const union MHD_ConnectionInfo *ci = MHD_get_connection_info(conn, MHD_CONNECTION_INFO_SOCKET_CONTEXT);
    return ci ? ci->socket_context : NULL;
}

/* The upgrade happened: from now on the socket is the loop's. */
static void handshake_upgraded(struct MHD_Connection *conn)
{
    struct hs_conn *h = hs_of(conn);
    if (!h)
        return;
    pthread_mutex_lock(&g_hs_mu);
    h->upgraded = true;
    pthread_mutex_unlock(&g_hs_mu);
}

/* A request answered without an upgrade: a kept-alive connection's next request has
 * the whole deadline again. */
static void handshake_request_done(struct MHD_Connection *conn)
{
    struct hs_conn *h = hs_of(conn);
    if (!h)
        return;
    pthread_mutex_lock(&g_hs_mu);
    if (!h->upgraded && !h->shot)
        h->start_ms = mono_ms();
    pthread_mutex_unlock(&g_hs_mu);
}

static void *handshake_watch(void *arg)
{
    (void)arg;
    while (!atomic_load(&g_hs_stop)) {
        struct timespec t = {0, 250 * 1000000L};
        nanosleep(&t, NULL);
        int64_t cut = mono_ms() - (int64_t)g_cfg.ws_handshake_timeout_s * 1000;
        pthread_mutex_lock(&g_hs_mu);
        for (struct hs_conn *h = g_hs_list; h; h = h->next) {
            if (h->upgraded || h->shot || h->fd < 0 || h->start_ms > cut)
                continue;
            /* valid: MHD closes it only after its CLOSED notification, which waits for
             * g_hs_mu */
            if (shutdown(h->fd, SHUT_RDWR) != 0 && errno != ENOTCONN)
                pgc_log(PGC_LOG_DEBUG, NULL, "shutdown: %s", strerror(errno));
            h->shot = true;
            atomic_fetch_add(&g_hs_deadline_closed, 1);
        }
        pthread_mutex_unlock(&g_hs_mu);
    }
    return NULL;
}

/* After the token: a place under the connection caps and in the descriptor limit.
 * 0 with rs->ticket taken, or -1 with the refusal queued in *answer. */
static int reserve_place(struct MHD_Connection *conn, struct req_state *rs, enum MHD_Result *answer)
{
    ws_loop_stats ls;
    ws_loop_get_stats(g_loop, &ls);
    pthread_mutex_lock(&g_hs_mu);
    uint64_t held = ls.connections + g_hs_count;
    pthread_mutex_unlock(&g_hs_mu);
    /* a margin for the database connections, the listener, the logs and the dup of the
     * upgrade: a WebSocket that could not be adopted would get 101 and then a drop */
    if (held + 64 >= (uint64_t)g_fd_limit) {
        *answer = json_error_hdr(conn, 503, "unavailable", "the server is at its connection limit; retry later",
                                 "Retry-After", "5");
        return -1;
    }
    const union MHD_ConnectionInfo *ai = MHD_get_connection_info(conn, MHD_CONNECTION_INFO_CLIENT_ADDRESS);
    char peer[64], addr[64];
    addr_text(ai ? ai->client_addr : NULL, peer, sizeof(peer));
    ws_caps_client_addr(peer, MHD_lookup_connection_value(conn, MHD_HEADER_KIND, "X-Forwarded-For"), addr,
                        sizeof(addr));
    const char *why;
    unsigned status;
    rs->ticket = ws_caps_reserve(addr, &rs->tok, &why, &status);
    if (rs->ticket)
        return 0;
    pgc_log(PGC_LOG_INFO, NULL, "refused a WebSocket from %s: %s", *addr ? addr : peer, why);
    *answer = json_error_hdr(conn, status, status == 429 ? "too_many_connections" : "unavailable", why,
                             "Retry-After", status == 429 ? "10" : "5");
    return -1;
}

/* The loop takes a duplicate of the upgraded socket and MHD is told at once that it is
 * done with it: MHD then frees the connection (its 32 KiB memory pool, the structure
 * itself) and closes its own descriptor without shutdown(), so an idle WebSocket costs
 * MHD nothing and does not count against its connection limit. (tests/ws/ prove the
 * socket stays usable: every flow runs over such a duplicate.) */
static void upgrade_cb(void *cls, struct MHD_Connection *conn, void *req_cls, const char *extra_in,
                       size_t extra_in_size, MHD_socket sock, struct MHD_UpgradeResponseHandle *urh)
{
    struct req_state *rs = req_cls;
    pgc_token none = {0};
    pgc_token *tok = rs && rs->has_token ? &rs->tok : &none;
    handshake_upgraded(conn);
    int fd = fcntl(sock, F_DUPFD_CLOEXEC, 0);
    if (fd < 0) {
        pgc_log(PGC_LOG_WARN, NULL, "cannot take the upgraded socket: %s", strerror(errno));
    } else {
        if (rs && rs->ticket && tok->tenant) /* for the session (conncap.h) */
            ws_caps_park(rs->ticket, tok->tenant);
        if (ws_loop_adopt(g_loop, fd, extra_in, extra_in_size, tok) != 0) {
            pgc_log(PGC_LOG_WARN, NULL, "cannot hand the connection to the loop");
            close(fd);
            if (rs && rs->ticket && tok->tenant)
                (void)ws_caps_claim(tok->tenant); /* still rs->ticket: released at completion */
        } else if (rs) {
            rs->ticket = NULL; /* the session's now */
        }
    }
    if (MHD_upgrade_action(urh, MHD_UPGRADE_ACTION_CLOSE) != MHD_YES)
        pgc_log(PGC_LOG_WARN, NULL, "MHD_upgrade_action failed");
}

/* The host the client addressed: the first X-Forwarded-Host (a proxy in front that
 * rewrote Host, as Apache's ProxyPass does; a browser cannot set it), else Host. */
static bool self_host(struct MHD_Connection *conn, char *out, size_t outlen)
{
    const char *h = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, "X-Forwarded-Host");
    if (!h || !*h)
        h = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, "Host");
    if (!h)
        return false;
    while (*h == ' ')
        h++;
    size_t n = strcspn(h, ", ");
    if (n == 0 || n >= outlen)
        return false;
    memcpy(out, h, n);
    out[n] = '\0';
    return true;
}

static enum MHD_Result handle_ws(struct MHD_Connection *conn, struct req_state *rs)
{
    const char *up = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, "Upgrade");
    const char *co = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, "Connection");
    const char *key = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, "Sec-WebSocket-Key");
    const char *ver = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, "Sec-WebSocket-Version");
    if (!up || !header_has(up, "websocket") || !co || !header_has(co, "upgrade"))
        return json_error(conn, 426, "upgrade_required", "WebSocket upgrade required");
    unsigned char raw[64];
    /* The key must be 16 bytes, base64-encoded (24 characters). */
    if (!key || strlen(key) != 24 || EVP_DecodeBlock(raw, (const unsigned char *)key, 24) != 18)
        return json_error(conn, 400, "bad_request", "bad Sec-WebSocket-Key");
    if (!ver || strcmp(ver, "13") != 0) {
        struct MHD_Response *r = MHD_create_response_from_buffer(0, (void *)"", MHD_RESPMEM_PERSISTENT);
        if (!r) return MHD_NO;
        MHD_add_response_header(r, "Sec-WebSocket-Version", "13");
        enum MHD_Result ret = MHD_queue_response(conn, 426, r);
        MHD_destroy_response(r);
        return ret;
    }
    /* Every browser sends Origin with a WebSocket handshake and cannot be made to send
     * another: a page of a site not in allowed_origins is refused, whatever carries its
     * token (cookie, query, header). A client without Origin is no browser. */
    const char *origin = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, "Origin");
    if (origin) {
        char host[256];
        const char *proto = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, "X-Forwarded-Proto");
        if (!self_host(conn, host, sizeof host) ||
            !pgc_origin_allowed(g_cfg.allowed_origins, origin, proto && (!strcasecmp(proto, "http") ||
                                                                          !strcasecmp(proto, "https")) ? proto : NULL,
                                host)) {
            pgc_log(PGC_LOG_INFO, NULL, "handshake refused: origin %.120s is not in allowed_origins", origin);
            return json_error(conn, 403, "origin_not_allowed", "the page's origin is not in allowed_origins");
        }
    }
    char *jwt = pgc_token_from_request(MHD_lookup_connection_value(conn, MHD_HEADER_KIND, "Authorization"),
                                       MHD_lookup_connection_value(conn, MHD_GET_ARGUMENT_KIND, "token"),
                                       MHD_lookup_connection_value(conn, MHD_HEADER_KIND, "Cookie"),
                                       g_cfg.token_cookie);
    pgc_token tok;
    pgc_token_status st = pgc_token_verify(g_verifier, jwt, (int64_t)time(NULL), &tok);
    free(jwt);
    if (st != PGC_TOKEN_OK) return json_error(conn, 401, "unauthorized", pgc_token_status_str(st));
    rs->tok = tok; /* the loop takes it at the upgrade; freed at completion otherwise */
    rs->has_token = true;
    enum MHD_Result refused;
    if (reserve_place(conn, rs, &refused) != 0)
        return refused;

    char buf[128];
    snprintf(buf, sizeof buf, "%s258EAFA5-E914-47DA-95CA-C5AB0DC85B11", key);
    unsigned char sha[SHA_DIGEST_LENGTH];
    SHA1((const unsigned char *)buf, strlen(buf), sha);
    char accept[64];
    EVP_EncodeBlock((unsigned char *)accept, sha, SHA_DIGEST_LENGTH);

    struct MHD_Response *r = MHD_create_response_for_upgrade(upgrade_cb, NULL);
    if (!r) return MHD_NO;
    if (MHD_add_response_header(r, "Upgrade", "websocket") != MHD_YES ||
        MHD_add_response_header(r, "Sec-WebSocket-Accept", accept) != MHD_YES) {
        MHD_destroy_response(r);
        return MHD_NO;
    }
    enum MHD_Result ret = MHD_queue_response(conn, MHD_HTTP_SWITCHING_PROTOCOLS, r);
    MHD_destroy_response(r);
    return ret;
}

/* /metrics only for peers in metrics_allow, and never through a proxy (a request that
 * carries forwarding headers came through the web server, whose address is loopback). */
static bool metrics_allowed(struct MHD_Connection *conn)
{
    if (MHD_lookup_connection_value(conn, MHD_HEADER_KIND, "X-Forwarded-For") ||
        MHD_lookup_connection_value(conn, MHD_HEADER_KIND, "Forwarded") ||
        MHD_lookup_connection_value(conn, MHD_HEADER_KIND, "X-Forwarded-Host"))
        return false;
    const union MHD_ConnectionInfo *ci = MHD_get_connection_info(conn, MHD_CONNECTION_INFO_CLIENT_ADDRESS);
    if (!ci || !ci->client_addr)
        return false;
    char addr[INET6_ADDRSTRLEN];
    const struct sockaddr *sa = ci->client_addr;
    if (sa->sa_family == AF_INET) {
        if (!inet_ntop(AF_INET, &((const struct sockaddr_in *)(const void *)sa)->sin_addr, addr, sizeof addr))
            return false;
    } else if (sa->sa_family == AF_INET6) {
        const struct in6_addr *a6 = &((const struct sockaddr_in6 *)(const void *)sa)->sin6_addr;
        if (IN6_IS_ADDR_V4MAPPED(a6)) {
            if (!inet_ntop(AF_INET, a6->s6_addr + 12, addr, sizeof addr))
                return false;
        } else if (!inet_ntop(AF_INET6, a6, addr, sizeof addr)) {
            return false;
        }
    } else {
        return false;
    }
    return pgc_addr_allowed(g_cfg.metrics_allow, addr);
}

static enum MHD_Result handle_metrics(struct MHD_Connection *conn)
{
    if (!metrics_allowed(conn))
        return json_error(conn, 403, "forbidden", "metrics are served only to the addresses in metrics_allow");
    ws_loop_stats s;
    ws_loop_get_stats(g_loop, &s);
    pgc_hub_stats h;
    pgc_hub_get_stats(g_hub, &h);
    unsigned long long jobs, refused;
    ws_workers_stats(g_workers, &jobs, &refused);
    char body[2560];
    snprintf(body, sizeof body,
             "# TYPE pgcast_ws_connections gauge\npgcast_ws_connections %llu\n"
             "# TYPE pgcast_ws_subscriptions gauge\npgcast_ws_subscriptions %llu\n"
             "# TYPE pgcast_ws_messages_in_total counter\npgcast_ws_messages_in_total %llu\n"
             "# TYPE pgcast_ws_messages_out_total counter\npgcast_ws_messages_out_total %llu\n"
             "# TYPE pgcast_ws_queue_overflows_total counter\npgcast_ws_queue_overflows_total %llu\n"
             "# TYPE pgcast_ws_db_jobs gauge\npgcast_ws_db_jobs %llu\n"
             "# TYPE pgcast_ws_db_refused_total counter\npgcast_ws_db_refused_total %llu\n"
             "# TYPE pgcast_hub_events_total counter\npgcast_hub_events_total %llu\n"
             "# TYPE pgcast_hub_deliveries_total counter\npgcast_hub_deliveries_total %llu\n"
             "# TYPE pgcast_hub_overflows_total counter\npgcast_hub_overflows_total %llu\n"
             "# TYPE pgcast_db_reconnects_total counter\npgcast_db_reconnects_total %llu\n"
             "# TYPE pgcast_db_up gauge\npgcast_db_up %d\n"
             "# TYPE pgcast_hub_lag_ms gauge\npgcast_hub_lag_ms %lld\n"
             "# TYPE pgcast_ws_refused_caps_total counter\npgcast_ws_refused_caps_total %lu\n"
             "# TYPE pgcast_ws_handshake_deadline_total counter\npgcast_ws_handshake_deadline_total %lu\n",
             (unsigned long long)s.connections, (unsigned long long)ws_sessions_subscriptions(),
             (unsigned long long)s.messages_in, (unsigned long long)s.messages_out,
             (unsigned long long)(s.queue_overflows + h.overflows), jobs, refused, (unsigned long long)h.events_in,
             (unsigned long long)h.deliveries, (unsigned long long)h.overflows, (unsigned long long)h.reconnects,
             pgc_hub_db_ok(g_hub) ? 1 : 0, (long long)h.lag_ms, ws_caps_refused(), atomic_load(&g_hs_deadline_closed));
    return respond(conn, 200, "text/plain; version=0.0.4", body);
}

static enum MHD_Result handle_health(struct MHD_Connection *conn)
{
    if (pgc_hub_db_ok(g_hub))
        return respond(conn, 200, "application/json", "{\"status\":\"ok\",\"database\":\"ok\"}");
    return respond(conn, 503, "application/json", "{\"status\":\"error\",\"database\":\"down\"}");
}

/* url is exactly /name or /{one segment}/name: behind a web server the path keeps its
 * prefix ({prefix}/ws, e.g. /realtime/ws). Nothing else matches: /realtime/ws/metrics
 * is not /metrics. */
static bool path_is(const char *url, const char *name, bool prefixed)
{
    if (url[0] != '/')
        return false;
    if (strcmp(url + 1, name) == 0)
        return true;
    if (!prefixed)
        return false;
    const char *slash = strchr(url + 1, '/');
    return slash && slash > url + 1 && strcmp(slash + 1, name) == 0;
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *conn, const char *url, const char *method,
                                  const char *version, const char *upload_data, size_t *upload_data_size,
                                  void **req_cls)
{
    if (!*req_cls) { /* headers first, body later */
        *req_cls = calloc(1, sizeof(struct req_state));
        return *req_cls ? MHD_YES : MHD_NO;
    }
    if (*upload_data_size) { *upload_data_size = 0; return MHD_YES; }
    if (strcmp(method, "GET") != 0) return json_error(conn, 405, "method_not_allowed", "GET only");
    if (path_is(url, "ws", true)) return handle_ws(conn, *req_cls);
    if (path_is(url, "health", false)) return handle_health(conn);
    if (path_is(url, "metrics", false)) return handle_metrics(conn);
    return json_error(conn, 404, "not_found", "no such path");
}

static void on_completed(void *cls, struct MHD_Connection *conn, void **req_cls,
                         enum MHD_RequestTerminationCode toe)
{
    struct req_state *rs = *req_cls;
    if (!rs)
        return;
    if (rs->has_token)
        pgc_token_free(&rs->tok); /* not upgraded (or already moved: then it is empty) */
    ws_caps_release(rs->ticket); /* not upgraded */
    handshake_request_done(conn);
    free(rs);
    *req_cls = NULL;
}

/* libmicrohttpd with the handshake limits above, and their watcher thread. */
static pthread_t g_hs_thread;
static bool g_hs_started;

static struct MHD_Daemon *start_http(unsigned flags, const struct sockaddr *addr, unsigned mhd_limit)
{
    ws_caps_init(&g_cfg);
    struct MHD_Daemon *d = MHD_start_daemon(
        flags, 0, accept_policy, NULL, on_request, NULL, MHD_OPTION_SOCK_ADDR, addr,
        MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)g_cfg.ws_handshake_timeout_s, MHD_OPTION_CONNECTION_LIMIT, mhd_limit,
        MHD_OPTION_CONNECTION_MEMORY_LIMIT, g_cfg.ws_handshake_memory, MHD_OPTION_NOTIFY_CONNECTION, on_connection,
        NULL, MHD_OPTION_NOTIFY_COMPLETED, on_completed, NULL, MHD_OPTION_END);
    if (d && pthread_create(&g_hs_thread, NULL, handshake_watch, NULL) != 0) {
        pgc_log(PGC_LOG_ERROR, NULL, "cannot start the handshake watcher");
        MHD_stop_daemon(d);
        return NULL;
    }
    g_hs_started = d != NULL;
    return d;
}

static void stop_http(struct MHD_Daemon *d)
{
    if (g_hs_started) {
        atomic_store(&g_hs_stop, true);
        pthread_join(g_hs_thread, NULL);
    }
    MHD_stop_daemon(d);
    free(g_hs_peers);
    g_hs_peers = NULL;
    g_hs_npeers = 0;
    ws_caps_shutdown();
}

/* Retention and presence expiry: every process may run them; each run is one statement
 * that skips rows other runs hold. */
static atomic_bool g_stop_maint;
static void *maintenance(void *arg)
{
    (void)arg;
    int64_t next_prune = 0;
    while (!atomic_load(&g_stop_maint)) {
        struct timespec one = {1, 0};
        nanosleep(&one, NULL);
        PGconn *c = pgc_db_acquire(g_pool, 1000);
        if (!c)
            continue;
        PGresult *r = PQexec(c, "SELECT realtime.presence_expire()");
        bool ok = PQresultStatus(r) == PGRES_TUPLES_OK;
        PQclear(r);
        time_t now = time(NULL);
        if (ok && g_cfg.prune_interval_s > 0 && now >= next_prune) {
            char age[32], count[32];
            snprintf(age, sizeof age, "%d seconds", g_cfg.retention_max_age_s);
            snprintf(count, sizeof count, "%d", g_cfg.retention_max_events);
            const char *p[2] = {age, count};
            r = PQexecParams(c, "SELECT realtime.prune($1::interval, $2::bigint)", 2, NULL, p, NULL, NULL, 0);
            ok = PQresultStatus(r) == PGRES_TUPLES_OK;
            if (!ok)
                pgc_log(PGC_LOG_WARN, NULL, "prune failed: %s", PQresultErrorMessage(r));
            PQclear(r);
            /* a statement of its own: prune's channel locks are already released */
            if (ok && g_cfg.stats_retention_s > 0) {
                snprintf(age, sizeof age, "%d seconds", g_cfg.stats_retention_s);
                r = PQexecParams(c, "SELECT realtime.prune_connection_stats($1::interval)", 1, NULL, p, NULL,
                                 NULL, 0);
                ok = PQresultStatus(r) == PGRES_TUPLES_OK;
                const char *state = PQresultErrorField(r, PG_DIAG_SQLSTATE);
                if (!ok && state && strcmp(state, "42883") == 0)
                    pgc_log(PGC_LOG_WARN, NULL, "connection stats are not pruned: the database has no "
                                                "realtime.prune_connection_stats (apply the migrations: pgcast-migrate)");
                else if (!ok)
                    pgc_log(PGC_LOG_WARN, NULL, "connection stats prune failed: %s", PQresultErrorMessage(r));
                PQclear(r);
            }
            next_prune = now + g_cfg.prune_interval_s;
        }
        pgc_db_release(g_pool, c, !ok && PQstatus(c) != CONNECTION_OK);
    }
    return NULL;
}

int main(int argc, char **argv)
{
    static const struct option opts[] = {
        { "listen", required_argument, NULL, 'l' }, { "config", required_argument, NULL, 'c' },
        { "help", no_argument, NULL, 'h' },         { "version", no_argument, NULL, 'V' },
        { NULL, 0, NULL, 0 } };
    const char *listen = NULL, *config = NULL;
    int o;
    while ((o = getopt_long(argc, argv, "l:c:hV", opts, NULL)) != -1) {
        switch (o) {
        case 'l': listen = optarg; break;
        case 'c': config = optarg; break;
        case 'h': fputs(usage, stdout); return 0;
        case 'V': printf("pgcast-ws %s\n", PGCAST_VERSION); return 0;
        default: fputs(usage, stderr); return 2;
        }
    }
    char err[256];
    pgc_log_init("pgcast-ws", PGC_LOG_INFO); /* what loading the configuration says is named */
    if (pgc_config_load(&g_cfg, config, err, sizeof err) != 0) {
        fprintf(stderr, "pgcast-ws: %s\n", err);
        return 2;
    }
    pgc_log_set_level((enum pgc_log_level)g_cfg.log_level);
    if (pgc_crypto_init() != 0)
        return 1;
    if (!listen) listen = g_cfg.ws_listen;
    char host[256];
    const char *colon = strrchr(listen, ':');
    if (!colon || (size_t)(colon - listen) >= sizeof host) {
        fprintf(stderr, "pgcast-ws: --listen wants HOST:PORT\n");
        pgc_config_free(&g_cfg);
        return 2;
    }
    memcpy(host, listen, (size_t)(colon - listen));
    host[colon - listen] = 0;
    struct addrinfo hints = { .ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM, .ai_flags = AI_NUMERICHOST };
    struct addrinfo *ai = NULL;
    if (getaddrinfo(host, colon + 1, &hints, &ai) != 0) {
        fprintf(stderr, "pgcast-ws: bad listen address %s\n", listen);
        pgc_config_free(&g_cfg);
        return 2;
    }
    g_verifier = pgc_verifier_new(&g_cfg, err, sizeof err);
    if (!g_verifier) {
        fprintf(stderr, "pgcast-ws: %s\n", err);
        freeaddrinfo(ai);
        pgc_config_free(&g_cfg);
        return 2;
    }
    int rc = 1;
    pthread_t maint;
    bool maint_started = false;
    pgc_hub_options ho = {.conninfo = g_cfg.database_url, .kind = "ws",
                          .queue_events = (size_t)g_cfg.queue_events, .queue_bytes = g_cfg.queue_bytes,
                          .read_bytes = g_cfg.catchup_read_bytes, .stall_ms = g_cfg.queue_stall_ms,
                          .relay_socket = g_cfg.relay_socket, .relay_retry_ms = g_cfg.relay_retry_ms};
    g_hub = pgc_hub_start(&ho, err, sizeof err);
    /* a connection for each worker, the maintenance thread and the stats flush */
    g_pool = pgc_db_pool_new(g_cfg.database_url, g_cfg.ws_db_workers + 2);
    if (!g_hub || !g_pool) { pgc_log(PGC_LOG_ERROR, NULL, "cannot start: %s", g_hub ? "no memory" : err); goto out; }
    g_workers = ws_workers_new(g_pool, g_cfg.ws_db_workers, g_cfg.ws_db_queue);
    if (!g_workers) { pgc_log(PGC_LOG_ERROR, NULL, "cannot start the database workers"); goto out; }
    g_stats = pgc_stats_new(g_pool, pgc_hub_instance_id(g_hub), 1000);
    if (!g_stats) { pgc_log(PGC_LOG_ERROR, NULL, "cannot start the connection stats"); goto out; }
    ws_env env = {.cfg = &g_cfg, .hub = g_hub, .pool = g_pool, .workers = g_workers, .stats = g_stats,
                  .verifier = g_verifier};
    g_loop = ws_loop_new(&env, g_cfg.max_message_bytes, g_cfg.queue_bytes);
    if (!g_loop) { pgc_log(PGC_LOG_ERROR, NULL, "cannot create the event loop"); goto out; }
    maint_started = pthread_create(&maint, NULL, maintenance, NULL) == 0;
    struct sigaction sa = { .sa_handler = on_signal };
    sigemptyset(&sa.sa_mask);
    if (sigaction(SIGTERM, &sa, NULL) != 0 || sigaction(SIGINT, &sa, NULL) != 0 ||
        signal(SIGPIPE, SIG_IGN) == SIG_ERR) {
        pgc_log(PGC_LOG_ERROR, NULL, "sigaction: %s", strerror(errno));
        goto out;
    }
    /* Every connection is one descriptor: as many as the hard limit allows (the unit sets
     * LimitNOFILE). MHD holds only handshakes in progress, but may hold that many. */
    struct rlimit rl;
    unsigned mhd_limit = 1000;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0) {
        rl.rlim_cur = rl.rlim_max;
        if (setrlimit(RLIMIT_NOFILE, &rl) != 0 && getrlimit(RLIMIT_NOFILE, &rl) != 0)
            rl.rlim_cur = 1024;
        g_fd_limit = rl.rlim_cur;
        if (rl.rlim_cur > 1064)
            mhd_limit = rl.rlim_cur > 1000064 ? 1000000u : (unsigned)(rl.rlim_cur - 64);
    }
    unsigned flags = MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_EPOLL | MHD_ALLOW_UPGRADE |
                     (ai->ai_family == AF_INET6 ? MHD_USE_IPv6 : 0);
    struct MHD_Daemon *d = start_http(flags, ai->ai_addr, mhd_limit);
    if (!d) { pgc_log(PGC_LOG_ERROR, NULL, "cannot listen on %s", listen); goto out; }
    pgc_log(PGC_LOG_INFO, NULL, "listening on %s", listen);
    rc = ws_loop_run(g_loop) == 0 ? 0 : 1;
    stop_http(d);
out:
    if (maint_started) {
        atomic_store(&g_stop_maint, true);
        pthread_join(maint, NULL);
    }
    ws_loop_free(g_loop);
    /* the connections are closed: their presence leaves run now, for a bounded time */
    ws_workers_free(g_workers, 5000);
    pgc_stats_free(g_stats);
    pgc_hub_stop(g_hub);
    pgc_db_pool_free(g_pool);
    pgc_verifier_free(g_verifier);
    freeaddrinfo(ai);
    pgc_config_free(&g_cfg);
    return rc;
}
