/* sync_session: the sync protocol on top of a WebSocket session, and the
 * per-worker side of fan-out.
 *
 * Per session: Hello (authentication, tenant), Subscribe/Unsubscribe
 * (replay after a cursor or a snapshot, then live events), Push (validation,
 * storage, one result per event). Per worker: a local channel for each
 * collection some of its sessions subscribe to, with the worker's cursor into
 * that collection's fan-out ring; sync_worker_deliver() reads every ring once
 * and hands the same pre-encoded events to each live subscriber.
 *
 * A subscriber is either CATCHING_UP (fed from storage: after its cursor,
 * after a snapshot, after falling behind the ring, or after its output grew
 * past the cap) or LIVE (fed from the ring). It turns LIVE only once storage
 * has nothing newer than what the worker's ring cursor will deliver, so replay
 * and live meet with no gap and no duplicate.
 *
 * Owner: the worker thread of the session; nothing here is shared. */
#ifndef NEBULA_SYNC_SESSION_H
#define NEBULA_SYNC_SESSION_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "nebula_sync.pb-c.h"

struct session;
struct broker_context;
struct nebula_worker_metrics;

typedef struct sync_worker sync_worker;
typedef struct sync_session sync_session;

struct event_base;

/* base: the worker's event loop (for deferring work to the next turn). */
sync_worker *sync_worker_create(struct broker_context *broker, int worker_index,
                                struct event_base *base, struct nebula_worker_metrics *metrics);
void sync_worker_free(sync_worker *worker);

/* On a wakeup: reads the rings of every watched channel and delivers. */
void sync_worker_deliver(sync_worker *worker);

/* Sessions still catching up (a replay in progress) or live, for metrics. */
size_t sync_worker_subscription_count(const sync_worker *worker);

sync_session *sync_session_create(sync_worker *worker, struct session *s);

/* The connection is gone: leave every channel. Storage calls in flight still
 * complete (they hold the session); nothing is sent any more. */
void sync_session_detach(sync_session *ss);

/* Frees the state once nothing refers to the session. */
void sync_session_free(sync_session *ss);

/* A decoded ClientMessage. */
void sync_session_handle(sync_session *ss, const Nebula__Sync__V1__ClientMessage *message);

/* The session's output has drained: paused subscriptions resume. */
void sync_session_output_drained(sync_session *ss);

/* Bearer token from the upgrade request's Authorization header, used when
 * Hello carries none. Copied. */
void sync_session_set_header_token(sync_session *ss, const char *token);

#endif
