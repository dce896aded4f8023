/* Channel grammar, channel types and token patterns. */
#include <stdlib.h>

#include "channel.h"
#include "t.h"

int main(void)
{
    const char *good[] = {"project:abc", "query.42", "user:u1@example.com", "a", "entity:Task:7",
                          "run:x/y-z_1", "system"};
    for (size_t i = 0; i < sizeof(good) / sizeof(*good); i++)
        T_OK(pgc_channel_valid(good[i]), "valid: %s", good[i]);
    const char *bad[] = {"", "a b", "semi;colon", "quote'", "new\nline", "tab\t", "ünï", "a*", "a,b", "a=b"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(*bad); i++)
        T_OK(!pgc_channel_valid(bad[i]), "invalid: '%s'", bad[i]);
    T_OK(!pgc_channel_valid(NULL), "NULL is invalid");

    char name[202];
    memset(name, 'a', 200);
    name[200] = '\0';
    T_OK(pgc_channel_valid(name), "200 bytes is valid");
    name[200] = 'a';
    name[201] = '\0';
    T_OK(!pgc_channel_valid(name), "201 bytes is invalid");

    char type[64];
    pgc_channel_type("project:abc", type, sizeof(type));
    T_STR(type, "project", "type of project:abc");
    pgc_channel_type("query.42", type, sizeof(type));
    T_STR(type, "query", "type of query.42");
    pgc_channel_type("system", type, sizeof(type));
    T_STR(type, "system", "type of system");
    pgc_channel_type("entity:Task:7", type, sizeof(type));
    T_STR(type, "entity", "type of entity:Task:7");
    char small[4];
    T_INT(pgc_channel_type("organization:1", small, sizeof(small)), 12, "type length reported when truncated");
    T_STR(small, "org", "type truncated to the buffer");

    T_OK(pgc_pattern_match("project:abc", "project:abc", NULL), "exact pattern");
    T_OK(!pgc_pattern_match("project:abc", "project:abcd", NULL), "exact pattern is not a prefix");
    T_OK(pgc_pattern_match("project:*", "project:abc", NULL), "prefix pattern");
    T_OK(!pgc_pattern_match("project:*", "projects:abc", NULL), "prefix pattern is literal");
    T_OK(pgc_pattern_match("*", "anything", NULL), "* matches everything");
    T_OK(pgc_pattern_match("user:{sub}", "user:u1", "u1"), "{sub} expands");
    T_OK(!pgc_pattern_match("user:{sub}", "user:u2", "u1"), "{sub} is the token's sub only");
    T_OK(!pgc_pattern_match("user:{sub}", "user:u1x", "u1"), "{sub} exact stays exact");
    T_OK(pgc_pattern_match("user:{sub}:*", "user:u1:inbox", "u1"), "{sub} inside a prefix pattern");
    T_OK(!pgc_pattern_match("user:{sub}", "user:", NULL), "{sub} without a sub matches nothing");
    T_OK(!pgc_pattern_match("user:{sub}*", "user:", ""), "{sub} with an empty sub matches nothing");
    T_OK(!pgc_pattern_match("", "a", NULL), "empty pattern matches nothing");
    return T_DONE();
}
