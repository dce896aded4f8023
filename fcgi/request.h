/* One HTTP request as the FastCGI runtime hands it to a handler, the same in FastCGI
 * and in plain-CGI mode: CGI parameters, the body, a streaming response, and a wait that
 * notices a client that went away. */
#ifndef PGCAST_FCGI_REQUEST_H
#define PGCAST_FCGI_REQUEST_H

#include <stdbool.h>
#include <stddef.h>

typedef struct pgc_request pgc_request;

/* A CGI parameter: REQUEST_METHOD, QUERY_STRING, PATH_INFO, HTTP_AUTHORIZATION, ... */
const char *pgc_req_param(pgc_request *r, const char *name);
bool pgc_req_is_cgi(pgc_request *r);
/* A short id for logs and connection stats ("c1a2b3..."). */
const char *pgc_req_id(pgc_request *r);

/* Reads the whole body (CONTENT_LENGTH). 0 with *out malloc'd (NUL-terminated),
 * -2 when it is larger than max (nothing kept), -1 on a read error. */
int pgc_req_read_body(pgc_request *r, char **out, size_t *len, size_t max);

/* Writes response bytes (head first: "Status: 200\r\nContent-Type: ...\r\n\r\n").
 * -1 once the client is gone; everything after that is dropped. */
int pgc_req_write(pgc_request *r, const char *data, size_t len);
int pgc_req_puts(pgc_request *r, const char *s);
int pgc_req_printf(pgc_request *r, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Pushes what is buffered to the web server now. -1 once the client is gone. */
int pgc_req_flush(pgc_request *r);
/* Header lines ("Name: value\r\n"...) the response's head gets after its status line,
 * whoever writes it (handler, stream, error answer). Call before anything is written. */
void pgc_req_add_head(pgc_request *r, const char *lines);

enum pgc_wait_result { PGC_WAIT_TIMEOUT = 0, PGC_WAIT_WOKEN, PGC_WAIT_GONE, PGC_WAIT_SHUTDOWN };
/* Sleeps up to timeout_ms until wake_fd (an eventfd, may be -1) is readable — it is
 * drained — or the client goes away, or the process is shutting down. */
enum pgc_wait_result pgc_req_wait(pgc_request *r, int wake_fd, int timeout_ms);

/* ---- responses (fcgi/http.c) ---- */

/* The head of a JSON response: status, reason, Content-Length, extra header lines. */
#define PGC_JSON_HEAD \
    "Status: %d %s\r\nContent-Type: application/json\r\nCache-Control: no-store\r\nContent-Length: %zu\r\n%s\r\n"

/* REQUEST_METHOD is HEAD: answers carry the head a GET would get, no body. */
bool pgc_req_is_head(pgc_request *r);

/* A whole JSON response (the head only for HEAD). extra_headers: "" or lines each ending in "\r\n". */
void pgc_req_send_json(pgc_request *r, int status, const char *json, size_t len, const char *extra_headers);
/* {"error":{"code","message"}} with a fitting status (SPEC §4). */
void pgc_req_send_error(pgc_request *r, int status, const char *code, const char *message, const char *extra_headers);
/* The reason phrase of a status code. */
const char *pgc_http_reason(int status);

/* ---- query strings (fcgi/http.c) ---- */

/* The values of every `name=` in the query string, URL-decoded, in order; malloc'd
 * (free with pgc_query_free). Returns how many, or -1 on malformed %-escapes. */
int pgc_query_all(const char *query, const char *name, char ***values);
/* The first value, malloc'd, or NULL. */
char *pgc_query_get(const char *query, const char *name);
void pgc_query_free(char **values, int n);
/* %XX and '+' decoding in place; -1 on a malformed escape or an embedded NUL. */
int pgc_url_decode(char *s);

#endif
