/* sync_hub: the broker-wide meeting point of storage and workers.
 *
 * For every (tenant, collection) that is written or subscribed, the hub keeps
 * a channel: its fan-out ring and which workers have subscribers for it. The
 * hub is the storage's listener: accepted events arrive in seq order per
 * collection (sync_storage.h), are encoded once (sync_wire.h), published
 * into the channel's ring, and every worker watching the channel is woken.
 * Workers then read the ring with their own cursors (worker.c).
 *
 * Thread rules: channels are found or created under a read-write lock (once
 * per subscribe and per saved batch, never per delivery); a channel lives as
 * long as the hub. Watch flags are atomics; wakers are set before workers
 * start and called from whichever thread completed a save. */
#ifndef NEBULA_SYNC_HUB_H
#define NEBULA_SYNC_HUB_H

#include <stdbool.h>
#include <stddef.h>

#include "fanout_ring.h"
#include "sync_storage.h"

typedef struct sync_hub sync_hub;
typedef struct sync_channel sync_channel;

/* ring_capacity: events kept per channel (power of two). */
sync_hub *sync_hub_create(int worker_count, size_t ring_capacity);
void sync_hub_free(sync_hub *hub);

/* wake(arg) must be cheap and callable from any thread. */
void sync_hub_set_waker(sync_hub *hub, int worker, void (*wake)(void *arg), void *arg);

/* The storage listener (sync_listener_fn); listener_data is the hub. */
void sync_hub_on_events(void *hub, const char *tenant, const char *collection,
                        const sync_event *events, size_t count);

/* Finds or creates the channel; NULL when out of memory. */
sync_channel *sync_hub_channel(sync_hub *hub, const char *tenant, const char *collection);

/* The storage whose watch() hears which channels have watchers (a shared
 * storage then announces other brokers' events for them). Set before
 * workers start. */
void sync_hub_set_storage(sync_hub *hub, sync_storage *storage);

/* A worker starts or stops being woken for this channel's events. */
void sync_channel_watch(sync_channel *channel, int worker, bool watching);

fanout_ring *sync_channel_ring(sync_channel *channel);
const char *sync_channel_tenant(const sync_channel *channel);
const char *sync_channel_collection(const sync_channel *channel);

#endif
