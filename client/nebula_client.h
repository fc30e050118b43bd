/* nebula_client: the C client library of Nebula Sync (nebula-sync.v1 over
 * WebSocket, see docs/PROTOCOL.md and proto/nebula_sync.proto).
 *
 * Model (libuv style): one opaque nebula_client handle per server session,
 * driven by a libevent event_base the application owns and runs. Calls are
 * asynchronous: they queue bytes and return; results arrive through the
 * callbacks in nebula_client_options, each with the options' user_data.
 *
 *   nebula_client_options_init(&o); o.server_url = "wss://sync.example/v1/sync"; ...
 *   nebula_client_create(base, &o, &c);
 *   nebula_client_connect(c);        -> on_welcome: session ready
 *   nebula_client_subscribe(c, "todos", &saved_cursor_or_NULL);
 *                                    -> on_subscribed, on_snapshot / on_events
 *   nebula_client_push(c, events, n, &request_id)  -> on_push_result
 *   nebula_client_get_cursor(c, "todos", &cur)     -> persist it
 *   nebula_client_close(c, 1000);    -> on_closed
 *   nebula_client_free(c);
 *
 * Threading: a handle is used from the thread running its event_base only;
 * the library has no locks and no global state (different handles may live
 * on different threads with different event_bases).
 *
 * Callbacks: never called from inside an API call, only from the event loop.
 * Inside a callback the application may call any function of this API on
 * the same handle, including nebula_client_free() (the memory is released
 * when the callback returns, and no further callback comes).
 *
 * Ownership: the library copies everything passed in (options strings,
 * pushed events) before the call returns. Pointers passed to callbacks
 * (strings, event and document arrays, data bytes) are borrowed and valid
 * only until the callback returns; copy what you keep.
 *
 * Cursors and de-duplication: per collection the library keeps a cursor, the
 * highest seq S such that every seq <= S was seen (as an event, as this
 * client's own ACCEPTED/DUPLICATE push result, or covered by a snapshot), in
 * the epoch the server named. Events the client has already seen are not
 * delivered again through on_events. Seen seqs above S wait in a bounded set
 * (64 gaps; see client/cursor_tracker.h) until the gap below them fills; if
 * it overflows, on_error says NEBULA_CLIENT_E_CURSOR and the forgotten seqs
 * may be delivered again after a resubscription (at-least-once for them).
 * Cursors live in the handle across reconnects; subscriptions do not:
 * subscribe again after each on_welcome, from nebula_client_get_cursor().
 *
 * Signals: like libevent, the library writes to sockets with write(2) (and
 * OpenSSL's socket BIO): the application must ignore SIGPIPE
 * (signal(SIGPIPE, SIG_IGN)) or a server that vanishes kills the process.
 *
 * Reconnection is the application's: after on_closed, nebula_client_connect()
 * may be called again on the same handle (also from inside on_closed). Pushes
 * whose results had not arrived when the connection closed are unconfirmed:
 * push them again with the same event ids (the server answers DUPLICATE for
 * the ones it had stored).
 */
#ifndef NEBULA_CLIENT_H
#define NEBULA_CLIENT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

struct event_base;
struct evdns_base;

typedef struct nebula_client nebula_client;

/* ---- errors -------------------------------------------------------------- */

/* Return values of the API (0 or negative), and the code of on_error: the
 * negative values below are the library's own; positive values are the
 * server's Error.code (nebula_server_error, mirroring proto ErrorCode). */
typedef enum nebula_client_error {
    NEBULA_CLIENT_OK = 0,
    NEBULA_CLIENT_E_INVALID = -1,      /* invalid argument */
    NEBULA_CLIENT_E_NOMEM = -2,        /* out of memory */
    NEBULA_CLIENT_E_STATE = -3,        /* not possible in the current state */
    NEBULA_CLIENT_E_URL = -4,          /* server_url is not a valid ws:// or wss:// URL */
    NEBULA_CLIENT_E_CONNECT = -5,      /* name resolution or TCP connect failed */
    NEBULA_CLIENT_E_TLS = -6,          /* TLS setup, handshake or certificate check failed */
    NEBULA_CLIENT_E_HANDSHAKE = -7,    /* the server refused or botched the WebSocket upgrade */
    NEBULA_CLIENT_E_PROTOCOL = -8,     /* the server broke RFC 6455 or nebula-sync.v1 */
    NEBULA_CLIENT_E_TIMEOUT = -9,      /* connect deadline passed, or the server went silent */
    NEBULA_CLIENT_E_CLOSED = -10,      /* the connection was lost (EOF or socket error) */
    NEBULA_CLIENT_E_TOO_BIG = -11,     /* a message over the size limit (ours or the server's) */
    NEBULA_CLIENT_E_NOT_FOUND = -12,   /* no such collection known to this handle */
    NEBULA_CLIENT_E_AGAIN = -13,       /* not available yet (e.g. a snapshot is in progress) */
    NEBULA_CLIENT_E_CURSOR = -14,      /* cursor knowledge was forgotten (pending set full) */
} nebula_client_error;

/* Error.code from the server (proto ErrorCode), as passed to on_error. */
typedef enum nebula_server_error {
    NEBULA_SERVER_E_INVALID_MESSAGE = 1,
    NEBULA_SERVER_E_HELLO_REQUIRED = 2,
    NEBULA_SERVER_E_UNSUPPORTED = 3,
    NEBULA_SERVER_E_UNAUTHENTICATED = 4,
    NEBULA_SERVER_E_ALREADY_HELLO = 5,
    NEBULA_SERVER_E_FORBIDDEN = 6,
    NEBULA_SERVER_E_INVALID_REQUEST = 7,
    NEBULA_SERVER_E_STORAGE_UNAVAILABLE = 8,
    NEBULA_SERVER_E_LIMIT_EXCEEDED = 9,
} nebula_server_error;

/* A static description of any code above (library or server); never NULL. */
const char *nebula_client_strerror(int code);

/* ---- data ------------------------------------------------------------------ */

/* Limits of nebula-sync.v1 (docs/PROTOCOL.md) the library checks before
 * sending, so that a request the server would refuse with an Error (which
 * cannot say which request it refers to) is refused here instead. */
#define NEBULA_CLIENT_MAX_PUSH_EVENTS 1000   /* events per Push */
#define NEBULA_CLIENT_MAX_COLLECTION 128     /* bytes of a collection name */
#define NEBULA_CLIENT_MAX_CLIENT_ID 256      /* bytes of client_id */

#define NEBULA_CURSOR_EPOCH_MAX 64   /* bytes of an epoch, NUL included */

/* A position in one collection's log: a plain value, safe to copy and store. */
typedef struct nebula_cursor {
    uint64_t seq;
    char epoch[NEBULA_CURSOR_EPOCH_MAX];
} nebula_cursor;

typedef enum nebula_event_type {
    NEBULA_EVENT_UNSPECIFIED = 0,
    NEBULA_EVENT_INSERT = 1,
    NEBULA_EVENT_UPDATE = 2,
    NEBULA_EVENT_DELETE = 3,
} nebula_event_type;

/* One change to one document. In nebula_client_push() the application fills
 * every field but seq (ignored); strings must be NUL-terminated UTF-8 (NULL
 * is sent as ""). In on_events every pointer is borrowed. */
typedef struct nebula_client_event {
    const char *id;              /* client-made UUID, the idempotency key */
    nebula_event_type type;
    const char *collection;
    const char *document_id;
    const uint8_t *data;         /* JSON of the whole document; NULL/0 for DELETE */
    size_t data_len;
    int64_t timestamp_ms;        /* client wall clock, informational */
    uint64_t hlc;                /* hybrid logical clock: last-write-wins order */
    const char *client_id;
    uint64_t base_seq;           /* seq of the version the writer last saw; 0: none */
    uint64_t seq;                /* position in the collection's log (server-assigned) */
} nebula_client_event;

/* The current version of one document (snapshots, conflict winners). */
typedef struct nebula_client_document {
    const char *collection;
    const char *document_id;
    const uint8_t *data;         /* JSON; empty when deleted */
    size_t data_len;
    uint64_t seq;                /* seq of the event that wrote this version */
    uint64_t hlc;
    const char *client_id;
    bool deleted;
} nebula_client_document;

typedef enum nebula_subscribe_mode {
    NEBULA_SUBSCRIBE_UNSPECIFIED = 0,
    NEBULA_SUBSCRIBE_REPLAY = 1,     /* events after your cursor follow, then live events */
    NEBULA_SUBSCRIBE_SNAPSHOT = 2,   /* snapshot pages follow, then live events */
} nebula_subscribe_mode;

typedef enum nebula_push_status {
    NEBULA_PUSH_UNSPECIFIED = 0,
    NEBULA_PUSH_ACCEPTED = 1,    /* stored with seq */
    NEBULA_PUSH_DUPLICATE = 2,   /* an event with this id was stored before, with seq */
    NEBULA_PUSH_CONFLICT = 3,    /* lost to winner, the document's current version */
    NEBULA_PUSH_REJECTED = 4,    /* not stored: reason; retry if retryable */
} nebula_push_status;

typedef struct nebula_client_push_result {
    const char *event_id;
    nebula_push_status status;
    uint64_t seq;                             /* ACCEPTED, DUPLICATE */
    const nebula_client_document *winner;     /* CONFLICT; else NULL */
    const char *reason;                       /* REJECTED (may be "") */
    bool retryable;                           /* REJECTED */
} nebula_client_push_result;

typedef struct nebula_client_welcome {
    const char *session_id;         /* unique per connection; quote it in bug reports */
    const char *tenant;             /* the tenant the token resolved to */
    uint64_t server_time_ms;        /* server wall clock, Unix ms */
    uint32_t heartbeat_interval_ms; /* the server pings after this much silence */
    uint32_t max_message_size;      /* largest message the server accepts */
    const char *server_version;
} nebula_client_welcome;

/* ---- options and callbacks ---------------------------------------------- */

typedef struct nebula_client_callbacks {
    /* The session is ready: subscribe and push from here on. */
    void (*on_welcome)(nebula_client *c, const nebula_client_welcome *welcome, void *user_data);
    /* The server confirmed a subscription; head: the collection's head then
     * (NULL if the server sent none). */
    void (*on_subscribed)(nebula_client *c, const char *collection, nebula_subscribe_mode mode,
                          const nebula_cursor *head, void *user_data);
    /* Events not seen before, in the order the server sent them (n >= 1). */
    void (*on_events)(nebula_client *c, const char *collection,
                      const nebula_client_event *events, size_t n, void *user_data);
    /* One snapshot page (n may be 0). When last is true, cursor is the
     * snapshot's cursor, the log position the pages reflect (the handle's
     * cursor is now at least this); otherwise NULL. */
    void (*on_snapshot)(nebula_client *c, const char *collection,
                        const nebula_client_document *docs, size_t n, bool last,
                        const nebula_cursor *cursor, void *user_data);
    /* The results of one push, one per event in push order. */
    void (*on_push_result)(nebula_client *c, uint64_t request_id,
                           const nebula_client_push_result *results, size_t n, void *user_data);
    /* Something went wrong: code < 0 is a nebula_client_error, code > 0 the
     * server's Error.code. Connection-ending errors are followed by on_closed;
     * a server Error alone leaves the session open. A server Error names no
     * request (the protocol's Error has no collection or request_id), so it
     * cannot be matched to the Subscribe or Push it answers; a Push answered
     * by an Error stays in pending_pushes until the connection closes. */
    void (*on_error)(nebula_client *c, int code, const char *message, void *user_data);
    /* The connection is gone, once per nebula_client_connect() that returned
     * 0. close_code: the code of the peer's CLOSE, or the code we sent when
     * we failed the connection, or 1006 when it ended without a close frame
     * (connect failure, TLS error, EOF, timeout). reason: the close reason or
     * a description. */
    void (*on_closed)(nebula_client *c, int close_code, const char *reason, void *user_data);
} nebula_client_callbacks;

typedef struct nebula_client_options {
    const char *server_url;       /* ws://host[:port][/path] or wss://...; path defaults to /v1/sync */
    const char *auth_token;       /* sent in Hello; NULL: none */
    const char *client_id;        /* stable id of this installation; NULL: "" */
    const char *client_version;   /* free-form; default "nebula-client/<version>" */
    bool tls_verify;              /* verify the server certificate and name (default true) */
    const char *tls_ca_file;      /* PEM CA bundle to trust instead of the system's; NULL: system */
    int connect_timeout_ms;       /* TCP + TLS + upgrade + Welcome; default 10000, 0: none */
    int close_timeout_ms;         /* wait for the CLOSE echo; default 5000 */
    uint64_t max_message_size;    /* largest server message accepted (> 0); default 16 MiB */
    struct evdns_base *dns_base;  /* borrowed; NULL: blocking getaddrinfo() in connect() */
    nebula_client_callbacks callbacks;
    void *user_data;              /* passed to every callback */
} nebula_client_options;

/* Fills defaults: every pointer NULL, tls_verify true, timeouts and size as
 * documented above. */
void nebula_client_options_init(nebula_client_options *options);

/* ---- lifecycle ----------------------------------------------------------- */

/* Creates an idle handle on base (borrowed: it must outlive the handle).
 * Copies the options. Fails with E_INVALID (NULL argument, bad option,
 * client_id over NEBULA_CLIENT_MAX_CLIENT_ID bytes),
 * E_URL, E_TLS (the CA file cannot be loaded) or E_NOMEM; *out is then NULL. */
int nebula_client_create(struct event_base *base, const nebula_client_options *options,
                         nebula_client **out);

/* Starts connecting (resolution, TCP, TLS, upgrade, Hello). Returns 0 and
 * later calls on_welcome or, on failure, on_error + on_closed; or fails
 * at once (no callback follows) with E_STATE (already connected or
 * connecting), E_CONNECT (resolution failed synchronously) or E_NOMEM. */
int nebula_client_connect(nebula_client *c);

/* Subscribes to one collection. cursor: where to resume (a value from
 * nebula_client_get_cursor() or from storage); NULL asks for a snapshot.
 * The handle's cursor for the collection is set from it at once. E_STATE
 * unless the session is ready (after on_welcome); E_INVALID for a name that
 * is empty, over NEBULA_CLIENT_MAX_COLLECTION bytes or holds control
 * characters, or an epoch that does not fit; E_TOO_BIG over the server's
 * message size limit. */
int nebula_client_subscribe(nebula_client *c, const char *collection,
                            const nebula_cursor *cursor);

/* Stops live events of one collection. Its cursor is kept. */
int nebula_client_unsubscribe(nebula_client *c, const char *collection);

/* Pushes n >= 1 events in one Push message; the events are copied (encoded)
 * before the call returns. *request_id_out (optional) receives the id that
 * on_push_result will carry. E_INVALID when an event lacks an id or a
 * collection; E_STATE unless ready; E_TOO_BIG for more than
 * NEBULA_CLIENT_MAX_PUSH_EVENTS events or a message over the server's
 * max_message_size (split the batch). */
int nebula_client_push(nebula_client *c, const nebula_client_event *events, size_t n,
                       uint64_t *request_id_out);

/* The resumable cursor of a collection: E_NOT_FOUND for a collection never
 * subscribed on this handle, E_AGAIN while its epoch is unknown or a snapshot
 * is in progress. */
int nebula_client_get_cursor(const nebula_client *c, const char *collection,
                             nebula_cursor *out);

/* Starts the close handshake with code (1000, 1001 or 3000-4999) and waits
 * for the server's echo (close_timeout_ms), then calls on_closed. Before the
 * WebSocket is open it just drops the connection (on_closed with 1006).
 * E_STATE when not connected or already closing; E_INVALID for other codes. */
int nebula_client_close(nebula_client *c, int code);

/* Drops any connection without further callbacks and frees the handle.
 * Accepts NULL. May be called from inside a callback. */
void nebula_client_free(nebula_client *c);

/* ---- status ---------------------------------------------------------------- */

typedef enum nebula_client_state {
    NEBULA_CLIENT_IDLE = 0,       /* not connected (never, or after on_closed) */
    NEBULA_CLIENT_CONNECTING,     /* resolution, TCP, TLS, upgrade, waiting for Welcome */
    NEBULA_CLIENT_READY,          /* Welcome received: the session works */
    NEBULA_CLIENT_CLOSING,        /* close handshake in progress */
} nebula_client_state;

/* A snapshot of the handle's health, toward the seed API's getStatus(). */
typedef struct nebula_client_status {
    nebula_client_state state;
    bool connected;               /* state == READY */
    int64_t last_sync_time_ms;    /* Unix ms of the last Events, Snapshot or PushResult; 0: never */
    size_t pending_pushes;        /* pushes sent on this connection without a result yet */
    size_t pending_events;        /* events in those pushes */
    int last_error;               /* last code given to on_error; 0: none */
    char last_error_message[160]; /* its message, truncated */
} nebula_client_status;

int nebula_client_get_status(const nebula_client *c, nebula_client_status *out);

#ifdef __cplusplus
}
#endif

#endif
