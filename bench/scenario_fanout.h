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
#include "load_options.h"
#include "sync_load.h"

/* getopt_long values of a variant's own options start here. */
#define FANOUT_VARIANT_OPTION 1000   /* above LOAD_OPTION_END and --target */

struct fanout_variant {
    const char *name;                              /* the scenario, as in "scenario": ... */
    void (*usage)(FILE *f);                        /* the whole --help text */
    const struct option *options;                  /* its own, {NULL} terminated */
    void (*set_defaults)(struct load_options *o);
    void (*option)(int val, const char *arg);      /* one of its options */
    /* Options parsed: derives what depends on them, checks them (may exit). */
    void (*check_options)(struct load_options *o);
    /* The load: fills its streams and hooks. */
    void (*configure)(const struct load_options *o, struct sync_load_config *cfg);
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
