/* fanout_ring: a single-producer, multi-reader ring of shared_event
 * references with per-slot reader counts, so that a reader never takes a
 * reference to an event the producer has already released.
 *
 * THE PROBLEM. A reader loads slot->ev and then increments the event's
 * refcount. If in between the producer overwrites the slot and drops the
 * ring's reference (possibly the last one), the reader increments freed
 * memory. The per-slot `readers` count closes that window:
 *
 *   producer, putting seq s into slot i = s & mask        reader, wanting seq r
 *   (1) slot.seq = SLOT_WRITING                 seq_cst   (a) slot.readers += 1     seq_cst
 *   (2) wait until slot.readers == 0            seq_cst   (b) seen = slot.seq       seq_cst
 *   (3) old = slot.ev; slot.ev = ev; slot.seq = s release (c) if seen == r: ref(slot.ev)
 *   (4) ring.last_seq = s (release); unref(old)           (d) slot.readers -= 1     seq_cst
 *
 * WHY IT IS SAFE (Dekker). (1), (2)'s loads, (a), (b) and (d) are seq_cst,
 * so they all appear in one total order S. Take a reader that sees
 * seen == r, the seq of `old`:
 *   - (b) cannot come after (1) in S: a seq_cst load returns the last
 *     seq_cst store before it in S or a store that does not happen before
 *     that one, and the store of r happened before (1) (same producer, or
 *     producers ordered by the caller). After (1) it would see SLOT_WRITING
 *     or something newer, never r.
 *   - So (a) < (b) < (1) < every load of (2) in S, and those loads see our
 *     increment or later values of `readers` (all its writes are seq_cst
 *     RMWs). The count cannot be 0 while our increment is in and our (d) is
 *     not, so (2) reads 0 only from (d) or an RMW after it in the chain;
 *     (d) is a release and RMWs continue its release sequence, so (d)
 *     synchronises with that load: our (c) happens before (3) and (4).
 *     Hence we loaded `old` (not the new pointer) and our ref() happened
 *     before the ring's unref(old): the count never hits 0 under us.
 *   A reader that sees SLOT_WRITING or another seq touches no event.
 * And the event it gets is complete: (b) acquires the release store (3) of
 * r, which follows the store of slot.ev and the creator's writes of the
 * event's fields and bytes (so does the reader's earlier acquire of
 * last_seq >= r, published after (3)).
 *
 * CLASSIFYING A MISS. Readers first load last_seq (acquire). r > last: not
 * published yet, EMPTY, without touching the slot (so readers polling for
 * the next event never make the producer wait). r + capacity <= last: the
 * slot has certainly been reused, OVERRUN. Otherwise seq r was stored into
 * the slot before last was published, so the slot shows r or a later value
 * (coherence): anything else (SLOT_WRITING for r + capacity, a newer seq,
 * SLOT_EMPTY after a reset) means r is gone or going: OVERRUN. In
 * particular a reader wanting s while s is being written gets EMPTY (last is
 * still s - 1), one wanting s - capacity gets OVERRUN.
 *
 * PROGRESS. Readers never wait. The producer waits only for readers inside
 * (a)..(d) on the one slot it is reusing, which only readers about
 * `capacity` behind (or just racing with it) touch. Readers arriving after
 * (1) see SLOT_WRITING and leave at once (OVERRUN), so the wait is bounded
 * by the readers already inside. It spins briefly, then yields the CPU in
 * case such a reader was preempted inside the window.
 */
#include "fanout_ring.h"

#include <sched.h>
#include <stdalign.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdlib.h>

#define CACHE_LINE 64

/* slot.seq values that are not seqs. 0 is never a valid seq (logs start at
 * 1), so it marks a slot that holds nothing; UINT64_MAX marks a slot that
 * the producer is rewriting. */
#define SLOT_EMPTY UINT64_C(0)
#define SLOT_WRITING UINT64_MAX

/* Spins (with a CPU pause) before the waiting producer starts yielding. */
#define PRODUCER_SPINS_BEFORE_YIELD 64

typedef struct ring_slot {
    /* One slot per cache line: readers write `readers` and the producer
     * writes `seq`, so neighbouring slots must not share a line. */
    alignas(CACHE_LINE) _Atomic uint64_t seq;
    _Atomic(shared_event *) ev;
    _Atomic uint32_t readers;   /* readers between (a) and (d) */
} ring_slot;

struct fanout_ring {
    /* Read by every reader on every read, written once per publish; the
     * immutable fields read alongside it share its line. */
    alignas(CACHE_LINE) _Atomic uint64_t last_seq;
    size_t capacity;
    uint64_t mask;
    ring_slot slots[];
};

static bool is_power_of_two(size_t n)
{
    return n >= 2 && (n & (n - 1)) == 0;
}

fanout_ring *fanout_ring_create(size_t capacity)
{
    if (!is_power_of_two(capacity) || capacity > (SIZE_MAX - sizeof(fanout_ring)) / sizeof(ring_slot))
        return NULL;
    /* Both sizes are multiples of CACHE_LINE (alignas), as aligned_alloc
     * requires. */
    fanout_ring *ring = aligned_alloc(CACHE_LINE, sizeof(fanout_ring) + capacity * sizeof(ring_slot));
    if (!ring)
        return NULL;
    atomic_init(&ring->last_seq, 0);
    ring->capacity = capacity;
    ring->mask = capacity - 1;
    for (size_t i = 0; i < capacity; i++) {
        atomic_init(&ring->slots[i].seq, SLOT_EMPTY);
        atomic_init(&ring->slots[i].ev, NULL);
        atomic_init(&ring->slots[i].readers, 0);
    }
    return ring;
}

void fanout_ring_free(fanout_ring *ring)
{
    if (!ring)
        return;
    /* No reader may be active (contract), so relaxed loads see the final
     * values through whatever synchronised the callers. */
    for (size_t i = 0; i < ring->capacity; i++)
        shared_event_unref(atomic_load_explicit(&ring->slots[i].ev, memory_order_relaxed));
    free(ring);
}

static void cpu_relax(void)
{
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#elif defined(__aarch64__) || defined(__arm__)
    __asm__ __volatile__("yield");
#endif
}

/* Step (2): wait for readers that may have seen the slot's old seq. */
static void wait_for_slot_readers(ring_slot *slot)
{
    unsigned spins = 0;
    while (atomic_load_explicit(&slot->readers, memory_order_seq_cst) != 0) {
        if (spins < PRODUCER_SPINS_BEFORE_YIELD) {
            spins++;
            cpu_relax();
        } else {
            /* A reader was preempted inside its window: let it run. */
            sched_yield();
        }
    }
}

/* Steps (1)-(3): puts (seq, ev) into the slot and returns the event it held,
 * whose reference now belongs to the caller. No reader holds a pointer to
 * it obtained from this slot without having taken its own reference. */
static shared_event *slot_replace(ring_slot *slot, uint64_t seq, shared_event *ev)
{
    /* (1) seq_cst: must be ordered before the loads of (2) (a plain release
     * store could be reordered after them: store-load, the Dekker case). */
    atomic_store_explicit(&slot->seq, SLOT_WRITING, memory_order_seq_cst);
    wait_for_slot_readers(slot);   /* (2) */
    /* (3) Relaxed for ev: no reader loads it unless it sees the release
     * store of seq below, and no reader can still be loading the old one. */
    shared_event *old = atomic_load_explicit(&slot->ev, memory_order_relaxed);
    atomic_store_explicit(&slot->ev, ev, memory_order_relaxed);
    /* Release: a reader acquiring this seq sees ev and the event's bytes. */
    atomic_store_explicit(&slot->seq, seq, memory_order_release);
    return old;
}

ring_publish_status fanout_ring_publish(fanout_ring *ring, shared_event *ev)
{
    /* Relaxed: only producers write last_seq, and they are ordered by
     * happens-before (contract), so this is the latest value. */
    uint64_t last = atomic_load_explicit(&ring->last_seq, memory_order_relaxed);
    /* A refusal, not an assert: a gap or a repeat means the caller broke the
     * storage's ordering promise, and it should log that, not crash. */
    if (!ev || ev->seq != last + 1 || ev->seq == SLOT_WRITING)
        return RING_PUBLISH_BAD_SEQ;
    shared_event *old = slot_replace(&ring->slots[ev->seq & ring->mask], ev->seq, ev);
    /* (4) Release: whoever sees last_seq == ev->seq finds the slot written. */
    atomic_store_explicit(&ring->last_seq, ev->seq, memory_order_release);
    /* Outside the window, after publishing: freeing can take a while. */
    shared_event_unref(old);
    return RING_PUBLISH_OK;
}

ring_publish_status fanout_ring_reset_to(fanout_ring *ring, uint64_t next_seq)
{
    if (next_seq == SLOT_EMPTY || next_seq == SLOT_WRITING)
        return RING_PUBLISH_BAD_SEQ;
    /* Clear every slot with the same protocol as publish (readers may be
     * active), then move last_seq: a reader that sees the new last_seq
     * finds the slots cleared, so every seq below next_seq reads OVERRUN. */
    for (size_t i = 0; i < ring->capacity; i++)
        shared_event_unref(slot_replace(&ring->slots[i], SLOT_EMPTY, NULL));
    atomic_store_explicit(&ring->last_seq, next_seq - 1, memory_order_release);
    return RING_PUBLISH_OK;
}

uint64_t fanout_ring_last_seq(const fanout_ring *ring)
{
    /* Acquire: pairs with (4), so the slots up to the returned seq are
     * visible. The cast only drops const for the load (C11's atomic_load
     * takes a non-const pointer). */
    return atomic_load_explicit((_Atomic uint64_t *)&ring->last_seq, memory_order_acquire);
}

size_t fanout_ring_capacity(const fanout_ring *ring)
{
    return ring->capacity;
}

/* Steps (a)-(d): a new reference to the slot's event if the slot holds seq,
 * else NULL. */
static shared_event *slot_take_ref(ring_slot *slot, uint64_t seq)
{
    shared_event *ev = NULL;
    /* (a), (b) seq_cst: the increment must be visible to the producer's (2)
     * before we look at seq (store-load order, the Dekker pairing with (1)). */
    atomic_fetch_add_explicit(&slot->readers, 1, memory_order_seq_cst);
    if (atomic_load_explicit(&slot->seq, memory_order_seq_cst) == seq) {
        /* (c) Relaxed: (b) acquired the store of seq, which follows the
         * store of ev, and the next store of ev waits for our (d), so this
         * is exactly the event stored with seq. */
        ev = atomic_load_explicit(&slot->ev, memory_order_relaxed);
        shared_event_ref(ev);
    }
    /* (d) Release (seq_cst, so that every write of `readers` is in S): our
     * load of ev and ref happen before the producer's unref. */
    atomic_fetch_sub_explicit(&slot->readers, 1, memory_order_seq_cst);
    return ev;
}

/* One read against a snapshot `last` of last_seq (see CLASSIFYING A MISS). */
static ring_read_status read_one(fanout_ring *ring, uint64_t seq, uint64_t last, shared_event **out)
{
    *out = NULL;
    if (seq > last)
        return RING_READ_EMPTY;
    if (seq == SLOT_EMPTY || last - seq >= ring->capacity)
        return RING_READ_OVERRUN;
    *out = slot_take_ref(&ring->slots[seq & ring->mask], seq);
    return *out ? RING_READ_OK : RING_READ_OVERRUN;
}

ring_read_status fanout_ring_read(fanout_ring *ring, uint64_t seq, shared_event **out)
{
    return read_one(ring, seq, fanout_ring_last_seq(ring), out);
}

ring_read_status fanout_ring_read_batch(fanout_ring *ring, uint64_t seq, shared_event **out,
                                        size_t max, size_t *n_read)
{
    *n_read = 0;
    if (max == 0)
        return RING_READ_OK;
    /* One snapshot of last_seq for the whole batch: events published after
     * it are left for the next call. */
    uint64_t last = fanout_ring_last_seq(ring);
    ring_read_status first = read_one(ring, seq, last, &out[0]);
    if (first != RING_READ_OK)
        return first;
    size_t n = 1;
    while (n < max && read_one(ring, seq + n, last, &out[n]) == RING_READ_OK)
        n++;
    *n_read = n;
    return RING_READ_OK;
}
