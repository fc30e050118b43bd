/* tenant_tokens: see tenant_tokens.h. */
#include "tenant_tokens.h"

#include <stdio.h>
#include <string.h>

#define HASHED_PREFIX "sha256:"
#define BLANKS " \t\r"

size_t tenant_tokens_line(char *out, size_t cap, long index,
                          const uint8_t random[TENANT_TOKEN_RANDOM_BYTES])
{
    char hex[2 * TENANT_TOKEN_RANDOM_BYTES + 1];
    for (int i = 0; i < TENANT_TOKEN_RANDOM_BYTES; i++)
        snprintf(hex + 2 * i, 3, "%02x", random[i]);
    int n = snprintf(out, cap, "nsb-%s bench-t%ld read=* write=*\n", hex, index);
    return n > 0 && (size_t)n < cap ? (size_t)n : 0;
}

/* The next blank-separated field of line [*p, end): its start and length;
 * *p moves past it. 0 when none is left. */
static size_t next_field(const char **p, const char *end, const char **field)
{
    const char *s = *p;
    while (s < end && strchr(BLANKS, *s))
        s++;
    const char *e = s;
    while (e < end && !strchr(BLANKS, *e))
        e++;
    *field = s;
    *p = e;
    return (size_t)(e - s);
}

static bool known_tenant(const struct tenant_token *out, long n, const char *tenant, size_t len)
{
    for (long i = 0; i < n; i++)
        if (strlen(out[i].tenant) == len && memcmp(out[i].tenant, tenant, len) == 0)
            return true;
    return false;
}

/* One line [s, end): its token and tenant, kept when the tenant is new. */
static bool parse_line(const char *s, const char *end, struct tenant_token *out, long max,
                       struct tenant_tokens_read *r)
{
    const char *token, *tenant, *p = s;
    size_t tlen = next_field(&p, end, &token);
    if (tlen == 0 || token[0] == '#')
        return true;                  /* blank or comment */
    size_t nlen = next_field(&p, end, &tenant);
    if (nlen == 0 || memchr(tenant, '=', nlen)) {
        snprintf(r->why, sizeof r->why, "no tenant after the token");
        return false;
    }
    if (tlen > TENANT_TOKEN_MAX || nlen > TENANT_NAME_MAX) {
        snprintf(r->why, sizeof r->why, "%s longer than %d characters", tlen > TENANT_TOKEN_MAX
                 ? "token" : "tenant", tlen > TENANT_TOKEN_MAX ? TENANT_TOKEN_MAX : TENANT_NAME_MAX);
        return false;
    }
    if (tlen >= strlen(HASHED_PREFIX) && memcmp(token, HASHED_PREFIX, strlen(HASHED_PREFIX)) == 0) {
        r->hashed++;
        return true;
    }
    if (r->tenants == max || known_tenant(out, r->tenants, tenant, nlen))
        return true;
    struct tenant_token *t = &out[r->tenants++];
    memcpy(t->token, token, tlen);
    t->token[tlen] = '\0';
    memcpy(t->tenant, tenant, nlen);
    t->tenant[nlen] = '\0';
    return true;
}

bool tenant_tokens_parse(const char *text, struct tenant_token *out, long max,
                         struct tenant_tokens_read *r)
{
    memset(r, 0, sizeof *r);
    const char *s = text;
    for (long line = 1; *s; line++) {
        const char *end = strchr(s, '\n');
        if (!end)
            end = s + strlen(s);
        if (!parse_line(s, end, out, max, r)) {
            r->line = line;
            return false;
        }
        s = *end ? end + 1 : end;
    }
    return true;
}
