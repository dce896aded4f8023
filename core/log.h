/* Logging: one line per event on stderr (the web server's error log), with a level,
 * the program, the connection id where there is one. Thread-safe. */
#ifndef PGCAST_LOG_H
#define PGCAST_LOG_H

enum pgc_log_level { PGC_LOG_ERROR = 0, PGC_LOG_WARN, PGC_LOG_INFO, PGC_LOG_DEBUG };

/* The program name printed on every line, e.g. "pgcast-sse". */
void pgc_log_init(const char *program, enum pgc_log_level level);
void pgc_log_set_level(enum pgc_log_level level);
enum pgc_log_level pgc_log_get_level(void);
/* "error" | "warn" | "info" | "debug" -> level; -1 if unknown. */
int pgc_log_level_parse(const char *name);

/* conn_id may be NULL. */
void pgc_log(enum pgc_log_level level, const char *conn_id, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

#define PGC_ERROR(...) pgc_log(PGC_LOG_ERROR, NULL, __VA_ARGS__)
#define PGC_WARN(...)  pgc_log(PGC_LOG_WARN, NULL, __VA_ARGS__)
#define PGC_INFO(...)  pgc_log(PGC_LOG_INFO, NULL, __VA_ARGS__)
#define PGC_DEBUG(...)                                                                       \
    do {                                                                                     \
        if (pgc_log_get_level() >= PGC_LOG_DEBUG)                                            \
            pgc_log(PGC_LOG_DEBUG, NULL, __VA_ARGS__);                                       \
    } while (0)

#endif
