/* scenario_idle: `nebula-sync-bench idle`, broker memory per idle
 * subscriber: N connections that complete the upgrade and Hello/Welcome AND
 * hold a subscription to a collection (Subscribe, Subscribed, the
 * snapshot's last page), then do nothing but answer pings for --hold
 * seconds. The broker's VmRSS before the first connection and after the
 * hold gives KiB per connection. It is nebula-ws-bench --mode idle
 * (handshake_load.c, one implementation) plus the subscription, with a
 * stricter exit rule: 0 only when every connection subscribed and was
 * still open at the end.
 */
#include "handshake_load.h"
#include "sync_load.h"
#include "sync_scenario.h"

static const struct handshake_tool idle_tool = {
    .program = SYNC_LOAD_PROGRAM,
    .scenario = "idle",
    .default_url = SYNC_LOAD_DEFAULT_URL,
    .subscribe = true,
    .strict = true,
    .synopsis = "[options]",
    .about =
        "Broker memory per idle subscriber: N connections do the upgrade, Hello and\n"
        "Welcome, subscribe to one collection (its snapshot received) and stay idle;\n"
        "the broker's VmRSS before and after gives KiB per connection.\n",
    .notes =
        "A progress line per second goes to stderr, the summary to stdout.\n"
        "Exit status: 0 every connection subscribed and was still open at the end,\n"
        "none failed or was dropped; 1 anything else; 2 usage, resource-limit or\n"
        "setup error.\n",
};

static int run_idle(int argc, char **argv)
{
    return handshake_load_main(&idle_tool, argc, argv);
}

const struct sync_scenario scenario_idle = {
    .name = "idle",
    .summary = "broker memory per idle connection holding a subscription",
    .run = run_idle,
};
