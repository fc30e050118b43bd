/* client_internal: the inside of a nebula_client handle, shared by its two
 * layers (not installed, not part of the API):
 *
 *   ws_client_transport.c  the WebSocket connection: resolution, TCP, TLS,
 *                          upgrade, frames, ping/pong, close handshake,
 *                          heartbeat; calls up with whole binary messages.
 *   nebula_client.c        the API and nebula-sync.v1: Hello/Welcome,
 *                          Subscribe, Push, cursors, callbacks.
 *
 * Re-entrancy: every libevent callback of a handle is wrapped in
 * client_enter()/client_leave(). Application callbacks may free or close the
 * handle, or reconnect it; so after calling one, code checks
 * conn_alive(c, generation) before touching the connection again, and the
 * memory of a handle freed inside a callback is released by the outermost
 * client_leave(). conn.generation changes whenever a connection is torn
 * down, so a loop over one connection's input never runs on into the next.
 */
#ifndef NEBULA_CLIENT_INTERNAL_H
#define NEBULA_CLIENT_INTERNAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <openssl/ssl.h>
#include <protobuf-c/protobuf-c.h>

#include "cursor_tracker.h"
#include "nebula_client.h"
#include "ws_client_handshake.h"
#include "ws_frame.h"

#define CLIENT_SUBPROTOCOL "nebula-sync.v1"
#define CLIENT_DEFAULT_PATH "/v1/sync"
#define CLIENT_REASON_MAX 124   /* bytes of a close reason we keep, NUL included */
#define CLIENT_MASK_POOL 256    /* random bytes fetched per RAND_bytes() call */

typedef enum conn_phase {
    CONN_NONE,        /* no connection */
    CONN_CONNECTING,  /* resolution, TCP connect and TLS handshake */
    CONN_UPGRADING,   /* upgrade request sent, waiting for the 101 */
    CONN_OPEN,        /* frames both ways */
    CONN_CLOSE_SENT,  /* our CLOSE is out, waiting for the echo */
    CONN_FLUSHING,    /* the last frame (echo or failure CLOSE) is queued; then TCP goes */
} conn_phase;

/* One WebSocket connection; reset for each nebula_client_connect(). */
typedef struct ws_conn {
    conn_phase phase;
    uint64_t generation;            /* +1 at each teardown */
    struct bufferevent *bev;
    struct event *deadline;         /* connect deadline, then close deadline */
    struct event *heartbeat;        /* liveness of the server, after Welcome */
    ws_reader reader;
    struct evbuffer *fragments;     /* payload of an open fragmented message */
    char key[WS_CLIENT_KEY_LEN + 1];
    uint8_t mask_pool[CLIENT_MASK_POOL];
    size_t mask_used;               /* bytes of mask_pool handed out */
    bool heard;                     /* bytes arrived since the last heartbeat tick */
    bool ping_outstanding;          /* our ping is unanswered */
    /* What on_closed/on_error will say once a closing connection is gone. */
    int final_code;
    char final_reason[CLIENT_REASON_MAX];
    int final_error;                /* nebula_client_error, 0: none */
    char final_error_message[160];
} ws_conn;

typedef struct client_collection {
    char *name;
    bool subscribed;
    cursor_tracker tracker;
} client_collection;

/* A push sent and not answered yet: which collection each event belongs to
 * (PushResult seqs are per collection but carry no collection name). */
typedef struct pending_push {
    struct pending_push *next;
    uint64_t request_id;
    size_t n;
    char **collections;   /* n strings, in the same allocation */
    char **event_ids;     /* n strings, in the same allocation */
} pending_push;

struct nebula_client {
    struct event_base *base;
    /* options, copied */
    char *server_url, *auth_token, *client_id, *client_version, *tls_ca_file;
    bool tls_verify;
    int connect_timeout_ms, close_timeout_ms;
    uint64_t max_message_size;
    struct evdns_base *dns_base;
    nebula_client_callbacks cb;
    void *user_data;
    ws_url url;
    SSL_CTX *ssl_ctx;             /* wss:// only */

    ws_conn conn;

    /* session */
    bool ready;                   /* Welcome received on this connection */
    uint32_t server_max_message;  /* Welcome.limits.max_message_size; 0: unknown */
    client_collection **collections;
    size_t n_collections, cap_collections;
    pending_push *pushes_head, *pushes_tail;
    size_t pending_pushes, pending_events;
    uint64_t next_request_id;
    int64_t last_sync_time_ms;
    int last_error;
    char last_error_message[160];

    /* re-entrancy and deferred work */
    unsigned depth;               /* nesting of our libevent callbacks */
    bool free_requested;          /* nebula_client_free() inside a callback */
    struct event *deferred;       /* on_closed after a close() before the upgrade */
    bool deferred_close;
    bool reporting_close;         /* on_error of a closed connection runs: not IDLE yet */
};

/* ---- re-entrancy (nebula_client.c) ------------------------------------- */
void client_enter(nebula_client *c);
void client_leave(nebula_client *c);   /* may free c */

static inline bool conn_alive(const nebula_client *c, uint64_t generation)
{
    return !c->free_requested && c->conn.generation == generation && c->conn.bev;
}

/* ---- transport -> protocol (nebula_client.c) --------------------------- */
void client_on_open(nebula_client *c);                       /* 101 verified */
void client_on_message(nebula_client *c, const uint8_t *data, size_t len);
/* The connection is gone (already torn down): report and call on_closed. */
void client_on_closed(nebula_client *c, int error, const char *error_message,
                      int close_code, const char *reason);
void client_report_error(nebula_client *c, int code, const char *message);

/* ---- protocol -> transport (ws_client_transport.c) --------------------- */
int conn_start(nebula_client *c);
/* Frames and queues one protobuf message (masked binary frame). */
int conn_send_message(nebula_client *c, const ProtobufCMessage *message);
/* Sends our CLOSE and waits for the echo (close_timeout_ms). */
int conn_close(nebula_client *c, uint16_t code, const char *reason);
/* Sends CLOSE code and drops the connection once it is written, reporting
 * error (a nebula_client_error) then. Outside CONN_OPEN: drops at once. */
void conn_fail(nebula_client *c, int error, const char *message, uint16_t code);
/* Frees the connection's resources without any callback. */
void conn_teardown(nebula_client *c);
/* The session is up: stop the connect deadline, watch the server's liveness
 * every interval_ms (0: not at all). */
void conn_session_ready(nebula_client *c, uint32_t interval_ms);
/* The SSL_CTX of a wss:// handle: TLS 1.2+, the CA file or system roots. */
int conn_init_tls(nebula_client *c);
/* Per-handle timers, made once in create() and freed in destroy. */
int conn_init_events(nebula_client *c);
void conn_free_events(nebula_client *c);

#endif
