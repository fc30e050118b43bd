/* sync_storage: the storage contract of the broker (the seed's SyncStorage),
 * asynchronous and written so that a custom storage can be implemented
 * against this header alone.
 *
 * A storage keeps, per (tenant, collection):
 *   - the ordered log of accepted events: seq 1, 2, 3, ... with no gap; an
 *     epoch string that changes whenever the log is reset or lost (cursors
 *     from another epoch are then useless, and clients get a snapshot);
 *   - the current version of every document (for conflicts and snapshots);
 *   - the ids of stored events (idempotency: a re-pushed event is answered
 *     DUPLICATE with its original seq, and is not stored twice).
 * It may forget old log entries (retention); `first_seq` in sync_head says
 * where the retained log starts, so the broker knows when a cursor is too old
 * and a snapshot is needed.
 *
 * Calls and callbacks. Every operation takes a completion callback and a
 * user_data pointer. A call may complete before it returns (memory storage
 * does) or later, on the thread that made the call (from that thread's
 * event loop). Pointers passed to a callback are valid only during the
 * callback; copy what you keep. Pointers passed into a call are only
 * borrowed for the duration of the call.
 *
 * Ordering and fan-out. The storage tells its listener (set with
 * sync_storage_ops.set_listener) about every accepted event, in seq order per
 * collection, never concurrently for one collection, and before the save's
 * completion callback reports the event ACCEPTED. The broker builds its
 * fan-out on that promise.
 *
 * Thread safety: every operation may be called from several threads at once.
 */
#ifndef NEBULA_SYNC_STORAGE_H
#define NEBULA_SYNC_STORAGE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define SYNC_EPOCH_MAX 40          /* bytes of an epoch string, NUL included */

typedef enum sync_event_type {
    SYNC_EVENT_INSERT = 1,
    SYNC_EVENT_UPDATE = 2,
    SYNC_EVENT_DELETE = 3,
} sync_event_type;

/* How a write to a document that changed since the writer saw it is
 * settled (the client option conflictResolution names the same ones). */
typedef enum sync_conflict_strategy {
    SYNC_LAST_WRITE_WINS = 0,   /* higher hlc wins; equal hlc: higher client_id (bytewise) wins */
    SYNC_SERVER_WINS = 1,       /* base_seq must equal the document's current seq, else it loses */
    SYNC_CLIENT_WINS = 2,       /* every write is accepted in arrival order */
} sync_conflict_strategy;

/* One event. In calls, every pointer is borrowed. */
typedef struct sync_event {
    const char *id;             /* idempotency key (client UUID) */
    sync_event_type type;
    const char *document_id;
    const uint8_t *data;        /* JSON of the whole document; NULL/0 for deletes */
    size_t data_len;
    int64_t timestamp_ms;       /* client clock; used by clear_events_before */
    uint64_t hlc;
    const char *client_id;
    uint64_t base_seq;          /* version the client last saw; 0: none */
    uint64_t seq;               /* assigned by the storage (ignored in save calls) */
    uint64_t origin;            /* opaque tag of the pushing session: not interpreted,
                                   handed back unchanged to the listener and by reads;
                                   0 for events stored through another instance of a
                                   shared storage (another broker's tags mean nothing) */
} sync_event;

/* The current version of one document. */
typedef struct sync_document {
    const char *document_id;
    const uint8_t *data;        /* NULL/0 when deleted */
    size_t data_len;
    uint64_t seq;               /* seq of the event that wrote this version */
    uint64_t hlc;
    const char *client_id;
    bool deleted;
} sync_document;

/* Where a collection's log stands. A never-written collection has
 * last_seq 0 and first_seq 1, and already has an epoch. */
typedef struct sync_head {
    uint64_t first_seq;         /* oldest seq still retained (last_seq + 1 if none) */
    uint64_t last_seq;          /* newest seq, 0 if none */
    char epoch[SYNC_EPOCH_MAX];
} sync_head;

typedef enum sync_save_status {
    SYNC_SAVE_ACCEPTED = 1,     /* stored with seq */
    SYNC_SAVE_DUPLICATE = 2,    /* an event with this id is stored with seq */
    SYNC_SAVE_CONFLICT = 3,     /* lost: winner is the current version */
    SYNC_SAVE_REJECTED = 4,     /* not stored: reason, retryable */
} sync_save_status;

typedef struct sync_save_result {
    sync_save_status status;
    uint64_t seq;               /* ACCEPTED, DUPLICATE */
    sync_document winner;       /* CONFLICT */
    const char *reason;         /* REJECTED: static text */
    bool retryable;             /* REJECTED: try again later (storage unavailable) */
} sync_save_result;

/* Status of a whole call. */
typedef enum sync_storage_status {
    SYNC_STORAGE_OK = 0,
    SYNC_STORAGE_UNAVAILABLE = -1,   /* retry later */
    SYNC_STORAGE_INVALID = -2,       /* bad arguments */
    SYNC_STORAGE_FULL = -3,          /* a size limit refuses new data */
} sync_storage_status;

typedef void (*sync_save_cb)(void *user_data, int status, const sync_save_result *results,
                             size_t count);
/* events: in seq order; complete == false when limit cut the answer short. */
typedef void (*sync_events_cb)(void *user_data, int status, const sync_event *events,
                               size_t count, const sync_head *head, bool complete);
typedef void (*sync_snapshot_cb)(void *user_data, int status, const sync_document *documents,
                                 size_t count, const sync_head *head);
typedef void (*sync_head_cb)(void *user_data, int status, const sync_head *head);
typedef void (*sync_count_cb)(void *user_data, int status, uint64_t count);

/* The listener: accepted events of one collection, in seq order. Called
 * from whichever thread completed the save; never concurrently for one
 * collection. */
typedef void (*sync_listener_fn)(void *listener_data, const char *tenant, const char *collection,
                                 const sync_event *events, size_t count);

typedef struct sync_storage_ops {
    /* Seed: saveEvents. Stores a batch for one collection, in order; one
     * result per event. Within the batch, later events see earlier ones. */
    void (*save_events)(void *ctx, const char *tenant, const char *collection,
                        sync_conflict_strategy strategy, const sync_event *events, size_t count,
                        sync_save_cb done, void *user_data);

    /* Seed: getEventsAfter. Events with seq > after_seq, at most limit. */
    void (*events_after)(void *ctx, const char *tenant, const char *collection,
                         uint64_t after_seq, size_t limit, sync_events_cb done, void *user_data);

    /* Seed: getEventsForClient. Events of the given collections written by
     * other clients than client_id, with seq > after_seq (per collection,
     * same order as collections; NULL means 0 for all), at most limit per
     * collection; done is called once per collection, in order. */
    void (*events_for_client)(void *ctx, const char *tenant, const char *client_id,
                              const char *const *collections, const uint64_t *after_seq,
                              size_t collection_count, size_t limit, sync_events_cb done,
                              void *user_data);

    /* Seed: clearEventsBefore. Forgets log entries whose timestamp_ms is
     * older than before_ms (documents stay); reports how many. */
    void (*clear_events_before)(void *ctx, int64_t before_ms, sync_count_cb done, void *user_data);

    /* Current documents of a collection (deleted ones omitted) and the head
     * they correspond to. */
    void (*snapshot)(void *ctx, const char *tenant, const char *collection,
                     sync_snapshot_cb done, void *user_data);

    void (*head)(void *ctx, const char *tenant, const char *collection, sync_head_cb done,
                 void *user_data);

    /* Where accepted events are announced (one listener; NULL to remove). */
    void (*set_listener)(void *ctx, sync_listener_fn listener, void *listener_data);

    /* Frees the storage. No call may be in flight. */
    void (*destroy)(void *ctx);

    /* ---- optional: NULL when a storage has no use for them ------------- */

    /* A storage that completes calls from an event loop (Redis) needs to
     * know each calling thread's loop. thread_start is called on a thread,
     * with that thread's struct event_base, before the thread's first call;
     * it returns SYNC_STORAGE_OK or an error. thread_stop is called on the
     * same thread before its loop goes away: calls still in flight complete
     * (with SYNC_STORAGE_UNAVAILABLE if need be) before it returns. */
    int (*thread_start)(void *ctx, void *event_base);
    void (*thread_stop)(void *ctx);

    /* A storage shared by several brokers (Redis) also announces, to the
     * listener, events accepted by the other brokers, but only for the
     * collections this broker watches: the broker calls watch(true) when
     * one of its threads gains subscribers for a collection and
     * watch(false) when that thread loses the last one (calls are counted
     * per collection). Announcements of other brokers' events carry origin
     * 0, and may skip seqs (a gap the broker fills with events_after). */
    void (*watch)(void *ctx, const char *tenant, const char *collection, bool watching);

    /* False while the storage cannot serve calls (readiness). */
    bool (*available)(void *ctx);

    /* The storage's own counters, for /metrics: emit(arg, name, help,
     * type "counter" or "gauge", value) once per metric. */
    void (*metrics)(void *ctx,
                    void (*emit)(void *arg, const char *name, const char *help,
                                 const char *type, double value),
                    void *arg);
} sync_storage_ops;

/* A storage is its operations and their context. */
typedef struct sync_storage {
    const sync_storage_ops *ops;
    void *ctx;
} sync_storage;

const char *sync_storage_strerror(int status);

/* ---- helpers for implementations ------------------------------------------ */

/* Why an event can never be stored (answer it REJECTED, not retryable), or
 * NULL: empty id or document_id, unknown type, insert/update without data. */
const char *sync_event_invalid_reason(const sync_event *ev);

bool sync_conflict_strategy_is_known(sync_conflict_strategy strategy);

/* Frees a storage made by an implementation's create function: calls
 * ops->destroy(ctx), then frees the struct. NULL is a no-op. No call may be
 * in flight. */
void sync_storage_destroy(sync_storage *s);

#ifdef __cplusplus
}
#endif

#endif
