/* Items queued to subscribers: immutable after creation, shared by reference count, so
 * fan-out to 10,000 subscribers queues one pointer each, never a copy. */
#include <stdlib.h>
#include <string.h>

#include "envelope.h"
#include "hub.h"

void pgc_event_ref(pgc_event *e) { atomic_fetch_add_explicit(&e->refs, 1, memory_order_relaxed); }

void pgc_event_unref(pgc_event *e)
{
    if (!e || atomic_fetch_sub_explicit(&e->refs, 1, memory_order_acq_rel) != 1)
        return;
    free((void *)e->json);
    free(e);
}

/* One block: the struct, then tenant, channel and type strings. */
static pgc_event *event_alloc(pgc_item_kind kind, const char *tenant, const char *channel, const char *type)
{
    size_t tl = strlen(tenant) + 1, cl = strlen(channel) + 1, yl = type ? strlen(type) + 1 : 0;
    pgc_event *e = calloc(1, sizeof(*e) + tl + cl + yl);
    if (!e)
        return NULL;
    char *p = (char *)(e + 1);
    memcpy(p, tenant, tl);
    e->tenant = p;
    memcpy(p + tl, channel, cl);
    e->channel = p + tl;
    if (type) {
        memcpy(p + tl + cl, type, yl);
        e->type = p + tl + cl;
    }
    atomic_init(&e->refs, 1);
    e->kind = kind;
    return e;
}

pgc_event *pgc_event_new_event(const char *tenant, const char *channel, int64_t seq, const char *type,
                               const char *payload_json, size_t payload_len, int64_t ts_ms)
{
    pgc_event *e = event_alloc(PGC_ITEM_EVENT, tenant, channel, type);
    if (!e)
        return NULL;
    e->seq = seq;
    e->ts_ms = ts_ms;
    e->json = pgc_envelope_event(type, channel, seq, payload_json, payload_len, ts_ms, &e->json_len);
    if (!e->json) {
        free(e);
        return NULL;
    }
    return e;
}

pgc_event *pgc_event_new_gap(const char *tenant, const char *channel, int64_t from, int64_t to)
{
    pgc_event *e = event_alloc(PGC_ITEM_GAP, tenant, channel, NULL);
    if (!e)
        return NULL;
    e->seq = from;
    e->gap_to = to;
    e->json = pgc_envelope_gap(channel, from, to, &e->json_len);
    if (!e->json) {
        free(e);
        return NULL;
    }
    return e;
}

pgc_event *pgc_event_new_subscribed(const char *tenant, const char *channel, int64_t seq)
{
    pgc_event *e = event_alloc(PGC_ITEM_SUBSCRIBED, tenant, channel, NULL);
    if (e)
        e->seq = seq;
    return e;
}

pgc_event *pgc_event_new_ephemeral(const char *tenant, const char *channel, const char *type, const char *json,
                                   size_t len)
{
    pgc_event *e = event_alloc(PGC_ITEM_EPHEMERAL, tenant, channel, type);
    char *copy = e ? malloc(len + 1) : NULL;
    if (!copy) {
        free(e);
        return NULL;
    }
    memcpy(copy, json, len);
    copy[len] = '\0';
    e->json = copy;
    e->json_len = len;
    return e;
}
