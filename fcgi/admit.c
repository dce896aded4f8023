/* The site's share for long-lived requests (admit.h): slots as OFD locks on a shared file. */
#include "admit.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "clock.h"
#include "internal.h"
#include "log.h"

#define AUTO_APACHE_BOUND 100
#define WARN_EVERY_MS 60000

static struct {
    pthread_mutex_t mu;
    bool tried;
    pid_t owner;          /* the process that opened fd (a forked child opens its own) */
    int fd;               /* the slot file, -1 when it cannot be used */
    unsigned char *held;  /* slots this process holds (its own locks do not conflict) */
    int cap;              /* bits in held */
    unsigned next;        /* where the next search starts */
    int64_t warned;
} adm = {.mu = PTHREAD_MUTEX_INITIALIZER, .fd = -1};

/* The tighter of two bounds, where 0 is none and -1 unset. */
static int tighter(int a, int b)
{
    if (a < 0 || (a == 0 && b >= 0))
        return b;
    if (b <= 0)
        return a;
    return a < b ? a : b;
}

int pgc_admit_bound(const pgc_config *cfg, pgc_request *r)
{
    int bound = -1;
    /* the web server's own sizing (Apache: SetEnv next to MaxRequestWorkers) */
    const char *v = pgc_req_param(r, "PGCAST_SITE_MAX_STREAMS");
    if (v && *v) {
        char *end;
        long n = strtol(v, &end, 10);
        if (*end == '\0' && n >= 0 && n <= 1000000)
            bound = (int)n;
    }
    bound = tighter(bound, cfg->site_max_streams);
    if (bound >= 0)
        return bound;
    const char *sw = pgc_req_param(r, "SERVER_SOFTWARE");
    return sw && strncmp(sw, "Apache", 6) == 0 ? AUTO_APACHE_BOUND : 0;
}

static void warn_limited(const char *fmt, const char *a, const char *b)
{
    int64_t now = pgc_mono_ms();
    if (adm.warned && now - adm.warned < WARN_EVERY_MS)
        return;
    adm.warned = now;
    PGC_WARN(fmt, a, b);
}

/* FNV-1a: the default file's name differs per database (the site's identity). */
static uint64_t fnv1a(const char *s)
{
    uint64_t h = 1469598103934665603ULL;
    for (; s && *s; s++) {
        h ^= (unsigned char)*s;
        h *= 1099511628211ULL;
    }
    return h;
}

/* Opens the slot file once per process (under adm.mu). */
static void open_file(const pgc_config *cfg)
{
    adm.tried = true;
    adm.owner = getpid();
    char path[4096];
    if (cfg->site_streams_file && *cfg->site_streams_file) {
        snprintf(path, sizeof(path), "%s", cfg->site_streams_file);
    } else {
        struct stat d;
        const char *dir = stat("/dev/shm", &d) == 0 && S_ISDIR(d.st_mode) && access("/dev/shm", W_OK) == 0
                              ? "/dev/shm" : "/tmp";
        snprintf(path, sizeof(path), "%s/pgcast-%u-%016llx.streams", dir, (unsigned)geteuid(),
                 (unsigned long long)fnv1a(cfg->database_url));
    }
    int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
    if (fd < 0) {
        warn_limited("site_max_streams: cannot open %s (%s): streams are admitted without the site's bound", path,
                     strerror(errno));
        return;
    }
    struct stat st;
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode) || st.st_uid != geteuid()) {
        /* someone else's file could hold every slot: never trust it */
        warn_limited("site_max_streams: %s is not a regular file of this user%s: streams are admitted without "
                     "the site's bound", path, "");
        close(fd);
        return;
    }
    adm.fd = fd;
    adm.next = (unsigned)getpid() * 2654435761u; /* CGI: processes do not all scan from 0 */
}

static int lock_byte(int slot, short type)
{
    struct flock fl = {.l_type = type, .l_whence = SEEK_SET, .l_start = slot, .l_len = 1, .l_pid = 0};
    return fcntl(adm.fd, F_OFD_SETLK, &fl);
}

static bool held(int slot) { return slot < adm.cap && (adm.held[slot / 8] & (1u << (slot % 8))); }

static int mark(int slot, bool on)
{
    if (slot >= adm.cap) {
        int cap = adm.cap ? adm.cap : 64;
        while (cap <= slot)
            cap *= 2;
        unsigned char *p = realloc(adm.held, (size_t)cap / 8);
        if (!p)
            return -1;
        memset(p + adm.cap / 8, 0, (size_t)(cap - adm.cap) / 8);
        adm.held = p;
        adm.cap = cap;
    }
    if (on)
        adm.held[slot / 8] |= (unsigned char)(1u << (slot % 8));
    else
        adm.held[slot / 8] &= (unsigned char)~(1u << (slot % 8));
    return 0;
}

bool pgc_admit_take(const pgc_config *cfg, pgc_request *r)
{
    int n = pgc_admit_bound(cfg, r);
    if (n <= 0 || r->admit_slot)
        return true;
    bool ok = true;
    pthread_mutex_lock(&adm.mu);
    if (adm.tried && adm.owner != getpid()) {
        /* forked: the inherited descriptor shares the parent's open file description,
         * whose locks are the parent's (they would not count against each other) */
        if (adm.fd >= 0)
            close(adm.fd);
        adm.fd = -1;
        adm.tried = false;
        if (adm.held)
            memset(adm.held, 0, (size_t)adm.cap / 8);
    }
    if (!adm.tried)
        open_file(cfg);
    if (adm.fd >= 0) {
        ok = false;
        /* from a moving start: a full scan only when the site is (nearly) full */
        unsigned start = adm.next++ % (unsigned)n;
        for (int k = 0; k < n && !ok; k++) {
            int slot = (int)((start + (unsigned)k) % (unsigned)n);
            if (held(slot))
                continue;
            if (lock_byte(slot, F_WRLCK) == 0) {
                if (mark(slot, true) != 0) {
                    lock_byte(slot, F_UNLCK);
                    ok = true; /* out of memory: admit without a slot */
                    break;
                }
                r->admit_slot = slot + 1;
                ok = true;
            } else if (errno != EAGAIN && errno != EACCES) {
                warn_limited("site_max_streams: locking a slot failed (%s)%s: admitted without the site's bound",
                             strerror(errno), "");
                ok = true;
            }
        }
    }
    pthread_mutex_unlock(&adm.mu);
    if (!ok)
        pgc_log(PGC_LOG_WARN, pgc_req_id(r), "busy: the site's %d stream slots are taken (site_max_streams)", n);
    return ok;
}

void pgc_admit_release(pgc_request *r)
{
    if (!r->admit_slot)
        return;
    int slot = r->admit_slot - 1;
    r->admit_slot = 0;
    pthread_mutex_lock(&adm.mu);
    if (adm.fd >= 0 && lock_byte(slot, F_UNLCK) != 0)
        PGC_WARN("site_max_streams: unlocking slot %d: %s", slot, strerror(errno));
    mark(slot, false);
    pthread_mutex_unlock(&adm.mu);
}

int pgc_admit_retry_ms(const pgc_config *cfg)
{
    int base = cfg->site_busy_retry_s * 1000;
    static _Thread_local unsigned seed;
    if (!seed)
        seed = (unsigned)pgc_mono_ms() ^ ((unsigned)getpid() << 16) ^ (unsigned)(uintptr_t)&seed;
    return base / 2 + (int)(rand_r(&seed) % (unsigned)(base + 1));
}
