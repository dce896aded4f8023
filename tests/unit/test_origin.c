/* Origin lists (allowed_origins) and address lists (metrics_allow): what is an origin,
 * "self", default ports, case, and what never matches. */
#include "origin.h"
#include "t.h"

int main(void)
{
    char err[256];
    T_INT(pgc_origin_list_check("self", err, sizeof err), 0, "self is a list");
    T_INT(pgc_origin_list_check(" self , https://a.example, http://127.0.0.1:8080,https://[::1]:9443 ", err, sizeof err), 0,
          "origins with spaces, ports and IPv6 literals");
    T_INT(pgc_origin_list_check("", err, sizeof err), 0, "an empty list (nobody) is a list");
    static const char *const bad[] = {"*", "https://a.example/", "https://a.example/path", "ftp://a.example",
                                      "a.example", "https://", "https://a.example:0", "https://a.example:65536",
                                      "https://a.example:x", "null", "https://a b", "https://a.example\r\nX: y"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        T_INT(pgc_origin_list_check(bad[i], err, sizeof err), -1, "refused in allowed_origins: '%.*s'", (int)strcspn(bad[i], "\r\n"), bad[i]);

    const char *list = "self, https://app.example, http://127.0.0.1:8080";
    T_OK(pgc_origin_allowed(list, "https://app.example", "https", "www.example"), "a listed origin");
    T_OK(pgc_origin_allowed(list, "HTTPS://App.Example", "https", "www.example"), "case does not matter");
    T_OK(pgc_origin_allowed(list, "https://app.example:443", "https", "www.example"), "the default port is no port");
    T_OK(!pgc_origin_allowed(list, "http://app.example", "https", "www.example"), "another scheme is another origin");
    T_OK(!pgc_origin_allowed(list, "https://app.example:8443", "https", "www.example"), "another port is another origin");
    T_OK(!pgc_origin_allowed(list, "https://app.example.evil.example", "https", "www.example"), "no suffix or prefix match");
    T_OK(!pgc_origin_allowed(list, "https://evil.example", "https", "www.example"), "an unlisted origin");
    T_OK(!pgc_origin_allowed(list, "null", "https", "www.example"), "null never matches");
    T_OK(!pgc_origin_allowed(list, "", "https", "www.example"), "an empty Origin never matches");
    T_OK(!pgc_origin_allowed(list, NULL, "https", "www.example"), "no Origin never matches");
    T_OK(!pgc_origin_allowed(list, "https://app.example/", "https", "www.example"), "an Origin with a path never matches");
    T_OK(pgc_origin_allowed(list, "http://127.0.0.1:8080", "http", "x"), "an IP origin with its port");
    T_OK(pgc_origin_allowed(list, "https://www.example", "https", "www.example"), "self: the request's scheme and Host");
    T_OK(pgc_origin_allowed(list, "https://www.example", "https", "www.example:443"), "self: Host with the default port");
    T_OK(!pgc_origin_allowed(list, "http://www.example", "https", "www.example"), "self: not with another scheme");
    T_OK(!pgc_origin_allowed(list, "https://www.example:8443", "https", "www.example"), "self: not with another port");
    T_OK(pgc_origin_allowed(list, "http://www.example:8080", NULL, "www.example:8080"), "self without a known scheme: http");
    T_OK(pgc_origin_allowed(list, "https://www.example", NULL, "www.example"), "self without a known scheme: https");
    T_OK(!pgc_origin_allowed(list, "https://www.example", "https", NULL), "self without a Host matches nothing");
    T_OK(!pgc_origin_allowed("https://app.example", "https://www.example", "https", "www.example"),
         "without self in the list, the server's own origin is not allowed");
    T_OK(!pgc_origin_allowed("", "https://www.example", "https", "www.example"), "an empty list allows nobody");

    T_INT(pgc_addr_list_check("127.0.0.1,::1", err, sizeof err), 0, "metrics_allow default");
    T_INT(pgc_addr_list_check("", err, sizeof err), 0, "an empty address list");
    T_INT(pgc_addr_list_check("localhost", err, sizeof err), -1, "names are refused: %s", err);
    T_INT(pgc_addr_list_check("10.0.0.0/8", err, sizeof err), -1, "ranges are refused");
    T_OK(pgc_addr_allowed("127.0.0.1,::1", "127.0.0.1"), "loopback v4");
    T_OK(pgc_addr_allowed("127.0.0.1,::1", "::1"), "loopback v6");
    T_OK(pgc_addr_allowed("127.0.0.1", "::ffff:127.0.0.1"), "an IPv4-mapped address is its IPv4 address");
    T_OK(!pgc_addr_allowed("127.0.0.1,::1", "127.0.0.2"), "another address");
    T_OK(!pgc_addr_allowed("", "127.0.0.1"), "nobody");
    T_OK(!pgc_addr_allowed("127.0.0.1", NULL), "no address");
    return T_DONE();
}
