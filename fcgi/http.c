/* HTTP helpers of the handlers: JSON responses and errors, query strings. */
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "envelope.h"
#include "request.h"
#include "stream.h"

const char *pgc_http_reason(int status)
{
    switch (status) {
    case 200: return "OK";
    case 201: return "Created";
    case 204: return "No Content";
    case 304: return "Not Modified";
    case 400: return "Bad Request";
    case 401: return "Unauthorized";
    case 403: return "Forbidden";
    case 404: return "Not Found";
    case 405: return "Method Not Allowed";
    case 413: return "Payload Too Large";
    case 415: return "Unsupported Media Type";
    case 429: return "Too Many Requests";
    case 500: return "Internal Server Error";
    case 503: return "Service Unavailable";
    }
    return "Error";
}

#define JSON_HEAD PGC_JSON_HEAD

bool pgc_req_is_head(pgc_request *r)
{
    const char *m = pgc_req_param(r, "REQUEST_METHOD");
    return m && strcmp(m, "HEAD") == 0;
}

/* A HEAD request gets the head a GET would get (Content-Length included), no body. */
void pgc_req_send_json(pgc_request *r, int status, const char *json, size_t len, const char *extra_headers)
{
    pgc_req_printf(r, JSON_HEAD, status, pgc_http_reason(status), len, extra_headers ? extra_headers : "");
    if (!pgc_req_is_head(r))
        pgc_req_write(r, json, len);
    pgc_req_flush(r);
}

int pgc_stream_send_json(pgc_stream *st, int status, const char *json, size_t len, const char *extra_headers)
{
    int rc = pgc_stream_printf(st, JSON_HEAD, status, pgc_http_reason(status), len, extra_headers ? extra_headers : "");
    return rc == 0 ? pgc_stream_write(st, json, len) : rc;
}

void pgc_req_send_error(pgc_request *r, int status, const char *code, const char *message, const char *extra_headers)
{
    size_t len = 0;
    char *body = pgc_envelope_http_error(code, message, &len);
    if (!body) {
        static const char oom[] = "{\"error\":{\"code\":\"internal\",\"message\":\"out of memory\"}}";
        pgc_req_send_json(r, 500, oom, sizeof(oom) - 1, "");
        return;
    }
    pgc_req_send_json(r, status, body, len, extra_headers);
    free(body);
}

static int hexval(int c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    c = tolower(c);
    return c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
}

int pgc_url_decode(char *s)
{
    char *o = s;
    for (char *p = s; *p; p++) {
        if (*p == '+') {
            *o++ = ' ';
        } else if (*p == '%') {
            int hi = p[1] ? hexval((unsigned char)p[1]) : -1, lo = hi >= 0 && p[2] ? hexval((unsigned char)p[2]) : -1;
            if (hi < 0 || lo < 0 || (hi == 0 && lo == 0))
                return -1;
            *o++ = (char)(hi * 16 + lo);
            p += 2;
        } else {
            *o++ = *p;
        }
    }
    *o = '\0';
    return 0;
}

void pgc_query_free(char **values, int n)
{
    for (int i = 0; i < n; i++)
        free(values[i]);
    free(values);
}

int pgc_query_all(const char *query, const char *name, char ***values)
{
    *values = NULL;
    int n = 0;
    size_t nl = strlen(name);
    for (const char *p = query ? query : ""; *p;) {
        size_t len = strcspn(p, "&");
        const char *eq = memchr(p, '=', len);
        size_t klen = eq ? (size_t)(eq - p) : len;
        if (klen == nl && strncmp(p, name, nl) == 0) {
            char *v = eq ? strndup(eq + 1, len - klen - 1) : strdup("");
            char **nv = v ? realloc(*values, (size_t)(n + 1) * sizeof(char *)) : NULL;
            if (!nv || pgc_url_decode(v) != 0) {
                free(v);
                if (nv)
                    *values = nv;
                pgc_query_free(*values, n);
                *values = NULL;
                return -1;
            }
            *values = nv;
            (*values)[n++] = v;
        }
        p += len;
        if (*p == '&')
            p++;
    }
    return n;
}

char *pgc_query_get(const char *query, const char *name)
{
    char **v;
    int n = pgc_query_all(query, name, &v);
    if (n <= 0)
        return NULL;
    char *first = v[0];
    v[0] = NULL;
    pgc_query_free(v, n);
    return first;
}
