/*
 * pgcast-migrate: applies pgcast's numbered SQL migrations, each once, in order.
 *
 * Each migration runs in its own transaction together with the row that records it in
 * realtime.schema_migrations, so a failure leaves the database as it was before that
 * file. An advisory lock keeps two migrators (two hosts starting at once) from racing.
 * The migrations are compiled in (see scripts/embed-sql.sh); --dir applies the files of
 * a folder instead.
 *
 * The database: PGCAST_DATABASE_URL, else the standard libpq variables (PGHOST, ...).
 */
#include <dirent.h>
#include <errno.h>
#include <getopt.h>
#include <libpq-fe.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "migrations.h"

struct mig {
    char *name;
    char *sql;
};

static void usage(FILE *out)
{
    fprintf(out,
            "usage: pgcast-migrate [--dir DIR] [--status] [--quiet]\n"
            "                      [--runtime-role NAME] [--publisher-role NAME [--tenants T1,T2]]...\n"
            "\n"
            "Applies pgcast's SQL migrations to the database named by PGCAST_DATABASE_URL\n"
            "(or by the standard libpq variables PGHOST, PGPORT, PGDATABASE, PGUSER).\n"
            "Each migration is applied once and recorded in realtime.schema_migrations;\n"
            "running it again changes nothing.\n"
            "\n"
            "  --dir DIR   apply DIR/NNN_*.sql instead of the migrations built in\n"
            "  --status    list the migrations and whether each is applied; change nothing\n"
            "  --quiet     print only errors\n"
            "\n"
            "Database roles (docs/deploy.md): each named role is created (NOLOGIN) if missing,\n"
            "recorded, and granted what its kind needs; grant it to your login roles.\n"
            "  --runtime-role NAME    what the handlers and the sidecar use, nothing more\n"
            "  --publisher-role NAME  EXECUTE on realtime.publish only\n"
            "  --tenants T1,T2        the publisher role before it may publish to these tenants only\n"
            "Grants are renewed after every run, so new functions are covered.\n");
}

static char *read_file(const char *path)
{
    FILE *f = fopen(path, "rb");
    if (!f) {
        fprintf(stderr, "pgcast-migrate: cannot open %s: %s\n", path, strerror(errno));
        return NULL;
    }
    size_t cap = 8192, len = 0;
    char *buf = malloc(cap);
    if (!buf) {
        fclose(f);
        return NULL;
    }
    size_t n;
    while ((n = fread(buf + len, 1, cap - len - 1, f)) > 0) {
        len += n;
        if (cap - len - 1 == 0) {
            char *nb = realloc(buf, cap * 2);
            if (!nb) {
                free(buf);
                fclose(f);
                return NULL;
            }
            buf = nb;
            cap *= 2;
        }
    }
    int err = ferror(f);
    if (fclose(f) != 0 || err) {
        fprintf(stderr, "pgcast-migrate: cannot read %s\n", path);
        free(buf);
        return NULL;
    }
    buf[len] = '\0';
    return buf;
}

static int name_is_migration(const char *name)
{
    size_t len = strlen(name);
    return len > 4 && name[0] >= '0' && name[0] <= '9' && strcmp(name + len - 4, ".sql") == 0;
}

static int cmp_mig(const void *a, const void *b)
{
    return strcmp(((const struct mig *)a)->name, ((const struct mig *)b)->name);
}

static int load_dir(const char *dir, struct mig **out, int *count)
{
    DIR *d = opendir(dir);
    if (!d) {
        fprintf(stderr, "pgcast-migrate: cannot open folder %s: %s\n", dir, strerror(errno));
        return -1;
    }
    struct mig *v = NULL;
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        if (!name_is_migration(e->d_name))
            continue;
        struct mig *nv = realloc(v, sizeof(*v) * (size_t)(n + 1));
        if (!nv)
            goto fail;
        v = nv;
        char path[4096];
        if (snprintf(path, sizeof(path), "%s/%s", dir, e->d_name) >= (int)sizeof(path))
            goto fail;
        v[n].name = strdup(e->d_name);
        v[n].sql = read_file(path);
        if (!v[n].name || !v[n].sql)
            goto fail;
        n++;
    }
    closedir(d);
    qsort(v, (size_t)n, sizeof(*v), cmp_mig);
    *out = v;
    *count = n;
    return 0;
fail:
    closedir(d);
    fprintf(stderr, "pgcast-migrate: cannot load migrations from %s\n", dir);
    return -1;
}

static int load_builtin(struct mig **out, int *count)
{
    struct mig *v = calloc((size_t)pgc_migrations_count + 1, sizeof(*v));
    if (!v)
        return -1;
    for (int i = 0; i < pgc_migrations_count; i++) {
        v[i].name = strdup(pgc_migrations[i].name);
        v[i].sql = strdup(pgc_migrations[i].sql);
        if (!v[i].name || !v[i].sql)
            return -1;
    }
    *out = v;
    *count = pgc_migrations_count;
    return 0;
}

/* sha256 of the text, hex: detects a migration edited after it was applied. */
static int checksum(const char *text, char hex[65])
{
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int mdlen = 0;
    if (EVP_Digest(text, strlen(text), md, &mdlen, EVP_sha256(), NULL) != 1 || mdlen != 32)
        return -1;
    for (unsigned i = 0; i < mdlen; i++)
        snprintf(hex + 2 * i, 3, "%02x", md[i]);
    return 0;
}

static int exec_ok(PGconn *db, const char *sql, const char *what)
{
    PGresult *r = PQexec(db, sql);
    ExecStatusType st = PQresultStatus(r);
    if (st != PGRES_COMMAND_OK && st != PGRES_TUPLES_OK) {
        fprintf(stderr, "pgcast-migrate: %s failed: %s", what, PQresultErrorMessage(r));
        PQclear(r);
        return -1;
    }
    PQclear(r);
    return 0;
}

/* 1 if applied (and its recorded checksum in *recorded), 0 if not, -1 on error. */
static int is_applied(PGconn *db, const char *name, char recorded[65])
{
    const char *params[1] = {name};
    PGresult *r = PQexecParams(db, "SELECT checksum FROM realtime.schema_migrations WHERE name = $1",
                               1, NULL, params, NULL, NULL, 0);
    if (PQresultStatus(r) != PGRES_TUPLES_OK) {
        fprintf(stderr, "pgcast-migrate: reading realtime.schema_migrations failed: %s",
                PQresultErrorMessage(r));
        PQclear(r);
        return -1;
    }
    int found = PQntuples(r) > 0;
    if (found)
        snprintf(recorded, 65, "%s", PQgetvalue(r, 0, 0));
    PQclear(r);
    return found;
}

struct role_req {
    const char *name, *kind, *tenants; /* tenants: "a,b" or NULL (any) */
};

/* Creates (NOLOGIN) and records each requested role, then renews every recorded role's
 * grants (realtime.apply_grants, migration 010). */
static int apply_roles(PGconn *db, const struct role_req *roles, int nroles, int quiet)
{
    PGresult *r = PQexec(db, "SELECT to_regclass('realtime.realtime_roles') IS NOT NULL");
    int have = PQresultStatus(r) == PGRES_TUPLES_OK && strcmp(PQgetvalue(r, 0, 0), "t") == 0;
    PQclear(r);
    if (!have)
        return nroles ? (fprintf(stderr, "pgcast-migrate: roles need migration 010 applied\n"), -1) : 0;
    for (int i = 0; i < nroles; i++) {
        const char *p[3] = {roles[i].name, roles[i].kind, roles[i].tenants};
        r = PQexecParams(db, "SELECT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = $1)", 1, NULL, p, NULL, NULL, 0);
        if (PQresultStatus(r) != PGRES_TUPLES_OK) {
            fprintf(stderr, "pgcast-migrate: looking up role %s failed: %s", roles[i].name, PQresultErrorMessage(r));
            PQclear(r);
            return -1;
        }
        int exists = strcmp(PQgetvalue(r, 0, 0), "t") == 0;
        PQclear(r);
        if (!exists) {
            char *ident = PQescapeIdentifier(db, roles[i].name, strlen(roles[i].name));
            char sql[512];
            if (!ident)
                return -1;
            snprintf(sql, sizeof(sql), "CREATE ROLE %s NOLOGIN", ident);
            PQfreemem(ident);
            if (exec_ok(db, sql, "creating a role") != 0)
                return -1;
            if (!quiet)
                printf("pgcast-migrate: created role %s (NOLOGIN)\n", roles[i].name);
        }
        r = PQexecParams(db,
                         "INSERT INTO realtime.realtime_roles (role_name, kind, tenants) "
                         "VALUES ($1, $2, CASE WHEN $3::text IS NULL THEN NULL ELSE string_to_array($3, ',') END) "
                         "ON CONFLICT (role_name) DO UPDATE SET kind = excluded.kind, tenants = excluded.tenants",
                         3, NULL, p, NULL, NULL, 0);
        if (PQresultStatus(r) != PGRES_COMMAND_OK) {
            fprintf(stderr, "pgcast-migrate: recording role %s failed: %s", roles[i].name, PQresultErrorMessage(r));
            PQclear(r);
            return -1;
        }
        PQclear(r);
        if (!quiet)
            printf("pgcast-migrate: %s role %s%s%s\n", roles[i].kind, roles[i].name,
                   roles[i].tenants ? ", tenants " : "", roles[i].tenants ? roles[i].tenants : "");
    }
    return exec_ok(db, "SELECT realtime.apply_grants()", "granting the recorded roles");
}

static int apply_one(PGconn *db, const struct mig *m, const char *sum)
{
    if (exec_ok(db, "BEGIN", "BEGIN") != 0)
        return -1;
    PGresult *r = PQexec(db, m->sql);
    ExecStatusType st = PQresultStatus(r);
    if (st != PGRES_COMMAND_OK && st != PGRES_TUPLES_OK) {
        fprintf(stderr, "pgcast-migrate: %s failed, nothing of it was applied:\n%s", m->name,
                PQresultErrorMessage(r));
        PQclear(r);
        (void)exec_ok(db, "ROLLBACK", "ROLLBACK");
        return -1;
    }
    PQclear(r);
    const char *params[2] = {m->name, sum};
    r = PQexecParams(db, "INSERT INTO realtime.schema_migrations (name, checksum) VALUES ($1, $2)", 2,
                     NULL, params, NULL, NULL, 0);
    if (PQresultStatus(r) != PGRES_COMMAND_OK) {
        fprintf(stderr, "pgcast-migrate: recording %s failed: %s", m->name, PQresultErrorMessage(r));
        PQclear(r);
        (void)exec_ok(db, "ROLLBACK", "ROLLBACK");
        return -1;
    }
    PQclear(r);
    return exec_ok(db, "COMMIT", "COMMIT");
}

int main(int argc, char **argv)
{
    const char *dir = NULL;
    int status_only = 0, quiet = 0;
    struct role_req roles[64];
    int nroles = 0;
    static const struct option opts[] = {{"dir", required_argument, NULL, 'd'},
                                         {"runtime-role", required_argument, NULL, 'R'},
                                         {"publisher-role", required_argument, NULL, 'P'},
                                         {"tenants", required_argument, NULL, 'T'},
                                         {"status", no_argument, NULL, 's'},
                                         {"quiet", no_argument, NULL, 'q'},
                                         {"help", no_argument, NULL, 'h'},
                                         {NULL, 0, NULL, 0}};
    int c;
    while ((c = getopt_long(argc, argv, "d:sqh", opts, NULL)) != -1) {
        switch (c) {
        case 'd': dir = optarg; break;
        case 's': status_only = 1; break;
        case 'q': quiet = 1; break;
        case 'h': usage(stdout); return 0;
        case 'R':
        case 'P':
            if (nroles == (int)(sizeof(roles) / sizeof(roles[0])) || !*optarg) {
                fprintf(stderr, "pgcast-migrate: too many roles, or an empty role name\n");
                return 2;
            }
            roles[nroles++] = (struct role_req){optarg, c == 'R' ? "runtime" : "publisher", NULL};
            break;
        case 'T':
            if (!nroles || strcmp(roles[nroles - 1].kind, "publisher") != 0) {
                fprintf(stderr, "pgcast-migrate: --tenants applies to the --publisher-role before it\n");
                return 2;
            }
            roles[nroles - 1].tenants = optarg;
            break;
        default: usage(stderr); return 2;
        }
    }
    if (optind != argc) {
        usage(stderr);
        return 2;
    }

    struct mig *migs = NULL;
    int n = 0;
    if ((dir ? load_dir(dir, &migs, &n) : load_builtin(&migs, &n)) != 0)
        return 1;

    const char *url = getenv("PGCAST_DATABASE_URL");
    PGconn *db = PQconnectdb(url && *url ? url : "");
    if (PQstatus(db) != CONNECTION_OK) {
        fprintf(stderr, "pgcast-migrate: cannot connect to the database: %s", PQerrorMessage(db));
        PQfinish(db);
        return 1;
    }

    int rc = 1;
    if (exec_ok(db, "SET client_min_messages = warning", "SET") != 0 ||
        exec_ok(db, "SELECT pg_advisory_lock(7432001)", "taking the migration lock") != 0 ||
        exec_ok(db,
                "CREATE SCHEMA IF NOT EXISTS realtime;"
                "CREATE TABLE IF NOT EXISTS realtime.schema_migrations ("
                "  name text PRIMARY KEY,"
                "  checksum text NOT NULL,"
                "  applied_at timestamptz NOT NULL DEFAULT now())",
                "creating realtime.schema_migrations") != 0)
        goto out;

    int applied = 0;
    for (int i = 0; i < n; i++) {
        char sum[65], recorded[65] = "";
        if (checksum(migs[i].sql, sum) != 0) {
            fprintf(stderr, "pgcast-migrate: checksum failed\n");
            goto out;
        }
        int done = is_applied(db, migs[i].name, recorded);
        if (done < 0)
            goto out;
        if (done) {
            if (strcmp(recorded, sum) != 0)
                fprintf(stderr, "pgcast-migrate: warning: %s was changed after it was applied; "
                                "write a new migration instead of editing an applied one\n",
                        migs[i].name);
            if (status_only)
                printf("applied  %s\n", migs[i].name);
            continue;
        }
        if (status_only) {
            printf("pending  %s\n", migs[i].name);
            continue;
        }
        if (apply_one(db, &migs[i], sum) != 0)
            goto out;
        applied++;
        if (!quiet)
            printf("pgcast-migrate: applied %s\n", migs[i].name);
    }
    if (!quiet && !status_only)
        printf("pgcast-migrate: %d applied, database is up to date (%d migrations)\n", applied, n);
    if (!status_only && apply_roles(db, roles, nroles, quiet) != 0)
        goto out;
    rc = 0;
out:
    PQfinish(db);
    for (int i = 0; i < n; i++) {
        free(migs[i].name);
        free(migs[i].sql);
    }
    free(migs);
    return rc;
}
