/* auth: the token file parser, the token table and grant matching.
 *
 * The file format and the guarantees are documented in auth.h. In short:
 * each line is checked field by field, the token is reduced to its SHA-256
 * digest at once (or taken as given for "sha256:" entries), and the table
 * maps digests to small heap records holding the tenant and the two pattern
 * lists. The table is built completely before token_table_load returns and
 * is never written again, which is what makes concurrent lookups safe
 * without a lock.
 */
#include "auth.h"

#include <errno.h>
#include <fnmatch.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>
#include <openssl/sha.h>

/* uthash compares keys with memcmp by default. Keys here are SHA-256
 * digests, so an early-exit compare would at most leak digest bytes, not
 * token bytes; comparing in constant time anyway costs nothing and keeps the
 * property obvious. */
#define HASH_KEYCMP(a, b, n) CRYPTO_memcmp((a), (b), (n))
/* A failed allocation while loading must fail the load, not exit the
 * daemon: with this, uthash leaves the element out and sets its hh.tbl to
 * NULL. */
#define HASH_NONFATAL_OOM 1
#include <uthash.h>

#define SHA256_PREFIX "sha256:"
#define SHA256_HEX_LEN (2 * SHA256_DIGEST_LENGTH)

/* Characters allowed in a tenant name and in a pattern (fnmatch syntax). */
#define TENANT_CHARS "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_.-"
#define PATTERN_CHARS TENANT_CHARS "*?[]"

/* A reason is short; with the path in front it still fits an err buffer of
 * any sensible size, and is truncated otherwise. */
#define REASON_MAX 160

typedef struct token_entry {
    unsigned char digest[SHA256_DIGEST_LENGTH];   /* the key */
    unsigned line;                                /* defining line, for duplicate errors */
    const char *tenant;                           /* these three point into text[] */
    const char *read;
    const char *write;
    UT_hash_handle hh;
    char text[];
} token_entry;

struct token_table {
    token_entry *entries;   /* uthash head; NULL when the file had no tokens */
};

/* One line split into its fields; the pointers point into the line. */
typedef struct parsed_line {
    unsigned char digest[SHA256_DIGEST_LENGTH];
    const char *tenant;
    const char *read;    /* "" when the key is missing: nothing allowed */
    const char *write;
} parsed_line;

/* ---- grants ------------------------------------------------------------ */

/* Matches collection against each pattern of a comma-separated list. A
 * pattern longer than AUTH_PATTERN_MAX cannot come from a loaded file; if a
 * caller built such a grant by hand, the pattern is skipped, so an odd grant
 * allows less, never more. */
static bool pattern_list_matches(const char *list, const char *collection)
{
    if (collection == NULL || collection[0] == '\0')
        return false;
    const char *p = list;
    while (*p != '\0') {
        size_t n = strcspn(p, ",");
        if (n > 0 && n <= AUTH_PATTERN_MAX) {
            char pattern[AUTH_PATTERN_MAX + 1];
            memcpy(pattern, p, n);
            pattern[n] = '\0';
            if (fnmatch(pattern, collection, 0) == 0)
                return true;
        }
        p += n;
        if (*p == ',')
            p++;
    }
    return false;
}

bool auth_grant_can_read(const auth_grant *g, const char *collection)
{
    return g != NULL && pattern_list_matches(g->read_patterns, collection);
}

bool auth_grant_can_write(const auth_grant *g, const char *collection)
{
    return g != NULL && pattern_list_matches(g->write_patterns, collection);
}

void auth_grant_allow_all(auth_grant *g, const char *tenant)
{
    memset(g, 0, sizeof *g);
    snprintf(g->tenant, sizeof g->tenant, "%.*s", AUTH_TENANT_MAX,
             tenant != NULL ? tenant : "default");
    strcpy(g->read_patterns, "*");
    strcpy(g->write_patterns, "*");
}

/* ---- field checks (shared by the loader and lookups) --------------------- */

/* NULL when s[0..n) is an acceptable plain token, else the reason. Lookups
 * apply the same rule, so a hashed entry cannot admit a token that would be
 * refused in plain form (a short one, say). Exits early on a bad character:
 * that reveals only where the presented token is malformed, nothing about
 * stored tokens. */
static const char *token_problem(const char *s, size_t n)
{
    if (n < AUTH_TOKEN_MIN)
        return "token too short (min 16)";
    if (n > AUTH_TOKEN_MAX)
        return "token too long (max 512)";
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c < 0x21 || c > 0x7e)
            return "token contains a character that is not printable ASCII";
    }
    return NULL;
}

/* Writes a printable description of c, for messages: 'x' or byte 0x01. */
static void describe_char(unsigned char c, char *out, size_t out_len)
{
    if (c >= 0x21 && c <= 0x7e)
        snprintf(out, out_len, "'%c'", c);
    else
        snprintf(out, out_len, "byte 0x%02x", c);
}

static bool tenant_problem(const char *tenant, char *why, size_t why_len)
{
    size_t n = strlen(tenant);
    size_t ok = strspn(tenant, TENANT_CHARS);
    char c[16];
    if (ok < n) {
        describe_char((unsigned char)tenant[ok], c, sizeof c);
        snprintf(why, why_len, "bad character %s in tenant (allowed: A-Z a-z 0-9 _ . -)", c);
    } else if (n > AUTH_TENANT_MAX) {
        snprintf(why, why_len, "tenant too long (max %d)", AUTH_TENANT_MAX);
    } else if (strcmp(tenant, ".") == 0 || strcmp(tenant, "..") == 0) {
        /* Storage back ends may use tenant names as path components. */
        snprintf(why, why_len, "tenant may not be \".\" or \"..\"");
    } else {
        return false;
    }
    return true;
}

/* Checks a comma-separated list given as key=list. "" is valid (nothing). */
static bool pattern_list_problem(const char *key, const char *list, char *why, size_t why_len)
{
    if (strlen(list) > AUTH_PATTERNS_MAX) {
        snprintf(why, why_len, "%s= list too long (max %d characters)", key, AUTH_PATTERNS_MAX);
        return true;
    }
    if (list[0] == '\0')
        return false;
    const char *p = list;
    for (;;) {
        size_t n = strcspn(p, ",");
        size_t ok = strspn(p, PATTERN_CHARS);
        if (n == 0) {
            snprintf(why, why_len, "empty pattern in %s= list", key);
            return true;
        }
        if (ok < n) {
            char c[16];
            describe_char((unsigned char)p[ok], c, sizeof c);
            snprintf(why, why_len, "bad character %s in %s= pattern (allowed: A-Z a-z 0-9 _ . - * ? [ ])",
                     c, key);
            return true;
        }
        if (n > AUTH_PATTERN_MAX) {
            snprintf(why, why_len, "%s= pattern too long (max %d)", key, AUTH_PATTERN_MAX);
            return true;
        }
        if (p[n] == '\0')
            return false;
        p += n + 1;   /* past the comma; a trailing comma yields an empty pattern */
    }
}

static int hex_value(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

static bool decode_sha256_hex(const char *hex, unsigned char digest[SHA256_DIGEST_LENGTH])
{
    if (strlen(hex) != SHA256_HEX_LEN)
        return false;
    for (size_t i = 0; i < SHA256_DIGEST_LENGTH; i++) {
        int hi = hex_value(hex[2 * i]), lo = hex_value(hex[2 * i + 1]);
        if (hi < 0 || lo < 0)
            return false;
        digest[i] = (unsigned char)(hi << 4 | lo);
    }
    return true;
}

/* ---- line parsing ------------------------------------------------------- */

/* Returns the next space/tab-separated field of *cursor, NUL-terminated in
 * place, or NULL when none is left. */
static char *next_field(char **cursor)
{
    char *s = *cursor + strspn(*cursor, " \t");
    if (*s == '\0') {
        *cursor = s;
        return NULL;
    }
    char *end = s + strcspn(s, " \t");
    if (*end != '\0')
        *end++ = '\0';
    *cursor = end;
    return s;
}

/* Turns the token field into the digest the table is keyed by. */
static bool parse_token(const char *field, unsigned char digest[SHA256_DIGEST_LENGTH],
                        char *why, size_t why_len)
{
    size_t prefix_len = strlen(SHA256_PREFIX);
    if (strncmp(field, SHA256_PREFIX, prefix_len) == 0) {
        if (decode_sha256_hex(field + prefix_len, digest))
            return true;
        snprintf(why, why_len, "sha256: must be followed by exactly 64 hex digits");
        return false;
    }
    const char *problem = token_problem(field, strlen(field));
    if (problem != NULL) {
        snprintf(why, why_len, "%s", problem);
        return false;
    }
    SHA256((const unsigned char *)field, strlen(field), digest);
    return true;
}

/* Handles one key=value field after the tenant. */
static bool parse_key_value(char *field, unsigned index, parsed_line *out, bool *seen_read,
                            bool *seen_write, char *why, size_t why_len)
{
    char *eq = strchr(field, '=');
    if (eq == NULL) {
        snprintf(why, why_len,
                 "field %u is not key=value (expected read=<patterns> or write=<patterns>)",
                 index);
        return false;
    }
    *eq = '\0';
    const char *key = field, *value = eq + 1;
    bool *seen;
    const char **slot;
    if (strcmp(key, "read") == 0) {
        seen = seen_read;
        slot = &out->read;
    } else if (strcmp(key, "write") == 0) {
        seen = seen_write;
        slot = &out->write;
    } else {
        snprintf(why, why_len, "unknown key '%.32s' (expected read= or write=)", key);
        return false;
    }
    if (*seen) {
        snprintf(why, why_len, "%s= given twice", key);
        return false;
    }
    if (pattern_list_problem(key, value, why, why_len))
        return false;
    *seen = true;
    *slot = value;
    return true;
}

/* Parses a non-comment line (modified in place). */
static bool parse_line(char *line, parsed_line *out, char *why, size_t why_len)
{
    char *cursor = line;
    char *token = next_field(&cursor);   /* non-NULL: the caller skipped blank lines */
    if (!parse_token(token, out->digest, why, why_len))
        return false;

    char *tenant = next_field(&cursor);
    if (tenant == NULL || strchr(tenant, '=') != NULL) {
        snprintf(why, why_len, "missing tenant (expected <token> <tenant> read=... write=...)");
        return false;
    }
    if (tenant_problem(tenant, why, why_len))
        return false;
    out->tenant = tenant;

    out->read = out->write = "";
    bool seen_read = false, seen_write = false;
    char *field;
    for (unsigned index = 3; (field = next_field(&cursor)) != NULL; index++)
        if (!parse_key_value(field, index, out, &seen_read, &seen_write, why, why_len))
            return false;
    return true;
}

/* ---- the table ---------------------------------------------------------- */

static token_entry *entry_new(const parsed_line *p, unsigned line)
{
    size_t tenant_len = strlen(p->tenant), read_len = strlen(p->read),
           write_len = strlen(p->write);
    token_entry *e = calloc(1, sizeof *e + tenant_len + read_len + write_len + 3);
    if (e == NULL)
        return NULL;
    memcpy(e->digest, p->digest, sizeof e->digest);
    e->line = line;
    char *text = e->text;
    e->tenant = memcpy(text, p->tenant, tenant_len + 1);
    text += tenant_len + 1;
    e->read = memcpy(text, p->read, read_len + 1);
    text += read_len + 1;
    e->write = memcpy(text, p->write, write_len + 1);
    return e;
}

void token_table_free(token_table *t)
{
    if (t == NULL)
        return;
    token_entry *e, *tmp;
    HASH_ITER(hh, t->entries, e, tmp) {
        HASH_DEL(t->entries, e);
        free(e);
    }
    free(t);
}

size_t token_table_count(const token_table *t)
{
    return t != NULL ? (size_t)HASH_COUNT(t->entries) : 0;
}

bool token_table_lookup(const token_table *t, const char *token, size_t token_len,
                        auth_grant *grant)
{
    if (t == NULL || token == NULL || token_problem(token, token_len) != NULL)
        return false;
    unsigned char digest[SHA256_DIGEST_LENGTH];
    SHA256((const unsigned char *)token, token_len, digest);
    /* HASH_FIND only reads the table, so concurrent lookups need no lock. */
    const token_entry *e;
    HASH_FIND(hh, t->entries, digest, sizeof digest, e);
    if (e == NULL)
        return false;
    if (grant != NULL) {
        /* The loader bounded every length, so these copies never truncate. */
        memset(grant, 0, sizeof *grant);
        snprintf(grant->tenant, sizeof grant->tenant, "%s", e->tenant);
        snprintf(grant->read_patterns, sizeof grant->read_patterns, "%s", e->read);
        snprintf(grant->write_patterns, sizeof grant->write_patterns, "%s", e->write);
    }
    return true;
}

/* ---- loading ------------------------------------------------------------ */

typedef struct loader {
    const char *path;
    unsigned line;        /* 1-based number of the line being read; 0: none yet */
    char *err;
    size_t err_len;
    token_table *table;
} loader;

/* Fills err with "<path>:<line>: <reason>" (or "<path>: <reason>" before the
 * first line). Control characters, from the path or anywhere else, become
 * '?' so the message stays one line whatever the input. Returns false. */
static bool loader_fail(loader *ld, const char *fmt, ...)
{
    if (ld->err == NULL || ld->err_len == 0)
        return false;
    char reason[REASON_MAX];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(reason, sizeof reason, fmt, ap);
    va_end(ap);
    if (ld->line > 0)
        snprintf(ld->err, ld->err_len, "%s:%u: %s", ld->path, ld->line, reason);
    else
        snprintf(ld->err, ld->err_len, "%s: %s", ld->path, reason);
    for (char *c = ld->err; *c != '\0'; c++)
        if ((unsigned char)*c < 0x20 || *c == 0x7f)
            *c = '?';
    return false;
}

static bool is_blank_or_comment(const char *line)
{
    const char *s = line + strspn(line, " \t");
    return *s == '\0' || *s == '#';
}

/* Checks and adds the line of len bytes (its ending already stripped). */
static bool loader_add_line(loader *ld, char *line, size_t len)
{
    if (strlen(line) != len)
        return loader_fail(ld, "NUL byte in line");
    if (is_blank_or_comment(line))
        return true;

    char why[REASON_MAX];
    parsed_line p;
    if (!parse_line(line, &p, why, sizeof why))
        return loader_fail(ld, "%s", why);

    token_entry *existing;
    HASH_FIND(hh, ld->table->entries, p.digest, sizeof p.digest, existing);
    if (existing != NULL)
        return loader_fail(ld, "duplicate token (first defined on line %u)", existing->line);

    token_entry *e = entry_new(&p, ld->line);
    if (e == NULL)
        return loader_fail(ld, "out of memory");
    HASH_ADD(hh, ld->table->entries, digest, sizeof e->digest, e);
    if (e->hh.tbl == NULL) {
        free(e);
        return loader_fail(ld, "out of memory");
    }
    return true;
}

typedef enum read_status { READ_LINE, READ_EOF, READ_TOO_LONG, READ_ERROR } read_status;

/* Reads one line into buf (cap bytes) without its "\n", and without the
 * "\r" before it (CRLF files); *len excludes the terminating NUL. A fixed
 * buffer rather than getline(): getline grows its buffer with realloc,
 * which would leave copies of a token in freed memory that nobody wipes. */
static read_status read_line(FILE *f, char *buf, size_t cap, size_t *len)
{
    size_t n = 0;
    int c;
    while ((c = getc(f)) != EOF && c != '\n') {
        if (n + 1 >= cap)
            return READ_TOO_LONG;
        buf[n++] = (char)c;
    }
    if (c == EOF && ferror(f))
        return READ_ERROR;
    if (c == EOF && n == 0)
        return READ_EOF;
    if (n > 0 && buf[n - 1] == '\r')
        n--;
    buf[n] = '\0';
    *len = n;
    return READ_LINE;
}

/* Reads every line of f into ld->table, using buf (cap bytes). Each line
 * overwrites the last in buf, and the caller wipes buf once at the end. */
static bool loader_read(loader *ld, FILE *f, char *buf, size_t cap)
{
    for (;;) {
        size_t len = 0;
        errno = 0;
        read_status status = read_line(f, buf, cap, &len);
        if (status == READ_EOF)
            return true;
        if (status == READ_ERROR) {
            int saved = errno != 0 ? errno : EIO;
            ld->line = 0;
            return loader_fail(ld, "read error: %s", strerror(saved));
        }
        if (ld->line >= AUTH_FILE_MAX_LINES) {
            ld->line++;
            return loader_fail(ld, "too many lines (max %d)", AUTH_FILE_MAX_LINES);
        }
        ld->line++;
        if (status == READ_TOO_LONG || len > AUTH_LINE_MAX)
            return loader_fail(ld, "line too long (max %d bytes)", AUTH_LINE_MAX);
        if (!loader_add_line(ld, buf, len))
            return false;
    }
}

token_table *token_table_load(const char *path, char *err, size_t err_len)
{
    loader ld = {.path = path, .err = err, .err_len = err_len};
    if (err != NULL && err_len > 0)
        err[0] = '\0';

    FILE *f = fopen(path, "r");
    if (f == NULL) {
        loader_fail(&ld, "cannot open: %s", strerror(errno));
        return NULL;
    }
    /* Our own stdio buffer, so the file's text (plain tokens) can be wiped
     * after reading instead of lingering in freed memory. */
    enum { IO_BUF_SIZE = 64 * 1024 };
    char *io_buf = malloc(IO_BUF_SIZE);
    ld.table = calloc(1, sizeof *ld.table);
    if (io_buf == NULL || ld.table == NULL) {
        fclose(f);
        free(io_buf);
        free(ld.table);
        loader_fail(&ld, "out of memory");
        return NULL;
    }
    setvbuf(f, io_buf, _IOFBF, IO_BUF_SIZE);

    /* Room for the longest allowed line, a '\r' and the NUL. */
    char line[AUTH_LINE_MAX + 2];
    bool ok = loader_read(&ld, f, line, sizeof line);

    fclose(f);
    OPENSSL_cleanse(io_buf, IO_BUF_SIZE);
    free(io_buf);
    OPENSSL_cleanse(line, sizeof line);

    if (!ok) {
        token_table_free(ld.table);
        return NULL;
    }
    return ld.table;
}
