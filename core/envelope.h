/* The JSON bytes clients receive (SPEC §2), built in one place with json-c and used by
 * every transport, so an event is the same bytes over SSE, polling and WebSocket. */
#ifndef PGCAST_ENVELOPE_H
#define PGCAST_ENVELOPE_H

#include <stddef.h>
#include <stdint.h>

/* {"type":T,"channel":C,"seq":N,"payload":P,"timestamp":MS}
 * payload_json is JSON text embedded as JSON, not as a string, and NOT validated here: it
 * must be what PostgreSQL's jsonb prints (a log row's event_data::text), never bytes from
 * anywhere else (a notification, a client). type and channel are escaped as JSON strings.
 * Returns malloc'd NUL-terminated bytes, length in *len; NULL on failure. */
char *pgc_envelope_event(const char *type, const char *channel, int64_t seq, const char *payload_json,
                         size_t payload_len, int64_t ts_ms, size_t *len);

/* {"type":"gap","channel":C,"from":N,"to":M} */
char *pgc_envelope_gap(const char *channel, int64_t from, int64_t to, size_t *len);

/* {"type":"heartbeat","timestamp":MS} */
char *pgc_envelope_heartbeat(int64_t ts_ms, size_t *len);

/* {"type":"error","code":C,"message":M[,"requestId":R]} — an error inside a stream or a
 * WebSocket; request_id may be NULL. */
char *pgc_envelope_error(const char *code, const char *message, const char *request_id, size_t *len);

/* {"error":{"code":C,"message":M}} — the body of every HTTP error (SPEC §4). */
char *pgc_envelope_http_error(const char *code, const char *message, size_t *len);

#endif
