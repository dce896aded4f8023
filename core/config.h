/* Configuration: one file (PGCAST_CONFIG names it; "key = value" lines, '#' comments)
 * plus PGCAST_<KEY> environment variables that override it. Every key, its default and
 * meaning is documented in pgcast.conf.example. An unknown key or a bad value stops
 * start-up with a message naming it. */
#ifndef PGCAST_CONFIG_H
#define PGCAST_CONFIG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct pgc_config {
    char *database_url;        /* libpq conninfo or URL; "" = the PG* variables */
    char *jwt_alg;             /* HS256 | RS256 | ES256 */
    char *jwt_secret;          /* HS256 shared secret */
    char *jwt_public_key;      /* RS256/ES256: path of a PEM public key */
    bool jwt_require_exp;      /* tokens without exp are refused (default true) */
    int jwt_nbf_leeway_s;      /* a token's nbf may be this far in the future (clock skew, 30) */
    char *token_cookie;        /* cookie carrying the token (default pgcast_token) */
    char *allowed_origins;     /* origins for cookies, upgrades and CORS (default "self") */
    bool anonymous;            /* anonymous access (default false) */
    char *anonymous_tenant;    /* default "anonymous" */
    char *anonymous_channels;  /* comma-separated patterns (default "public:*") */
    char *anonymous_publish;   /* comma-separated patterns (default "": none) */
    int max_channels;          /* per connection (50) */
    size_t max_message_bytes;  /* a client message or POST body (1 MiB + 64 KiB) */
    size_t max_payload_bytes;  /* an event's or presence entry's payload (1 MiB) */
    int client_rate;           /* client messages per second per WebSocket (100) */
    int publish_rate;          /* publishes per second per token subject, every process (50; 0 = off) */
    int publish_burst;         /* publishes at once above the rate (100) */
    int presence_max_per_subject; /* presence entries of one subject in a channel (10; 0 = no cap) */
    int presence_max_per_channel; /* presence entries in a channel (1000; 0 = no cap) */
    int ws_max_conns_per_ip;   /* WebSockets per client address, per sidecar (100; 0 = no cap) */
    int ws_max_conns_per_subject; /* WebSockets per token subject, per sidecar (20; 0 = no cap) */
    int ws_handshake_timeout_s; /* from accept to the upgrade (or a request's end), whatever trickles (10) */
    size_t ws_handshake_memory; /* memory of one HTTP connection of the sidecar (16 KiB) */
    int ws_handshakes_per_ip;  /* HTTP connections (handshakes) at once per address (16; 0 = no cap) */
    char *trusted_proxies;     /* peers whose X-Forwarded-For names the client ("127.0.0.1,::1") */
    int queue_events;          /* outbound queue per subscriber, events (1024) */
    size_t queue_bytes;        /* outbound queue per subscriber, bytes (8 MiB) */
    int queue_stall_ms;        /* a full queue whose client takes nothing this long ends it (10000) */
    size_t ws_max_unfinished_bytes; /* WebSocket input held while incomplete (0: max_message_bytes + 128 KiB) */
    int sse_max_duration_s;    /* 0 = streams never end by themselves; -1 (default) = 240 s where the web
                                  server runs the program (CGI, mod_fcgid), none for a FastCGI daemon */
    size_t sse_padding_bytes;  /* a comment this long after what must reach the client now (0 = none):
                                  for mod_fcgid's output buffer on a hosting account */
    int sse_heartbeat_max_ms;  /* SSE heartbeats at least this often, whatever the channel type (30000; 0 = off) */
    int sse_retry_ms;          /* retry: line (3000) */
    int sse_keepalive_ms;      /* an SSE comment line this often: departures noticed (5000; 0 = off) */
    int sse_max_streams;       /* SSE streams per FastCGI process; beyond, 503 (10000; 0 = no bound) */
    int site_max_streams;      /* SSE streams + long-polls of the whole site (-1 auto: 100 under Apache; 0 = no bound) */
    char *site_streams_file;   /* the slot file the site's processes share ("" = /dev/shm/pgcast-UID-HASH.streams) */
    int site_busy_retry_s;     /* a client refused for the site's bound comes back after about this long (10) */
    int cgi_poll_interval_ms;  /* plain-CGI streams read the log this often (1000) */
    int poll_max_wait_s;       /* cap of ?wait= (25) */
    int poll_max_limit;        /* cap of ?limit= (1000) */
    size_t poll_page_bytes;    /* event payloads per poll page (1 MiB; one event always) */
    int poll_positions_cache;  /* channel positions a poll process keeps for conditional polls (65536; 0 = off) */
    size_t catchup_read_bytes; /* event payloads per log read of the hub / a CGI stream (1 MiB) */
    int retention_max_age_s;   /* events older than this are pruned (7 days) */
    int retention_max_events;  /* per channel (10000) */
    int prune_interval_s;      /* how often the sidecar prunes (60) */
    int stats_retention_s;     /* connection-stats rows of connections ended longer ago are pruned (7 days; 0 = kept) */
    int log_level;             /* enum pgc_log_level */
    char *ws_listen;           /* sidecar HOST:PORT (127.0.0.1:8081) */
    char *metrics_allow;       /* peers that may read the sidecar's /metrics (loopback) */
    int ws_db_workers;         /* sidecar threads for publish and presence calls (4) */
    int ws_db_queue;           /* such calls waiting or running, every connection (1024) */
    int ws_db_pending;         /* such calls (and replies behind them) per connection (16) */
    char *relay_socket;        /* the host's relay (pgcast-relay): its Unix socket; "" = none (own LISTEN) */
    int relay_retry_ms;        /* without a relay (or after losing it), try it again this often (2000) */
    size_t relay_client_buffer; /* pgcast-relay: output held for one process; beyond, it is dropped (4 MiB) */
    int relay_max_clients;     /* pgcast-relay: processes connected at once (1024) */
    int relay_client_tags;     /* pgcast-relay: channels one process may ask to be woken for (1000000) */
    int http_port;             /* make run: the web server's port (8080) */
    int ws_port;               /* make run: the sidecar's port (8081) */
} pgc_config;

/* The file used when pgc_config_load gets no path: $PGCAST_CONFIG (set and empty: none),
 * $REDIRECT_PGCAST_CONFIG, pgcast.conf next to the program (written into buf),
 * /etc/pgcast/pgcast.conf. NULL when there is none. */
const char *pgc_config_find(char *buf, size_t len);
/* Defaults, then the file (path, else pgc_config_find), then PGCAST_* variables.
 * Returns 0, or -1 with a message naming the key in err. */
int pgc_config_load(pgc_config *cfg, const char *path, char *err, size_t errlen);
void pgc_config_free(pgc_config *cfg);

#endif
