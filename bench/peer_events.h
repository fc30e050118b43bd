/* peer_events: a batch of sync events as JSON, the form the seed's clients
 * send (an array of SyncEvent objects), for the peer targets of
 * nebula-sync-bench fanout (socketio, ws-broadcast); and the scan that finds
 * this run's events again in what a server delivers.
 *
 * One event, compact JSON, keys in this order:
 *   {"id":"<event id>","collection":"<C>","type":"insert"|"update",
 *    "documentId":"bench-p<P>-d<D>","data":<document>,"timestamp":<ms>,
 *    "clientId":"<the publisher's client id>"}
 * The id and the document are those of event_format.h (run, publisher,
 * counter; publish time). A publisher's first 64 events insert documents
 * d0..d63, later ones update them in turn, as on nebula-syncd.
 *
 * The scan relies only on what any JSON re-serialisation that keeps key
 * order and writes no blanks (JSON.stringify) leaves alone: every event
 * object starts with {"id":" and its document follows "data": within the
 * same object. Other servers' or other runs' events are counted, not
 * checked. Pure functions: the caller owns every buffer.
 */
#ifndef NEBULA_BENCH_PEER_EVENTS_H
#define NEBULA_BENCH_PEER_EVENTS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Writes s as a JSON string literal (quotes included; ", \ and control
 * characters escaped) into out; returns its length, or the length it
 * would need when that is >= cap (out is then cut, as snprintf does). */
size_t peer_json_string(char *out, size_t cap, const char *s);

/* A publisher's batch writer: everything that does not change between
 * batches is prepared once. Owned by the publisher's client thread. */
struct peer_batch {
    long batch;                     /* events per batch */
    size_t size;                    /* bytes of each document */
    uint64_t run_id;
    uint32_t pub;
    char *collection_json;          /* quoted and escaped */
    char *client_id_json;
    uint8_t *doc;                   /* the document, ts patched per batch */
};

/* false: out of memory, or size < EVENT_DOC_MIN_SIZE (b is then empty and
 * peer_batch_free() is harmless). */
bool peer_batch_init(struct peer_batch *b, long batch, size_t size, uint64_t run_id, uint32_t pub,
                     const char *collection, const char *client_id);
void peer_batch_free(struct peer_batch *b);

/* Bytes peer_batch_write() writes at most. */
size_t peer_batch_max_len(const struct peer_batch *b);

/* Writes [event,...] for the publisher's events first .. first+batch-1,
 * published at ts_ns (CLOCK_MONOTONIC, in the document) and wall_ms (epoch
 * milliseconds, "timestamp"), into out (peer_batch_max_len() bytes);
 * returns the length. */
size_t peer_batch_write(const struct peer_batch *b, char *out, uint64_t first, uint64_t ts_ns,
                        uint64_t wall_ms);

/* One event of this run found by peer_events_scan(). */
struct peer_event {
    uint32_t pub;
    uint64_t counter;
    bool has_ts;                    /* its document starts as event_format.h writes it */
    uint64_t ts_ns;
};

typedef void (*peer_event_fn)(void *arg, const struct peer_event *e);

/* Calls fn for every event of run_id in json[0..len), in order; returns
 * the number of other event objects seen (another run's or another
 * writer's ids). */
uint64_t peer_events_scan(const uint8_t *json, size_t len, uint64_t run_id, peer_event_fn fn,
                          void *arg);

#endif
