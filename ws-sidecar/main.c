/* pgcast-ws: the WebSocket sidecar. libmicrohttpd answers HTTP (handshake, /health,
 * /metrics); upgraded sockets go to one epoll loop (loop.c); publish and presence calls
 * to a few database workers (worker.c). */
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
#include <time.h>
#include <unistd.h>

#include "config.h"
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
    int fd = fcntl(sock, F_DUPFD_CLOEXEC, 0);
    if (fd < 0)
        pgc_log(PGC_LOG_WARN, NULL, "cannot take the upgraded socket: %s", strerror(errno));
    else if (ws_loop_adopt(g_loop, fd, extra_in, extra_in_size, tok) != 0) {
        pgc_log(PGC_LOG_WARN, NULL, "cannot hand the connection to the loop");
        close(fd);
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
             "# TYPE pgcast_hub_lag_ms gauge\npgcast_hub_lag_ms %lld\n",
             (unsigned long long)s.connections, (unsigned long long)ws_sessions_subscriptions(),
             (unsigned long long)s.messages_in, (unsigned long long)s.messages_out,
             (unsigned long long)(s.queue_overflows + h.overflows), jobs, refused, (unsigned long long)h.events_in,
             (unsigned long long)h.deliveries, (unsigned long long)h.overflows, (unsigned long long)h.reconnects,
             pgc_hub_db_ok(g_hub) ? 1 : 0, (long long)h.lag_ms);
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
    free(rs);
    *req_cls = NULL;
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
    if (pgc_config_load(&g_cfg, config, err, sizeof err) != 0) {
        fprintf(stderr, "pgcast-ws: %s\n", err);
        return 2;
    }
    pgc_log_init("pgcast-ws", (enum pgc_log_level)g_cfg.log_level);
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
                          .read_bytes = g_cfg.catchup_read_bytes, .stall_ms = g_cfg.queue_stall_ms};
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
        if (rl.rlim_cur > 1064)
            mhd_limit = rl.rlim_cur > 1000064 ? 1000000u : (unsigned)(rl.rlim_cur - 64);
    }
    unsigned flags = MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_EPOLL | MHD_ALLOW_UPGRADE |
                     (ai->ai_family == AF_INET6 ? MHD_USE_IPv6 : 0);
    struct MHD_Daemon *d = MHD_start_daemon(flags, 0, NULL, NULL, on_request, NULL, MHD_OPTION_SOCK_ADDR,
                                            ai->ai_addr, MHD_OPTION_CONNECTION_TIMEOUT, 30u,
                                            MHD_OPTION_CONNECTION_LIMIT, mhd_limit,
                                            MHD_OPTION_NOTIFY_COMPLETED, on_completed, NULL, MHD_OPTION_END);
    if (!d) { pgc_log(PGC_LOG_ERROR, NULL, "cannot listen on %s", listen); goto out; }
    pgc_log(PGC_LOG_INFO, NULL, "listening on %s", listen);
    rc = ws_loop_run(g_loop) == 0 ? 0 : 1;
    MHD_stop_daemon(d);
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
