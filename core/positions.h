/* Channel positions a process knows without asking the database: the last seq of each
 * (tenant, channel) that conditional polls asked about, kept current by the hub from the
 * wake-ups on 'realtime_events' ("<tag> <seq>", sql/011).
 *
 * A position is KNOWN when it was read from the database after the hub's LISTEN was up
 * (pgc_positions_expect before the read, pgc_positions_learn after it) and every wake-up
 * since has been applied to it (the largest seq wins). Then, after a barrier
 * (pgc_hub_sync) begun after a question arrived, the known value is at least the
 * channel's last seq committed before the question: every publish committed later than
 * the read notified the LISTEN connection, and the barrier has made the hub take every
 * notification committed before it. Whatever breaks that chain voids everything: the
 * LISTEN connection dropped, the secret changed, or the hub cannot tell channels apart
 * (no secret). The epoch counts those voids; an answer holds only within one epoch.
 *
 * Bounded: at most max entries (least recently used go first). Thread-safe: one mutex,
 * held for a lookup or an update only. */
#ifndef PGCAST_POSITIONS_H
#define PGCAST_POSITIONS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct pgc_positions pgc_positions;

/* NULL when max is 0 (tracking off) or on no memory. */
pgc_positions *pgc_positions_new(size_t max);
void pgc_positions_free(pgc_positions *p);

/* ---- the hub's side */

/* A new epoch: everything known is forgotten. secret (PGC_HUB_SECRET_LEN bytes): the
 * LISTEN connection is up with this secret, positions may be learnt; NULL: not usable
 * until the next reset with a secret. */
void pgc_positions_reset(pgc_positions *p, const unsigned char *secret);
/* A wake-up "<tag> <seq>" taken from the LISTEN connection. */
void pgc_positions_notify(pgc_positions *p, const char *tag, int64_t seq);

/* ---- the questions' side */

/* The current epoch, 0 while positions cannot be learnt. */
uint64_t pgc_positions_epoch(pgc_positions *p);
/* The known last seq of (tenant, channel) in epoch (nonzero, current): true with *last;
 * false when not known (not asked about, still being read, evicted, another epoch). */
bool pgc_positions_get(pgc_positions *p, uint64_t epoch, const char *tenant, const char *channel, int64_t *last);
/* Before reading the position from the database: the entry is made (or kept) and takes
 * wake-ups from now on. Returns its id for pgc_positions_learn, 0 when not usable now
 * (no LISTEN, no secret) or on no memory. */
uint64_t pgc_positions_expect(pgc_positions *p, const char *tenant, const char *channel);
/* The position read from the database after the pgc_positions_expect that returned id:
 * known from now on (with the wake-ups taken meanwhile), unless the entry went since. */
void pgc_positions_learn(pgc_positions *p, uint64_t id, const char *tenant, const char *channel, int64_t last);
/* Forgets (tenant, channel): read again at its next question. */
void pgc_positions_forget(pgc_positions *p, const char *tenant, const char *channel);

typedef struct pgc_positions_stats {
    uint64_t entries, known; /* now */
    uint64_t notified;       /* wake-ups applied to an entry */
    uint64_t learnt, evicted, resets;
} pgc_positions_stats;
void pgc_positions_get_stats(pgc_positions *p, pgc_positions_stats *out);

#endif
