/* The SQL migrations compiled into pgcast-migrate (generated from sql/). */
#ifndef PGCAST_MIGRATIONS_H
#define PGCAST_MIGRATIONS_H

struct pgc_migration {
    const char *name; /* file name, e.g. "001_schema.sql"; sorted */
    const char *sql;  /* the file's text */
};

extern const struct pgc_migration pgc_migrations[];
extern const int pgc_migrations_count;

#endif
