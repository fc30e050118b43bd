/* broker_context: what every worker thread may read about the broker it
 * belongs to. Settings are written once before the workers start and only
 * read afterwards; the two mutable parts are thread-safe by construction
 * (the TLS holder has its own lock, the session count is atomic). */
#ifndef NEBULA_BROKER_CONTEXT_H
#define NEBULA_BROKER_CONTEXT_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/time.h>

#include "auth.h"
#include "sync_storage.h"
#include "tls.h"
#include "ws_handshake.h"

struct sync_hub;

typedef enum broker_auth_mode {
    BROKER_AUTH_NONE,       /* anonymous, one tenant, every collection */
    BROKER_AUTH_TOKENS,     /* a token file */
    BROKER_AUTH_CALLBACK,   /* the application's authenticate callback */
} broker_auth_mode;

typedef struct broker_conflict_rule {
    char *pattern;
    sync_conflict_strategy strategy;
} broker_conflict_rule;

/* Fills grant for token; false rejects. Called on worker threads. */
typedef bool (*broker_authenticate_fn)(void *user_data, const char *token, const char *client_id,
                                       auth_grant *grant);

#define NEBULA_WS_PATH "/v1/sync"
#define NEBULA_WS_SUBPROTOCOL "nebula-sync.v1"

typedef struct broker_context {
    /* Settings: immutable once workers run. */
    uint64_t max_message_size;
    uint32_t max_connections;
    struct timeval idle_timeout;
    struct timeval handshake_timeout;
    struct timeval drain_timeout;
    ws_handshake_policy handshake_policy;
    bool tls_enabled;
    sync_conflict_strategy conflict_strategy;   /* collections no rule matches */
    broker_conflict_rule *conflict_rules;       /* first fnmatch(3) match wins */
    size_t conflict_rule_count;
    size_t max_output_buffer;                   /* unsent bytes before a subscriber is slow */
    bool slow_consumer_close;                   /* close slow subscribers instead of catch-up */
    broker_auth_mode auth_mode;
    auth_grant anonymous_grant;          /* BROKER_AUTH_NONE */
    const token_table *tokens;           /* BROKER_AUTH_TOKENS */
    broker_authenticate_fn authenticate; /* BROKER_AUTH_CALLBACK */
    void *authenticate_data;

    sync_storage *storage;               /* thread-safe by its contract */
    struct sync_hub *hub;                /* thread-safe by its contract */

    tls_holder tls;                      /* valid when tls_enabled */
    atomic_uint_fast32_t connections;    /* open connections, all workers, all phases */
    atomic_uint_fast32_t sessions;       /* connections that completed the upgrade */
} broker_context;

#endif
