/* nebula_broker: the server library, the C counterpart of the seed's
 * createSyncServer(). nebula-syncd is a thin main over it; an application can
 * embed it the same way:
 *
 *     nebula_broker_options opts;
 *     nebula_broker_options_init(&opts);          // documented defaults
 *     opts.listen = "0.0.0.0:8080";
 *     nebula_broker *broker;
 *     if (nebula_broker_create(&opts, &broker, NULL, 0) != NEBULA_OK) ...
 *     nebula_broker_start(broker, NULL, 0);       // binds, starts workers
 *     event_base_dispatch(nebula_broker_event_base(broker));
 *     nebula_broker_free(broker);
 *
 * Threads: the caller's thread runs the acceptor event base (listener, admin
 * HTTP, whatever else the application adds, such as signal events); N worker
 * threads own the WebSocket sessions. nebula_broker_stop() drains gracefully
 * and makes the acceptor base's loop return once every worker has finished.
 */
#ifndef NEBULA_BROKER_H
#define NEBULA_BROKER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "auth.h"
#include "log.h"
#include "sync_storage.h"

#ifdef __cplusplus
extern "C" {
#endif

struct event_base;

/* What a token may do: its tenant and the collections it may read and
 * write (auth.h). */
typedef auth_grant nebula_grant;

/* The seed's authenticate(socket, token): fill grant (tenant, patterns) and
 * return true to accept. Called on worker threads, possibly concurrently:
 * must be thread-safe and must not block for long. */
typedef bool (*nebula_authenticate_fn)(void *user_data, const char *token, const char *client_id,
                                       nebula_grant *grant);

typedef struct nebula_broker nebula_broker;

/* Error codes returned by the library; nebula_strerror() describes them. */
enum nebula_status {
    NEBULA_OK = 0,
    NEBULA_E_INVALID = -1,   /* an option is out of range */
    NEBULA_E_TLS = -2,       /* certificate or key unusable */
    NEBULA_E_LISTEN = -3,    /* cannot bind or listen */
    NEBULA_E_SYSTEM = -4,    /* out of memory, threads, descriptors */
    NEBULA_E_STATE = -5,     /* called at the wrong time (e.g. start twice) */
};

const char *nebula_strerror(int status);

/* A per-collection conflict strategy: collections matching pattern (an
 * fnmatch(3) glob) use strategy. */
typedef struct nebula_conflict_rule {
    const char *pattern;
    sync_conflict_strategy strategy;
} nebula_conflict_rule;

/* The storages the broker can make itself (see storage/). */
typedef enum nebula_storage_kind {
    NEBULA_STORAGE_MEMORY = 0,   /* in this process; nothing survives a restart */
    NEBULA_STORAGE_REDIS = 1,    /* shared and durable: brokers on one Redis act as one */
} nebula_storage_kind;

typedef struct nebula_broker_options {
    struct event_base *event_base;       /* run the acceptor on this base (the caller's, not
                                            freed by the broker); NULL: the broker makes one */
    const char *listen;                  /* "HOST:PORT"; port 0 = ephemeral. Default "127.0.0.1:8080" */
    const char *tls_cert_file;           /* PEM; with tls_key_file the listener speaks TLS only */
    const char *tls_key_file;
    int workers;                         /* worker threads; default: number of online cores */
    const char *admin_listen;            /* "HOST:PORT" of /healthz /readyz /metrics; NULL: none.
                                            Default "127.0.0.1:9090" */
    uint64_t max_message_size;           /* bytes per WebSocket message; default 1 MiB */
    uint32_t max_connections;            /* open sessions in all; default 100000 */
    double idle_timeout_s;               /* silence before a ping, and after it before closing; default 60 */
    double handshake_timeout_s;          /* TLS + HTTP upgrade must finish within; default 10 */
    double drain_timeout_s;              /* stop(): wait this long for clients to close; default 10 */
    const char *const *allowed_origins;  /* Origin allow-list (exact); NULL/0: any */
    size_t allowed_origin_count;
    bool logging_enabled;                /* seed: logging.enabled; default true */
    nebula_log_level log_level;          /* seed: logging.level; default info */

    /* Authentication (first that is set wins): the seed's authenticate
     * callback; a token file (auth.h documents its format); else anonymous
     * use in the tenant "default" with every collection readable and
     * writable. */
    nebula_authenticate_fn authenticate;
    void *authenticate_data;
    const char *tokens_file;

    /* Seed: storage. NULL: the broker makes one of storage_kind and owns
     * it. Otherwise borrowed: it must outlive the broker. */
    sync_storage *storage;
    nebula_storage_kind storage_kind;    /* default NEBULA_STORAGE_MEMORY */
    const char *redis_url;               /* NEBULA_STORAGE_REDIS: redis://[user:password@]host:port/db;
                                            default redis://127.0.0.1:6379/0 */
    const char *redis_prefix;            /* prefix of every Redis key; default "nebula:" */
    uint64_t redis_max_log;              /* events kept per collection log in Redis, older ones
                                            trimmed; 0: no limit; default 1000000 */
    sync_conflict_strategy conflict_strategy;   /* default last-write-wins */
    const nebula_conflict_rule *conflict_rules; /* first match wins; others: conflict_strategy */
    size_t conflict_rule_count;
    size_t max_output_buffer;            /* unsent bytes per session before a subscriber
                                            counts as slow; default 1 MiB */
    bool slow_consumer_close;            /* slow subscribers: false (default) pause live delivery
                                            and catch up from storage once drained; true: close
                                            the session with 1008 */
    double retention_s;                  /* events older than this are cleared; default 7 days */
    double cleanup_interval_s;           /* how often; default 1 hour */
    uint32_t ring_capacity;              /* events kept per collection for fan-out; power of
                                            two; default 4096 */
} nebula_broker_options;

void nebula_broker_options_init(nebula_broker_options *opts);

/* Validates options and loads TLS material; binds nothing yet. The options'
 * strings are copied. On failure *out is NULL and err (if not NULL) holds a
 * one-line reason naming the offending option or file. */
int nebula_broker_create(const nebula_broker_options *opts, nebula_broker **out, char *err,
                         size_t err_len);

/* Binds the listener and the admin endpoint, starts the workers, and sets
 * SIGPIPE to be ignored (process-wide: a vanished peer must be a write
 * error, not a fatal signal). On failure
 * err (if not NULL) holds a one-line reason; free the broker afterwards. */
int nebula_broker_start(nebula_broker *broker, char *err, size_t err_len);

/* Begins a graceful stop: /readyz turns 503, the listener closes, every
 * session receives close 1001, workers wait up to drain_timeout_s for peers to
 * close, then the acceptor loop returns. Call on the acceptor thread (e.g.
 * from a signal event on nebula_broker_event_base()). */
void nebula_broker_stop(nebula_broker *broker);

/* Reloads the TLS certificate and key from the same files; new connections
 * use them, open ones are untouched. Keeps the old ones on failure. */
int nebula_broker_reload_tls(nebula_broker *broker);

/* The storage in use: the seed's getStorage(). Owned by the broker unless
 * it was given in the options. */
sync_storage *nebula_broker_storage(nebula_broker *broker);

/* Open WebSocket sessions (handshake done) over all workers: the seed's
 * getClientsCount(). Any thread. */
size_t nebula_broker_clients_count(const nebula_broker *broker);

/* The acceptor's event base (the seed's getIo() counterpart): run it, or add
 * the application's own events to it. Owned by the broker unless given in
 * the options. */
struct event_base *nebula_broker_event_base(nebula_broker *broker);

/* Bound ports (after start), useful with port 0. */
uint16_t nebula_broker_listen_port(const nebula_broker *broker);
uint16_t nebula_broker_admin_port(const nebula_broker *broker);
bool nebula_broker_uses_tls(const nebula_broker *broker);

/* Stops workers if still running and frees everything. Accepts NULL. */
void nebula_broker_free(nebula_broker *broker);

#ifdef __cplusplus
}
#endif

#endif
