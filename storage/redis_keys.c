/* redis_keys: key names and their tag encoding (see redis_keys.h). */
#include "redis_keys.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static bool needs_escape(unsigned char c)
{
    return c == '%' || c == '/' || c == '{' || c == '}' || c < 0x20 || c >= 0x7f;
}

static size_t encoded_len(const char *s)
{
    size_t n = 0;
    for (; *s; s++)
        n += needs_escape((unsigned char)*s) ? 3 : 1;
    return n;
}

static char *encode(char *out, const char *s)
{
    static const char hex[] = "0123456789ABCDEF";
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        if (needs_escape(c)) {
            *out++ = '%';
            *out++ = hex[c >> 4];
            *out++ = hex[c & 15];
        } else {
            *out++ = (char)c;
        }
    }
    return out;
}

/* Writes prefix{member}:suffix at *cursor, NUL-terminated; returns it. */
static char *put_key(char **cursor, const char *prefix, const char *member, const char *suffix,
                     size_t *len)
{
    char *start = *cursor;
    int n = sprintf(start, "%s{%s}:%s", prefix, member, suffix);
    *len = (size_t)n;
    *cursor = start + n + 1;
    return start;
}

bool redis_keys_init(redis_keys *k, const char *prefix, const char *tenant,
                     const char *collection)
{
    memset(k, 0, sizeof *k);
    size_t member_len = encoded_len(tenant) + 1 + encoded_len(collection);
    size_t per_key = strlen(prefix) + member_len + sizeof "{}:events";
    k->storage = malloc(member_len + 1 + 5 * per_key);
    if (!k->storage)
        return false;
    char *p = encode(k->storage, tenant);
    *p++ = '/';
    p = encode(p, collection);
    *p++ = '\0';
    k->member = k->storage;
    k->member_len = member_len;
    k->log = put_key(&p, prefix, k->member, "log", &k->log_len);
    k->docs = put_key(&p, prefix, k->member, "docs", &k->docs_len);
    k->ids = put_key(&p, prefix, k->member, "ids", &k->ids_len);
    k->meta = put_key(&p, prefix, k->member, "meta", &k->meta_len);
    k->channel = put_key(&p, prefix, k->member, "events", &k->channel_len);
    return true;
}

void redis_keys_release(redis_keys *k)
{
    free(k->storage);
    memset(k, 0, sizeof *k);
}

static int hex_digit(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

static char *decode(const char *from, const char *to)
{
    char *out = malloc((size_t)(to - from) + 1), *o = out;
    if (!out)
        return NULL;
    for (const char *p = from; p < to; p++) {
        if (*p != '%') {
            *o++ = *p;
            continue;
        }
        if (to - p < 3 || hex_digit(p[1]) < 0 || hex_digit(p[2]) < 0) {
            free(out);
            return NULL;
        }
        *o++ = (char)(hex_digit(p[1]) * 16 + hex_digit(p[2]));
        p += 2;
    }
    *o = '\0';
    return out;
}

bool redis_keys_parse_member(const char *member, size_t len, char **tenant, char **collection)
{
    const char *slash = memchr(member, '/', len);
    if (!slash)
        return false;
    *tenant = decode(member, slash);
    *collection = decode(slash + 1, member + len);
    if (*tenant && *collection)
        return true;
    free(*tenant);
    free(*collection);
    return false;
}
