/* redis_keys: the Redis names of one (tenant, collection).
 *
 *   <prefix>{<tenant>/<collection>}:log    stream, the ordered log (entry id <seq>-0)
 *   <prefix>{<tenant>/<collection>}:docs   hash, document id -> current version
 *   <prefix>{<tenant>/<collection>}:ids    hash, event id -> seq (idempotency)
 *   <prefix>{<tenant>/<collection>}:meta   hash: epoch, last, first
 *   <prefix>{<tenant>/<collection>}:events pub/sub channel: "<epoch> <last> <node>"
 *   <prefix>collections                    set of "<tenant>/<collection>" (retention)
 *
 * The part in braces is a Redis Cluster hash tag: every key of a collection
 * lives in one slot. Tenant and collection are percent-encoded there ('%',
 * '/', '{', '}', control bytes and bytes >= 0x7f), so no two pairs share a
 * tag and the tag never ends early.
 */
#ifndef NEBULA_REDIS_KEYS_H
#define NEBULA_REDIS_KEYS_H

#include <stdbool.h>
#include <stddef.h>

typedef struct redis_keys {
    char *log, *docs, *ids, *meta, *channel;
    char *member;               /* "<tenant>/<collection>", encoded */
    size_t log_len, docs_len, ids_len, meta_len, channel_len, member_len;
    char *storage;              /* one allocation holding all of them */
} redis_keys;

bool redis_keys_init(redis_keys *k, const char *prefix, const char *tenant,
                     const char *collection);
void redis_keys_release(redis_keys *k);

/* Decodes a member of the collections set; the caller frees both. */
bool redis_keys_parse_member(const char *member, size_t len, char **tenant, char **collection);

#endif
