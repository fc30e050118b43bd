/* sync_wire: the pre-encoded form of events on the wire, so that an accepted
 * event is encoded exactly once however many subscribers receive it.
 *
 * A delivery is one WebSocket binary message holding one ServerMessage whose
 * `events` member (an Events message) carries k events of one collection.
 * Protobuf encodes a repeated field as the concatenation of its elements, so
 * the message splits into
 *
 *     [ServerMessage.events tag + length][Events.collection field]   per batch
 *     [Events.events tag + length + Event]  x k                      per event
 *
 * The per-event parts are built once (sync_wire_encode_event) into
 * shared_events; the small per-batch prefix (a few bytes plus the collection
 * name) is written per subscriber, because a subscriber may skip its own
 * events and so receive a different k. The result is an ordinary protobuf
 * encoding any decoder reads. */
#ifndef NEBULA_SYNC_WIRE_H
#define NEBULA_SYNC_WIRE_H

#include <stddef.h>
#include <stdint.h>

#include "shared_event.h"
#include "sync_storage.h"

/* Room for any prefix: two tags, two 10-byte varints, and the collection. */
#define SYNC_WIRE_PREFIX_MAX(collection_len) (22 + (collection_len))

/* Encodes the Events.events field for one stored event (seq set). The
 * shared_event carries e->seq and e->origin. NULL when out of memory. */
shared_event *sync_wire_encode_event(const char *collection, const sync_event *e);

/* Writes the per-batch prefix for events_bytes bytes of encoded events;
 * returns its length. out must hold SYNC_WIRE_PREFIX_MAX(collection_len). */
size_t sync_wire_events_prefix(uint8_t *out, const char *collection, size_t collection_len,
                               size_t events_bytes);

#endif
