/* scenario_connect: `nebula-sync-bench connect`, WebSocket handshakes per
 * second against nebula-syncd, plain or TLS: TCP connect [+ TLS] + upgrade
 * + Hello/Welcome + Close, --connections of them in flight for --duration
 * seconds, and handshakes per broker CPU-second. It is nebula-ws-bench
 * --mode connect (handshake_load.c, one implementation), with a stricter
 * exit rule: 0 only when no handshake failed.
 */
#include "handshake_load.h"
#include "sync_load.h"
#include "sync_scenario.h"

static const struct handshake_tool connect_tool = {
    .program = SYNC_LOAD_PROGRAM,
    .scenario = "connect",
    .default_url = SYNC_LOAD_DEFAULT_URL,
    .strict = true,
    .synopsis = "[options]",
    .about =
        "WebSocket handshakes per second (ws:// or wss://): each connection does TCP\n"
        "connect, TLS for wss://, the upgrade, Hello and Welcome, then closes; the\n"
        "same measurement as nebula-ws-bench --mode connect.\n",
    .notes =
        "A progress line per second goes to stderr, the summary to stdout.\n"
        "Exit status: 0 handshakes completed and none failed; 1 anything else;\n"
        "2 usage, resource-limit or setup error.\n",
};

static int run_connect(int argc, char **argv)
{
    return handshake_load_main(&connect_tool, argc, argv);
}

const struct sync_scenario scenario_connect = {
    .name = "connect",
    .summary = "handshakes (TCP, TLS, upgrade, Hello/Welcome) per second and per broker CPU-s",
    .run = run_connect,
};
