/* sync_bench_hist: a log-linear latency histogram for nebula-sync-bench.
 *
 * HDR-like: values (nanoseconds) below 256 are counted exactly; above, each
 * power of two [2^k, 2^(k+1)) is split into 128 equal buckets, so a bucket
 * is at most 1/128 (0.78%) of the values it holds wide and a reported value
 * (the middle of its bucket) is within 0.4% of every value counted in it.
 * The range goes to 2^34 ns (17.2 s); larger values are counted in the last
 * bucket (and as `clamped`), the exact maximum is kept separately. That is
 * 3,584 counters (28 KiB) per histogram, recording is a few instructions
 * and no allocation, and histograms of several threads add up exactly.
 *
 * One writer per histogram (no locks, no atomics): each client thread keeps
 * its own and the main thread merges them after joining the threads, then
 * prints the quantiles (hist_print, hist_json).
 */
#ifndef NEBULA_SYNC_BENCH_HIST_H
#define NEBULA_SYNC_BENCH_HIST_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#define HIST_SUB_BITS 8                               /* 256 exact values, then 128 per octave */
#define HIST_HALF (1u << (HIST_SUB_BITS - 1))
#define HIST_TOP_BIT 34                               /* values up to 2^34 - 1 ns (17.2 s) */
#define HIST_BUCKETS ((HIST_TOP_BIT - HIST_SUB_BITS + 2) * HIST_HALF)

typedef struct hist {
    uint64_t count;
    uint64_t sum;          /* ns, for the mean */
    uint64_t min, max;     /* exact, ns */
    uint64_t clamped;      /* values beyond the top bucket (counted in it) */
    uint64_t buckets[HIST_BUCKETS];
} hist;

void hist_init(hist *h);
void hist_record(hist *h, uint64_t ns);
void hist_merge(hist *into, const hist *from);

/* The value at quantile q (0 < q <= 1): the middle of the bucket holding the
 * ceil(q * count)-th smallest value, capped by the exact maximum. 0 if empty. */
uint64_t hist_quantile(const hist *h, double q);

/* The summary line of h in microseconds, "  NAME  p50 .. p90 .. p99 ..
 * p99.9 .. max .. us  (mean .. us, N samples)" (or "no samples") on stdout,
 * NAME padded to 30 columns. */
void hist_print(const char *name, const hist *h);

/* The same as one JSON member, "  \"NAME\": {\"samples\": N, \"p50\": ..}",
 * followed by ",\n" unless last. */
void hist_json(FILE *j, const char *name, const hist *h, bool last);

#endif
