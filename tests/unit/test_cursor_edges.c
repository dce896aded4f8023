/* Cursor text, edge cases: tables of bad inputs, limits, NUL, get/set, round trips. */
#include <stdlib.h>

#include "cursor.h"
#include "t.h"

static int parses(const char *text, size_t max, char *err, size_t errlen)
{
    pgc_cursor c;
    pgc_cursor_init(&c);
    int rc = pgc_cursor_parse(&c, text, max, err, errlen);
    if (rc != 0 && c.n != 0)
        rc = -2; /* an error must leave the cursor empty */
    pgc_cursor_free(&c);
    return rc;
}

static void round_trip(const char *text)
{
    pgc_cursor c;
    pgc_cursor_init(&c);
    char err[200] = "";
    int rc = pgc_cursor_parse(&c, text, 64, err, sizeof err);
    T_INT(rc, 0, "parses \"%s\" %s", text, err);
    char *s = pgc_cursor_format(&c);
    T_STR(s, text, "format(parse(\"%s\")) round-trips", text);
    free(s);
    pgc_cursor_free(&c);
}

int main(void)
{
    char err[256];

    /* Good cursors round-trip byte for byte. */
    static const char *good[] = {"", "a=0", "a=1", "project:abc=42,user:u1=7",
                                 "a=9223372036854775807", "x/y@z.w-v_u:t=123,b=0,c=10"};
    for (size_t i = 0; i < sizeof good / sizeof *good; i++)
        round_trip(good[i]);

    struct { const char *text; const char *why; } bad[] = {
        {",", "lone comma"},
        {"a=1,", "trailing comma"},
        {",a=1", "leading comma"},
        {"a=1,,b=2", "empty pair in the middle"},
        {"a", "no '='"},
        {"a=", "empty seq"},
        {"=1", "empty channel"},
        {"=", "only '='"},
        {"a=1,a=2", "channel twice"},
        {"a=1,b=2,a=1", "channel twice, not adjacent"},
        {"a=-1", "negative seq"},
        {"a=+1", "plus sign"},
        {"a=01", "leading zero"},
        {"a=00", "two zeros"},
        {"a=9223372036854775808", "INT64_MAX + 1"},
        {"a=99999999999999999999", "20 digits"},
        {"a=18446744073709551616", "UINT64_MAX + 1"},
        {"a=1 ", "trailing space"},
        {" a=1", "leading space"},
        {"a =1", "space before '='"},
        {"a= 1", "space after '='"},
        {"a=1, b=2", "space after comma"},
        {"a=1x", "junk after seq"},
        {"a=0x10", "hex"},
        {"a=1e3", "exponent"},
        {"a=1.0", "decimal point"},
        {"a=1=2", "two '='"},
        {"a b=1", "space in channel"},
        {"a*=1", "'*' in channel"},
        {"a\"=1", "quote in channel"},
        {"\xc3\xa9=1", "non-ASCII channel"},
        {"a\n=1", "newline in channel"},
        {"a=1\n", "newline after seq"},
        {"a=1;b=2", "wrong separator"},
        {"a=1\tb=2", "tab separator"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        err[0] = '\0';
        int rc = parses(bad[i].text, 64, err, sizeof err);
        T_INT(rc, -1, "refused (%s), leaves cursor empty: %s", bad[i].why, err);
        T_OK(err[0] != '\0', "message for %s", bad[i].why);
    }

    /* Length limits of channel names. */
    char long_name[PGC_CHANNEL_MAX + 8];
    memset(long_name, 'c', PGC_CHANNEL_MAX);
    strcpy(long_name + PGC_CHANNEL_MAX, "=5");
    T_INT(parses(long_name, 64, err, sizeof err), 0, "200-byte channel name accepted");
    memset(long_name, 'c', PGC_CHANNEL_MAX + 1);
    strcpy(long_name + PGC_CHANNEL_MAX + 1, "=5");
    T_INT(parses(long_name, 64, err, sizeof err), -1, "201-byte channel name refused: %s", err);

    /* Entry count limit. */
    T_INT(parses("a=1,b=2,c=3", 3, err, sizeof err), 0, "3 entries with max 3");
    T_INT(parses("a=1,b=2,c=3,d=4", 3, err, sizeof err), -1, "4 entries with max 3: %s", err);
    T_OK(strstr(err, "more than 3") != NULL, "message names the limit");
    T_INT(parses("", 0, err, sizeof err), 0, "empty cursor with max 0");
    T_INT(parses("a=1", 0, err, sizeof err), -1, "one entry with max 0");

    /* NULL text is an empty cursor; a C string ends at its NUL. */
    T_INT(parses(NULL, 4, err, sizeof err), -1, "NULL text is an error");
    {
        pgc_cursor c;
        pgc_cursor_init(&c);
        static const char with_nul[] = "a=1\0,b=2";
        T_INT(pgc_cursor_parse(&c, with_nul, 4, err, sizeof err), 0, "text ends at NUL");
        T_INT(c.n, 1, "one entry before the NUL");
        T_INT(pgc_cursor_get(&c, "b"), -1, "nothing after the NUL");
        pgc_cursor_free(&c);
    }
    T_INT(parses("a=1", 4, NULL, 0), 0, "err may be NULL (ok)");
    T_INT(parses("a=", 4, NULL, 0), -1, "err may be NULL (error)");
    {
        char tiny[8];
        T_INT(parses("a=", 4, tiny, sizeof tiny), -1, "a small err buffer is truncated");
        T_INT(strlen(tiny), sizeof tiny - 1, "message truncated, NUL-terminated");
    }

    /* Parse replaces; an error empties. */
    {
        pgc_cursor c;
        pgc_cursor_init(&c);
        T_INT(pgc_cursor_parse(&c, "a=1,b=2", 8, err, sizeof err), 0, "parse a=1,b=2");
        T_INT(pgc_cursor_get(&c, "a"), 1, "get a");
        T_INT(pgc_cursor_get(&c, "b"), 2, "get b");
        T_INT(pgc_cursor_get(&c, "c"), -1, "get absent");
        T_INT(pgc_cursor_get(&c, "a="), -1, "get with a suffix");
        T_INT(pgc_cursor_get(&c, ""), -1, "get empty name");
        T_INT(pgc_cursor_parse(&c, "c=3", 8, err, sizeof err), 0, "parse again");
        T_INT(c.n, 1, "parse replaced the old entries");
        T_INT(pgc_cursor_get(&c, "a"), -1, "old entry gone");
        T_INT(pgc_cursor_parse(&c, "c=x", 8, err, sizeof err), -1, "bad parse");
        T_INT(c.n, 1, "bad parse left it unchanged");
        T_INT(pgc_cursor_get(&c, "c"), 3, "old entry kept");
        pgc_cursor_free(&c);

        /* set: update in place, append in order, grow past the first capacity. */
        T_INT(pgc_cursor_set(&c, "z", 5), 0, "set z");
        T_INT(pgc_cursor_set(&c, "y", 0), 0, "set y");
        T_INT(pgc_cursor_set(&c, "z", 6), 0, "update z");
        char *s = pgc_cursor_format(&c);
        T_STR(s, "z=6,y=0", "format keeps entry order, update in place");
        free(s);
        T_INT(pgc_cursor_set(&c, "", 1), -1, "set refuses an empty name");
        T_INT(pgc_cursor_set(&c, long_name, 1), -1, "set refuses a too long name");
        char name[16];
        for (int i = 0; i < 100; i++) {
            snprintf(name, sizeof name, "ch%d", i);
            if (pgc_cursor_set(&c, name, i) != 0)
                break;
        }
        T_INT(c.n, 102, "grows to 102 entries");
        T_INT(pgc_cursor_get(&c, "ch99"), 99, "last one found");
        s = pgc_cursor_format(&c);
        pgc_cursor d;
        pgc_cursor_init(&d);
        T_INT(pgc_cursor_parse(&d, s, 200, err, sizeof err), 0, "formatted 102 entries parse");
        char *s2 = pgc_cursor_format(&d);
        T_STR(s2, s, "and format back the same");
        free(s);
        free(s2);
        pgc_cursor_free(&d);
        pgc_cursor_free(&c);
        T_INT(c.n, 0, "free empties");
        pgc_cursor_free(&c);
    }
    {
        pgc_cursor c;
        pgc_cursor_init(&c);
        char *s = pgc_cursor_format(&c);
        T_STR(s, "", "empty cursor formats as \"\"");
        free(s);
        pgc_cursor_set(&c, "m", INT64_MAX);
        s = pgc_cursor_format(&c);
        T_STR(s, "m=9223372036854775807", "INT64_MAX formats");
        free(s);
        pgc_cursor_free(&c);
    }

    printf("1..%d\n", t_n);
    return T_DONE();
}
