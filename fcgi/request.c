/* The request API of fcgi/request.h over libfcgi's reentrant FCGX_* calls (FastCGI) or
 * the environment and stdio (plain CGI). */
#include <errno.h>
#include <poll.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "internal.h"
#include "server.h"


const char *pgc_req_param(pgc_request *r, const char *name)
{
    if (r->cgi)
        return getenv(name);
    return FCGX_GetParam(name, r->fcgx.envp);
}

bool pgc_req_is_cgi(pgc_request *r) { return r->cgi; }
const char *pgc_req_id(pgc_request *r) { return r->id; }

static int body_read(pgc_request *r, char *buf, size_t len)
{
    if (!r->cgi)
        return FCGX_GetStr(buf, len > INT32_MAX ? INT32_MAX : (int)len, r->fcgx.in);
    for (;;) {
        ssize_t m = read(STDIN_FILENO, buf, len);
        if (m < 0 && errno == EINTR)
            continue;
        if (m > 0)
            r->consumed += (unsigned long long)m;
        return (int)m;
    }
}

int pgc_req_read_body(pgc_request *r, char **out, size_t *len, size_t max)
{
    *out = NULL;
    *len = 0;
    const char *cl = pgc_req_param(r, "CONTENT_LENGTH");
    char *end;
    unsigned long long want = cl && *cl ? strtoull(cl, &end, 10) : 0;
    if (cl && *cl && *end)
        return -1;
    if (want > max) {
        /* read and drop it (up to a bound), so the web server can deliver the 413
         * instead of failing to write the body to a process that stopped reading */
        char sink[16384];
        for (unsigned long long left = want < 64ULL * max ? want : 0; left > 0;) {
            int n = body_read(r, sink, left < sizeof(sink) ? (size_t)left : sizeof(sink));
            if (n <= 0)
                break;
            left -= (unsigned long long)n;
        }
        return -2;
    }
    char *buf = malloc((size_t)want + 1);
    if (!buf)
        return -1;
    size_t got = 0;
    while (got < want) {
        int n = body_read(r, buf + got, (size_t)(want - got));
        if (n <= 0)
            break;
        got += (size_t)n;
    }
    if (got != want) {
        free(buf);
        return -1;
    }
    buf[got] = '\0';
    *out = buf;
    *len = got;
    return 0;
}

size_t pgc_req_head_split(pgc_request *r, const char *data, size_t len)
{
    if (r->head_started)
        return 0;
    r->head_started = true;
    if (!r->head_extra[0] || len < 10 || strncmp(data, "Status: ", 8) != 0)
        return 0;
    const char *eol = memmem(data, len, "\r\n", 2);
    return eol ? (size_t)(eol + 2 - data) : 0;
}

void pgc_req_add_head(pgc_request *r, const char *lines)
{
    size_t have = strlen(r->head_extra), add = strlen(lines);
    if (have + add < sizeof(r->head_extra))
        memcpy(r->head_extra + have, lines, add + 1);
}

static int raw_write(pgc_request *r, const char *data, size_t len);

int pgc_req_write(pgc_request *r, const char *data, size_t len)
{
    size_t k = pgc_req_head_split(r, data, len);
    if (k) {
        if (raw_write(r, data, k) != 0 || raw_write(r, r->head_extra, strlen(r->head_extra)) != 0)
            return -1;
        data += k;
        len -= k;
    }
    return raw_write(r, data, len);
}

static int raw_write(pgc_request *r, const char *data, size_t len)
{
    if (r->gone)
        return -1;
    if (r->cgi) {
        if (fwrite(data, 1, len, stdout) != len)
            r->gone = true;
    } else if (len && FCGX_PutStr(data, (int)len, r->fcgx.out) != (int)len) {
        r->gone = true;
    }
    return r->gone ? -1 : 0;
}

int pgc_req_puts(pgc_request *r, const char *s) { return pgc_req_write(r, s, strlen(s)); }

int pgc_vprintf_to(int (*write_fn)(void *, const char *, size_t), void *dst, const char *fmt, va_list ap)
{
    char small[1024];
    va_list again;
    va_copy(again, ap);
    int n = vsnprintf(small, sizeof(small), fmt, ap);
    int rc = -1;
    if (n >= 0 && (size_t)n < sizeof(small)) {
        rc = write_fn(dst, small, (size_t)n);
    } else if (n >= 0) {
        char *big = malloc((size_t)n + 1);
        if (big) {
            vsnprintf(big, (size_t)n + 1, fmt, again);
            rc = write_fn(dst, big, (size_t)n);
            free(big);
        }
    }
    va_end(again);
    return rc;
}

static int req_write_fn(void *r, const char *data, size_t len) { return pgc_req_write(r, data, len); }

int pgc_req_printf(pgc_request *r, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int rc = pgc_vprintf_to(req_write_fn, r, fmt, ap);
    va_end(ap);
    return rc;
}

int pgc_req_flush(pgc_request *r)
{
    if (r->gone)
        return -1;
    if (r->cgi ? fflush(stdout) != 0 : FCGX_FFlush(r->fcgx.out) != 0)
        r->gone = true;
    return r->gone ? -1 : 0;
}

void pgc_req_drain(pgc_request *r)
{
    if (r->cgi || r->drained)
        return;
    char buf[4096];
    while (FCGX_GetStr(buf, sizeof(buf), r->fcgx.in) > 0)
        ;
    r->drained = true;
}

/* The web server has nothing more to send once the request is read: readable means it
 * closed the connection (the client left) or aborted the request. */
bool pgc_req_peer_gone(int fd, short revents, bool cgi)
{
    if (revents & (POLLHUP | POLLERR | POLLRDHUP))
        return true;
    if (!cgi && (revents & POLLIN)) {
        char c;
        ssize_t n = recv(fd, &c, 1, MSG_PEEK | MSG_DONTWAIT);
        return n >= 0 || (errno != EAGAIN && errno != EWOULDBLOCK);
    }
    return false;
}

enum pgc_wait_result pgc_req_wait(pgc_request *r, int wake_fd, int timeout_ms)
{
    if (r->gone)
        return PGC_WAIT_GONE;
    pgc_req_drain(r);
    if (pgc_fcgi_shutting_down())
        return PGC_WAIT_SHUTDOWN;
    /* CGI: stdout is a pipe to the web server; POLLERR/POLLHUP when it is closed */
    int conn = r->cgi ? STDOUT_FILENO : r->fcgx.ipcFd;
    struct pollfd fds[3] = {{conn, (short)(r->cgi ? 0 : POLLIN | POLLRDHUP), 0},
                            {wake_fd, POLLIN, 0},
                            {pgc_fcgi_shutdown_fd(), POLLIN, 0}};
    int n = poll(fds, 3, timeout_ms);
    if (n < 0)
        return errno == EINTR ? PGC_WAIT_TIMEOUT : PGC_WAIT_GONE;
    if (fds[2].revents & POLLIN)
        return PGC_WAIT_SHUTDOWN;
    if (pgc_req_peer_gone(conn, fds[0].revents, r->cgi)) {
        r->gone = true;
        return PGC_WAIT_GONE;
    }
    if (wake_fd >= 0 && (fds[1].revents & POLLIN)) {
        uint64_t v;
        ssize_t m = read(wake_fd, &v, sizeof(v));
        (void)m; /* non-blocking counter: reading resets it, EAGAIN means already reset */
        return PGC_WAIT_WOKEN;
    }
    return PGC_WAIT_TIMEOUT;
}

void pgc_req_drain_cgi_body(pgc_request *r)
{
    /* a process that exits with unread input makes the web server's socket reset, and
     * the answer already written is lost with it */
    const char *cl = getenv("CONTENT_LENGTH");
    unsigned long long want = cl ? strtoull(cl, NULL, 10) : 0;
    char sink[16384];
    while (r->consumed < want && want - r->consumed < (64ULL << 20)) {
        unsigned long long left = want - r->consumed;
        if (body_read(r, sink, left < sizeof(sink) ? (size_t)left : sizeof(sink)) <= 0)
            break;
    }
}
