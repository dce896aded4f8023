/* Connection caps per client address and per token subject (see conncap.h). One mutex;
 * counts in a chained hash table whose entries go when their count reaches zero, so its
 * size follows the connections open. */
#include "conncap.h"

#include <arpa/inet.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define BUCKETS 4096

struct count {
    char *key;
    int n;
    struct count *next;
};

struct ws_cap_ticket {
    char *ip_key;   /* "i:" + address; NULL: not counted by address */
    char *subj_key; /* "s:" + tenant + 0x1f + sub; NULL: no sub */
    char *subject;  /* ws_cap_subject */
    const void *park_key;
    struct ws_cap_ticket *next; /* parked */
};

static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static struct count *table[BUCKETS];
static ws_cap_ticket *parked;
static const pgc_config *g_cfg;
static _Atomic unsigned long refused;

void ws_caps_init(const pgc_config *cfg) { g_cfg = cfg; }

void ws_caps_shutdown(void)
{
    pthread_mutex_lock(&mu);
    ws_cap_ticket *t = parked;
    parked = NULL;
    pthread_mutex_unlock(&mu);
    while (t) {
        ws_cap_ticket *next = t->next;
        ws_caps_release(t);
        t = next;
    }
}

unsigned long ws_caps_refused(void) { return atomic_load(&refused); }

static size_t hash(const char *s)
{
    uint64_t h = 1469598103934665603ULL;
    for (; *s; s++)
        h = (h ^ (unsigned char)*s) * 1099511628211ULL;
    return (size_t)(h % BUCKETS);
}

/* mu held */
static struct count **find(const char *key)
{
    struct count **pp = &table[hash(key)];
    while (*pp && strcmp((*pp)->key, key) != 0)
        pp = &(*pp)->next;
    return pp;
}

static int count_of(const char *key)
{
    struct count **pp = find(key);
    return *pp ? (*pp)->n : 0;
}

/* mu held; -1 on no memory */
static int add(const char *key, int d)
{
    struct count **pp = find(key);
    if (!*pp) {
        if (d <= 0)
            return 0;
        struct count *c = calloc(1, sizeof(*c));
        if (!c || !(c->key = strdup(key))) {
            free(c);
            return -1;
        }
        *pp = c;
    }
    struct count *c = *pp;
    c->n += d;
    if (c->n <= 0) {
        *pp = c->next;
        free(c->key);
        free(c);
    }
    return 0;
}

/* The canonical text of an address, so that "::ffff:1.2.3.4" and "1.2.3.4" are one. */
static void canon(const char *in, char *out, size_t len)
{
    unsigned char buf[16];
    if (inet_pton(AF_INET6, in, buf) == 1) {
        static const unsigned char v4mapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
        if (memcmp(buf, v4mapped, 12) == 0 && inet_ntop(AF_INET, buf + 12, out, (socklen_t)len))
            return;
        if (inet_ntop(AF_INET6, buf, out, (socklen_t)len))
            return;
    }
    snprintf(out, len, "%s", in);
}

bool ws_caps_trusted(const char *peer)
{
    if (!g_cfg || !g_cfg->trusted_proxies || !peer || !*peer)
        return false;
    char p[64];
    canon(peer, p, sizeof(p));
    for (const char *s = g_cfg->trusted_proxies; *s;) {
        while (*s == ' ' || *s == ',')
            s++;
        size_t n = strcspn(s, ", ");
        if (n && n < 64) {
            char item[64], c[64];
            memcpy(item, s, n);
            item[n] = '\0';
            canon(item, c, sizeof(c));
            if (strcmp(c, p) == 0)
                return true;
        }
        s += n;
    }
    return false;
}

void ws_caps_client_addr(const char *peer, const char *xff, char *out, size_t len)
{
    if (!ws_caps_trusted(peer)) {
        canon(peer ? peer : "", out, len);
        return;
    }
    /* the proxy appends the address it saw: the last item */
    const char *last = NULL;
    if (xff) {
        const char *comma = strrchr(xff, ',');
        last = comma ? comma + 1 : xff;
        while (*last == ' ' || *last == '\t')
            last++;
    }
    char item[64] = "";
    if (last) {
        size_t n = strcspn(last, " \t");
        if (n < sizeof(item)) {
            memcpy(item, last, n);
            item[n] = '\0';
        }
    }
    unsigned char buf[16];
    if (inet_pton(AF_INET, item, buf) == 1 || inet_pton(AF_INET6, item, buf) == 1)
        canon(item, out, len);
    else
        snprintf(out, len, "%s", ""); /* none, or not an address */
}

void ws_caps_release(ws_cap_ticket *t)
{
    if (!t)
        return;
    pthread_mutex_lock(&mu);
    if (t->ip_key)
        (void)add(t->ip_key, -1);
    if (t->subj_key)
        (void)add(t->subj_key, -1);
    pthread_mutex_unlock(&mu);
    free(t->ip_key);
    free(t->subj_key);
    free(t->subject);
    free(t);
}

static char *join3(const char *a, const char *b, const char *c, const char *d)
{
    size_t n = strlen(a) + strlen(b) + strlen(c) + strlen(d) + 1;
    char *s = malloc(n);
    if (s)
        snprintf(s, n, "%s%s%s%s", a, b, c, d);
    return s;
}

ws_cap_ticket *ws_caps_reserve(const char *addr, const pgc_token *tok, const char **why, unsigned *status)
{
    *why = "out of memory";
    *status = 503;
    ws_cap_ticket *t = calloc(1, sizeof(*t));
    if (!t)
        return NULL;
    bool oom = false;
    if (addr && *addr)
        oom |= !(t->ip_key = join3("i:", addr, "", ""));
    if (tok->sub) {
        oom |= !(t->subj_key = join3("s:", tok->tenant, "\x1f", tok->sub));
        oom |= !(t->subject = join3("sub:", tok->sub, "", ""));
    } else {
        oom |= !(t->subject = join3("addr:", addr && *addr ? addr : "unknown", "", ""));
    }
    if (oom) {
        free(t->ip_key);
        free(t->subj_key);
        free(t->subject);
        free(t);
        return NULL;
    }
    int max_ip = g_cfg ? g_cfg->ws_max_conns_per_ip : 0, max_sub = g_cfg ? g_cfg->ws_max_conns_per_subject : 0;
    pthread_mutex_lock(&mu);
    const char *refuse = NULL;
    if (t->ip_key && max_ip > 0 && count_of(t->ip_key) >= max_ip)
        refuse = "too many connections from this address";
    else if (t->subj_key && max_sub > 0 && count_of(t->subj_key) >= max_sub)
        refuse = "too many connections for this token's subject";
    else if (t->ip_key && add(t->ip_key, 1) != 0)
        refuse = "out of memory";
    else if (t->subj_key && add(t->subj_key, 1) != 0) {
        if (t->ip_key)
            (void)add(t->ip_key, -1);
        refuse = "out of memory";
    }
    pthread_mutex_unlock(&mu);
    if (!refuse)
        return t;
    if (strcmp(refuse, "out of memory") != 0) {
        *status = 429;
        atomic_fetch_add(&refused, 1);
    }
    *why = refuse;
    free(t->ip_key);
    free(t->subj_key);
    free(t->subject);
    free(t);
    return NULL;
}

const char *ws_cap_subject(const ws_cap_ticket *t) { return t->subject; }

void ws_caps_park(ws_cap_ticket *t, const void *key)
{
    t->park_key = key;
    pthread_mutex_lock(&mu);
    t->next = parked;
    parked = t;
    pthread_mutex_unlock(&mu);
}

ws_cap_ticket *ws_caps_claim(const void *key)
{
    if (!key)
        return NULL;
    pthread_mutex_lock(&mu);
    ws_cap_ticket *t = NULL;
    for (ws_cap_ticket **pp = &parked; *pp; pp = &(*pp)->next) {
        if ((*pp)->park_key == key) {
            t = *pp;
            *pp = t->next;
            t->next = NULL;
            break;
        }
    }
    pthread_mutex_unlock(&mu);
    return t;
}
