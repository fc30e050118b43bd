/* peer_events: see peer_events.h. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif

#include "peer_events.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "event_format.h"

#define ID_KEY "{\"id\":\""
#define ID_KEY_LEN 7
#define DATA_KEY "\"data\":"
#define DATA_KEY_LEN 7

size_t peer_json_string(char *out, size_t cap, const char *s)
{
    size_t n = 0;
#define PUT(ch) do { if (n + 1 < cap) out[n] = (ch); n++; } while (0)
    PUT('"');
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        if (*p == '"' || *p == '\\') {
            PUT('\\');
            PUT((char)*p);
        } else if (*p < 0x20) {
            char esc[8];
            snprintf(esc, sizeof esc, "\\u%04x", *p);
            for (int i = 0; esc[i]; i++)
                PUT(esc[i]);
        } else {
            PUT((char)*p);
        }
    }
    PUT('"');
#undef PUT
    if (cap)
        out[n < cap ? n : cap - 1] = '\0';
    return n;
}

static char *json_string_dup(const char *s)
{
    size_t n = peer_json_string(NULL, 0, s);
    char *out = malloc(n + 1);
    if (out)
        peer_json_string(out, n + 1, s);
    return out;
}

bool peer_batch_init(struct peer_batch *b, long batch, size_t size, uint64_t run_id, uint32_t pub,
                     const char *collection, const char *client_id)
{
    memset(b, 0, sizeof *b);
    if (size < EVENT_DOC_MIN_SIZE || batch < 1)
        return false;
    b->batch = batch;
    b->size = size;
    b->run_id = run_id;
    b->pub = pub;
    b->collection_json = json_string_dup(collection);
    b->client_id_json = json_string_dup(client_id);
    b->doc = malloc(size);
    if (!b->collection_json || !b->client_id_json || !b->doc) {
        peer_batch_free(b);
        return false;
    }
    event_doc_fill(b->doc, size, (long)pub);
    return true;
}

void peer_batch_free(struct peer_batch *b)
{
    free(b->collection_json);
    free(b->client_id_json);
    free(b->doc);
    memset(b, 0, sizeof *b);
}

/* Everything in an event but the document, the collection and the client
 * id, with every number at its widest. */
#define EVENT_FIXED_MAX 256

size_t peer_batch_max_len(const struct peer_batch *b)
{
    size_t per_event = EVENT_FIXED_MAX + b->size + strlen(b->collection_json) +
                       strlen(b->client_id_json);
    return 2 + (size_t)b->batch * (per_event + 1);
}

static char *put(char *p, const char *s, size_t n)
{
    memcpy(p, s, n);
    return p + n;
}

#define PUT_LIT(p, lit) put((p), (lit), sizeof(lit) - 1)

static char *put_str(char *p, const char *s)
{
    return put(p, s, strlen(s));
}

static char *put_u64(char *p, uint64_t v)
{
    char tmp[24];
    int n = 0;
    do {
        tmp[n++] = (char)('0' + v % 10);
        v /= 10;
    } while (v);
    while (n)
        *p++ = tmp[--n];
    return p;
}

size_t peer_batch_write(const struct peer_batch *b, char *out, uint64_t first, uint64_t ts_ns,
                        uint64_t wall_ms)
{
    char *p = out;
    *p++ = '[';
    event_doc_set_ts(b->doc, ts_ns);
    for (long i = 0; i < b->batch; i++) {
        uint64_t n = first + (uint64_t)i;
        char id[EVENT_ID_LEN + 1];
        event_id_write(id, b->run_id, b->pub, n);
        if (i)
            *p++ = ',';
        p = PUT_LIT(p, ID_KEY);
        p = put(p, id, EVENT_ID_LEN);
        p = PUT_LIT(p, "\",\"collection\":");
        p = put_str(p, b->collection_json);
        p = n < EVENT_DOCS_PER_PUBLISHER ? PUT_LIT(p, ",\"type\":\"insert\"")
                                        : PUT_LIT(p, ",\"type\":\"update\"");
        p = PUT_LIT(p, ",\"documentId\":\"bench-p");
        p = put_u64(p, b->pub);
        p = PUT_LIT(p, "-d");
        p = put_u64(p, n % EVENT_DOCS_PER_PUBLISHER);
        p = PUT_LIT(p, "\"," DATA_KEY);
        p = put(p, (const char *)b->doc, b->size);
        p = PUT_LIT(p, ",\"timestamp\":");
        p = put_u64(p, wall_ms);
        p = PUT_LIT(p, ",\"clientId\":");
        p = put_str(p, b->client_id_json);
        *p++ = '}';
    }
    *p++ = ']';
    return (size_t)(p - out);
}

uint64_t peer_events_scan(const uint8_t *json, size_t len, uint64_t run_id, peer_event_fn fn,
                          void *arg)
{
    const uint8_t *end = json + len;
    const uint8_t *ev = memmem(json, len, ID_KEY, ID_KEY_LEN);
    uint64_t others = 0;
    while (ev) {
        const uint8_t *id = ev + ID_KEY_LEN;
        const uint8_t *next = memmem(id, (size_t)(end - id), ID_KEY, ID_KEY_LEN);
        const uint8_t *ev_end = next ? next : end;
        struct peer_event e;
        if (ev_end - id <= EVENT_ID_LEN || id[EVENT_ID_LEN] != '"' ||
            event_id_parse((const char *)id, EVENT_ID_LEN, run_id, &e.pub, &e.counter) !=
                EVENT_ID_THIS_RUN) {
            others++;
        } else {
            const uint8_t *after_id = id + EVENT_ID_LEN + 1;
            const uint8_t *data = memmem(after_id, (size_t)(ev_end - after_id), DATA_KEY, DATA_KEY_LEN);
            e.has_ts = data && event_doc_ts(data + DATA_KEY_LEN,
                                            (size_t)(ev_end - data - DATA_KEY_LEN), &e.ts_ns);
            if (!e.has_ts)
                e.ts_ns = 0;
            fn(arg, &e);
        }
        ev = next;
    }
    return others;
}
