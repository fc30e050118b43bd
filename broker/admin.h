/* admin: the operator's HTTP endpoint (libevent evhttp) on its own port,
 * served from the acceptor thread:
 *   GET /healthz  200 "ok"      the process is alive
 *   GET /readyz   200 "ready"   accepting connections and the storage is
 *                 reachable; 503 "draining" or "storage unavailable"
 *   GET /metrics  Prometheus text exposition of the per-worker counters and
 *                 of the storage's own (sync_storage_ops.metrics)
 */
#ifndef NEBULA_ADMIN_H
#define NEBULA_ADMIN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "address.h"
#include "metrics.h"
#include "sync_storage.h"

struct event_base;

typedef struct admin_sources {
    const nebula_worker_metrics *workers;   /* array, read with relaxed loads */
    size_t worker_count;
    const bool *accepting;                  /* owned by the acceptor thread, as is admin */
    sync_storage *storage;                  /* its available() and metrics(), if it has them */
} admin_sources;

typedef struct admin_server admin_server;

/* Binds and serves; on failure returns NULL with a reason in err. */
admin_server *admin_server_start(struct event_base *base, const host_port *address,
                                 const admin_sources *sources, char *err, size_t err_len);

uint16_t admin_server_port(const admin_server *admin);

void admin_server_free(admin_server *admin);

#endif
