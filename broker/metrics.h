/* metrics: per-worker counters, summed only when /metrics is read.
 *
 * Each worker owns one nebula_worker_metrics and is its only writer, so an
 * increment is a relaxed load plus a relaxed store: no lock and no atomic
 * read-modify-write on the hot path. The admin thread reads them with
 * relaxed loads; a scrape may be a few increments behind, never torn. */
#ifndef NEBULA_METRICS_H
#define NEBULA_METRICS_H

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

struct evbuffer;

/* Why a connection never became a WebSocket session. */
typedef enum handshake_failure {
    HANDSHAKE_FAIL_BAD_REQUEST,   /* 400 */
    HANDSHAKE_FAIL_NOT_FOUND,     /* 404 */
    HANDSHAKE_FAIL_VERSION,       /* 426 */
    HANDSHAKE_FAIL_ORIGIN,        /* 403 */
    HANDSHAKE_FAIL_TOO_LARGE,     /* 431 */
    HANDSHAKE_FAIL_TIMEOUT,       /* not finished within the handshake timeout */
    HANDSHAKE_FAIL_TLS,           /* TLS handshake failed */
    HANDSHAKE_FAIL_COUNT
} handshake_failure;

typedef atomic_uint_fast64_t metric_counter;

/* Owner: one worker thread (the only writer). Cache-line aligned so that
 * workers do not share lines. */
typedef struct nebula_worker_metrics {
    _Alignas(64) metric_counter connections_open;
    metric_counter connections_accepted;
    metric_counter connections_rejected;
    metric_counter bytes_in;
    metric_counter bytes_out;
    metric_counter frames_in;
    metric_counter frames_out;
    metric_counter tls_handshakes;
    metric_counter events_accepted;      /* pushed events the storage accepted */
    metric_counter events_rejected;      /* pushed events answered CONFLICT or REJECTED */
    metric_counter deliveries;           /* events sent to subscribers (live and catch-up) */
    metric_counter ring_overruns;        /* times the worker fell a ring behind */
    metric_counter slow_consumers;       /* subscribers paused or closed for unsent output */
    metric_counter handshake_failures[HANDSHAKE_FAIL_COUNT];
} nebula_worker_metrics;

/* Single-writer increment (see above). */
static inline void metric_add(metric_counter *counter, uint64_t n)
{
    uint64_t v = atomic_load_explicit(counter, memory_order_relaxed);
    atomic_store_explicit(counter, v + n, memory_order_relaxed);
}

static inline void metric_sub(metric_counter *counter, uint64_t n)
{
    uint64_t v = atomic_load_explicit(counter, memory_order_relaxed);
    atomic_store_explicit(counter, v - n, memory_order_relaxed);
}

static inline uint64_t metric_read(const metric_counter *counter)
{
    return atomic_load_explicit(counter, memory_order_relaxed);
}

handshake_failure handshake_failure_from_status(int http_status);

/* Appends the Prometheus text exposition of all workers' counters. */
void nebula_metrics_render(const nebula_worker_metrics *workers, size_t count,
                           struct evbuffer *out);

#endif
