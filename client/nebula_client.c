/* nebula_client: the API and the nebula-sync.v1 session on top of the
 * WebSocket transport (ws_client_transport.c).
 *
 * Session: the transport reports the verified 101 (client_on_open) and we
 * send Hello; the Welcome makes the session ready. Then every binary
 * message is one ServerMessage, dispatched by its oneof case. Per collection
 * a cursor_tracker decides which events are new (delivered) and which were
 * seen (dropped), fed by Events, by our own push results and by snapshots.
 * A Push's results carry seqs but no collection names, so each sent Push
 * is remembered (pending_push) with the collection of every event until its
 * PushResult arrives.
 *
 * The public state (nebula_client_state) is derived from the transport's
 * phase and the Welcome flag, so there is one source of truth.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <event2/event.h>
#include <openssl/ssl.h>

#include "client_internal.h"
#include "nebula_sync.pb-c.h"

#ifndef NEBULA_VERSION
#define NEBULA_VERSION "0"
#endif

_Static_assert(NEBULA_CURSOR_EPOCH_MAX == CURSOR_EPOCH_MAX,
               "the public cursor and the tracker must agree on the epoch size");

#define DEFAULT_CONNECT_TIMEOUT_MS 10000
#define DEFAULT_CLOSE_TIMEOUT_MS 5000
#define DEFAULT_MAX_MESSAGE_SIZE (16u << 20)

/* ---- errors ---------------------------------------------------------------- */

static const char *server_strerror(int code)
{
    switch (code) {
    case NEBULA_SERVER_E_INVALID_MESSAGE: return "server: not a decodable ClientMessage";
    case NEBULA_SERVER_E_HELLO_REQUIRED: return "server: a message other than Hello came first";
    case NEBULA_SERVER_E_UNSUPPORTED: return "server: not supported by this server";
    case NEBULA_SERVER_E_UNAUTHENTICATED: return "server: token missing or rejected";
    case NEBULA_SERVER_E_ALREADY_HELLO: return "server: a second Hello on one session";
    case NEBULA_SERVER_E_FORBIDDEN: return "server: the token may not access this collection";
    case NEBULA_SERVER_E_INVALID_REQUEST: return "server: invalid request content";
    case NEBULA_SERVER_E_STORAGE_UNAVAILABLE: return "server: storage unavailable, retry later";
    case NEBULA_SERVER_E_LIMIT_EXCEEDED: return "server: too many subscriptions, events or bytes";
    default: return "server: unknown error";
    }
}

const char *nebula_client_strerror(int code)
{
    if (code > 0)
        return server_strerror(code);
    switch (code) {
    case NEBULA_CLIENT_OK: return "success";
    case NEBULA_CLIENT_E_INVALID: return "invalid argument";
    case NEBULA_CLIENT_E_NOMEM: return "out of memory";
    case NEBULA_CLIENT_E_STATE: return "not possible in the current state";
    case NEBULA_CLIENT_E_URL: return "invalid server URL";
    case NEBULA_CLIENT_E_CONNECT: return "cannot connect";
    case NEBULA_CLIENT_E_TLS: return "TLS failure";
    case NEBULA_CLIENT_E_HANDSHAKE: return "WebSocket upgrade failed";
    case NEBULA_CLIENT_E_PROTOCOL: return "protocol violation by the server";
    case NEBULA_CLIENT_E_TIMEOUT: return "timed out";
    case NEBULA_CLIENT_E_CLOSED: return "connection lost";
    case NEBULA_CLIENT_E_TOO_BIG: return "message too big";
    case NEBULA_CLIENT_E_NOT_FOUND: return "unknown collection";
    case NEBULA_CLIENT_E_AGAIN: return "not available yet";
    case NEBULA_CLIENT_E_CURSOR: return "cursor knowledge forgotten";
    default: return "unknown error";
    }
}

/* ---- small helpers --------------------------------------------------------- */

static int64_t wall_clock_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static char *copy_string(const char *s, bool *ok)
{
    if (!s)
        return NULL;
    char *copy = strdup(s);
    if (!copy)
        *ok = false;
    return copy;
}

/* protobuf-c wants char * even for fields it only reads. */
static char *wire_string(const char *s)
{
    return (char *)(s ? s : "");
}

static bool cursor_from_proto(const Nebula__Sync__V1__Cursor *in, nebula_cursor *out)
{
    size_t len = strlen(in->epoch);
    if (len >= sizeof out->epoch)
        return false;
    out->seq = in->seq;
    memcpy(out->epoch, in->epoch, len + 1);
    return true;
}

static void event_from_proto(const Nebula__Sync__V1__Event *in, const char *collection,
                             nebula_client_event *out)
{
    *out = (nebula_client_event){
        .id = in->id,
        .type = (nebula_event_type)in->type,
        .collection = in->collection[0] ? in->collection : collection,
        .document_id = in->document_id,
        .data = in->data.data,
        .data_len = in->data.len,
        .timestamp_ms = in->timestamp,
        .hlc = in->hlc,
        .client_id = in->client_id,
        .base_seq = in->base_seq,
        .seq = in->seq,
    };
}

static void document_from_proto(const Nebula__Sync__V1__Document *in, nebula_client_document *out)
{
    *out = (nebula_client_document){
        .collection = in->collection,
        .document_id = in->document_id,
        .data = in->data.data,
        .data_len = in->data.len,
        .seq = in->seq,
        .hlc = in->hlc,
        .client_id = in->client_id,
        .deleted = in->deleted,
    };
}

/* ---- re-entrancy and reporting ------------------------------------------------ */

static void destroy(nebula_client *c);

void client_enter(nebula_client *c)
{
    c->depth++;
}

void client_leave(nebula_client *c)
{
    if (--c->depth == 0 && c->free_requested)
        destroy(c);
}

/* Callbacks are skipped once the application freed the handle. */
#define CALLBACK(c, name, ...)                                      \
    do {                                                            \
        if (!(c)->free_requested && (c)->cb.name)                   \
            (c)->cb.name((c), __VA_ARGS__, (c)->user_data);         \
    } while (0)

void client_report_error(nebula_client *c, int code, const char *message)
{
    c->last_error = code;
    snprintf(c->last_error_message, sizeof c->last_error_message, "%s",
             message && *message ? message : nebula_client_strerror(code));
    CALLBACK(c, on_error, code, c->last_error_message);
}

static nebula_client_state current_state(const nebula_client *c)
{
    switch (c->conn.phase) {
    case CONN_NONE:
        return c->deferred_close || c->reporting_close ? NEBULA_CLIENT_CLOSING
                                                       : NEBULA_CLIENT_IDLE;
    case CONN_CONNECTING:
    case CONN_UPGRADING:
        return NEBULA_CLIENT_CONNECTING;
    case CONN_OPEN:
        return c->ready ? NEBULA_CLIENT_READY : NEBULA_CLIENT_CONNECTING;
    case CONN_CLOSE_SENT:
    case CONN_FLUSHING:
        return NEBULA_CLIENT_CLOSING;
    }
    return NEBULA_CLIENT_IDLE;
}

/* ---- collections --------------------------------------------------------------- */

static client_collection *find_collection(const nebula_client *c, const char *name)
{
    for (size_t i = 0; i < c->n_collections; i++)
        if (strcmp(c->collections[i]->name, name) == 0)
            return c->collections[i];
    return NULL;
}

static client_collection *add_collection(nebula_client *c, const char *name)
{
    if (c->n_collections == c->cap_collections) {
        size_t cap = c->cap_collections ? c->cap_collections * 2 : 8;
        client_collection **grown = realloc(c->collections, cap * sizeof *grown);
        if (!grown)
            return NULL;
        c->collections = grown;
        c->cap_collections = cap;
    }
    client_collection *col = calloc(1, sizeof *col);
    if (!col || !(col->name = strdup(name))) {
        free(col);
        return NULL;
    }
    cursor_tracker_init(&col->tracker);
    c->collections[c->n_collections++] = col;
    return col;
}

static void remove_last_collection(nebula_client *c)
{
    client_collection *col = c->collections[--c->n_collections];
    free(col->name);
    free(col);
}

static void free_collections(nebula_client *c)
{
    for (size_t i = 0; i < c->n_collections; i++) {
        free(c->collections[i]->name);
        free(c->collections[i]);
    }
    free(c->collections);
    c->collections = NULL;
    c->n_collections = c->cap_collections = 0;
}

/* Observes a seq and reports when the tracker had to forget knowledge. */
static cursor_observe_result observe_seq(nebula_client *c, client_collection *col, uint64_t seq)
{
    uint64_t forgotten = col->tracker.forgotten;
    cursor_observe_result r = cursor_tracker_observe(&col->tracker, seq);
    if (col->tracker.forgotten != forgotten) {
        char message[160];
        snprintf(message, sizeof message,
                 "collection %.64s: more than %d gaps open; seqs above the cursor forgotten",
                 col->name, CURSOR_TRACKER_MAX_RANGES);
        client_report_error(c, NEBULA_CLIENT_E_CURSOR, message);
    }
    return r;
}

/* ---- pending pushes ------------------------------------------------------------- */

/* One allocation: the struct, two pointer arrays, then the strings. */
static pending_push *pending_push_new(const nebula_client_event *events, size_t n)
{
    size_t bytes = sizeof(pending_push) + 2 * n * sizeof(char *);
    for (size_t i = 0; i < n; i++)
        bytes += strlen(events[i].collection) + strlen(events[i].id) + 2;
    pending_push *p = calloc(1, bytes);
    if (!p)
        return NULL;
    p->n = n;
    p->collections = (char **)(p + 1);
    p->event_ids = p->collections + n;
    char *text = (char *)(p->event_ids + n);
    for (size_t i = 0; i < n; i++) {
        size_t len = strlen(events[i].collection) + 1;
        p->collections[i] = memcpy(text, events[i].collection, len);
        text += len;
        len = strlen(events[i].id) + 1;
        p->event_ids[i] = memcpy(text, events[i].id, len);
        text += len;
    }
    return p;
}

static void pending_push_append(nebula_client *c, pending_push *p)
{
    if (c->pushes_tail)
        c->pushes_tail->next = p;
    else
        c->pushes_head = p;
    c->pushes_tail = p;
    c->pending_pushes++;
    c->pending_events += p->n;
}

/* Unlinks the push with this request id (usually the oldest). */
static pending_push *pending_push_take(nebula_client *c, uint64_t request_id)
{
    pending_push *prev = NULL;
    for (pending_push *p = c->pushes_head; p; prev = p, p = p->next) {
        if (p->request_id != request_id)
            continue;
        if (prev)
            prev->next = p->next;
        else
            c->pushes_head = p->next;
        if (c->pushes_tail == p)
            c->pushes_tail = prev;
        c->pending_pushes--;
        c->pending_events -= p->n;
        return p;
    }
    return NULL;
}

static void pending_push_clear(nebula_client *c)
{
    pending_push *p = c->pushes_head;
    while (p) {
        pending_push *next = p->next;
        free(p);
        p = next;
    }
    c->pushes_head = c->pushes_tail = NULL;
    c->pending_pushes = c->pending_events = 0;
}

/* The collection of result i: results come in push order, but match by event
 * id when the order or count disagrees. */
static const char *pending_push_collection(const pending_push *p, size_t i, const char *event_id)
{
    if (i < p->n && (!event_id[0] || strcmp(p->event_ids[i], event_id) == 0))
        return p->collections[i];
    for (size_t j = 0; j < p->n; j++)
        if (strcmp(p->event_ids[j], event_id) == 0)
            return p->collections[j];
    return NULL;
}

/* ---- lifecycle ------------------------------------------------------------------ */

void nebula_client_options_init(nebula_client_options *o)
{
    memset(o, 0, sizeof *o);
    o->tls_verify = true;
    o->connect_timeout_ms = DEFAULT_CONNECT_TIMEOUT_MS;
    o->close_timeout_ms = DEFAULT_CLOSE_TIMEOUT_MS;
    o->max_message_size = DEFAULT_MAX_MESSAGE_SIZE;
}

static void deferred_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    nebula_client *c = arg;
    client_enter(c);
    if (c->deferred_close) {
        c->deferred_close = false;
        client_on_closed(c, 0, NULL, WS_CLOSE_ABNORMAL,
                         "closed by the application before the WebSocket opened");
    }
    client_leave(c);
}

static int copy_options(nebula_client *c, const nebula_client_options *o)
{
    bool ok = true;
    c->server_url = copy_string(o->server_url, &ok);
    c->auth_token = copy_string(o->auth_token, &ok);
    c->client_id = copy_string(o->client_id, &ok);
    c->client_version =
        copy_string(o->client_version ? o->client_version : "nebula-client/" NEBULA_VERSION, &ok);
    c->tls_ca_file = copy_string(o->tls_ca_file, &ok);
    c->tls_verify = o->tls_verify;
    c->connect_timeout_ms = o->connect_timeout_ms;
    c->close_timeout_ms = o->close_timeout_ms;
    c->max_message_size = o->max_message_size;
    c->dns_base = o->dns_base;
    c->cb = o->callbacks;
    c->user_data = o->user_data;
    return ok ? NEBULA_CLIENT_OK : NEBULA_CLIENT_E_NOMEM;
}

static bool options_valid(const nebula_client_options *o)
{
    return o->server_url && o->connect_timeout_ms >= 0 && o->close_timeout_ms >= 0 &&
           o->max_message_size > 0 &&
           (!o->client_id || strlen(o->client_id) <= NEBULA_CLIENT_MAX_CLIENT_ID);
}

/* The server's rule for collection names (docs/PROTOCOL.md). */
static bool collection_name_valid(const char *name)
{
    size_t len = strnlen(name, NEBULA_CLIENT_MAX_COLLECTION + 1);
    if (len == 0 || len > NEBULA_CLIENT_MAX_COLLECTION)
        return false;
    for (size_t i = 0; i < len; i++)
        if ((unsigned char)name[i] < 0x20 || name[i] == 0x7f)
            return false;
    return true;
}

int nebula_client_create(struct event_base *base, const nebula_client_options *options,
                         nebula_client **out)
{
    if (!out)
        return NEBULA_CLIENT_E_INVALID;
    *out = NULL;
    if (!base || !options || !options_valid(options))
        return NEBULA_CLIENT_E_INVALID;
    nebula_client *c = calloc(1, sizeof *c);
    if (!c)
        return NEBULA_CLIENT_E_NOMEM;
    c->base = base;
    c->next_request_id = 1;
    const char *why;
    int rc = copy_options(c, options);
    if (rc == NEBULA_CLIENT_OK && !ws_url_parse(c->server_url, CLIENT_DEFAULT_PATH, &c->url, &why))
        rc = NEBULA_CLIENT_E_URL;
    if (rc == NEBULA_CLIENT_OK && c->url.tls)
        rc = conn_init_tls(c);
    if (rc == NEBULA_CLIENT_OK)
        rc = conn_init_events(c);
    if (rc == NEBULA_CLIENT_OK && !(c->deferred = event_new(base, -1, 0, deferred_cb, c)))
        rc = NEBULA_CLIENT_E_NOMEM;
    if (rc != NEBULA_CLIENT_OK) {
        destroy(c);
        return rc;
    }
    *out = c;
    return NEBULA_CLIENT_OK;
}

static void destroy(nebula_client *c)
{
    conn_teardown(c);
    conn_free_events(c);
    if (c->deferred)
        event_free(c->deferred);
    pending_push_clear(c);
    free_collections(c);
    SSL_CTX_free(c->ssl_ctx);
    free(c->server_url);
    free(c->auth_token);
    free(c->client_id);
    free(c->client_version);
    free(c->tls_ca_file);
    free(c);
}

void nebula_client_free(nebula_client *c)
{
    if (!c)
        return;
    if (c->depth > 0) {   /* inside one of our callbacks: the outermost leave frees */
        c->free_requested = true;
        return;
    }
    destroy(c);
}

int nebula_client_connect(nebula_client *c)
{
    if (!c)
        return NEBULA_CLIENT_E_INVALID;
    if (c->free_requested || current_state(c) != NEBULA_CLIENT_IDLE)
        return NEBULA_CLIENT_E_STATE;
    c->ready = false;
    c->server_max_message = 0;
    return conn_start(c);
}

static bool close_code_allowed(int code)
{
    return code == WS_CLOSE_NORMAL || code == WS_CLOSE_GOING_AWAY ||
           (code >= 3000 && code <= 4999);
}

int nebula_client_close(nebula_client *c, int code)
{
    if (!c)
        return NEBULA_CLIENT_E_INVALID;
    if (!close_code_allowed(code))
        return NEBULA_CLIENT_E_INVALID;
    nebula_client_state state = current_state(c);
    if (c->free_requested || state == NEBULA_CLIENT_IDLE || state == NEBULA_CLIENT_CLOSING)
        return NEBULA_CLIENT_E_STATE;
    if (c->conn.phase != CONN_OPEN) {
        /* No WebSocket yet: nothing to hand-shake; drop it, report later. */
        conn_teardown(c);
        c->deferred_close = true;
        event_active(c->deferred, EV_TIMEOUT, 1);
        return NEBULA_CLIENT_OK;
    }
    return conn_close(c, (uint16_t)code, "");
}

/* ---- requests ----------------------------------------------------------------------- */

static int send_client_message(nebula_client *c, Nebula__Sync__V1__ClientMessage *m)
{
    return conn_send_message(c, &m->base);
}

int nebula_client_subscribe(nebula_client *c, const char *collection, const nebula_cursor *cursor)
{
    if (!c || !collection || !collection_name_valid(collection))
        return NEBULA_CLIENT_E_INVALID;
    if (cursor && strnlen(cursor->epoch, sizeof cursor->epoch) >= sizeof cursor->epoch)
        return NEBULA_CLIENT_E_INVALID;
    if (c->free_requested || current_state(c) != NEBULA_CLIENT_READY)
        return NEBULA_CLIENT_E_STATE;
    client_collection *col = find_collection(c, collection);
    bool created = !col;
    if (created && !(col = add_collection(c, collection)))
        return NEBULA_CLIENT_E_NOMEM;

    Nebula__Sync__V1__Cursor wire_cursor = NEBULA__SYNC__V1__CURSOR__INIT;
    Nebula__Sync__V1__CollectionSubscription sub = NEBULA__SYNC__V1__COLLECTION_SUBSCRIPTION__INIT;
    sub.collection = wire_string(collection);
    if (cursor) {
        wire_cursor.seq = cursor->seq;
        wire_cursor.epoch = wire_string(cursor->epoch);
        sub.cursor = &wire_cursor;
    }
    Nebula__Sync__V1__CollectionSubscription *subs[1] = {&sub};
    Nebula__Sync__V1__Subscribe subscribe = NEBULA__SYNC__V1__SUBSCRIBE__INIT;
    subscribe.n_collections = 1;
    subscribe.collections = subs;
    Nebula__Sync__V1__ClientMessage m = NEBULA__SYNC__V1__CLIENT_MESSAGE__INIT;
    m.message_case = NEBULA__SYNC__V1__CLIENT_MESSAGE__MESSAGE_SUBSCRIBE;
    m.subscribe = &subscribe;
    int rc = send_client_message(c, &m);
    if (rc != NEBULA_CLIENT_OK) {
        if (created)   /* it is the last one: forget it again */
            remove_last_collection(c);
        return rc;
    }
    /* The application's cursor is its statement of what it has seen. */
    if (cursor)
        cursor_tracker_start(&col->tracker, cursor->seq, cursor->epoch);
    else
        cursor_tracker_begin_snapshot(&col->tracker);
    col->subscribed = true;
    return NEBULA_CLIENT_OK;
}

int nebula_client_unsubscribe(nebula_client *c, const char *collection)
{
    if (!c || !collection || !collection_name_valid(collection))
        return NEBULA_CLIENT_E_INVALID;
    if (c->free_requested || current_state(c) != NEBULA_CLIENT_READY)
        return NEBULA_CLIENT_E_STATE;
    client_collection *col = find_collection(c, collection);
    if (!col)
        return NEBULA_CLIENT_E_NOT_FOUND;
    char *names[1] = {wire_string(collection)};
    Nebula__Sync__V1__Unsubscribe unsubscribe = NEBULA__SYNC__V1__UNSUBSCRIBE__INIT;
    unsubscribe.n_collections = 1;
    unsubscribe.collections = names;
    Nebula__Sync__V1__ClientMessage m = NEBULA__SYNC__V1__CLIENT_MESSAGE__INIT;
    m.message_case = NEBULA__SYNC__V1__CLIENT_MESSAGE__MESSAGE_UNSUBSCRIBE;
    m.unsubscribe = &unsubscribe;
    int rc = send_client_message(c, &m);
    if (rc == NEBULA_CLIENT_OK)
        col->subscribed = false;   /* events still in flight are dropped from now on */
    return rc;
}

static void event_to_proto(const nebula_client_event *in, Nebula__Sync__V1__Event *out)
{
    nebula__sync__v1__event__init(out);
    out->id = wire_string(in->id);
    out->type = (Nebula__Sync__V1__EventType)in->type;
    out->collection = wire_string(in->collection);
    out->document_id = wire_string(in->document_id);
    out->data.data = (uint8_t *)in->data;
    out->data.len = in->data ? in->data_len : 0;
    out->timestamp = in->timestamp_ms;
    out->hlc = in->hlc;
    out->client_id = wire_string(in->client_id);
    out->base_seq = in->base_seq;
}

/* Encodes and sends one Push for events under request_id. */
static int send_push(nebula_client *c, uint64_t request_id, const nebula_client_event *events,
                     size_t n)
{
    Nebula__Sync__V1__Event *wire = calloc(n, sizeof *wire);
    Nebula__Sync__V1__Event **ptrs = calloc(n, sizeof *ptrs);
    int rc = NEBULA_CLIENT_E_NOMEM;
    if (wire && ptrs) {
        for (size_t i = 0; i < n; i++) {
            event_to_proto(&events[i], &wire[i]);
            ptrs[i] = &wire[i];
        }
        Nebula__Sync__V1__Push push = NEBULA__SYNC__V1__PUSH__INIT;
        push.request_id = request_id;
        push.n_events = n;
        push.events = ptrs;
        Nebula__Sync__V1__ClientMessage m = NEBULA__SYNC__V1__CLIENT_MESSAGE__INIT;
        m.message_case = NEBULA__SYNC__V1__CLIENT_MESSAGE__MESSAGE_PUSH;
        m.push = &push;
        rc = send_client_message(c, &m);
    }
    free(wire);
    free(ptrs);
    return rc;
}

int nebula_client_push(nebula_client *c, const nebula_client_event *events, size_t n,
                       uint64_t *request_id_out)
{
    if (!c || !events || n == 0)
        return NEBULA_CLIENT_E_INVALID;
    /* The collection routes the result's seq to a cursor; the id matches it. */
    for (size_t i = 0; i < n; i++)
        if (!events[i].collection || !events[i].collection[0] || !events[i].id ||
            !events[i].id[0])
            return NEBULA_CLIENT_E_INVALID;
    if (c->free_requested || current_state(c) != NEBULA_CLIENT_READY)
        return NEBULA_CLIENT_E_STATE;
    if (n > NEBULA_CLIENT_MAX_PUSH_EVENTS)
        return NEBULA_CLIENT_E_TOO_BIG;
    pending_push *p = pending_push_new(events, n);
    if (!p)
        return NEBULA_CLIENT_E_NOMEM;
    p->request_id = c->next_request_id;
    int rc = send_push(c, p->request_id, events, n);
    if (rc != NEBULA_CLIENT_OK) {
        free(p);
        return rc;
    }
    c->next_request_id++;
    pending_push_append(c, p);
    if (request_id_out)
        *request_id_out = p->request_id;
    return NEBULA_CLIENT_OK;
}

/* ---- queries ---------------------------------------------------------------------- */

int nebula_client_get_cursor(const nebula_client *c, const char *collection, nebula_cursor *out)
{
    if (!c || !collection || !out)
        return NEBULA_CLIENT_E_INVALID;
    const client_collection *col = find_collection(c, collection);
    if (!col)
        return NEBULA_CLIENT_E_NOT_FOUND;
    nebula_cursor cursor;
    if (!cursor_tracker_get(&col->tracker, &cursor.seq, cursor.epoch))
        return NEBULA_CLIENT_E_AGAIN;
    *out = cursor;
    return NEBULA_CLIENT_OK;
}

int nebula_client_get_status(const nebula_client *c, nebula_client_status *out)
{
    if (!c || !out)
        return NEBULA_CLIENT_E_INVALID;
    memset(out, 0, sizeof *out);
    out->state = current_state(c);
    out->connected = out->state == NEBULA_CLIENT_READY;
    out->last_sync_time_ms = c->last_sync_time_ms;
    out->pending_pushes = c->pending_pushes;
    out->pending_events = c->pending_events;
    out->last_error = c->last_error;
    snprintf(out->last_error_message, sizeof out->last_error_message, "%s",
             c->last_error_message);
    return NEBULA_CLIENT_OK;
}

/* ---- transport callbacks ---------------------------------------------------------- */

void client_on_open(nebula_client *c)
{
    Nebula__Sync__V1__Hello hello = NEBULA__SYNC__V1__HELLO__INIT;
    hello.client_id = wire_string(c->client_id);
    hello.auth_token = wire_string(c->auth_token);
    hello.client_version = wire_string(c->client_version);
    Nebula__Sync__V1__ClientMessage m = NEBULA__SYNC__V1__CLIENT_MESSAGE__INIT;
    m.message_case = NEBULA__SYNC__V1__CLIENT_MESSAGE__MESSAGE_HELLO;
    m.hello = &hello;
    int rc = send_client_message(c, &m);
    if (rc != NEBULA_CLIENT_OK)
        conn_fail(c, rc, "cannot send Hello", WS_CLOSE_INTERNAL_ERROR);
}

void client_on_closed(nebula_client *c, int error, const char *error_message, int close_code,
                      const char *reason)
{
    /* Unanswered pushes stay unconfirmed; subscriptions end with the session. */
    c->ready = false;
    c->server_max_message = 0;
    pending_push_clear(c);
    for (size_t i = 0; i < c->n_collections; i++)
        c->collections[i]->subscribed = false;
    /* Until on_closed, the handle is not IDLE: a connect() from on_error
     * would otherwise start a connection before this one is reported gone. */
    if (error) {
        c->reporting_close = true;
        client_report_error(c, error, error_message);
        c->reporting_close = false;
    }
    CALLBACK(c, on_closed, close_code, reason);
}

/* ---- server messages ----------------------------------------------------------------- */

static void on_welcome(nebula_client *c, const Nebula__Sync__V1__Welcome *w)
{
    c->ready = true;
    c->server_max_message = w->limits ? w->limits->max_message_size : 0;
    conn_session_ready(c, w->heartbeat_interval_ms);
    nebula_client_welcome info = {
        .session_id = w->session_id,
        .tenant = w->tenant,
        .server_time_ms = w->server_time_ms,
        .heartbeat_interval_ms = w->heartbeat_interval_ms,
        .max_message_size = c->server_max_message,
        .server_version = w->server_version,
    };
    CALLBACK(c, on_welcome, &info);
}

static void on_server_error(nebula_client *c, const Nebula__Sync__V1__Error *e)
{
    /* 0 would read as "no error": an unspecified server error is a protocol
     * fault for our purposes. */
    int code = e->code > 0 ? (int)e->code : NEBULA_CLIENT_E_PROTOCOL;
    client_report_error(c, code, e->message[0] ? e->message : server_strerror(code));
}

static void on_subscribed(nebula_client *c, const Nebula__Sync__V1__Subscribed *s)
{
    client_collection *col = find_collection(c, s->collection);
    if (!col) {
        client_report_error(c, NEBULA_CLIENT_E_PROTOCOL, "Subscribed for a collection never asked for");
        return;
    }
    nebula_cursor head;
    if (s->head && !cursor_from_proto(s->head, &head)) {
        client_report_error(c, NEBULA_CLIENT_E_PROTOCOL, "Subscribed.head epoch too long");
        return;
    }
    if (s->head && head.epoch[0])
        cursor_tracker_set_epoch(&col->tracker, head.epoch, NULL);
    if (s->mode == NEBULA__SYNC__V1__SUBSCRIBE_MODE__SUBSCRIBE_MODE_SNAPSHOT)
        cursor_tracker_begin_snapshot(&col->tracker);
    else if (s->mode == NEBULA__SYNC__V1__SUBSCRIBE_MODE__SUBSCRIBE_MODE_REPLAY)
        cursor_tracker_replay_started(&col->tracker);
    CALLBACK(c, on_subscribed, s->collection, (nebula_subscribe_mode)s->mode,
             s->head ? &head : NULL);
}

/* Delivers the events not seen before; the others are dropped. */
static void on_events(nebula_client *c, const Nebula__Sync__V1__Events *e)
{
    client_collection *col = find_collection(c, e->collection);
    if (!col || !col->subscribed || e->n_events == 0)
        return;   /* e.g. still in flight when we unsubscribed */
    nebula_client_event *fresh = malloc(e->n_events * sizeof *fresh);
    if (!fresh) {
        conn_fail(c, NEBULA_CLIENT_E_NOMEM, "out of memory", WS_CLOSE_INTERNAL_ERROR);
        return;
    }
    size_t n = 0, invalid = 0;
    for (size_t i = 0; i < e->n_events; i++) {
        cursor_observe_result r = observe_seq(c, col, e->events[i]->seq);
        if (r == CURSOR_NEW)
            event_from_proto(e->events[i], e->collection, &fresh[n++]);
        else if (r == CURSOR_INVALID)
            invalid++;
    }
    c->last_sync_time_ms = wall_clock_ms();
    if (invalid)
        client_report_error(c, NEBULA_CLIENT_E_PROTOCOL, "ignored events without a seq");
    if (n)
        CALLBACK(c, on_events, e->collection, fresh, n);
    free(fresh);
}

static void on_snapshot(nebula_client *c, const Nebula__Sync__V1__Snapshot *s)
{
    client_collection *col = find_collection(c, s->collection);
    if (!col || !col->subscribed)
        return;
    nebula_client_document *docs = NULL;
    if (s->n_documents && !(docs = malloc(s->n_documents * sizeof *docs))) {
        conn_fail(c, NEBULA_CLIENT_E_NOMEM, "out of memory", WS_CLOSE_INTERNAL_ERROR);
        return;
    }
    for (size_t i = 0; i < s->n_documents; i++)
        document_from_proto(s->documents[i], &docs[i]);
    nebula_cursor cursor;
    bool have_cursor = false;
    if (s->last) {
        have_cursor = s->cursor && cursor_from_proto(s->cursor, &cursor) &&
                      cursor_tracker_snapshot_done(&col->tracker, cursor.seq, cursor.epoch);
        if (!have_cursor)
            client_report_error(c, NEBULA_CLIENT_E_PROTOCOL,
                                "last Snapshot page without a valid cursor");
    }
    c->last_sync_time_ms = wall_clock_ms();
    CALLBACK(c, on_snapshot, s->collection, docs, s->n_documents, s->last != 0,
             have_cursor ? &cursor : NULL);
    free(docs);
}

/* Own ACCEPTED/DUPLICATE seqs fill the cursor: the server never sends us
 * our own accepted events live. */
static void track_own_result(nebula_client *c, const pending_push *p, size_t i,
                             const Nebula__Sync__V1__EventResult *r)
{
    if (!p || r->seq == 0 ||
        (r->status != NEBULA__SYNC__V1__PUSH_STATUS__PUSH_STATUS_ACCEPTED &&
         r->status != NEBULA__SYNC__V1__PUSH_STATUS__PUSH_STATUS_DUPLICATE))
        return;
    const char *name = pending_push_collection(p, i, r->event_id);
    client_collection *col = name ? find_collection(c, name) : NULL;
    if (col)   /* never subscribed: a later subscription's replay covers it */
        observe_seq(c, col, r->seq);
}

static void on_push_result(nebula_client *c, const Nebula__Sync__V1__PushResult *r)
{
    pending_push *p = pending_push_take(c, r->request_id);
    if (!p)
        client_report_error(c, NEBULA_CLIENT_E_PROTOCOL, "PushResult for an unknown request_id");
    else if (p->n != r->n_results)
        client_report_error(c, NEBULA_CLIENT_E_PROTOCOL, "PushResult count differs from the push");
    size_t n = r->n_results;
    nebula_client_push_result *results = n ? calloc(n, sizeof *results) : NULL;
    nebula_client_document *winners = n ? calloc(n, sizeof *winners) : NULL;
    if (n && (!results || !winners)) {
        free(results);
        free(winners);
        free(p);
        conn_fail(c, NEBULA_CLIENT_E_NOMEM, "out of memory", WS_CLOSE_INTERNAL_ERROR);
        return;
    }
    for (size_t i = 0; i < n; i++) {
        const Nebula__Sync__V1__EventResult *er = r->results[i];
        track_own_result(c, p, i, er);
        if (er->winner)
            document_from_proto(er->winner, &winners[i]);
        results[i] = (nebula_client_push_result){
            .event_id = er->event_id,
            .status = (nebula_push_status)er->status,
            .seq = er->seq,
            .winner = er->winner ? &winners[i] : NULL,
            .reason = er->reason,
            .retryable = er->retryable,
        };
    }
    c->last_sync_time_ms = wall_clock_ms();
    CALLBACK(c, on_push_result, r->request_id, results, n);
    free(results);
    free(winners);
    free(p);
}

static void dispatch(nebula_client *c, const Nebula__Sync__V1__ServerMessage *m)
{
    if (m->message_case == NEBULA__SYNC__V1__SERVER_MESSAGE__MESSAGE__NOT_SET)
        return;   /* a kind of message newer than us: ignore it */
    if (m->message_case == NEBULA__SYNC__V1__SERVER_MESSAGE__MESSAGE_ERROR) {
        on_server_error(c, m->error);
        return;
    }
    if (m->message_case == NEBULA__SYNC__V1__SERVER_MESSAGE__MESSAGE_WELCOME) {
        if (c->ready)
            conn_fail(c, NEBULA_CLIENT_E_PROTOCOL, "a second Welcome", WS_CLOSE_PROTOCOL_ERROR);
        else
            on_welcome(c, m->welcome);
        return;
    }
    if (!c->ready) {
        conn_fail(c, NEBULA_CLIENT_E_PROTOCOL, "a sync message before Welcome",
                  WS_CLOSE_PROTOCOL_ERROR);
        return;
    }
    switch (m->message_case) {
    case NEBULA__SYNC__V1__SERVER_MESSAGE__MESSAGE_SUBSCRIBED:
        on_subscribed(c, m->subscribed);
        break;
    case NEBULA__SYNC__V1__SERVER_MESSAGE__MESSAGE_EVENTS:
        on_events(c, m->events);
        break;
    case NEBULA__SYNC__V1__SERVER_MESSAGE__MESSAGE_SNAPSHOT:
        on_snapshot(c, m->snapshot);
        break;
    case NEBULA__SYNC__V1__SERVER_MESSAGE__MESSAGE_PUSH_RESULT:
        on_push_result(c, m->push_result);
        break;
    default:
        break;
    }
}

void client_on_message(nebula_client *c, const uint8_t *data, size_t len)
{
    Nebula__Sync__V1__ServerMessage *m = nebula__sync__v1__server_message__unpack(NULL, len, data);
    if (!m) {
        conn_fail(c, NEBULA_CLIENT_E_PROTOCOL, "not a decodable ServerMessage",
                  WS_CLOSE_PROTOCOL_ERROR);
        return;
    }
    dispatch(c, m);
    nebula__sync__v1__server_message__free_unpacked(m, NULL);
}
