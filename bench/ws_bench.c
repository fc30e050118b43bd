/* nebula-ws-bench: quick transport load tool for nebula-syncd.
 *
 * Two measurements, both over real sockets against a running broker:
 * handshakes per second (--mode connect) and broker memory per idle
 * connection (--mode idle). The work is handshake_load.c's, which
 * nebula-sync-bench's connect and idle scenarios run too; this file is the
 * tool's name, its --help and its exit rule.
 */
#include "handshake_load.h"

static const struct handshake_tool ws_bench = {
    .program = "nebula-ws-bench",
    .synopsis = "--url ws[s]://HOST:PORT/v1/sync [options]",
    .about =
        "Quick transport load tool for nebula-syncd: WebSocket handshakes per second\n"
        "(--mode connect) or broker memory per idle connection (--mode idle).\n",
    .notes =
        "Each connection: TCP connect from 127.0.X.Y (loopback targets), TLS 1.2+ for\n"
        "wss:// (certificate not verified, SNI 'localhost' for IP literals), GET PATH\n"
        "with Sec-WebSocket-Protocol: nebula-sync.v1, the 101 and its accept key\n"
        "checked, one masked binary frame with a protobuf ClientMessage{hello}, and a\n"
        "binary ServerMessage{welcome} expected back.\n"
        "\n"
        "Progress goes to stderr once a second, the summary to stdout.\n"
        "Exit status: 0 done; 1 nothing succeeded (connect) or not every connection\n"
        "opened (idle); 2 usage, resource-limit or setup error.\n",
};

int main(int argc, char **argv)
{
    return handshake_load_main(&ws_bench, argc, argv);
}
