/* handshake_load: the transport measurements, run by nebula-ws-bench
 * (ws_bench.c, --mode connect|idle) and by nebula-sync-bench's `connect`
 * and `idle` scenarios (scenario_connect.c, scenario_idle.c): one
 * implementation, so both tools measure exactly the same thing.
 *
 *   connect  WebSocket handshakes per second. Each connection does TCP
 *            connect [+ TLS handshake] + HTTP upgrade + Hello, waits for the
 *            Welcome, then closes (a Close frame, waiting for the broker's
 *            Close or EOF). --connections is the concurrency: that many are
 *            kept in flight for --duration seconds.
 *   idle     Broker memory per idle connection. Opens --connections
 *            connections (at most --ramp handshaking at once); each
 *            completes the upgrade and Hello/Welcome, optionally subscribes
 *            to a collection (Subscribe, Subscribed, the snapshot's last
 *            page), then stays idle, answering pings. The broker's VmRSS is
 *            read before the first connection and after --hold seconds of
 *            idling; the difference per open connection is the figure.
 *
 * With --broker-pid the broker's CPU time over the run is reported too, and
 * handshakes per broker CPU-second: the number that does not depend on how
 * fast this client is. A progress line per second goes to stderr, the
 * summary to stdout, --json FILE writes it as JSON.
 *
 * Design: one libevent event_base per thread (--threads); each thread owns
 * its connections outright, the main thread only reads atomic counters once
 * a second and tells the threads to stop (event_active). Client sockets are
 * bound to rotating 127.0.X.Y sources (bench_common.h).
 */
#ifndef NEBULA_BENCH_HANDSHAKE_LOAD_H
#define NEBULA_BENCH_HANDSHAKE_LOAD_H

#include <stdbool.h>

/* Who runs it, and how. */
struct handshake_tool {
    const char *program;            /* in error messages, client ids and the summary */
    const char *scenario;           /* "connect" or "idle": the mode is fixed; NULL: --mode picks */
    const char *default_url;        /* NULL: --url is required */
    bool subscribe;                 /* idle: --collection, and every connection subscribes to it */
    /* Exit status 0 only for a clean run: no failure of any kind, not
     * interrupted, and (idle) every connection still open at the end.
     * Otherwise (nebula-ws-bench): 0 when some handshake succeeded (connect)
     * or every connection was open at the end (idle). */
    bool strict;
    /* --help: "usage: PROGRAM [SCENARIO] SYNOPSIS", ABOUT, the options this
     * tool takes, NOTES (each paragraph ending with a newline). */
    const char *synopsis, *about, *notes;
};

/* Parses argv (argv[0] is the program or scenario name), runs, prints,
 * writes --json; returns the exit status (usage errors exit 2 from inside). */
int handshake_load_main(const struct handshake_tool *tool, int argc, char **argv);

#endif
