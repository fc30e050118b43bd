/* nebula-syncd: the broker daemon, a thin main over the server library.
 * It reads the configuration, starts the broker and turns signals into
 * broker calls: SIGTERM/SIGINT drain and exit, SIGHUP reloads TLS. */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>

#include <event2/event.h>

#include "config.h"
#include "nebula_broker.h"

extern char **environ;

enum exit_code { EXIT_OK = 0, EXIT_RUNTIME = 1, EXIT_USAGE = 2 };

static void on_stop_signal(evutil_socket_t sig, short what, void *arg)
{
    (void)what;
    nebula_log(NEBULA_LOG_INFO, "received %s, shutting down", sig == SIGINT ? "SIGINT" : "SIGTERM");
    nebula_broker_stop(arg);
}

static void on_reload_signal(evutil_socket_t sig, short what, void *arg)
{
    (void)sig;
    (void)what;
    nebula_broker *broker = arg;
    if (nebula_broker_uses_tls(broker))
        nebula_broker_reload_tls(broker);
    else
        nebula_log(NEBULA_LOG_INFO, "SIGHUP: nothing to reload (no TLS configured)");
}

static int run(nebula_broker *broker)
{
    struct event_base *base = nebula_broker_event_base(broker);
    struct event *term = evsignal_new(base, SIGTERM, on_stop_signal, broker);
    struct event *intr = evsignal_new(base, SIGINT, on_stop_signal, broker);
    struct event *hup = evsignal_new(base, SIGHUP, on_reload_signal, broker);
    int rc = EXIT_OK;
    if (!term || !intr || !hup || evsignal_add(term, NULL) || evsignal_add(intr, NULL) ||
        evsignal_add(hup, NULL)) {
        fprintf(stderr, "nebula-syncd: cannot install signal handlers\n");
        rc = EXIT_RUNTIME;
    }
    char err[512];
    if (rc == EXIT_OK && nebula_broker_start(broker, err, sizeof err) != NEBULA_OK) {
        fprintf(stderr, "nebula-syncd: %s\n", err);
        rc = EXIT_RUNTIME;
    }
    if (rc == EXIT_OK)
        event_base_dispatch(base);
    if (term)
        event_free(term);
    if (intr)
        event_free(intr);
    if (hup)
        event_free(hup);
    return rc;
}

int main(int argc, char **argv)
{
    static nebula_config config;   /* large; not on the stack */
    char err[1024];
    switch (nebula_config_load(&config, argc, argv, environ, err, sizeof err)) {
    case CONFIG_HELP:
        nebula_config_print_usage(stdout);
        return EXIT_OK;
    case CONFIG_VERSION:
        printf("nebula-syncd %s\n", NEBULA_VERSION);
        return EXIT_OK;
    case CONFIG_ERROR:
        fprintf(stderr, "nebula-syncd: %s\n", err);
        return EXIT_USAGE;
    case CONFIG_RUN:
        break;
    }
    nebula_broker *broker;
    if (nebula_broker_create(&config.broker, &broker, err, sizeof err) != NEBULA_OK) {
        fprintf(stderr, "nebula-syncd: %s\n", err);
        return EXIT_USAGE;
    }
    int rc = run(broker);
    nebula_broker_free(broker);
    return rc;
}
