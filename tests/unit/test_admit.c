/* The site's share for long-lived requests (fcgi/admit.c): slots are counted across
 * processes, given back when a request ends and when a process dies (kill -9), and the
 * bound is the smaller of the web server's parameter and site_max_streams (automatic:
 * 100 under Apache, none elsewhere). */
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "admit.h"
#include "internal.h"
#include "t.h"

static pgc_request *req(void)
{
    pgc_request *r = calloc(1, sizeof(*r));
    if (!r)
        exit(2);
    r->cgi = true; /* parameters from the environment */
    return r;
}

/* A child that takes one slot, says so on the pipe, then waits to be killed. */
static pid_t holder(const pgc_config *cfg, int *took)
{
    int p[2];
    if (pipe(p) != 0)
        exit(2);
    pid_t pid = fork();
    if (pid == 0) {
        close(p[0]);
        char c = pgc_admit_take(cfg, req()) ? 'y' : 'n';
        if (write(p[1], &c, 1) != 1)
            _exit(1);
        pause();
        _exit(0);
    }
    close(p[1]);
    char c = 0;
    *took = read(p[0], &c, 1) == 1 && c == 'y';
    close(p[0]);
    return pid;
}

int main(void)
{
    char path[600];
    const char *work = getenv("PGCAST_TEST_WORK");
    snprintf(path, sizeof path, "%s/admit-%d.streams", work && *work ? work : "/tmp", (int)getpid());
    pgc_config cfg;
    memset(&cfg, 0, sizeof cfg);
    cfg.site_streams_file = path;
    cfg.site_busy_retry_s = 10;
    unsetenv("PGCAST_SITE_MAX_STREAMS");

    /* the bound */
    cfg.site_max_streams = -1;
    setenv("SERVER_SOFTWARE", "Apache/2.4.71 (Debian)", 1);
    pgc_request *r = req();
    T_INT(pgc_admit_bound(&cfg, r), 100, "automatic under Apache: 100");
    setenv("SERVER_SOFTWARE", "lighttpd/1.4.79", 1);
    T_INT(pgc_admit_bound(&cfg, r), 0, "automatic under lighttpd: none");
    setenv("PGCAST_SITE_MAX_STREAMS", "640", 1);
    T_INT(pgc_admit_bound(&cfg, r), 640, "the web server's parameter");
    cfg.site_max_streams = 48;
    T_INT(pgc_admit_bound(&cfg, r), 48, "the smaller of parameter and site_max_streams");
    cfg.site_max_streams = 0;
    T_INT(pgc_admit_bound(&cfg, r), 640, "site_max_streams 0 (none) leaves the parameter's");
    setenv("PGCAST_SITE_MAX_STREAMS", "junk", 1);
    T_INT(pgc_admit_bound(&cfg, r), 0, "a malformed parameter is ignored");
    unsetenv("PGCAST_SITE_MAX_STREAMS");
    free(r);

    /* slots in this process */
    cfg.site_max_streams = 3;
    pgc_request *a = req(), *b = req(), *c = req(), *d = req();
    T_OK(pgc_admit_take(&cfg, a) && pgc_admit_take(&cfg, b) && pgc_admit_take(&cfg, c), "three requests get in");
    T_OK(!pgc_admit_take(&cfg, d), "the fourth is refused");
    pgc_admit_release(b);
    T_OK(pgc_admit_take(&cfg, d), "once one ends, another gets in");
    int took;
    pid_t child = holder(&cfg, &took);
    T_OK(!took, "another process is refused while this one holds all three");
    kill(child, SIGKILL);
    waitpid(child, NULL, 0);

    /* slots across processes, and a process killed with -9 */
    pgc_admit_release(a);
    pgc_admit_release(c);
    pgc_admit_release(d);
    pid_t kids[3];
    int all = 1;
    for (int i = 0; i < 3; i++) {
        kids[i] = holder(&cfg, &took);
        all = all && took;
    }
    T_OK(all, "three other processes take the three slots");
    T_OK(!pgc_admit_take(&cfg, a), "this process is refused then");
    kill(kids[1], SIGKILL);
    waitpid(kids[1], NULL, 0);
    T_OK(pgc_admit_take(&cfg, a), "a holder killed with -9 gave its slot back");
    T_OK(!pgc_admit_take(&cfg, b), "and only that one");
    kill(kids[0], SIGKILL);
    kill(kids[2], SIGKILL);
    waitpid(kids[0], NULL, 0);
    waitpid(kids[2], NULL, 0);
    pgc_admit_release(a);

    int ms = pgc_admit_retry_ms(&cfg);
    T_OK(ms >= 5000 && ms <= 15000, "the retry hint is site_busy_retry_s +-50%% (%d ms)", ms);
    free(a);
    free(b);
    free(c);
    free(d);
    unlink(path);
    return T_DONE();
}
