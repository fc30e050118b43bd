/* events_scan: reads the one ServerMessage a subscriber gets most, Events,
 * straight from its protobuf wire bytes, without decoding it into structs.
 *
 * The load tool checks every delivered event's seq and the timestamp inside
 * its data; decoding each message fully with protobuf-c (every string and
 * field of every event) made the tool, not the broker, the limit at high
 * delivery rates. This scanner walks the wire format once and hands over
 * only seq and data. Unknown fields are skipped, as protobuf requires.
 */
#ifndef NEBULA_EVENTS_SCAN_H
#define NEBULA_EVENTS_SCAN_H

#include <stddef.h>
#include <stdint.h>

typedef enum events_scan_result {
    EVENTS_SCAN_OK = 0,             /* an Events message: every event was handed over */
    EVENTS_SCAN_NOT_EVENTS = 1,     /* some other ServerMessage: decode it fully */
    EVENTS_SCAN_MALFORMED = -1,     /* not valid protobuf for ServerMessage.events */
} events_scan_result;

typedef struct events_scan_event {
    uint64_t seq;
    const uint8_t *data;            /* into the message */
    size_t data_len;
} events_scan_event;

/* Scans a ServerMessage. For Events, collection points into msg
 * (collection_len bytes, not NUL-terminated) and on_event runs once per
 * event, in order; a message with several `events` fields (the last one
 * wins in protobuf) is reported MALFORMED, which the broker never sends. */
events_scan_result events_scan(const uint8_t *msg, size_t len, const uint8_t **collection,
                               size_t *collection_len,
                               void (*on_event)(void *arg, const events_scan_event *e), void *arg);

#endif
