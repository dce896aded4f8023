/* Channel positions known from the hub's wake-ups (see positions.h).
 *
 * Two tables point at each entry: by "tenant \x1f channel" (the questions) and by wake-up
 * tag (the notifications). An entry is pending from pgc_positions_expect until
 * pgc_positions_learn, taking wake-ups all the while; its `last` is the largest of the
 * seqs notified and the value read. Entries sit on one LRU list (most recent first);
 * past max the last one goes. A reset frees every entry: nothing survives an epoch.
 *
 * After the secret changes, an entry is also found by its tag under the previous
 * secret: a publish that took its tag before the change and commits after it notifies
 * with the old tag, and that wake-up must still raise the position. */
#include "positions.h"

#include <linkhash.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "hub.h"
#include "log.h"

typedef struct pentry pentry;
struct pentry {
    char *key; /* tenant \x1f channel */
    char tag[PGC_HUB_TAG_LEN + 1];
    char tag_prev[PGC_HUB_TAG_LEN + 1]; /* under the previous secret, when has_prev */
    bool has_prev;
    uint64_t id;  /* unique for the process's life: learn applies to this entry only */
    int64_t last; /* -1 until something is known */
    bool known;
    pentry *prev, *next; /* LRU, most recent first */
};

struct pgc_positions {
    pthread_mutex_t mu;
    size_t max, n;
    struct lh_table *by_key, *by_tag;
    pentry *head, *tail;
    unsigned char secret[PGC_HUB_SECRET_LEN], prev[PGC_HUB_SECRET_LEN];
    bool have_secret, have_prev; /* secret: the last one given, even while not usable */
    bool usable;
    uint64_t epoch, next_id;
    uint64_t n_known, st_notified, st_learnt, st_evicted, st_resets;
};

pgc_positions *pgc_positions_new(size_t max)
{
    if (max == 0)
        return NULL;
    pgc_positions *p = calloc(1, sizeof(*p));
    if (!p)
        return NULL;
    p->max = max;
    p->epoch = 1;
    p->next_id = 1;
    p->by_key = lh_kchar_table_new(256, NULL);
    p->by_tag = lh_kchar_table_new(256, NULL);
    if (!p->by_key || !p->by_tag || pthread_mutex_init(&p->mu, NULL) != 0) {
        if (p->by_key)
            lh_table_free(p->by_key);
        if (p->by_tag)
            lh_table_free(p->by_tag);
        free(p);
        return NULL;
    }
    return p;
}

static void lru_unlink(pgc_positions *p, pentry *e)
{
    if (e->prev)
        e->prev->next = e->next;
    else
        p->head = e->next;
    if (e->next)
        e->next->prev = e->prev;
    else
        p->tail = e->prev;
    e->prev = e->next = NULL;
}

static void lru_front(pgc_positions *p, pentry *e)
{
    e->prev = NULL;
    e->next = p->head;
    if (p->head)
        p->head->prev = e;
    else
        p->tail = e;
    p->head = e;
}

/* Removes e from both tables and the list, and frees it. Under mu. */
static void entry_drop(pgc_positions *p, pentry *e)
{
    lh_table_delete(p->by_key, e->key);
    lh_table_delete(p->by_tag, e->tag);
    if (e->has_prev)
        lh_table_delete(p->by_tag, e->tag_prev);
    lru_unlink(p, e);
    p->n--;
    if (e->known)
        p->n_known--;
    free(e->key);
    free(e);
}

static void drop_all(pgc_positions *p)
{
    while (p->head)
        entry_drop(p, p->head);
}

void pgc_positions_free(pgc_positions *p)
{
    if (!p)
        return;
    drop_all(p);
    lh_table_free(p->by_key);
    lh_table_free(p->by_tag);
    pthread_mutex_destroy(&p->mu);
    free(p);
}

void pgc_positions_reset(pgc_positions *p, const unsigned char *secret)
{
    if (!p)
        return;
    pthread_mutex_lock(&p->mu);
    drop_all(p);
    p->epoch++;
    p->st_resets++;
    p->usable = secret != NULL;
    if (secret && p->have_secret && memcmp(secret, p->secret, PGC_HUB_SECRET_LEN) != 0) {
        memcpy(p->prev, p->secret, PGC_HUB_SECRET_LEN);
        p->have_prev = true;
    }
    if (secret) {
        memcpy(p->secret, secret, PGC_HUB_SECRET_LEN);
        p->have_secret = true;
    }
    pthread_mutex_unlock(&p->mu);
}

void pgc_positions_notify(pgc_positions *p, const char *tag, int64_t seq)
{
    if (!p)
        return;
    pthread_mutex_lock(&p->mu);
    void *v = NULL;
    if (p->usable && lh_table_lookup_ex(p->by_tag, tag, &v)) {
        pentry *e = v;
        if (seq > e->last)
            e->last = seq;
        p->st_notified++;
    }
    pthread_mutex_unlock(&p->mu);
}

uint64_t pgc_positions_epoch(pgc_positions *p)
{
    if (!p)
        return 0;
    pthread_mutex_lock(&p->mu);
    uint64_t e = p->usable ? p->epoch : 0;
    pthread_mutex_unlock(&p->mu);
    return e;
}

/* The table key of (tenant, channel), in buf when it fits, else allocated (free it if != buf). */
static char *make_key(char *buf, size_t len, const char *tenant, const char *channel)
{
    size_t lt = strlen(tenant), lc = strlen(channel);
    char *k = lt + lc + 2 <= len ? buf : malloc(lt + lc + 2);
    if (!k)
        return NULL;
    memcpy(k, tenant, lt);
    k[lt] = '\x1f';
    memcpy(k + lt + 1, channel, lc + 1);
    return k;
}

static pentry *find(pgc_positions *p, const char *tenant, const char *channel)
{
    char buf[256];
    char *k = make_key(buf, sizeof(buf), tenant, channel);
    void *v = NULL;
    bool found = k && lh_table_lookup_ex(p->by_key, k, &v);
    if (k != buf)
        free(k);
    return found ? v : NULL;
}

bool pgc_positions_get(pgc_positions *p, uint64_t epoch, const char *tenant, const char *channel, int64_t *last)
{
    if (!p || epoch == 0)
        return false;
    pthread_mutex_lock(&p->mu);
    pentry *e = p->usable && epoch == p->epoch ? find(p, tenant, channel) : NULL;
    bool ok = e && e->known;
    if (ok) {
        *last = e->last;
        lru_unlink(p, e);
        lru_front(p, e);
    }
    pthread_mutex_unlock(&p->mu);
    return ok;
}

uint64_t pgc_positions_expect(pgc_positions *p, const char *tenant, const char *channel)
{
    if (!p)
        return 0;
    pthread_mutex_lock(&p->mu);
    uint64_t id = 0;
    if (!p->usable)
        goto out;
    pentry *e = find(p, tenant, channel);
    if (e) {
        lru_unlink(p, e);
        lru_front(p, e);
        id = e->id;
        goto out;
    }
    /* a new entry: its tag under the current secret, then both tables */
    e = calloc(1, sizeof(*e));
    if (!e || !(e->key = make_key(NULL, 0, tenant, channel)) ||
        pgc_hub_channel_tag(p->secret, tenant, channel, e->tag) != 0) {
        if (e)
            free(e->key);
        free(e);
        goto out;
    }
    void *other = NULL;
    if (lh_table_lookup_ex(p->by_tag, e->tag, &other) || lh_table_insert(p->by_key, e->key, e) != 0) {
        free(e->key); /* a shared tag (2^-128) or no memory: not tracked */
        free(e);
        goto out;
    }
    if (lh_table_insert(p->by_tag, e->tag, e) != 0) {
        lh_table_delete(p->by_key, e->key);
        free(e->key);
        free(e);
        goto out;
    }
    /* and under the previous secret (wake-ups of publishes that began before the change) */
    e->has_prev = p->have_prev && pgc_hub_channel_tag(p->prev, tenant, channel, e->tag_prev) == 0 &&
                  !lh_table_lookup_ex(p->by_tag, e->tag_prev, &other) && lh_table_insert(p->by_tag, e->tag_prev, e) == 0;
    e->id = p->next_id++;
    e->last = -1;
    lru_front(p, e);
    p->n++;
    id = e->id;
    while (p->n > p->max && p->tail != e) {
        entry_drop(p, p->tail);
        p->st_evicted++;
    }
out:
    pthread_mutex_unlock(&p->mu);
    return id;
}

void pgc_positions_learn(pgc_positions *p, uint64_t id, const char *tenant, const char *channel, int64_t last)
{
    if (!p || id == 0)
        return;
    pthread_mutex_lock(&p->mu);
    pentry *e = find(p, tenant, channel);
    if (e && e->id == id) {
        if (last > e->last)
            e->last = last;
        if (!e->known) {
            e->known = true;
            p->n_known++;
        }
        p->st_learnt++;
    }
    pthread_mutex_unlock(&p->mu);
}

void pgc_positions_forget(pgc_positions *p, const char *tenant, const char *channel)
{
    if (!p)
        return;
    pthread_mutex_lock(&p->mu);
    pentry *e = find(p, tenant, channel);
    if (e)
        entry_drop(p, e);
    pthread_mutex_unlock(&p->mu);
}

void pgc_positions_get_stats(pgc_positions *p, pgc_positions_stats *out)
{
    memset(out, 0, sizeof(*out));
    if (!p)
        return;
    pthread_mutex_lock(&p->mu);
    out->entries = p->n;
    out->known = p->n_known;
    out->notified = p->st_notified;
    out->learnt = p->st_learnt;
    out->evicted = p->st_evicted;
    out->resets = p->st_resets;
    pthread_mutex_unlock(&p->mu);
}
