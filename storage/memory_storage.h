/* memory_storage: the default storage, embedded in the broker process.
 *
 * Implements sync_storage.h entirely in memory, so nothing survives a
 * restart: a new storage gives every collection a new epoch, which sends
 * reconnecting clients a snapshot. Every call completes before it returns
 * (callbacks run inline, on the calling thread).
 *
 * Policies this header adds to the contract:
 *
 *  - Size cap. At most max_events events and max_bytes bytes are retained
 *    over all collections (bytes as counted by memory_storage_event_cost()).
 *    A save that would go over trims the OLDEST events of the collection it
 *    writes to (its first_seq advances; clients with older cursors get a
 *    snapshot), never those of another collection, and never a document.
 *    When even that collection's whole log would not make room, the event
 *    is REJECTED "storage full", retryable, and nothing is trimmed. An event
 *    bigger than max_bytes on its own is REJECTED "event larger than the
 *    storage size limit", not retryable. The caps hold at every instant.
 *
 *  - Retention (clear_events_before). Per collection, the longest PREFIX of
 *    the log whose entries all have timestamp_ms < before_ms is dropped.
 *    Timestamps come from client clocks and need not follow seq order: an
 *    old entry behind a newer one stays until that one is old enough too (or
 *    the size cap trims it). So an entry with timestamp_ms >= before_ms is
 *    never dropped, and first_seq keeps its meaning: every seq >= first_seq
 *    is retained. Documents always stay.
 *
 *  - Idempotency window. The id of an accepted event is remembered while the
 *    event is retained, and after the size cap trims it, until
 *    clear_events_before drops it by its timestamp_ms (ids of entries trimmed
 *    by clear_events_before are forgotten with them). To bound memory, at
 *    most max_events ids of trimmed events are remembered over all
 *    collections; at that bound, a collection that trims forgets its own
 *    oldest remembered ids first (and, having none, does not remember the
 *    id of the event it trims).
 *
 *  - The listener runs while the collection's lock is held (that is what
 *    makes it ordered and never concurrent per collection). It must not call
 *    into the storage: hand the events off (fan-out ring, queue) instead.
 *    set_listener waits for listener calls in progress, so once it returns
 *    the previous listener is neither running nor called again.
 *
 *  - Snapshots list documents sorted by document_id (bytewise).
 *  - events_after / events_for_client with limit 0 return no events;
 *    complete then says whether there were none to return.
 *
 * Memory per retained event: see event_cost() in memory_storage.c for the
 * accounting and the measurement. An event with 200 bytes of data, UUID id
 * and client id is counted as 498 bytes (retained_bytes, max_bytes) and
 * really takes about 528 bytes of heap; one that creates a document, about
 * 96 more.
 */
#ifndef NEBULA_MEMORY_STORAGE_H
#define NEBULA_MEMORY_STORAGE_H

#include <stddef.h>
#include <stdint.h>

#include "sync_storage.h"

#ifdef __cplusplus
extern "C" {
#endif

#define MEMORY_STORAGE_DEFAULT_MAX_EVENTS ((size_t)1000000)
#define MEMORY_STORAGE_DEFAULT_MAX_BYTES ((size_t)256 * 1024 * 1024)

typedef struct memory_storage_options {
    size_t max_events;   /* retained events over all collections; > 0; SIZE_MAX: no cap */
    size_t max_bytes;    /* retained event bytes over all collections; > 0; SIZE_MAX: no cap */
} memory_storage_options;

/* Sets the defaults: max_events 1,000,000, max_bytes 256 MiB. */
void memory_storage_options_init(memory_storage_options *opts);

/* Creates an empty storage (opts NULL: the defaults). Returns NULL with
 * errno EINVAL for a zero limit, ENOMEM when out of memory. The caller owns
 * the result and frees it with sync_storage_destroy(). */
sync_storage *memory_storage_create(const memory_storage_options *opts);

typedef struct memory_storage_stats {
    uint64_t retained_events;   /* events in the logs */
    uint64_t retained_bytes;    /* their cost, as counted against max_bytes */
    uint64_t collections;       /* collections ever touched (reads create them too) */
    uint64_t documents;         /* document versions held, deleted ones included */
    uint64_t remembered_ids;    /* ids of trimmed events still deduplicated */
} memory_storage_stats;

/* Reads the counters (each one exact, not a consistent snapshot of all of
 * them while saves run). Returns SYNC_STORAGE_OK, or SYNC_STORAGE_INVALID
 * when s is not a memory storage. */
int memory_storage_stats_get(const sync_storage *s, memory_storage_stats *out);

#ifdef __cplusplus
}
#endif

#endif
