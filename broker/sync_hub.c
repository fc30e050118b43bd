/* sync_hub: channels per (tenant, collection), the storage listener that
 * feeds their rings, and worker wakeups. */
#include "sync_hub.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include <uthash.h>

#include "log.h"
#include "sync_wire.h"

struct sync_channel {
    UT_hash_handle hh;
    char *key;                  /* tenant NUL collection: no separator collisions */
    size_t key_len;
    const char *tenant;         /* into key */
    const char *collection;     /* into key */
    fanout_ring *ring;
    sync_hub *hub;
    atomic_bool *watching;      /* per worker */
};

typedef struct worker_waker {
    void (*wake)(void *arg);
    void *arg;
} worker_waker;

struct sync_hub {
    pthread_rwlock_t lock;      /* guards channels (the table, not their contents) */
    sync_channel *channels;
    int worker_count;
    size_t ring_capacity;
    worker_waker *wakers;
    sync_storage *storage;      /* told which collections are watched */
};

sync_hub *sync_hub_create(int worker_count, size_t ring_capacity)
{
    sync_hub *hub = calloc(1, sizeof *hub);
    if (!hub)
        return NULL;
    hub->wakers = calloc((size_t)worker_count, sizeof *hub->wakers);
    if (!hub->wakers) {
        free(hub);
        return NULL;
    }
    pthread_rwlock_init(&hub->lock, NULL);
    hub->worker_count = worker_count;
    hub->ring_capacity = ring_capacity;
    return hub;
}

static void channel_free(sync_channel *ch)
{
    fanout_ring_free(ch->ring);
    free(ch->watching);
    free(ch->key);
    free(ch);
}

void sync_hub_free(sync_hub *hub)
{
    if (!hub)
        return;
    sync_channel *ch, *tmp;
    HASH_ITER(hh, hub->channels, ch, tmp) {
        HASH_DEL(hub->channels, ch);
        channel_free(ch);
    }
    pthread_rwlock_destroy(&hub->lock);
    free(hub->wakers);
    free(hub);
}

void sync_hub_set_waker(sync_hub *hub, int worker, void (*wake)(void *arg), void *arg)
{
    hub->wakers[worker].wake = wake;
    hub->wakers[worker].arg = arg;
}

static size_t make_key(char *out, size_t cap, const char *tenant, const char *collection)
{
    size_t t = strlen(tenant), c = strlen(collection);
    if (t + 1 + c > cap)
        return 0;
    memcpy(out, tenant, t + 1);
    memcpy(out + t + 1, collection, c);
    return t + 1 + c;
}

static sync_channel *channel_new(sync_hub *hub, const char *key, size_t key_len)
{
    sync_channel *ch = calloc(1, sizeof *ch);
    if (!ch)
        return NULL;
    ch->key = malloc(key_len + 1);
    ch->watching = calloc((size_t)hub->worker_count, sizeof *ch->watching);
    ch->ring = fanout_ring_create(hub->ring_capacity);
    if (!ch->key || !ch->watching || !ch->ring) {
        channel_free(ch);
        return NULL;
    }
    memcpy(ch->key, key, key_len);
    ch->key[key_len] = '\0';
    ch->key_len = key_len;
    ch->tenant = ch->key;
    ch->collection = ch->key + strlen(ch->key) + 1;
    ch->hub = hub;
    return ch;
}

sync_channel *sync_hub_channel(sync_hub *hub, const char *tenant, const char *collection)
{
    char key[1024];
    size_t key_len = make_key(key, sizeof key, tenant, collection);
    if (key_len == 0)
        return NULL;
    sync_channel *ch = NULL;
    pthread_rwlock_rdlock(&hub->lock);
    HASH_FIND(hh, hub->channels, key, key_len, ch);
    pthread_rwlock_unlock(&hub->lock);
    if (ch)
        return ch;
    pthread_rwlock_wrlock(&hub->lock);
    HASH_FIND(hh, hub->channels, key, key_len, ch);   /* another thread may have won */
    if (!ch && (ch = channel_new(hub, key, key_len)) != NULL)
        HASH_ADD_KEYPTR(hh, hub->channels, ch->key, ch->key_len, ch);
    pthread_rwlock_unlock(&hub->lock);
    return ch;
}

void sync_hub_set_storage(sync_hub *hub, sync_storage *storage)
{
    hub->storage = storage;
}

void sync_channel_watch(sync_channel *channel, int worker, bool watching)
{
    bool was = atomic_exchange_explicit(&channel->watching[worker], watching,
                                        memory_order_acq_rel);
    sync_storage *storage = channel->hub->storage;
    if (was != watching && storage && storage->ops->watch)
        storage->ops->watch(storage->ctx, channel->tenant, channel->collection, watching);
}

fanout_ring *sync_channel_ring(sync_channel *channel)
{
    return channel->ring;
}

const char *sync_channel_tenant(const sync_channel *channel)
{
    return channel->tenant;
}

const char *sync_channel_collection(const sync_channel *channel)
{
    return channel->collection;
}

/* The ring must continue exactly where the log is; a ring that is new, or
 * whose collection's log jumped (reset, events published by another
 * broker that this one never saw), restarts at the event's seq and readers
 * behind it catch up from storage. */
static void publish(sync_channel *ch, shared_event *se)
{
    if (fanout_ring_last_seq(ch->ring) + 1 != se->seq)
        fanout_ring_reset_to(ch->ring, se->seq);
    if (fanout_ring_publish(ch->ring, se) != RING_PUBLISH_OK) {
        log_error("channel %s/%s: cannot publish seq %llu", ch->tenant, ch->collection,
                  (unsigned long long)se->seq);
        shared_event_unref(se);
    }
}

static void wake_watchers(sync_channel *ch)
{
    sync_hub *hub = ch->hub;
    for (int w = 0; w < hub->worker_count; w++)
        if (atomic_load_explicit(&ch->watching[w], memory_order_acquire) && hub->wakers[w].wake)
            hub->wakers[w].wake(hub->wakers[w].arg);
}

void sync_hub_on_events(void *hub_ptr, const char *tenant, const char *collection,
                        const sync_event *events, size_t count)
{
    sync_hub *hub = hub_ptr;
    sync_channel *ch = sync_hub_channel(hub, tenant, collection);
    if (!ch) {
        log_error("channel %s/%s: out of memory; subscribers will catch up from storage", tenant,
                  collection);
        return;
    }
    for (size_t i = 0; i < count; i++) {
        shared_event *se = sync_wire_encode_event(collection, &events[i]);
        if (!se) {
            log_error("channel %s/%s: out of memory encoding seq %llu", tenant, collection,
                      (unsigned long long)events[i].seq);
            continue;   /* the gap is seen by readers, who catch up from storage */
        }
        publish(ch, se);
    }
    wake_watchers(ch);
}
