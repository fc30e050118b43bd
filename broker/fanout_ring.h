/* fanout_ring: the recent part of one collection's event stream, shared by
 * every worker thread that has subscribers for that collection.
 *
 * Per (tenant, collection) the broker keeps one ring. The storage listener
 * publishes every accepted event into it, once, in seq order; each worker
 * thread reads it with its own cursor (the next seq it wants) and appends the
 * same shared_event to each local subscriber's output (see shared_event.h).
 * The ring keeps the last `capacity` events; a reader that falls further
 * behind is told so (RING_READ_OVERRUN) and must catch up from the storage.
 *
 * Ownership rules:
 *   - fanout_ring_publish() takes over the caller's reference to the event;
 *     the ring drops it when a newer event overwrites the slot, on
 *     fanout_ring_reset_to() and on fanout_ring_free();
 *   - fanout_ring_read() returning RING_READ_OK hands the reader a NEW
 *     reference, which stays valid however far the producer moves on; the
 *     reader must shared_event_unref() it (or pass it on, e.g. to libevent
 *     with shared_event_evbuffer_cleanup);
 *   - the ring itself belongs to whoever created it; fanout_ring_free() may
 *     only run once no thread can call any other function on it.
 *
 * Thread rules:
 *   - ONE producer at a time: publish and reset_to must be serialised by the
 *     caller, and consecutive calls must be ordered by happens-before (same
 *     thread, or a mutex / the storage's per-collection ordering between
 *     them). The storage listener contract (sync_storage.h) already gives
 *     this: events of one collection arrive in seq order, never concurrently;
 *   - any number of threads may call read, read_batch, last_seq and capacity
 *     concurrently with each other and with the producer;
 *   - readers never block or wait; the producer waits only for readers that
 *     are inside the few instructions that take a reference from the very
 *     slot it is about to overwrite.
 */
#ifndef NEBULA_FANOUT_RING_H
#define NEBULA_FANOUT_RING_H

#include <stddef.h>
#include <stdint.h>

#include "shared_event.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct fanout_ring fanout_ring;

typedef enum ring_read_status {
    RING_READ_OK,       /* *out is a new reference to the event with that seq */
    RING_READ_EMPTY,    /* not published yet: wait for the next notification */
    RING_READ_OVERRUN   /* no longer (or never) in the ring: the reader is more
                           than capacity behind, or asked for a seq before the
                           ring's first one; catch up from the storage */
} ring_read_status;

typedef enum ring_publish_status {
    RING_PUBLISH_OK,
    RING_PUBLISH_BAD_SEQ    /* publish: ev is NULL or ev->seq != last_seq + 1;
                               the ring did not take the reference, the caller
                               still owns it. reset_to: next_seq is invalid */
} ring_publish_status;

/* A ring holding the last `capacity` events; capacity must be a power of two
 * >= 2 (e.g. 4096). The first seq expected is 1 (see fanout_ring_reset_to).
 * NULL on a bad capacity or out of memory. */
fanout_ring *fanout_ring_create(size_t capacity);

/* Frees the ring and drops the references it holds. NULL is a no-op. No
 * other call on the ring may be running or follow. */
void fanout_ring_free(fanout_ring *ring);

/* Producer: appends ev, whose seq must be exactly fanout_ring_last_seq() + 1,
 * taking over the caller's reference. On RING_PUBLISH_BAD_SEQ nothing
 * changes and the caller keeps its reference. */
ring_publish_status fanout_ring_publish(fanout_ring *ring, shared_event *ev);

/* Producer: forgets every held event and makes next_seq the next seq to
 * publish; seqs below next_seq then read as OVERRUN. Use when the ring is
 * created for a collection whose log already has events (next_seq = head + 1)
 * or when the storage's log was reset (new epoch). Memory-safe against
 * concurrent readers, but a reader's cursor from before the reset means
 * nothing afterwards: the caller must tell the readers (epoch change).
 * O(capacity). RING_PUBLISH_BAD_SEQ (and no change) when next_seq is 0 or
 * UINT64_MAX. */
ring_publish_status fanout_ring_reset_to(fanout_ring *ring, uint64_t next_seq);

/* The newest published seq, or next_seq - 1 of the last reset (0 for a new
 * ring). Any thread. Acquire: if it returns s, reading any seq in
 * (s - capacity, s] finds that event unless the producer overwrote it since. */
uint64_t fanout_ring_last_seq(const fanout_ring *ring);

/* The capacity given to fanout_ring_create. Any thread. */
size_t fanout_ring_capacity(const fanout_ring *ring);

/* Reader: the event with this seq. Any thread, concurrently with the
 * producer and other readers; never waits. On RING_READ_OK *out is a new
 * reference the reader owns; otherwise *out is set to NULL. */
ring_read_status fanout_ring_read(fanout_ring *ring, uint64_t seq, shared_event **out);

/* Reader: up to max consecutive events starting at seq, as new references
 * in out[0 .. *n_read). Returns RING_READ_OK when at least one was read (it
 * stops early at the first seq not yet published or already overwritten;
 * the next call starting after the last read one reports which), otherwise
 * the status of seq itself, with *n_read == 0. */
ring_read_status fanout_ring_read_batch(fanout_ring *ring, uint64_t seq, shared_event **out,
                                        size_t max, size_t *n_read);

#ifdef __cplusplus
}
#endif

#endif
