/* seq_check: the delivery check of nebula-sync-bench: does every subscriber
 * see every event of a stream exactly once, in order?
 *
 * A stream is a run of numbers its source issues as 1, 2, 3, ... For
 * nebula-syncd it is a collection's seqs, which a subscriber sees from its
 * snapshot's position on (one stream per subscriber). For the peer targets,
 * which assign no seq, it is each publisher's own event counter plus one
 * (one stream per publisher in every subscriber: seq_table). A receiver
 * shows each stream every number it receives, in the order received:
 *   - last + 1: in order;
 *   - above last + 1: the numbers in between are counted lost, and the
 *     stream moves on (one of them arriving later counts as duplicated: a
 *     reordered delivery is not a delivery);
 *   - at or below last: duplicated.
 * seq_stream_missing() then says how many of the numbers a source issued
 * never arrived after the last one seen (the tail of the run).
 *
 * The check runs once per delivered event, so the per-event functions are
 * static inline; a stream or table belongs to the thread that reads its
 * subscriber's connection.
 */
#ifndef NEBULA_BENCH_SEQ_CHECK_H
#define NEBULA_BENCH_SEQ_CHECK_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct seq_stream {
    uint64_t last;                  /* highest number seen (or the start position) */
    uint64_t lost;                  /* numbers skipped over */
    uint64_t dup;                   /* numbers at or below last */
};

enum seq_verdict {
    SEQ_IN_ORDER,
    SEQ_GAP,                        /* in the future: the numbers between were lost */
    SEQ_DUPLICATE,
};

/* A stream whose receiver has everything up to and including position. */
static inline void seq_stream_start(struct seq_stream *s, uint64_t position)
{
    s->last = position;
    s->lost = 0;
    s->dup = 0;
}

static inline enum seq_verdict seq_stream_observe(struct seq_stream *s, uint64_t seq)
{
    if (seq == s->last + 1) {
        s->last = seq;
        return SEQ_IN_ORDER;
    }
    if (seq > s->last + 1) {
        s->lost += seq - s->last - 1;
        s->last = seq;
        return SEQ_GAP;
    }
    s->dup++;
    return SEQ_DUPLICATE;
}

/* Numbers up to `issued` (the source's highest) that never arrived after the
 * last one seen. */
static inline uint64_t seq_stream_missing(const struct seq_stream *s, uint64_t issued)
{
    return issued > s->last ? issued - s->last : 0;
}

/* One receiver's streams from n sources, numbered 0..n-1, each started at 0
 * (its source's first number is 1). `position` is the sum of the streams'
 * `last`: a receiver has everything its sources issued when it equals the
 * sum of what they issued. */
struct seq_table {
    struct seq_stream *streams;
    size_t n;
    uint64_t position;
};

/* false: out of memory (t is then empty, and seq_table_free() is harmless). */
bool seq_table_init(struct seq_table *t, size_t n);
void seq_table_free(struct seq_table *t);

/* The stream must be < t->n (the caller checks where the number came from). */
static inline enum seq_verdict seq_table_observe(struct seq_table *t, size_t stream, uint64_t seq)
{
    struct seq_stream *s = &t->streams[stream];
    uint64_t before = s->last;
    enum seq_verdict v = seq_stream_observe(s, seq);
    t->position += s->last - before;
    return v;
}

/* Totals over the table's streams; issued[i] is what source i issued. */
uint64_t seq_table_lost(const struct seq_table *t);
uint64_t seq_table_dup(const struct seq_table *t);
uint64_t seq_table_missing(const struct seq_table *t, const uint64_t *issued);

#endif
