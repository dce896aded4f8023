/* Channel positions known from wake-ups (core/positions.c): learnt only after an expect
 * in a usable epoch, raised by wake-ups with the channel's tag (also while pending),
 * never lowered, voided by a reset, bounded (least recently used go first). */
#include <stdlib.h>

#include "hub.h"
#include "positions.h"
#include "t.h"

static unsigned char secret[PGC_HUB_SECRET_LEN] = {1, 2, 3};

static const char *tag_of(const char *tenant, const char *channel)
{
    static char tag[PGC_HUB_TAG_LEN + 1];
    if (pgc_hub_channel_tag(secret, tenant, channel, tag) != 0)
        abort();
    return tag;
}

int main(void)
{
    int64_t last = -7;
    T_OK(pgc_positions_new(0) == NULL, "max 0: tracking off");
    pgc_positions *p = pgc_positions_new(3);
    T_OK(p != NULL, "made");
    T_INT(pgc_positions_epoch(p), 0, "not usable before a reset with a secret");
    T_INT(pgc_positions_expect(p, "t", "a"), 0, "nothing tracked while not usable");

    pgc_positions_reset(p, secret);
    uint64_t ep = pgc_positions_epoch(p);
    T_OK(ep != 0, "usable after a reset with a secret");
    uint64_t id = pgc_positions_expect(p, "t", "a");
    T_OK(id != 0, "expect makes an entry");
    T_OK(!pgc_positions_get(p, ep, "t", "a", &last), "pending: not known yet");
    pgc_positions_notify(p, tag_of("t", "a"), 9);
    pgc_positions_learn(p, id, "t", "a", 5);
    T_OK(pgc_positions_get(p, ep, "t", "a", &last) && last == 9, "a wake-up taken while pending is kept (9 > read 5)");
    pgc_positions_notify(p, tag_of("t", "a"), 12);
    T_OK(pgc_positions_get(p, ep, "t", "a", &last) && last == 12, "a wake-up raises it");
    pgc_positions_notify(p, tag_of("t", "a"), 3);
    T_OK(pgc_positions_get(p, ep, "t", "a", &last) && last == 12, "an older seq does not lower it");
    pgc_positions_notify(p, tag_of("u", "a"), 40);
    T_OK(pgc_positions_get(p, ep, "t", "a", &last) && last == 12, "another tenant's channel of the same name: its own tag");
    T_OK(!pgc_positions_get(p, ep + 1, "t", "a", &last), "another epoch knows nothing");

    /* learn applies to the entry that expect made, not to one made after it went */
    uint64_t idb = pgc_positions_expect(p, "t", "b");
    pgc_positions_forget(p, "t", "b");
    uint64_t idb2 = pgc_positions_expect(p, "t", "b");
    T_OK(idb2 != idb, "a new entry gets a new id");
    pgc_positions_learn(p, idb, "t", "b", 4);
    T_OK(!pgc_positions_get(p, ep, "t", "b", &last), "a read from before the entry was made is not learnt");
    pgc_positions_learn(p, idb2, "t", "b", 4);
    T_OK(pgc_positions_get(p, ep, "t", "b", &last) && last == 4, "the entry's own read is");

    /* bound: 3 entries; a is used most recently, so b goes first */
    T_OK(pgc_positions_get(p, ep, "t", "a", &last), "a used");
    uint64_t idc = pgc_positions_expect(p, "t", "c");
    pgc_positions_learn(p, idc, "t", "c", 1);
    uint64_t idd = pgc_positions_expect(p, "t", "d");
    pgc_positions_learn(p, idd, "t", "d", 1);
    pgc_positions_stats st;
    pgc_positions_get_stats(p, &st);
    T_INT(st.entries, 3, "bounded to 3 entries");
    T_INT(st.evicted, 1, "one evicted");
    T_OK(!pgc_positions_get(p, ep, "t", "b", &last), "the least recently used went");
    T_OK(pgc_positions_get(p, ep, "t", "a", &last) && pgc_positions_get(p, ep, "t", "d", &last),
         "the others stay");
    pgc_positions_notify(p, tag_of("t", "b"), 99); /* no entry: nothing happens */

    /* a reset voids everything; without a secret nothing is learnt */
    pgc_positions_reset(p, NULL);
    T_INT(pgc_positions_epoch(p), 0, "a reset without a secret: not usable");
    T_OK(!pgc_positions_get(p, ep, "t", "a", &last), "nothing known after the reset");
    pgc_positions_reset(p, secret);
    T_OK(pgc_positions_epoch(p) > ep, "a new epoch");
    T_OK(!pgc_positions_get(p, pgc_positions_epoch(p), "t", "a", &last), "still nothing known");
    pgc_positions_get_stats(p, &st);
    T_INT(st.entries, 0, "no entry left");

    /* a new secret: an entry also takes wake-ups tagged under the previous one (a publish
     * that took its tag before the change and commits after it) */
    char old_tag[PGC_HUB_TAG_LEN + 1];
    memcpy(old_tag, tag_of("t", "a"), sizeof(old_tag));
    secret[0] = 42;
    pgc_positions_reset(p, secret);
    ep = pgc_positions_epoch(p);
    id = pgc_positions_expect(p, "t", "a");
    pgc_positions_learn(p, id, "t", "a", 2);
    pgc_positions_notify(p, old_tag, 7);
    T_OK(pgc_positions_get(p, ep, "t", "a", &last) && last == 7, "a wake-up with the previous secret's tag counts");
    pgc_positions_notify(p, tag_of("t", "a"), 8);
    T_OK(pgc_positions_get(p, ep, "t", "a", &last) && last == 8, "and one with the new secret's tag");
    pgc_positions_forget(p, "t", "a");
    pgc_positions_get_stats(p, &st);
    T_INT(st.entries, 0, "forgotten with both tags");
    pgc_positions_notify(p, old_tag, 9); /* nothing left to raise: no crash */
    pgc_positions_free(p);
    return T_DONE();
}
