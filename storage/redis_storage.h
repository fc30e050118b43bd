/* redis_storage: the shared, durable implementation of sync_storage.h, on
 * Redis (hiredis with its libevent adapter). Several brokers on one Redis
 * act as one: one total order per collection, one idempotency record per
 * event id, one current version per document.
 *
 * Layout (see redis_keys.h): per (tenant, collection) a stream holds the
 * log (entry id = seq), a hash the current document versions, a hash the
 * ids of retained events, a hash the head (epoch, last, first). Saving is
 * one Lua script per batch (storage/lua/save.lua) that deduplicates, checks
 * the conflict strategy, assigns seqs, appends, updates documents and
 * publishes "<epoch> <last> <node>" on the collection's channel, atomically:
 * two brokers writing one collection can never interleave wrongly.
 *
 * Threads. Every thread that calls the storage first calls thread_start
 * with its event loop; it gets its own connection, on which its calls are
 * pipelined and from which they complete (never inline, except calls that
 * fail at once: a connection that is down answers SYNC_STORAGE_UNAVAILABLE
 * right away). One more thread of the storage's own, the announcer, holds
 * a pub/sub connection for the watched collections and a connection for
 * fetching events.
 *
 * Announcements (the listener). Per collection the storage remembers up to
 * which seq it has announced. A local save whose events follow on directly
 * is announced when its reply comes. One that does not (another broker, or
 * another thread of this one, wrote in between) waits until the events
 * between have been announced: from the other thread's reply, or fetched
 * from the stream by the announcer (after REDIS_GAP_WAIT_MS, or at once
 * when a pub/sub notice from another broker says they exist). The save's
 * completion callback runs only after its events were announced, as the
 * contract asks. Other brokers' events of watched collections are fetched
 * when their notice arrives, and announced with origin 0. When fetching
 * fails (Redis away) and a gap has been open for REDIS_GAP_GIVE_UP_MS, the
 * storage announces past it; the broker's readers then see the jump and
 * catch up with events_after. After the pub/sub connection comes back, every
 * watched collection is fetched up to its head (the broker resynchronises
 * before resuming live delivery).
 *
 * Failures. A call on a connection that is down, or whose connection drops
 * before the answer, completes with SYNC_STORAGE_UNAVAILABLE (a save: no
 * event was reported ACCEPTED; it may have been stored, in which case a
 * retry is answered DUPLICATE with its seq). Connections come back with
 * exponential backoff and reload the scripts. available() is false while
 * the announcer's connections are down.
 *
 * Durability: an ACCEPTED event is in Redis's memory; what survives a
 * Redis crash depends on its persistence settings (appendonly yes with
 * appendfsync everysec loses at most about a second; always loses nothing
 * acknowledged). A collection whose keys were lost gets a new epoch, which
 * sends clients a snapshot.
 *
 * Retention: clear_events_before trims each log from its oldest entry, a
 * bounded number of entries per script call; and a save trims its log to
 * max_log entries. An event's id is remembered while its entry is
 * retained: the idempotency window is the retained log.
 *
 * Not supported: Redis Cluster (keys are hash-tagged per collection, but
 * MOVED/ASK redirections are not followed), TLS to Redis, Sentinel. There
 * is no size cap: bound Redis with maxmemory (a refused write is a
 * retryable REJECTED) and retention.
 */
#ifndef NEBULA_REDIS_STORAGE_H
#define NEBULA_REDIS_STORAGE_H

#include <stddef.h>
#include <stdint.h>

#include "sync_storage.h"

#ifdef __cplusplus
extern "C" {
#endif

#define REDIS_STORAGE_DEFAULT_URL "redis://127.0.0.1:6379/0"
#define REDIS_STORAGE_DEFAULT_PREFIX "nebula:"
#define REDIS_GAP_WAIT_MS 2
#define REDIS_GAP_GIVE_UP_MS 1000

#define REDIS_STORAGE_DEFAULT_MAX_LOG ((uint64_t)1000000)

typedef struct redis_storage_options {
    const char *url;            /* redis://[user:password@]host[:port][/db] */
    const char *prefix;         /* prepended to every key and channel */
    uint64_t max_log;           /* entries kept per collection log; a save that goes past
                                   trims the oldest (and forgets their ids); 0: no limit */
} redis_storage_options;

void redis_storage_options_init(redis_storage_options *opts);

/* Creates the storage and starts connecting (it does not wait for Redis:
 * available() says when it is reachable). NULL with a one-line reason in
 * err for a bad URL or prefix, or when out of resources. */
sync_storage *redis_storage_create(const redis_storage_options *opts, char *err, size_t err_len);

#ifdef __cplusplus
}
#endif

#endif
