/* The SSE stream's held events (sse/stream.c): while a channel of the stream has no
 * known position yet (its SUBSCRIBED has not come), the others' events wait, at most
 * queue_events of them and queue_bytes; past that the stream ends ("queue overflow")
 * instead of growing without limit. Once every channel is positioned, the cursor goes
 * out on an id-only block first, then what was held. The stream writes to a pipe (a
 * plain-CGI request). */
#include "../../sse/stream.c"

#include <fcntl.h>
#include <unistd.h>

#include "internal.h"

static FILE *out; /* TAP lines; the stream has stdout */
static int n_checks, n_failed;
#define CHECK(cond, ...)                                                                     \
    do {                                                                                     \
        bool c_ok = (cond);                                                                  \
        n_failed += !c_ok;                                                                   \
        fprintf(out, "%s %d - ", c_ok ? "ok" : "not ok", ++n_checks);                        \
        fprintf(out, __VA_ARGS__);                                                           \
        fprintf(out, "\n");                                                                  \
    } while (0)

static pgc_app app;
static pgc_request *req; /* the current stream's */

/* A stream of channels a and b whose output goes to a pipe read back by drain(). */
static sse_stream *new_stream(int *rfd)
{
    int fds[2];
    if (pipe(fds) != 0 || fcntl(fds[0], F_SETFL, O_NONBLOCK) != 0 || fcntl(fds[1], F_SETFL, O_NONBLOCK) != 0 ||
        fcntl(fds[1], F_SETPIPE_SZ, 1 << 20) < 0)
        return NULL;
    fflush(stdout);
    dup2(fds[1], STDOUT_FILENO); /* a CGI request writes to stdout */
    close(fds[1]);
    *rfd = fds[0];
    pgc_request *r = req = calloc(1, sizeof(*r));
    sse_stream *s = calloc(1, sizeof(*s));
    r->cgi = true;
    s->app = &app;
    s->nchans = 2;
    s->chans = calloc(2, sizeof(char *));
    s->chans[0] = strdup("project:a");
    s->chans[1] = strdup("project:b");
    pgc_cursor_init(&s->cur);
    s->st = pgc_stream_new(r, &sse_cgi_ops, s);
    return s;
}

static void end(sse_stream *s)
{
    pgc_stream *st = s->st;
    sse_stream_free(s);
    pgc_stream_discard(st);
    free(req);
}

static size_t drain(int fd, char *buf, size_t cap)
{
    fflush(stdout);
    size_t n = 0;
    ssize_t m;
    while (n + 1 < cap && (m = read(fd, buf + n, cap - 1 - n)) > 0)
        n += (size_t)m;
    buf[n] = '\0';
    return n;
}

static pgc_event *ev(const char *chan, int64_t seq)
{
    return pgc_event_new_event("t1", chan, seq, "demo.tick", "{}", 2, 0);
}

int main(void)
{
    out = fdopen(dup(STDOUT_FILENO), "w");
    if (!out)
        return 1;
    app.cfg.queue_events = 8;
    app.cfg.queue_bytes = 1 << 20;
    static char buf[1 << 16];
    int rfd;

    /* 1. held up to queue_events, then the stream ends */
    sse_stream *s = new_stream(&rfd);
    int rc = take_item(s, pgc_event_new_subscribed("t1", "project:a", 0));
    int taken = 0;
    for (int i = 1; i <= 1000 && rc == 0; i++)
        if ((rc = take_item(s, ev("project:a", i))) == 0)
            taken++;
    CHECK(taken == 8, "events of a positioned channel wait while another channel has no position: %d held", taken);
    CHECK(rc != 0 && s->failed && strcmp(s->failed, "queue overflow") == 0,
          "past queue_events (8) the stream ends with a reason (%s)", s->failed ? s->failed : "none");
    CHECK(s->held.n <= 8, "what it holds stays within the bound (%zu events)", s->held.n);
    end(s);
    drain(rfd, buf, sizeof(buf));
    close(rfd);

    /* 2. held up to queue_bytes */
    app.cfg.queue_events = 100000;
    app.cfg.queue_bytes = 64 * 1024;
    s = new_stream(&rfd);
    static char payload[4096 + 1];
    memset(payload, 'x', 4096);
    payload[0] = '"';
    payload[4095] = '"';
    rc = 0;
    taken = 0;
    for (int i = 1; i <= 1000 && rc == 0; i++) {
        pgc_event *e = pgc_event_new_event("t1", "project:a", i, "demo.tick", payload, 4096, 0);
        if ((rc = take_item(s, e)) == 0)
            taken++;
    }
    CHECK(rc != 0 && taken < 16 && s->held.bytes <= 64 * 1024,
          "past queue_bytes (64 KiB of 4 KiB events) the stream ends: %d held, %zu bytes", taken, s->held.bytes);
    end(s);
    drain(rfd, buf, sizeof(buf));
    close(rfd);

    /* 3. within the bound: the cursor first (id-only), then what was held, in order */
    app.cfg.queue_events = 8;
    s = new_stream(&rfd);
    rc = take_item(s, pgc_event_new_subscribed("t1", "project:a", 4));
    for (int i = 5; i <= 7 && rc == 0; i++)
        rc = take_item(s, ev("project:a", i));
    if (rc == 0)
        rc = take_item(s, pgc_event_new_subscribed("t1", "project:b", 9));
    size_t n = drain(rfd, buf, sizeof(buf));
    const char *want = "id: project:a=4,project:b=9\n\nid: project:a=5,project:b=9\ndata: ";
    CHECK(rc == 0 && n > strlen(want) && strncmp(buf, want, strlen(want)) == 0,
          "once every channel is positioned: an id-only block, then the held events");
    CHECK(rc == 0 && strstr(buf, "id: project:a=7,project:b=9\n") && s->held.n == 0,
          "all three held events written, none left held");
    end(s);
    close(rfd);
    fclose(out);
    return n_failed ? 1 : 0;
}
