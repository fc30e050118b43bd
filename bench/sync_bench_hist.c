/* sync_bench_hist: see sync_bench_hist.h. */
#include "sync_bench_hist.h"

#include <inttypes.h>
#include <string.h>

#define HIST_EXACT (1u << HIST_SUB_BITS)

/* Bucket of v: exact below 256; above, the top 8 bits of v (the leading 1
 * and the next 7) give the bucket within v's octave. */
static unsigned bucket_of(uint64_t v)
{
    if (v < HIST_EXACT)
        return (unsigned)v;
    unsigned msb = 63u - (unsigned)__builtin_clzll(v);
    unsigned shift = msb - (HIST_SUB_BITS - 1);
    return HIST_EXACT + (shift - 1) * HIST_HALF + (unsigned)((v >> shift) - HIST_HALF);
}

/* Lowest value of bucket b and its width. */
static void bucket_range(unsigned b, uint64_t *low, uint64_t *width)
{
    if (b < HIST_EXACT) {
        *low = b;
        *width = 1;
        return;
    }
    unsigned shift = (b - HIST_EXACT) / HIST_HALF + 1;
    uint64_t top = (uint64_t)((b - HIST_EXACT) % HIST_HALF) + HIST_HALF;
    *low = top << shift;
    *width = (uint64_t)1 << shift;
}

void hist_init(hist *h)
{
    memset(h, 0, sizeof *h);
    h->min = UINT64_MAX;
}

void hist_record(hist *h, uint64_t ns)
{
    h->count++;
    h->sum += ns;
    if (ns < h->min)
        h->min = ns;
    if (ns > h->max)
        h->max = ns;
    uint64_t v = ns;
    if (v >> HIST_TOP_BIT) {
        v = ((uint64_t)1 << HIST_TOP_BIT) - 1;
        h->clamped++;
    }
    h->buckets[bucket_of(v)]++;
}

void hist_merge(hist *into, const hist *from)
{
    if (!from->count)
        return;
    into->count += from->count;
    into->sum += from->sum;
    into->clamped += from->clamped;
    if (from->min < into->min)
        into->min = from->min;
    if (from->max > into->max)
        into->max = from->max;
    for (unsigned i = 0; i < HIST_BUCKETS; i++)
        into->buckets[i] += from->buckets[i];
}

uint64_t hist_quantile(const hist *h, double q)
{
    if (!h->count)
        return 0;
    double r = q * (double)h->count;
    uint64_t rank = (uint64_t)r;
    if ((double)rank < r)
        rank++;
    if (rank < 1)
        rank = 1;
    if (rank > h->count)
        rank = h->count;
    uint64_t seen = 0;
    for (unsigned b = 0; b < HIST_BUCKETS; b++) {
        seen += h->buckets[b];
        if (seen >= rank) {
            uint64_t low, width;
            bucket_range(b, &low, &width);
            uint64_t mid = low + width / 2;
            if (mid > h->max)
                mid = h->max;
            if (mid < h->min)
                mid = h->min;
            return mid;
        }
    }
    return h->max;
}

void hist_print(const char *name, const hist *h)
{
    if (!h->count) {
        printf("  %-30s no samples\n", name);
        return;
    }
    printf("  %-30s p50 %.1f  p90 %.1f  p99 %.1f  p99.9 %.1f  max %.1f us  (mean %.1f us, %" PRIu64
           " samples)\n", name, hist_quantile(h, 0.50) / 1e3, hist_quantile(h, 0.90) / 1e3,
           hist_quantile(h, 0.99) / 1e3, hist_quantile(h, 0.999) / 1e3, h->max / 1e3,
           (double)h->sum / (double)h->count / 1e3, h->count);
}

void hist_json(FILE *j, const char *name, const hist *h, bool last)
{
    fprintf(j, "  \"%s\": {\"samples\": %" PRIu64, name, h->count);
    if (h->count)
        fprintf(j, ", \"p50\": %.1f, \"p90\": %.1f, \"p99\": %.1f, \"p999\": %.1f, \"max\": %.1f, "
                   "\"mean\": %.1f", hist_quantile(h, 0.50) / 1e3, hist_quantile(h, 0.90) / 1e3,
                hist_quantile(h, 0.99) / 1e3, hist_quantile(h, 0.999) / 1e3, h->max / 1e3,
                (double)h->sum / (double)h->count / 1e3);
    fprintf(j, "}%s\n", last ? "" : ",");
}
