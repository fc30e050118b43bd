/* doc_tally: see doc_tally.h. */
#include "doc_tally.h"

#include <stdlib.h>
#include <string.h>

bool doc_tally_init(struct doc_tally *t, uint64_t first, uint64_t n)
{
    memset(t, 0, sizeof *t);
    t->bits = calloc((size_t)(n / 8 + 1), 1);
    if (!t->bits)
        return false;
    t->first = first;
    t->n = n;
    return true;
}

void doc_tally_free(struct doc_tally *t)
{
    free(t->bits);
    t->bits = NULL;
}

void doc_tally_observe(struct doc_tally *t, uint64_t number)
{
    if (number < t->first || number - t->first >= t->n) {
        t->unexpected++;
        return;
    }
    uint64_t i = number - t->first;
    uint8_t bit = (uint8_t)(1u << (i % 8));
    if (t->bits[i / 8] & bit) {
        t->repeated++;
        return;
    }
    t->bits[i / 8] |= bit;
    t->seen++;
}
