/* auth: bearer-token authentication. A token names a tenant and the
 * collections of that tenant the caller may read and write.
 *
 * This module only decides who the caller is (the tenant) and which
 * collection names they may touch. Isolation between tenants is the
 * broker's job: it keys everything by (tenant, collection), so a grant for
 * tenant "acme" with read=* covers every collection of acme and nothing of
 * any other tenant.
 *
 * Token file format
 * -----------------
 * A UTF-8/ASCII text file, one token per line, read once at start-up:
 *
 *     # comment lines and blank lines are ignored
 *     <token> <tenant> [read=<patterns>] [write=<patterns>]
 *
 * Example:
 *
 *     s3cr3t-token-for-acme-app-0001  acme  read=*  write=todos,notes-*
 *     # globex-public-reader-0002, stored hashed:
 *     sha256:17bb04d32dd36ee568eac06a88703593db59bd85d71deb53fa9999904885a4ea  globex  read=public-* write=
 *
 * Rules:
 *   - Fields are separated by one or more spaces or tabs. Leading and
 *     trailing spaces/tabs and a trailing CR (CRLF files) are ignored.
 *   - A line whose first non-blank character is '#' is a comment. There are
 *     no comments after fields, so a token cannot start with '#'.
 *   - <token>: 16..512 printable ASCII characters other than space
 *     (0x21..0x7E). Shorter tokens are rejected ("token too short (min 16)").
 *   - sha256:<64 hex digits> (either case) instead of <token> stores the
 *     SHA-256 of the token, so the file need not hold the secret; clients
 *     still send the plain token. Make one with:
 *         printf '%s' "$TOKEN" | sha256sum
 *     A plain token can therefore not itself start with "sha256:". The
 *     token behind a hash must follow the same rules as a plain token
 *     (16..512 printable non-space characters), or lookups never match it.
 *   - <tenant>: 1..64 characters of [A-Za-z0-9_.-], and not "." or ".."
 *     (so that a tenant name is always safe as a file or directory name).
 *   - read=<patterns> and write=<patterns>, in either order, each at most
 *     once. A missing key, or an empty value ("write="), allows nothing.
 *     <patterns> is a comma-separated list of at most 1024 characters; each
 *     pattern is 1..128 characters of [A-Za-z0-9_.*?[]-] and is matched
 *     against the whole collection name with fnmatch(3) without flags
 *     ('*' and '?' match any character, including '.' and '/'; "[a-c]" is a
 *     class). No empty patterns ("a,,b" or a trailing comma).
 *     Any other key, or a field that is not key=value, is an error.
 *   - A line is at most 4096 bytes; a file is at most 100,000 lines
 *     (comments and blank lines count). The same token twice (also once
 *     plain and once as sha256:) is an error naming both lines.
 *   - A file with no tokens loads, and then every lookup fails.
 *
 * Any problem rejects the whole file, with a one-line message
 * "<file>:<line>: <reason>" (or "<file>: <reason>" when it cannot be
 * read). Messages never quote a token.
 *
 * Memory and timing: the table holds only SHA-256 digests of tokens, never
 * the plaintext, and the file's text is wiped from the buffers used to read
 * it. A lookup hashes the presented token and finds the digest in a hash
 * table, comparing digests with CRYPTO_memcmp, so its timing does not
 * depend on how much of a secret the presented token matches.
 *
 * Threads: a loaded token_table is immutable; any number of threads may
 * call token_table_lookup/token_table_count on it at once without locking.
 * auth_grant values are plain data, copied per connection.
 */
#ifndef NEBULA_AUTH_H
#define NEBULA_AUTH_H

#include <stdbool.h>
#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

#define AUTH_TOKEN_MIN 16        /* characters of a plain token */
#define AUTH_TOKEN_MAX 512
#define AUTH_TENANT_MAX 64       /* characters of a tenant name */
#define AUTH_PATTERN_MAX 128     /* characters of one pattern */
#define AUTH_PATTERNS_MAX 1024   /* characters of one comma-separated list */
#define AUTH_LINE_MAX 4096       /* bytes of a token file line, newline excluded */
#define AUTH_FILE_MAX_LINES 100000

/* What a token allows. Patterns are kept as the file wrote them: a
 * comma-separated list of fnmatch(3) globs, "" for nothing. All strings are
 * NUL-terminated. */
typedef struct auth_grant {
    char tenant[128];                             /* at most AUTH_TENANT_MAX used */
    char read_patterns[AUTH_PATTERNS_MAX + 1];
    char write_patterns[AUTH_PATTERNS_MAX + 1];
} auth_grant;

/* True when collection is non-empty and matches one of the grant's read
 * (write) patterns. */
bool auth_grant_can_read(const auth_grant *g, const char *collection);
bool auth_grant_can_write(const auth_grant *g, const char *collection);

/* For --auth none: the given tenant (NULL means "default") with read=* and
 * write=*. A tenant longer than AUTH_TENANT_MAX is truncated. */
void auth_grant_allow_all(auth_grant *g, const char *tenant);

typedef struct token_table token_table;

/* Reads and checks a token file. Returns NULL on any problem, with a
 * one-line message (no newline) in err when err_len > 0. */
token_table *token_table_load(const char *path, char *err, size_t err_len);

/* Accepts NULL. */
void token_table_free(token_table *t);

/* Looks up the token_len bytes at token (need not be NUL-terminated).
 * Returns true and, when grant is not NULL, fills *grant if the token is in
 * the table. A token that breaks the format rules (length, characters) is
 * never found. Safe to call concurrently. */
bool token_table_lookup(const token_table *t, const char *token, size_t token_len,
                        auth_grant *grant);

/* Number of tokens in the table. */
size_t token_table_count(const token_table *t);

#ifdef __cplusplus
}
#endif

#endif
