/* event_format: how nebula-sync-bench writes the events it publishes, so that
 * whoever receives one can tell which run and publisher wrote it, which of
 * that publisher's events it is, and when it was published. Every target
 * uses it: nebula-syncd carries the id and document in protobuf fields, the
 * peer targets in JSON (peer_events.h).
 *
 * Event id: UUID-shaped (version 4, variant 10xx), unique per run,
 * publisher and event:
 *     rrrrrrrr-rrrr-4ppp-8ppp-cccccccccccc    (lower-case hex)
 *   r: bits 16..63 of the run id (random per run);
 *   p: the publisher index, 12 bits after the 4 and 14 bits after the 8;
 *   c: the publisher's event counter (48 bits), from 0.
 *
 * Document id: "bench-p<publisher>-d<n>", n the document's number for that
 * publisher (fanout cycles through EVENT_DOCS_PER_PUBLISHER of them; a
 * snapshot's documents each have their own).
 *
 * Document (the event's data): exactly `size` bytes of JSON,
 *     {"ts":"<19 digits>","pub":N,"pad":"xxx...x"}
 *   ts: CLOCK_MONOTONIC nanoseconds when the batch was written, zero-padded
 *   to 19 digits so that it can be patched in place for every batch.
 *
 * Pure functions, no state.
 */
#ifndef NEBULA_BENCH_EVENT_FORMAT_H
#define NEBULA_BENCH_EVENT_FORMAT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#define EVENT_ID_LEN 36
#define EVENT_PUB_MAX ((1u << 26) - 1)      /* publisher indexes an id can carry */
#define EVENT_COUNTER_MASK 0xffffffffffffULL

#define EVENT_DOC_TS_PREFIX "{\"ts\":\""
#define EVENT_DOC_TS_OFFSET 7                /* strlen(EVENT_DOC_TS_PREFIX) */
#define EVENT_DOC_TS_DIGITS 19
#define EVENT_DOC_MIN_SIZE 64                /* the document without padding fits */
#define EVENT_DOCS_PER_PUBLISHER 64          /* document ids each publisher cycles through */

/* out gets EVENT_ID_LEN characters and a NUL. */
void event_id_write(char out[EVENT_ID_LEN + 1], uint64_t run_id, uint32_t pub, uint64_t counter);

enum event_id_kind {
    EVENT_ID_THIS_RUN,      /* written by event_id_write() for run_id: *pub, *counter set */
    EVENT_ID_OTHER_RUN,     /* the same shape, another run (e.g. kept by a server since) */
    EVENT_ID_FOREIGN,       /* not written by this tool */
};

enum event_id_kind event_id_parse(const char *s, size_t len, uint64_t run_id, uint32_t *pub,
                                  uint64_t *counter);

#define EVENT_DOC_ID_MAX 64                  /* bytes of a document id, NUL included */

void event_doc_id_write(char out[EVENT_DOC_ID_MAX], long pub, uint64_t n);

/* Reads back what event_doc_id_write() wrote (all of s[0..len)); false for
 * anything else. */
bool event_doc_id_parse(const char *s, size_t len, long *pub, uint64_t *n);

/* Writes the document for publisher pub, ts all zeros, into doc[0..size);
 * size >= EVENT_DOC_MIN_SIZE. */
void event_doc_fill(uint8_t *doc, size_t size, long pub);

/* Puts ts_ns (< 10^19) into a document made by event_doc_fill(). */
static inline void event_doc_set_ts(uint8_t *doc, uint64_t ts_ns)
{
    uint8_t *out = doc + EVENT_DOC_TS_OFFSET;
    for (int i = EVENT_DOC_TS_DIGITS - 1; i >= 0; i--) {
        out[i] = (uint8_t)('0' + ts_ns % 10);
        ts_ns /= 10;
    }
}

/* The publish time of a document that starts like ours; false for any other
 * document. Runs once per delivered event: the digits are trusted. */
static inline bool event_doc_ts(const uint8_t *doc, size_t len, uint64_t *ts_ns)
{
    if (len < EVENT_DOC_TS_OFFSET + EVENT_DOC_TS_DIGITS ||
        memcmp(doc, EVENT_DOC_TS_PREFIX, EVENT_DOC_TS_OFFSET) != 0)
        return false;
    uint64_t ts = 0;
    for (int k = 0; k < EVENT_DOC_TS_DIGITS; k++)
        ts = ts * 10 + (uint64_t)(doc[EVENT_DOC_TS_OFFSET + k] - '0');
    *ts_ns = ts;
    return true;
}

#endif
