/*
 * The self-contained programs (`make static`) link Debian's static libpq, which is built
 * with GSSAPI and LDAP; Debian ships neither as a static archive. These stand-ins make
 * both unavailable, as in a libpq built without them: GSSAPI credentials are never
 * found (no GSS encryption is attempted; a server that demands GSSAPI authentication is
 * refused with an error), and an LDAP lookup of connection parameters in a service file
 * fails. Password, SCRAM and TLS connections, what a hosting account uses, are not
 * affected. Declared here without the libraries' headers (they are not installed).
 */
#include <stddef.h>
#include <stdint.h>

typedef uint32_t OM_uint32;
typedef struct {
    size_t length;
    void *value;
} gss_buffer_desc;

#define GSS_S_FAILURE (13u << 16)
static char unsupported[] = "GSSAPI is not supported by this build of pgcast";

void *GSS_C_NT_HOSTBASED_SERVICE = NULL;

#define GSS_FAIL(name, ...)                   \
    OM_uint32 name(OM_uint32 *minor, __VA_ARGS__); \
    OM_uint32 name(OM_uint32 *minor, __VA_ARGS__) \
    {                                         \
        if (minor)                            \
            *minor = 0;                       \
        return GSS_S_FAILURE;                 \
    }

GSS_FAIL(gss_acquire_cred, void *a, OM_uint32 b, void *c, int d, void **cred, void *f, void *g)
GSS_FAIL(gss_delete_sec_context, void **ctx, void *b)
GSS_FAIL(gss_import_name, void *a, void *b, void **name)
GSS_FAIL(gss_init_sec_context, void *a, void **b, void *c, void *d, OM_uint32 e, OM_uint32 f, void *g, void *h,
         void *i, void *j, void *k, void *l, void *m)
GSS_FAIL(gss_release_cred, void **cred)
GSS_FAIL(gss_release_name, void **name)
GSS_FAIL(gss_unwrap, void *a, void *b, void *c, int *d, void *e)
GSS_FAIL(gss_wrap, void *a, int b, OM_uint32 c, void *d, int *e, void *f)
GSS_FAIL(gss_wrap_size_limit, void *a, int b, OM_uint32 c, OM_uint32 d, OM_uint32 *e)

OM_uint32 gss_display_status(OM_uint32 *minor, OM_uint32 status, int type, void *mech, OM_uint32 *ctx,
                             gss_buffer_desc *out);
OM_uint32 gss_display_status(OM_uint32 *minor, OM_uint32 status, int type, void *mech, OM_uint32 *ctx,
                             gss_buffer_desc *out)
{
    if (minor)
        *minor = 0;
    if (ctx)
        *ctx = 0;
    if (out) {
        out->length = sizeof(unsupported) - 1;
        out->value = unsupported;
    }
    return 0;
}

OM_uint32 gss_release_buffer(OM_uint32 *minor, gss_buffer_desc *buf);
OM_uint32 gss_release_buffer(OM_uint32 *minor, gss_buffer_desc *buf)
{
    if (minor)
        *minor = 0;
    if (buf) {
        buf->length = 0;
        buf->value = NULL;
    }
    return 0;
}

/* LDAP: ldap_init fails, so libpq reports the lookup as failed and calls nothing else;
 * the rest fail too should they be reached. */
#define LDAP_FAIL(ret, name, ...)   \
    ret name(__VA_ARGS__);          \
    ret name(__VA_ARGS__) { return (ret)-1; }

void *ldap_init(const char *host, int port);
void *ldap_init(const char *host, int port) { return NULL; }
const char *ldap_err2string(int err);
const char *ldap_err2string(int err) { return "LDAP is not supported by this build of pgcast"; }
LDAP_FAIL(int, ldap_count_entries, void *ld, void *res)
LDAP_FAIL(int, ldap_msgfree, void *res)
LDAP_FAIL(int, ldap_result, void *ld, int id, int all, void *timeout, void **res)
LDAP_FAIL(int, ldap_search_st, void *ld, const char *base, int scope, const char *filter, char **attrs, int only,
          void *timeout, void **res)
LDAP_FAIL(int, ldap_set_option, void *ld, int option, const void *value)
LDAP_FAIL(int, ldap_simple_bind, void *ld, const char *who, const char *pw)
LDAP_FAIL(int, ldap_unbind, void *ld)
void *ldap_first_entry(void *ld, void *res);
void *ldap_first_entry(void *ld, void *res) { return NULL; }
void **ldap_get_values_len(void *ld, void *entry, const char *attr);
void **ldap_get_values_len(void *ld, void *entry, const char *attr) { return NULL; }
void ldap_value_free_len(void **vals);
void ldap_value_free_len(void **vals) {}
