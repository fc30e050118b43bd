/* seq_check: see seq_check.h. */
#include "seq_check.h"

#include <stdlib.h>

bool seq_table_init(struct seq_table *t, size_t n)
{
    t->streams = calloc(n ? n : 1, sizeof *t->streams);
    t->n = t->streams ? n : 0;
    t->position = 0;
    return t->streams != NULL;
}

void seq_table_free(struct seq_table *t)
{
    free(t->streams);
    t->streams = NULL;
    t->n = 0;
}

uint64_t seq_table_lost(const struct seq_table *t)
{
    uint64_t sum = 0;
    for (size_t i = 0; i < t->n; i++)
        sum += t->streams[i].lost;
    return sum;
}

uint64_t seq_table_dup(const struct seq_table *t)
{
    uint64_t sum = 0;
    for (size_t i = 0; i < t->n; i++)
        sum += t->streams[i].dup;
    return sum;
}

uint64_t seq_table_missing(const struct seq_table *t, const uint64_t *issued)
{
    uint64_t sum = 0;
    for (size_t i = 0; i < t->n; i++)
        sum += seq_stream_missing(&t->streams[i], issued[i]);
    return sum;
}
