/* worker: one thread, one event base, the sessions handed to it.
 *
 * The acceptor gives a worker each new socket through worker_hand_off(): the
 * socket goes into the worker's inbox (a mutex-guarded queue, touched once
 * per connection, never per message) and an eventfd wakes the worker, which
 * then owns the connection for its whole life (memcached's hand-off). All
 * session state is touched by this thread only. */
#ifndef NEBULA_WORKER_H
#define NEBULA_WORKER_H

#include <stdbool.h>

#include <event2/util.h>

#include "broker_context.h"
#include "metrics.h"

typedef struct worker worker;

/* done_fd: an eventfd the worker writes 1 to when its thread finishes. */
worker *worker_create(broker_context *broker, nebula_worker_metrics *metrics, int index,
                      int done_fd);

bool worker_start(worker *w);

/* Any thread. Takes ownership of fd (closed if the worker is draining). */
bool worker_hand_off(worker *w, evutil_socket_t fd);

/* Any thread: close every session with 1001, wait up to the drain timeout,
 * then end the thread. */
void worker_drain(worker *w);

/* Waits for the thread to end (after worker_drain). */
void worker_join(worker *w);

/* Accepts NULL. The thread must have ended, or never started. */
void worker_free(worker *w);

#endif
