/* shared_event: one accepted event, encoded once, shared by every subscriber.
 *
 * When the storage accepts an event, the broker encodes the bytes that go on
 * the wire (the server frame: unmasked, so identical for every receiver)
 * exactly once into a shared_event. The fan-out ring (fanout_ring.h) holds
 * one reference; each worker thread that forwards it to a local subscriber
 * takes one more reference per socket and hands the bytes to libevent with
 * evbuffer_add_reference(), passing shared_event_evbuffer_cleanup as the
 * cleanup callback, so no subscriber ever gets a private copy.
 *
 * Layout: header and payload are one allocation (flexible array member), so
 * an event costs one malloc and one free, and bytes[] is never moved.
 *
 * Ownership rules:
 *   - create/alloc return an event with refcount 1, owned by the caller;
 *   - every shared_event_ref() must be balanced by one shared_event_unref();
 *     the unref that drops the count to 0 frees the event;
 *   - seq, origin, len and bytes[] are immutable once the event has been
 *     shared (published, or ref'd for another thread): only its creator may
 *     fill bytes[] of a shared_event_alloc() event, before sharing it.
 *
 * Thread rules: ref, unref and the cleanup callback may be called from any
 * thread, concurrently. Reading the immutable fields needs no lock: whoever
 * holds a reference obtained through a synchronising hand-off (the ring, a
 * mutex, a queue) sees them fully written.
 */
#ifndef NEBULA_SHARED_EVENT_H
#define NEBULA_SHARED_EVENT_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
/* C++ (the unit tests) sees the same layout; std::atomic<uint32_t> is
 * layout-compatible with _Atomic uint32_t on every compiler we build with. */
#include <atomic>
#define NEBULA_SE_ATOMIC_U32 std::atomic<uint32_t>
extern "C" {
#else
#include <stdatomic.h>
#define NEBULA_SE_ATOMIC_U32 _Atomic uint32_t
#endif

typedef struct shared_event {
    NEBULA_SE_ATOMIC_U32 refcount;  /* private: use ref/unref */
    uint64_t seq;                   /* position in its collection's log (>= 1) */
    uint64_t origin;                /* tag of the session that pushed it, 0 = none;
                                       a subscriber with this tag skips the event */
    size_t len;                     /* bytes in bytes[] */
    uint8_t bytes[];                /* the encoded payload, sent as is */
} shared_event;

/* A new event holding a copy of len bytes; refcount 1. NULL when out of
 * memory (or when len is absurdly large). bytes may be NULL only if len == 0. */
shared_event *shared_event_create(uint64_t seq, uint64_t origin, const void *bytes, size_t len);

/* A new event with room for len bytes that the caller fills in before
 * sharing it (lets an encoder write straight into the final buffer);
 * refcount 1. NULL when out of memory. */
shared_event *shared_event_alloc(uint64_t seq, uint64_t origin, size_t len);

/* Takes one more reference. ev may be NULL (no-op). */
void shared_event_ref(shared_event *ev);

/* Drops one reference, freeing the event when it was the last one. ev may be
 * NULL (no-op). */
void shared_event_unref(shared_event *ev);

/* The current count, for tests and assertions only: any other thread may
 * change it the moment after it is read. */
uint32_t shared_event_refcount(const shared_event *ev);

/* A callback with libevent's evbuffer_ref_cleanup_cb signature. Use as
 *
 *     shared_event_ref(ev);
 *     if (evbuffer_add_reference(out, ev->bytes, ev->len,
 *                                shared_event_evbuffer_cleanup, ev) != 0)
 *         shared_event_unref(ev);    // libevent did not take it
 *
 * libevent calls it once the bytes have been written out (or the evbuffer is
 * freed); it drops the reference passed as extra. data and datalen are
 * ignored. Note that libevent 2.1 does NOT call the cleanup callback when
 * evbuffer_add_reference() itself fails, hence the unref above. */
void shared_event_evbuffer_cleanup(const void *data, size_t datalen, void *extra);

#ifdef __cplusplus
}
#endif

#undef NEBULA_SE_ATOMIC_U32

#endif
