/* tenant_tokens: the token file of `nebula-sync-bench tenants`, in the
 * format nebula-syncd --tokens reads (docs/OPERATIONS.md):
 *
 *     # comment
 *     <token> <tenant> read=<globs> write=<globs>
 *
 * The tool writes one line per tenant (--write-tokens FILE): a random token
 * "nsb-" + 32 hex digits, tenant "bench-t<i>", read=* write=*. It reads any
 * such file (--tokens FILE) for the first plain token of each tenant, in
 * the order the tenants first appear; lines whose token is stored hashed
 * (sha256:...) cannot be presented, so they are only counted.
 *
 * Pure functions, no I/O: the caller reads and writes the file.
 */
#ifndef NEBULA_BENCH_TENANT_TOKENS_H
#define NEBULA_BENCH_TENANT_TOKENS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define TENANT_TOKEN_MAX 512              /* longest token the broker accepts */
#define TENANT_NAME_MAX 64
#define TENANT_TOKEN_RANDOM_BYTES 16

struct tenant_token {
    char token[TENANT_TOKEN_MAX + 1];
    char tenant[TENANT_NAME_MAX + 1];
};

/* The line for tenant number index, newline included, into out (cap bytes;
 * 128 is enough). Returns its length, or 0 if it does not fit. */
size_t tenant_tokens_line(char *out, size_t cap, long index,
                          const uint8_t random[TENANT_TOKEN_RANDOM_BYTES]);

/* What a token file holds for the tool. */
struct tenant_tokens_read {
    long tenants;                         /* entries filled in out[] */
    long hashed;                          /* lines with a sha256: token, skipped */
    long line;                            /* on failure: the line (from 1) */
    char why[160];                        /* on failure: what is wrong with it */
};

/* Scans text (NUL-terminated) and fills out[0 .. max-1] with the first
 * plain token of each tenant. false on a line that is not
 * "<token> <tenant> ..." or whose token or tenant is too long. */
bool tenant_tokens_parse(const char *text, struct tenant_token *out, long max,
                         struct tenant_tokens_read *r);

#endif
