/* sync_scenario: what a scenario of nebula-sync-bench gives the driver
 * (sync_bench.c), which picks one by the first argument and runs it.
 *
 * Each scenario lives in its own file, bench/scenario_<name>.c: its options,
 * its phases, its checks and its report, on the machinery of sync_load.h
 * (fanout, tenants, catchup) or handshake_load.h (connect, idle).
 */
#ifndef NEBULA_BENCH_SYNC_SCENARIO_H
#define NEBULA_BENCH_SYNC_SCENARIO_H

struct sync_scenario {
    const char *name;               /* the first argument */
    const char *summary;            /* one line for the driver's --help */
    /* argv[0] is the scenario's name, its options follow. Returns the exit
     * status: 0 the run was clean, 1 anything else; usage errors exit 2
     * from inside. */
    int (*run)(int argc, char **argv);
};

extern const struct sync_scenario scenario_fanout;
extern const struct sync_scenario scenario_tenants;
extern const struct sync_scenario scenario_idle;
extern const struct sync_scenario scenario_connect;
extern const struct sync_scenario scenario_catchup;

#endif
