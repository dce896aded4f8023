/* Cursor parsing (strict) and formatting. */
#include <stdlib.h>

#include "cursor.h"
#include "t.h"

static int parses(const char *text)
{
    pgc_cursor c;
    char err[200];
    pgc_cursor_init(&c);
    int rc = pgc_cursor_parse(&c, text, 50, err, sizeof(err));
    pgc_cursor_free(&c);
    return rc == 0;
}

int main(void)
{
    pgc_cursor c;
    char err[200];
    pgc_cursor_init(&c);
    T_INT(pgc_cursor_parse(&c, "project:abc=42,user:u1=7", 50, err, sizeof(err)), 0, "SPEC example parses");
    T_INT(c.n, 2, "two entries");
    T_INT(pgc_cursor_get(&c, "project:abc"), 42, "first position");
    T_INT(pgc_cursor_get(&c, "user:u1"), 7, "second position");
    T_INT(pgc_cursor_get(&c, "other"), -1, "absent channel is -1");
    char *s = pgc_cursor_format(&c);
    T_STR(s, "project:abc=42,user:u1=7", "format round-trips");
    free(s);
    T_INT(pgc_cursor_set(&c, "user:u1", 8), 0, "set existing");
    T_INT(pgc_cursor_set(&c, "query.1", 0), 0, "set new");
    s = pgc_cursor_format(&c);
    T_STR(s, "project:abc=42,user:u1=8,query.1=0", "format keeps order");
    free(s);

    T_INT(pgc_cursor_parse(&c, "", 50, err, sizeof(err)), 0, "empty cursor is valid");
    T_INT(c.n, 0, "and empty");
    T_OK(parses("a=9223372036854775807"), "INT64_MAX parses");
    T_OK(parses("a=0"), "zero parses");

    const char *bad[] = {",",          "a=1,",       ",a=1",        "a=1,,b=2",   "a",          "a=",
                         "=1",         "a=-1",       "a=+1",        "a=01",       "a=1x",       "a=1 ",
                         " a=1",       "a=1,a=2",    "a b=1",       "a=9223372036854775808",
                         "a=99999999999999999999",   "a==1",        "a=1=2",      "ü=1",        "a=0x10",
                         "a=1;b=2",    "a=1.5"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(*bad); i++)
        T_OK(!parses(bad[i]), "refused: '%s'", bad[i]);

    T_INT(pgc_cursor_parse(&c, "a=1,a=2", 50, err, sizeof(err)), -1, "duplicate refused");
    T_OK(strstr(err, "twice") != NULL, "error names the problem: %s", err);
    T_INT(c.n, 0, "a failed parse leaves the previous cursor (empty) untouched");

    char many[2000] = "";
    for (int i = 0; i < 51; i++) {
        char e[16];
        snprintf(e, sizeof(e), "%sc%d=1", i ? "," : "", i);
        strcat(many, e);
    }
    T_INT(pgc_cursor_parse(&c, many, 50, err, sizeof(err)), -1, "more than max entries refused");
    T_INT(pgc_cursor_parse(&c, NULL, 50, err, sizeof(err)), -1, "NULL refused");
    pgc_cursor_free(&c);
    return T_DONE();
}
