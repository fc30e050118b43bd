/* scenario_fanout: `nebula-sync-bench fanout`, and the run it shares with
 * `tenants` (scenario_tenants.c), which is fanout over several streams with
 * checks of its own.
 *
 * The run: every subscriber connects and subscribes, every publisher says
 * Hello (setup); publishers push for --warmup seconds, then for the
 * measured window of --duration seconds; they stop, the tool waits until
 * every Push is answered and every subscriber has its stream's last
 * accepted seq (or DRAIN_TIMEOUT_S passes), closes everything, prints the
 * summary and writes --json. A progress line per second goes to stderr.
 *
 * A variant (tenants) adds options, lays out the streams and hooks of the
 * load (sync_load_config), and adds to the progress line, the summary, the
 * JSON and the verdict. Its callbacks run on the main thread.
 */
#ifndef NEBULA_BENCH_SCENARIO_FANOUT_H
#define NEBULA_BENCH_SCENARIO_FANOUT_H

#include <getopt.h>
#include <stdbool.h>
#include <stdio.h>
#include <sys/types.h>

#include "bench_common.h"
#include "fanout_target.h"
#include "sync_load.h"

/* The options of the run, as fanout --help lists them. */
struct fanout_options {
    const struct fanout_target *target;   /* NULL: nebula-syncd */
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

/* getopt_long values of a variant's own options start here. */
#define FANOUT_VARIANT_OPTION 1000

struct fanout_variant {
    const char *name;                              /* the scenario, as in "scenario": ... */
    void (*usage)(FILE *f);                        /* the whole --help text */
    const struct option *options;                  /* its own, {NULL} terminated */
    void (*set_defaults)(struct fanout_options *o);
    void (*option)(int val, const char *arg);      /* one of its options */
    /* Options parsed: derives what depends on them, checks them (may exit). */
    void (*check_options)(struct fanout_options *o);
    /* The load: fills its streams and hooks. */
    void (*configure)(const struct fanout_options *o, struct sync_load_config *cfg);
    /* What the run covers, after the URL in the first lines ("collection 'x'"). */
    const char *(*scope)(void);
    /* Deliveries one accepted event should make (fanout: S). */
    double (*receivers_per_event)(void);
    void (*progress)(char *buf, size_t cap);       /* appended to each progress line */
    void (*summary)(void);                         /* its summary lines (stdout), threads joined */
    void (*json)(FILE *j);                         /* its members, each "  \"key\": value,\n" */
    bool (*passed)(char *why, size_t cap);         /* its own checks; false: why */
};

/* Runs fanout (v NULL) or a variant of it: argv[0] is the scenario's name.
 * Returns the exit status. */
int fanout_run(const struct fanout_variant *v, int argc, char **argv);

#endif
