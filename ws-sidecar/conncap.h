/* Connection caps of the sidecar: WebSockets per client address (ws_max_conns_per_ip)
 * and per token subject (ws_max_conns_per_subject), counted from the handshake that
 * reserves a place until the session that used it closes.
 *
 * The handshake (MHD's thread) reserves a ticket before answering 101; the upgrade parks
 * it under the address of the token's tenant string, which the loop hands on unchanged to
 * ws_session_open, where the session claims it; ws_session_close releases it. A
 * handshake that does not become a session releases its ticket itself. Thread-safe. */
#ifndef PGCAST_WS_CONNCAP_H
#define PGCAST_WS_CONNCAP_H

#include <stdbool.h>
#include <stddef.h>

#include "config.h"
#include "token.h"

typedef struct ws_cap_ticket ws_cap_ticket;

/* The caps of cfg from now on (cfg must outlive every other call). */
void ws_caps_init(const pgc_config *cfg);
/* Frees what is still parked (at exit). */
void ws_caps_shutdown(void);

/* The client's address for the caps: the peer, or when the peer is one of
 * trusted_proxies, the last address of X-Forwarded-For (xff may be NULL; then "" is
 * written: a proxied client of unknown address, not capped per address). */
void ws_caps_client_addr(const char *peer, const char *xff, char *out, size_t len);
/* Whether peer is one of trusted_proxies. */
bool ws_caps_trusted(const char *peer);

/* One more WebSocket of addr (may be "") and tok's subject. NULL when a cap is reached
 * (*why says which; *status 429) or on no memory (*status 503). */
ws_cap_ticket *ws_caps_reserve(const char *addr, const pgc_token *tok, const char **why, unsigned *status);
void ws_caps_release(ws_cap_ticket *t);
/* Who the connection acts as for presence ownership and the publish rate limit:
 * "sub:" + sub, or "addr:" + the client's address for a token without sub. */
const char *ws_cap_subject(const ws_cap_ticket *t);

void ws_caps_park(ws_cap_ticket *t, const void *key);
/* The ticket parked under key, taken; NULL when there is none. */
ws_cap_ticket *ws_caps_claim(const void *key);

/* Handshakes refused at a cap so far (for /metrics). */
unsigned long ws_caps_refused(void);

#endif
