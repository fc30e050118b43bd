/* metrics: Prometheus text rendering of the per-worker counters. */
#include "metrics.h"

#include <event2/buffer.h>

static const char *const failure_reasons[HANDSHAKE_FAIL_COUNT] = {
    [HANDSHAKE_FAIL_BAD_REQUEST] = "bad_request",
    [HANDSHAKE_FAIL_NOT_FOUND] = "not_found",
    [HANDSHAKE_FAIL_VERSION] = "version",
    [HANDSHAKE_FAIL_ORIGIN] = "origin",
    [HANDSHAKE_FAIL_TOO_LARGE] = "too_large",
    [HANDSHAKE_FAIL_TIMEOUT] = "timeout",
    [HANDSHAKE_FAIL_TLS] = "tls",
};

handshake_failure handshake_failure_from_status(int http_status)
{
    switch (http_status) {
    case 403: return HANDSHAKE_FAIL_ORIGIN;
    case 404: return HANDSHAKE_FAIL_NOT_FOUND;
    case 426: return HANDSHAKE_FAIL_VERSION;
    case 431: return HANDSHAKE_FAIL_TOO_LARGE;
    default: return HANDSHAKE_FAIL_BAD_REQUEST;
    }
}

typedef struct counter_family {
    const char *name;
    const char *type;
    const char *help;
    size_t offset;   /* of the counter inside nebula_worker_metrics */
} counter_family;

#define FAMILY(field, name, type, help) \
    {name, type, help, offsetof(nebula_worker_metrics, field)}

static const counter_family families[] = {
    FAMILY(connections_open, "nebula_connections_open", "gauge",
           "Open connections (any phase) owned by the worker."),
    FAMILY(connections_accepted, "nebula_connections_accepted_total", "counter",
           "Connections handed to the worker."),
    FAMILY(connections_rejected, "nebula_connections_rejected_total", "counter",
           "Connections refused because max-connections was reached."),
    FAMILY(bytes_in, "nebula_bytes_in_total", "counter",
           "Bytes received (HTTP upgrade and WebSocket frames, after TLS)."),
    FAMILY(bytes_out, "nebula_bytes_out_total", "counter",
           "Bytes queued for sending (before TLS)."),
    FAMILY(frames_in, "nebula_frames_in_total", "counter", "WebSocket frames received."),
    FAMILY(frames_out, "nebula_frames_out_total", "counter", "WebSocket frames sent."),
    FAMILY(tls_handshakes, "nebula_tls_handshakes_total", "counter",
           "Completed TLS handshakes."),
    FAMILY(events_accepted, "nebula_events_accepted_total", "counter",
           "Pushed events stored (ACCEPTED), counted on the pusher's worker."),
    FAMILY(events_rejected, "nebula_events_rejected_total", "counter",
           "Pushed events answered CONFLICT or REJECTED."),
    FAMILY(deliveries, "nebula_deliveries_total", "counter",
           "Events sent to subscribers, live and while catching up."),
    FAMILY(ring_overruns, "nebula_ring_overruns_total", "counter",
           "Times the worker fell more than a ring behind a collection."),
    FAMILY(slow_consumers, "nebula_slow_consumers_total", "counter",
           "Subscribers paused (or closed) because their output was not being read."),
};

static uint64_t counter_at(const nebula_worker_metrics *m, size_t offset)
{
    return metric_read((const metric_counter *)((const char *)m + offset));
}

void nebula_metrics_render(const nebula_worker_metrics *workers, size_t count,
                           struct evbuffer *out)
{
    for (size_t f = 0; f < sizeof families / sizeof families[0]; f++) {
        evbuffer_add_printf(out, "# HELP %s %s\n# TYPE %s %s\n", families[f].name,
                            families[f].help, families[f].name, families[f].type);
        for (size_t w = 0; w < count; w++)
            evbuffer_add_printf(out, "%s{worker=\"%zu\"} %llu\n", families[f].name, w,
                                (unsigned long long)counter_at(&workers[w], families[f].offset));
    }
    evbuffer_add_printf(out,
                        "# HELP nebula_handshake_failures_total Connections that never "
                        "became a WebSocket session, by reason.\n"
                        "# TYPE nebula_handshake_failures_total counter\n");
    for (size_t w = 0; w < count; w++)
        for (int r = 0; r < HANDSHAKE_FAIL_COUNT; r++)
            evbuffer_add_printf(out, "nebula_handshake_failures_total{worker=\"%zu\",reason=\"%s\"} %llu\n",
                                w, failure_reasons[r],
                                (unsigned long long)metric_read(&workers[w].handshake_failures[r]));
}
