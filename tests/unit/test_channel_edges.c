/* Channel grammar, types and token patterns: edge cases (bytes, lengths, odd patterns). */
#include <stdlib.h>

#include "channel.h"
#include "t.h"

static char *repeat(char ch, size_t n)
{
    char *s = malloc(n + 1);
    if (!s)
        abort();
    memset(s, ch, n);
    s[n] = '\0';
    return s;
}

int main(void)
{
    static const char *good[] = {"a", "project:abc", "query.42", "user:u1@example.com",
                                 "a/b-c_d.e:f", "Z9", "-", "project:"};
    for (size_t i = 0; i < sizeof good / sizeof *good; i++)
        T_OK(pgc_channel_valid(good[i]), "valid: \"%s\"", good[i]);

    static const char *bad[] = {"", "a b", "a,b", "a=b", "a*", "a\tb", "é", "a\"b",
                                "a'b", "a;b", "a\nb", "{sub}", "a%20", "a\\b", "a?b", "a#"};
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++)
        T_OK(!pgc_channel_valid(bad[i]), "invalid: bad[%zu]", i);
    T_OK(!pgc_channel_valid(NULL), "invalid: NULL");
    T_OK(!pgc_channel_valid("\x80"), "invalid: high byte");
    T_OK(!pgc_channel_valid("\x7f"), "invalid: DEL");

    char *s200 = repeat('x', 200), *s201 = repeat('x', 201);
    T_OK(pgc_channel_valid(s200), "200 bytes is valid");
    T_OK(!pgc_channel_valid(s201), "201 bytes is not");
    free(s200);
    free(s201);

    char type[32];
    T_INT(pgc_channel_type("project:abc", type, sizeof type), 7, "type length of project:abc");
    T_STR(type, "project", "type of project:abc");
    pgc_channel_type("query.42", type, sizeof type);
    T_STR(type, "query", "type of query.42");
    pgc_channel_type("a.b:c", type, sizeof type);
    T_STR(type, "a", "type stops at the first separator (.)");
    pgc_channel_type("a:b.c", type, sizeof type);
    T_STR(type, "a", "type stops at the first separator (:)");
    pgc_channel_type("plain", type, sizeof type);
    T_STR(type, "plain", "type of a name without separator is the name");
    pgc_channel_type(":x", type, sizeof type);
    T_STR(type, "", "type of :x is empty");
    char small[4];
    T_INT(pgc_channel_type("organization:1", small, sizeof small), 12, "full length returned");
    T_STR(small, "org", "type truncated to the buffer");
    T_INT(pgc_channel_type("project:1", NULL, 0), 7, "length without a buffer");

    struct { const char *pat, *ch, *sub; bool want; } pm[] = {
        {"project:abc", "project:abc", NULL, true},
        {"project:abc", "project:abcd", NULL, false},
        {"project:abc", "project:ab", NULL, false},
        {"project:*", "project:abc", NULL, true},
        {"project:*", "project:", NULL, true},
        {"project:*", "project", NULL, false},
        {"project:*", "projectx:1", NULL, false},
        {"*", "anything", NULL, true},
        {"pro*ject", "pro*ject", NULL, false}, /* '*' only counts at the end; '*' is no channel char */
        {"pro*ject", "proXject", NULL, false},
        {"user:{sub}", "user:u1", "u1", true},
        {"user:{sub}", "user:u2", "u1", false},
        {"user:{sub}", "user:u1x", "u1", false},
        {"user:{sub}", "user:u1", NULL, false},
        {"user:{sub}", "user:", "", false},
        {"user:{sub}:*", "user:u1:inbox", "u1", true},
        {"user:{sub}:*", "user:u2:inbox", "u1", false},
        {"{sub}.{sub}", "a.a", "a", true},
        {"{sub}.{sub}", "a.b", "a", false},
        {"user:{sub}*", "user:u1abc", "u1", true},
        {"user:{su", "user:{su", "x", false}, /* not a valid channel */
        {"", "a", NULL, false},
        {"a", "", NULL, false},
        {"a b*", "a b c", NULL, false},
    };
    for (size_t i = 0; i < sizeof pm / sizeof *pm; i++)
        T_OK(pgc_pattern_match(pm[i].pat, pm[i].ch, pm[i].sub) == pm[i].want,
             "pattern \"%s\" vs \"%s\" (sub %s) -> %s", pm[i].pat, pm[i].ch,
             pm[i].sub ? pm[i].sub : "NULL", pm[i].want ? "match" : "no match");
    T_OK(!pgc_pattern_match(NULL, "a", NULL), "NULL pattern matches nothing");
    T_OK(!pgc_pattern_match("*", NULL, NULL), "NULL channel matches nothing");

    printf("1..%d\n", t_n);
    return T_DONE();
}
