/* nebula-sync-bench: load scenarios over the nebula-sync.v1 protocol.
 *
 * The driver: the first argument names a scenario (sync_scenario.h), which
 * takes the options that follow and runs. Each scenario is a file of its
 * own (bench/scenario_<name>.c); they share the client machinery of
 * sync_load.c (fanout, tenants, catchup) or of handshake_load.c, which nebula-ws-bench runs
 * too (connect, idle). Every scenario prints a
 * progress line per second on stderr and a summary on stdout, writes
 * --json FILE, reads the broker's CPU and RSS with --broker-pid, and exits
 * 0 only when its run was clean.
 */
#include <stdio.h>
#include <string.h>

#include "bench_common.h"
#include "sync_scenario.h"

#define PROG "nebula-sync-bench"

static const struct sync_scenario *const scenarios[] = {
    &scenario_fanout, &scenario_tenants, &scenario_idle, &scenario_connect,
    &scenario_catchup,
};

#define NSCENARIOS (sizeof scenarios / sizeof scenarios[0])

static void usage(FILE *f)
{
    fprintf(f, "usage: " PROG " SCENARIO [options]   (" PROG " SCENARIO --help for its options)\n"
               "\n"
               "Load scenarios for nebula-syncd over the nebula-sync.v1 protocol:\n\n");
    for (size_t i = 0; i < NSCENARIOS; i++)
        fprintf(f, "  %-9s %s\n", scenarios[i]->name, scenarios[i]->summary);
    fprintf(f, "\nA progress line per second goes to stderr, the summary to stdout; --json FILE\n"
               "also writes it as JSON, --broker-pid PID adds the broker's CPU time and RSS.\n"
               "Exit status: 0 the run was clean, 1 anything else, 2 usage error.\n");
}

static const struct sync_scenario *find_scenario(const char *name)
{
    for (size_t i = 0; i < NSCENARIOS; i++)
        if (strcmp(scenarios[i]->name, name) == 0)
            return scenarios[i];
    return NULL;
}

int main(int argc, char **argv)
{
    bench_set_program(PROG, "(try " PROG " --help)");
    if (argc < 2 || strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0) {
        usage(argc < 2 ? stderr : stdout);
        return argc < 2 ? 2 : 0;
    }
    if (argv[1][0] == '-')
        bench_die_usage("name a scenario first: " PROG " SCENARIO [options]");
    const struct sync_scenario *s = find_scenario(argv[1]);
    if (!s) {
        char known[200] = "";
        for (size_t i = 0; i < NSCENARIOS; i++)
            snprintf(known + strlen(known), sizeof known - strlen(known), "%s%s", i ? ", " : "",
                     scenarios[i]->name);
        bench_die_usage("unknown scenario '%s' (known: %s)", argv[1], known);
    }
    return s->run(argc - 1, argv + 1);
}
