/* events_scan: a protobuf wire walker for ServerMessage.events (see
 * events_scan.h). Field numbers come from proto/nebula_sync.proto. */
#include "events_scan.h"

#include <stdbool.h>

enum {
    WIRE_VARINT = 0,
    WIRE_FIXED64 = 1,
    WIRE_LEN = 2,
    WIRE_FIXED32 = 5,
};

enum {
    SERVER_MESSAGE_EVENTS = 4,      /* ServerMessage.events */
    EVENTS_COLLECTION = 1,          /* Events.collection */
    EVENTS_EVENTS = 2,              /* Events.events */
    EVENT_DATA = 5,                 /* Event.data */
    EVENT_SEQ = 10,                 /* Event.seq */
};

typedef struct cursor {
    const uint8_t *p, *end;
} cursor;

static bool read_varint(cursor *c, uint64_t *out)
{
    uint64_t v = 0;
    for (int shift = 0; shift < 64 && c->p < c->end; shift += 7) {
        uint8_t b = *c->p++;
        v |= (uint64_t)(b & 0x7f) << shift;
        if (!(b & 0x80)) {
            *out = v;
            return true;
        }
    }
    return false;
}

/* One field: its number and wire type; for WIRE_LEN its bytes in body,
 * for WIRE_VARINT its value. Fixed-size values are skipped. */
typedef struct field {
    uint32_t number, wire;
    cursor body;
    uint64_t value;
} field;

static bool read_field(cursor *c, field *f)
{
    *f = (field){0};
    uint64_t key;
    if (!read_varint(c, &key) || (key >> 3) == 0 || (key >> 3) > UINT32_MAX)
        return false;
    f->number = (uint32_t)(key >> 3);
    f->wire = (uint32_t)(key & 7);
    switch (f->wire) {
    case WIRE_VARINT:
        return read_varint(c, &f->value);
    case WIRE_FIXED64:
    case WIRE_FIXED32: {
        size_t n = f->wire == WIRE_FIXED64 ? 8 : 4;
        if ((size_t)(c->end - c->p) < n)
            return false;
        c->p += n;
        return true;
    }
    case WIRE_LEN: {
        uint64_t n;
        if (!read_varint(c, &n) || n > (uint64_t)(c->end - c->p))
            return false;
        f->body.p = c->p;
        f->body.end = c->p + n;
        c->p += n;
        return true;
    }
    default:
        return false;   /* groups are not used by proto3 */
    }
}

static bool scan_event(cursor c, events_scan_event *e)
{
    *e = (events_scan_event){0};
    field f = {0};
    while (c.p < c.end) {
        if (!read_field(&c, &f))
            return false;
        if (f.number == EVENT_SEQ && f.wire == WIRE_VARINT) {
            e->seq = f.value;
        } else if (f.number == EVENT_DATA && f.wire == WIRE_LEN) {
            e->data = f.body.p;
            e->data_len = (size_t)(f.body.end - f.body.p);
        }
    }
    return true;
}

static bool scan_events(cursor c, const uint8_t **collection, size_t *collection_len,
                        void (*on_event)(void *arg, const events_scan_event *e), void *arg)
{
    field f = {0};
    while (c.p < c.end) {
        if (!read_field(&c, &f))
            return false;
        if (f.wire != WIRE_LEN)
            continue;
        if (f.number == EVENTS_COLLECTION) {
            *collection = f.body.p;
            *collection_len = (size_t)(f.body.end - f.body.p);
        } else if (f.number == EVENTS_EVENTS) {
            events_scan_event e;
            if (!scan_event(f.body, &e))
                return false;
            on_event(arg, &e);
        }
    }
    return true;
}

events_scan_result events_scan(const uint8_t *msg, size_t len, const uint8_t **collection,
                               size_t *collection_len,
                               void (*on_event)(void *arg, const events_scan_event *e), void *arg)
{
    cursor c = {msg, msg + len};
    cursor events = {0};
    bool found = false;
    *collection = (const uint8_t *)"";
    *collection_len = 0;
    field f = {0};
    while (c.p < c.end) {
        if (!read_field(&c, &f))
            return EVENTS_SCAN_MALFORMED;
        if (f.number != SERVER_MESSAGE_EVENTS || f.wire != WIRE_LEN)
            return found ? EVENTS_SCAN_MALFORMED : EVENTS_SCAN_NOT_EVENTS;
        if (found)
            return EVENTS_SCAN_MALFORMED;
        events = f.body;
        found = true;
    }
    if (!found)
        return EVENTS_SCAN_NOT_EVENTS;
    return scan_events(events, collection, collection_len, on_event, arg) ? EVENTS_SCAN_OK
                                                                          : EVENTS_SCAN_MALFORMED;
}
