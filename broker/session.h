/* session: one client connection, from TCP accept through TLS, the HTTP
 * upgrade and WebSocket frames, to the close handshake.
 *
 * A session is an explicit state machine (see session_state in session.c)
 * driven by its bufferevent's callbacks. Framing rules live in the pure
 * codecs (ws_frame, ws_handshake); this module moves bytes between them and
 * the socket and answers messages. Owner: the worker thread whose event base
 * the session runs on; nothing here is touched by any other thread. */
#ifndef NEBULA_SESSION_H
#define NEBULA_SESSION_H

#include <stdbool.h>
#include <stdint.h>

#include <event2/util.h>

#include "broker_context.h"
#include "metrics.h"
#include "nebula_sync.pb-c.h"
#include "shared_event.h"

struct evbuffer;

struct sync_worker;

struct event_base;
typedef struct session session;

/* What sessions need from the worker that owns them. Owner: that worker. */
typedef struct session_host {
    struct event_base *base;
    broker_context *broker;
    nebula_worker_metrics *metrics;
    const struct timeval *idle_timeout;        /* common-timeout handles of base */
    const struct timeval *handshake_timeout;
    session *sessions;                         /* live sessions, for draining */
    uint64_t next_session_number;
    uint32_t session_id_prefix;                /* random per process */
    int worker_index;
    struct sync_worker *sync;                  /* the worker's subscriptions */
    /* Called after a session was freed (the worker finishes a drain). */
    void (*on_session_freed)(struct session_host *host);
} session_host;

/* Takes ownership of a connected, non-blocking socket. When the broker is at
 * max_connections the peer is refused (HTTP 503 on plain listeners) and the
 * socket closed. Returns false if the connection was not kept. */
bool session_accept(session_host *host, evutil_socket_t fd);

/* Graceful shutdown: an open session gets CLOSE 1001 and is waited for;
 * one still handshaking is dropped. */
void session_go_away(session *s);

/* Drops the connection now (drain deadline, worker shutdown). */
void session_destroy(session *s);

/* The next session in the host's list (for iterating while destroying). */
session *session_next(const session *s);

/* ---- for the sync protocol layer (same thread) ---- */

/* Queue one ServerMessage (nothing happens unless the session is open). */
void session_send_message(session *s, const Nebula__Sync__V1__ServerMessage *message);
void session_send_error(session *s, int code, const char *text);
void session_send_welcome(session *s, const char *tenant);

/* Frames a ServerMessage into out, not into a session's output: for output
 * a caller hands over at its own pace (snapshot pages). False when out of
 * memory. */
bool session_frame_message(struct evbuffer *out, const Nebula__Sync__V1__ServerMessage *message);

/* Moves len bytes of whole frames (frames of them) from `from` to the
 * session's output. Nothing happens unless the session is open. */
void session_send_framed(session *s, struct evbuffer *from, size_t len, uint64_t frames);

/* Most events one Events message may carry (callers send larger runs as
 * several messages). */
#define SESSION_MAX_EVENTS_PER_MESSAGE 512

/* One Events message with the given pre-encoded events of one collection
 * (at most SESSION_MAX_EVENTS_PER_MESSAGE), leaving out those this session
 * pushed itself; the bytes are never re-encoded. On a plain socket with
 * nothing queued the message is written at once; what the socket does not
 * take is queued (small events copied, large ones referenced). Returns how
 * many events were sent. */
size_t session_send_events(session *s, const char *collection, shared_event *const *events,
                           size_t count);

/* Whether live delivery should pause until the output drains. */
bool session_output_over_cap(const session *s);

/* Sends CLOSE with code and closes once written. */
void session_fail(session *s, uint16_t code, const char *reason);

bool session_is_open(const session *s);

/* Tag of events this session pushed (shared_event.origin). */
uint64_t session_tag(const session *s);

/* Keeps the session struct alive across an asynchronous storage call. */
void session_hold(session *s);
void session_release(session *s);

#endif
