/* Logging to stderr: each line is formatted whole, then written with one write(2), so
 * lines of concurrent threads and processes never interleave. */
#include "log.h"

#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static const char *log_program = "pgcast";
static _Atomic int log_level = PGC_LOG_INFO;
static const char *const level_names[] = {"error", "warn", "info", "debug"};

void pgc_log_init(const char *program, enum pgc_log_level level)
{
    if (program)
        log_program = program;
    atomic_store(&log_level, (int)level);
}

void pgc_log_set_level(enum pgc_log_level level) { atomic_store(&log_level, (int)level); }

enum pgc_log_level pgc_log_get_level(void) { return (enum pgc_log_level)atomic_load(&log_level); }

int pgc_log_level_parse(const char *name)
{
    for (int i = 0; i < 4; i++)
        if (name && strcmp(name, level_names[i]) == 0)
            return i;
    if (name && strcmp(name, "warning") == 0)
        return PGC_LOG_WARN;
    return -1;
}

void pgc_log(enum pgc_log_level level, const char *conn_id, const char *fmt, ...)
{
    if ((int)level > atomic_load(&log_level))
        return;
    char line[2048];
    struct timespec ts;
    struct tm tm;
    if (clock_gettime(CLOCK_REALTIME, &ts) != 0 || !gmtime_r(&ts.tv_sec, &tm)) {
        ts.tv_sec = 0;
        ts.tv_nsec = 0;
        memset(&tm, 0, sizeof(tm));
    }
    int n = snprintf(line, sizeof(line), "%04d-%02d-%02dT%02d:%02d:%02d.%03ldZ %s[%d] %s%s%s: ",
                     tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec,
                     ts.tv_nsec / 1000000, log_program, (int)getpid(), level_names[level],
                     conn_id ? " conn=" : "", conn_id ? conn_id : "");
    if (n < 0)
        return;
    if ((size_t)n >= sizeof(line))
        n = sizeof(line) - 1;
    va_list ap;
    va_start(ap, fmt);
    int m = vsnprintf(line + n, sizeof(line) - (size_t)n, fmt, ap);
    va_end(ap);
    size_t len = (size_t)n + (m < 0 ? 0 : (size_t)m);
    if (len > sizeof(line) - 2)
        len = sizeof(line) - 2; /* truncated, still one line */
    /* one event, one line: newlines inside a message become spaces */
    for (size_t i = (size_t)n; i < len; i++)
        if (line[i] == '\n' || line[i] == '\r')
            line[i] = ' ';
    line[len++] = '\n';
    ssize_t w = write(STDERR_FILENO, line, len);
    (void)w; /* nowhere left to report a failed log write */
}
