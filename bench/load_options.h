/* load_options: the command-line options the scenarios on sync_load.h share
 * (fanout, tenants, catchup): one spelling, one range and one error message
 * per option. A scenario picks the ones it takes (load_options_table), adds
 * its own, and hands every option getopt_long returns to
 * load_options_parse() first.
 */
#ifndef NEBULA_BENCH_LOAD_OPTIONS_H
#define NEBULA_BENCH_LOAD_OPTIONS_H

#include <getopt.h>
#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

#include "bench_common.h"
#include "fanout_target.h"

struct load_options {
    const struct fanout_target *target;   /* fanout --target; NULL: nebula-syncd */
    const char *url;
    struct bench_endpoint ep;       /* the URL, parsed */
    long subscribers;
    long publishers;
    long batch;
    long size;
    long inflight;
    double rate;                    /* events/s over all publishers; 0: as fast as acknowledged */
    double duration;
    double warmup;
    int threads;
    pid_t broker_pid;
    const char *token;
    const char *collection;
    const char *json_path;
};

/* getopt_long values; a scenario's own options use other values. */
enum load_option {
    LOAD_URL = 256, LOAD_SUBSCRIBERS, LOAD_PUBLISHERS, LOAD_BATCH, LOAD_SIZE, LOAD_INFLIGHT,
    LOAD_RATE, LOAD_DURATION, LOAD_WARMUP, LOAD_THREADS, LOAD_BROKER_PID, LOAD_TOKEN,
    LOAD_COLLECTION, LOAD_JSON, LOAD_OPTION_END
};

#define LOAD_BIT(o) (1u << ((o) - LOAD_URL))
#define LOAD_ALL (LOAD_BIT(LOAD_OPTION_END) - 1)

/* Writes the getopt_long entries of the options in `which` (LOAD_BIT()s)
 * to out from index n; returns the next free index. */
size_t load_options_table(unsigned which, struct option *out, size_t n);

/* One option getopt_long returned: true if it is a shared one (o updated;
 * a bad value exits through bench_die_usage()). */
bool load_options_parse(struct load_options *o, int c, const char *arg);

/* The usage error for what getopt_long could not take ('?'). */
void load_options_unknown(char **argv) __attribute__((noreturn));

#endif
