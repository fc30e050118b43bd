/* sync_wire: encode-once event fragments and their per-batch prefix. */
#include "sync_wire.h"

#include <string.h>

#include "nebula_sync.pb-c.h"

/* Protobuf wire format: tag = field number << 3 | wire type 2 (length-delimited). */
#define TAG_SERVER_MESSAGE_EVENTS ((4u << 3) | 2u)
#define TAG_EVENTS_COLLECTION ((1u << 3) | 2u)
#define TAG_EVENTS_EVENTS ((2u << 3) | 2u)

static size_t varint_write(uint8_t *out, uint64_t value)
{
    size_t n = 0;
    while (value >= 0x80) {
        out[n++] = (uint8_t)(value | 0x80);
        value >>= 7;
    }
    out[n++] = (uint8_t)value;
    return n;
}

static size_t varint_size(uint64_t value)
{
    size_t n = 1;
    while (value >= 0x80) {
        value >>= 7;
        n++;
    }
    return n;
}

static void fill_event(Nebula__Sync__V1__Event *pe, const char *collection, const sync_event *e)
{
    /* protobuf-c's structs take non-const pointers; packing only reads them. */
    pe->id = (char *)e->id;
    pe->type = (Nebula__Sync__V1__EventType)e->type;
    pe->collection = (char *)collection;
    pe->document_id = (char *)e->document_id;
    pe->data.data = (uint8_t *)e->data;
    pe->data.len = e->data_len;
    pe->timestamp = e->timestamp_ms;
    pe->hlc = e->hlc;
    pe->client_id = (char *)(e->client_id ? e->client_id : "");
    pe->base_seq = e->base_seq;
    pe->seq = e->seq;
}

shared_event *sync_wire_encode_event(const char *collection, const sync_event *e)
{
    Nebula__Sync__V1__Event pe = NEBULA__SYNC__V1__EVENT__INIT;
    fill_event(&pe, collection, e);
    size_t body = nebula__sync__v1__event__get_packed_size(&pe);
    size_t len = 1 + varint_size(body) + body;
    shared_event *se = shared_event_alloc(e->seq, e->origin, len);
    if (!se)
        return NULL;
    size_t n = 0;
    se->bytes[n++] = TAG_EVENTS_EVENTS;
    n += varint_write(se->bytes + n, body);
    nebula__sync__v1__event__pack(&pe, se->bytes + n);
    return se;
}

size_t sync_wire_events_prefix(uint8_t *out, const char *collection, size_t collection_len,
                               size_t events_bytes)
{
    size_t collection_field = 1 + varint_size(collection_len) + collection_len;
    size_t n = 0;
    out[n++] = TAG_SERVER_MESSAGE_EVENTS;
    n += varint_write(out + n, collection_field + events_bytes);
    out[n++] = TAG_EVENTS_COLLECTION;
    n += varint_write(out + n, collection_len);
    memcpy(out + n, collection, collection_len);
    return n + collection_len;
}
