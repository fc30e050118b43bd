/* doc_tally: the snapshot check of `nebula-sync-bench catchup`: did a
 * snapshot hold each of the documents the tool wrote exactly once?
 *
 * The documents expected are numbered first .. first + n - 1 (the number in
 * their id, event_format.h). A receiver shows the tally every document
 * number it finds in the snapshot's pages; the tally counts the expected
 * ones seen (each once), repeats, and numbers outside the range. The
 * snapshot is right when seen == n and nothing else was counted.
 *
 * A bitmap of n bits; one tally per receiver, used by the thread that
 * reads its connection.
 */
#ifndef NEBULA_BENCH_DOC_TALLY_H
#define NEBULA_BENCH_DOC_TALLY_H

#include <stdbool.h>
#include <stdint.h>

struct doc_tally {
    uint8_t *bits;
    uint64_t first, n;
    uint64_t seen;                  /* expected documents, each counted once */
    uint64_t repeated;              /* an expected document seen again */
    uint64_t unexpected;            /* outside first .. first + n - 1, or not ours */
};

/* false: out of memory (t is then empty, and doc_tally_free() harmless). */
bool doc_tally_init(struct doc_tally *t, uint64_t first, uint64_t n);
void doc_tally_free(struct doc_tally *t);

void doc_tally_observe(struct doc_tally *t, uint64_t number);

/* A document that is not one of ours at all. */
static inline void doc_tally_foreign(struct doc_tally *t)
{
    t->unexpected++;
}

static inline bool doc_tally_complete(const struct doc_tally *t)
{
    return t->seen == t->n && t->repeated == 0 && t->unexpected == 0;
}

#endif
