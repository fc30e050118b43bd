/* shared_event: a reference-counted, immutable, encoded-once event buffer.
 * See shared_event.h for the ownership and thread rules. */
#include "shared_event.h"

#include <assert.h>
#include <stdlib.h>
#include <string.h>

shared_event *shared_event_alloc(uint64_t seq, uint64_t origin, size_t len)
{
    if (len > SIZE_MAX - sizeof(shared_event))
        return NULL;
    shared_event *ev = malloc(sizeof(shared_event) + len);
    if (!ev)
        return NULL;
    /* Plain init: nobody else can see ev until the caller shares it through
     * a synchronising hand-off, which also publishes this store. */
    atomic_init(&ev->refcount, 1);
    ev->seq = seq;
    ev->origin = origin;
    ev->len = len;
    return ev;
}

shared_event *shared_event_create(uint64_t seq, uint64_t origin, const void *bytes, size_t len)
{
    assert(bytes || len == 0);
    shared_event *ev = shared_event_alloc(seq, origin, len);
    if (ev && len)
        memcpy(ev->bytes, bytes, len);
    return ev;
}

void shared_event_ref(shared_event *ev)
{
    if (!ev)
        return;
    /* Relaxed is enough: the caller already holds a reference, so the count
     * cannot reach 0 concurrently, and taking a reference publishes nothing. */
    uint32_t before = atomic_fetch_add_explicit(&ev->refcount, 1, memory_order_relaxed);
    assert(before > 0 && before < UINT32_MAX);
    (void)before;
}

void shared_event_unref(shared_event *ev)
{
    if (!ev)
        return;
    /* acq_rel: the release half orders this holder's reads of the event
     * before the decrement; the acquire half, on the thread that takes the
     * count to 0, makes every other holder's reads happen before free().
     * (An acquire fence only on the last unref would be cheaper on weak
     * memory machines, but ThreadSanitizer does not model fences.) */
    uint32_t before = atomic_fetch_sub_explicit(&ev->refcount, 1, memory_order_acq_rel);
    assert(before > 0);
    if (before == 1)
        free(ev);
}

uint32_t shared_event_refcount(const shared_event *ev)
{
    /* The cast drops const only for the load, which writes nothing (C11's
     * atomic_load takes a non-const pointer; C17 fixed that). */
    return atomic_load_explicit((_Atomic uint32_t *)&ev->refcount, memory_order_relaxed);
}

void shared_event_evbuffer_cleanup(const void *data, size_t datalen, void *extra)
{
    (void)data;
    (void)datalen;
    shared_event_unref(extra);
}
