/* session: the per-connection state machine of the broker.
 *
 *   TLS_HANDSHAKE --(TLS done)--> HTTP_UPGRADE --(101 sent)--> OPEN
 *   OPEN --(we send CLOSE: drain)--> CLOSE_SENT --(peer's CLOSE)--> FLUSHING
 *   OPEN --(peer's CLOSE echoed, protocol error, HTTP error)--> FLUSHING
 *   FLUSHING --(output written)--> freed;  any state --(EOF, error)--> freed
 *
 * Input is parsed straight out of the bufferevent's input evbuffer: a frame
 * that arrived in one chunk is decoded, unmasked and handed on in place, so a
 * single-frame message is never copied. Output goes to the bufferevent's
 * output evbuffer; libevent writes it once per loop turn, so everything a
 * session produces in one turn leaves in one write.
 */
#include "session.h"

#include <errno.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/uio.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/bufferevent_ssl.h>
#include <event2/event.h>

#include "log.h"
#include "nebula_sync.pb-c.h"
#include "sync_session.h"
#include "sync_wire.h"
#include "ws_frame.h"
#include "ws_handshake.h"

typedef enum session_state {
    SESSION_TLS_HANDSHAKE,   /* waiting for the TLS handshake to finish */
    SESSION_HTTP_UPGRADE,    /* collecting the HTTP upgrade request */
    SESSION_OPEN,            /* WebSocket frames both ways */
    SESSION_CLOSE_SENT,      /* we sent CLOSE; waiting for the peer's */
    SESSION_FLUSHING,        /* last bytes queued; freed once written */
    SESSION_CLOSED,          /* connection gone; struct kept while held */
} session_state;

/* Output a peer may leave unread before it is treated as a dead slow reader
 * and dropped: a few maximum-size messages. */
#define SESSION_MIN_OUTPUT_CAP (4u << 20)

#define SESSION_MAX_COLLECTION_NAME 128

/* Server messages up to this size are framed on the stack. */
#define SESSION_SMALL_MESSAGE 512
#define SESSION_EVENT_COPY_MAX 1024   /* see queue_rest() */

struct session {
    session_host *host;
    struct bufferevent *bev;
    struct event *handshake_timer;   /* only until the upgrade is done */
    struct evbuffer *fragments;      /* payload of an open fragmented message */
    session *prev, *next;            /* host->sessions list */
    sync_session *sync;              /* the sync protocol, once upgraded */
    ws_reader reader;
    uint64_t number;
    uint32_t refs;                   /* 1 for the connection + pending storage calls */
    session_state state;
    bool upgraded;                   /* counted in broker->sessions */
    bool ping_outstanding;           /* a server ping is unanswered */
};

static void session_free(session *s);

session *session_next(const session *s)
{
    return s->next;
}

/* ---- output ------------------------------------------------------------ */

static struct evbuffer *session_output(const session *s)
{
    return bufferevent_get_output(s->bev);
}

static void count_output(session *s, size_t bytes, uint64_t frames)
{
    metric_add(&s->host->metrics->bytes_out, bytes);
    metric_add(&s->host->metrics->frames_out, frames);
}

/* Queues one unmasked, final frame whose payload is small enough that
 * copying it beside its header beats a separate buffer chain. */
static void send_frame(session *s, uint8_t opcode, const uint8_t *payload, size_t len)
{
    uint8_t frame[WS_MAX_HEADER_LEN + SESSION_SMALL_MESSAGE];
    if (len > SESSION_SMALL_MESSAGE) {
        log_error("session %" PRIx64 ": %zu-byte frame is not small", s->number, len);
        return;
    }
    size_t header = ws_frame_header_write(frame, opcode, true, len, NULL);
    if (len)
        memcpy(frame + header, payload, len);
    evbuffer_add(session_output(s), frame, header + len);
    count_output(s, header + len, 1);
}

static void free_payload(const void *data, size_t len, void *arg)
{
    (void)len;
    (void)arg;
    free((void *)data);
}

/* Queues a frame whose payload buffer is handed over without copying: the
 * evbuffer references it and frees it once written. Takes ownership. */
static void send_frame_owned(session *s, uint8_t opcode, uint8_t *payload, size_t len)
{
    uint8_t header[WS_MAX_HEADER_LEN];
    size_t header_len = ws_frame_header_write(header, opcode, true, len, NULL);
    struct evbuffer *out = session_output(s);
    if (evbuffer_add(out, header, header_len) != 0 ||
        evbuffer_add_reference(out, payload, len, free_payload, NULL) != 0) {
        log_error("session %" PRIx64 ": cannot queue a %zu-byte frame", s->number, len);
        free(payload);
        return;
    }
    count_output(s, header_len + len, 1);
}

/* One Events message as the pieces that go on the wire. */
typedef struct message_pieces {
    struct iovec iov[2 + SESSION_MAX_EVENTS_PER_MESSAGE];
    shared_event *event[2 + SESSION_MAX_EVENTS_PER_MESSAGE];   /* NULL: header, prefix */
    int count;
    size_t bytes;
} message_pieces;

static void add_piece(message_pieces *m, const void *base, size_t len, shared_event *ev)
{
    m->iov[m->count] = (struct iovec){.iov_base = (void *)base, .iov_len = len};
    m->event[m->count++] = ev;
    m->bytes += len;
}

/* Plain sockets with nothing queued get the message in one writev now: no
 * buffer chain, no write event to arm and disarm, and no wait for the next
 * loop turn. Returns the bytes the socket took (0 on any error: queued
 * output then meets the error through the bufferevent, as usual). */
static size_t write_directly(session *s, const struct iovec *iov, int count)
{
    if (s->host->broker->tls_enabled || evbuffer_get_length(session_output(s)) != 0)
        return 0;
    ssize_t n = writev(bufferevent_getfd(s->bev), iov, count);
    return n > 0 ? (size_t)n : 0;
}

/* Queues what write_directly() left: small pieces are copied (below
 * SESSION_EVENT_COPY_MAX a memcpy costs less than a chain, a reference
 * count and a cleanup call per subscriber), whole large events are
 * referenced. The bytes are still encoded only once. */
static void queue_rest(session *s, const message_pieces *m, size_t skip)
{
    struct evbuffer *out = session_output(s);
    evbuffer_expand(out, m->bytes - skip);
    for (int i = 0; i < m->count; i++) {
        const uint8_t *base = m->iov[i].iov_base;
        size_t len = m->iov[i].iov_len;
        if (skip >= len) {
            skip -= len;
            continue;
        }
        shared_event *ev = m->event[i];
        if (skip == 0 && ev && len > SESSION_EVENT_COPY_MAX) {
            shared_event_ref(ev);
            if (evbuffer_add_reference(out, base, len, shared_event_evbuffer_cleanup, ev) != 0)
                shared_event_unref(ev);   /* libevent did not take it */
        } else {
            evbuffer_add(out, base + skip, len - skip);
        }
        skip = 0;
    }
}

size_t session_send_events(session *s, const char *collection, shared_event *const *events,
                           size_t count)
{
    if (s->state != SESSION_OPEN || count > SESSION_MAX_EVENTS_PER_MESSAGE)
        return 0;
    uint64_t own = session_tag(s);
    size_t event_bytes = 0, kept = 0;
    for (size_t i = 0; i < count; i++) {
        if (events[i]->origin != own) {
            event_bytes += events[i]->len;
            kept++;
        }
    }
    if (kept == 0)
        return 0;
    size_t collection_len = strlen(collection);
    uint8_t prefix[SYNC_WIRE_PREFIX_MAX(SESSION_MAX_COLLECTION_NAME)];
    if (collection_len > SESSION_MAX_COLLECTION_NAME)
        return 0;
    size_t prefix_len = sync_wire_events_prefix(prefix, collection, collection_len, event_bytes);
    uint8_t header[WS_MAX_HEADER_LEN];
    size_t header_len = ws_frame_header_write(header, WS_OP_BINARY, true, prefix_len + event_bytes,
                                              NULL);
    message_pieces m;
    m.count = 0;
    m.bytes = 0;
    add_piece(&m, header, header_len, NULL);
    add_piece(&m, prefix, prefix_len, NULL);
    for (size_t i = 0; i < count; i++)
        if (events[i]->origin != own)
            add_piece(&m, events[i]->bytes, events[i]->len, events[i]);
    size_t written = write_directly(s, m.iov, m.count);
    if (written < m.bytes)
        queue_rest(s, &m, written);
    count_output(s, m.bytes, 1);
    return kept;
}

bool session_output_over_cap(const session *s)
{
    return s->bev &&
           evbuffer_get_length(bufferevent_get_output(s->bev)) > s->host->broker->max_output_buffer;
}

static void send_close_frame(session *s, uint16_t code, const char *reason)
{
    uint8_t payload[WS_MAX_CONTROL_PAYLOAD];
    size_t len = ws_close_payload_write(payload, code, reason);
    send_frame(s, WS_OP_CLOSE, payload, len);
}

/* A small data message (PushResult, Subscribed, ...) goes out at once like
 * Events do. Control frames keep to the bufferevent: closing waits for its
 * write callback. */
static void send_small_message(session *s, const Nebula__Sync__V1__ServerMessage *message,
                               size_t len)
{
    uint8_t frame[WS_MAX_HEADER_LEN + SESSION_SMALL_MESSAGE];
    size_t header = ws_frame_header_write(frame, WS_OP_BINARY, true, len, NULL);
    nebula__sync__v1__server_message__pack(message, frame + header);
    struct iovec iov = {.iov_base = frame, .iov_len = header + len};
    size_t written = write_directly(s, &iov, 1);
    if (written < header + len)
        evbuffer_add(session_output(s), frame + written, header + len - written);
    count_output(s, header + len, 1);
}

void session_send_message(session *s, const Nebula__Sync__V1__ServerMessage *message)
{
    size_t len = nebula__sync__v1__server_message__get_packed_size(message);
    if (len <= SESSION_SMALL_MESSAGE) {
        send_small_message(s, message, len);
        return;
    }
    uint8_t *packed = malloc(len);
    if (!packed) {
        log_error("session %" PRIx64 ": out of memory encoding %zu bytes", s->number, len);
        return;
    }
    nebula__sync__v1__server_message__pack(message, packed);
    send_frame_owned(s, WS_OP_BINARY, packed, len);
}

bool session_frame_message(struct evbuffer *out, const Nebula__Sync__V1__ServerMessage *message)
{
    size_t len = nebula__sync__v1__server_message__get_packed_size(message);
    uint8_t header[WS_MAX_HEADER_LEN];
    size_t header_len = ws_frame_header_write(header, WS_OP_BINARY, true, len, NULL);
    struct evbuffer_iovec space;
    if (evbuffer_add(out, header, header_len) != 0 ||
        evbuffer_reserve_space(out, (ev_ssize_t)len, &space, 1) != 1)
        return false;
    nebula__sync__v1__server_message__pack(message, space.iov_base);
    space.iov_len = len;
    return evbuffer_commit_space(out, &space, 1) == 0;
}

void session_send_framed(session *s, struct evbuffer *from, size_t len, uint64_t frames)
{
    if (s->state != SESSION_OPEN)
        return;
    int moved = evbuffer_remove_buffer(from, session_output(s), len);
    if (moved > 0)
        count_output(s, (size_t)moved, frames);
}

void session_send_error(session *s, int code, const char *text)
{
    Nebula__Sync__V1__Error error = NEBULA__SYNC__V1__ERROR__INIT;
    error.code = (Nebula__Sync__V1__ErrorCode)code;
    error.message = (char *)text;
    Nebula__Sync__V1__ServerMessage message = NEBULA__SYNC__V1__SERVER_MESSAGE__INIT;
    message.message_case = NEBULA__SYNC__V1__SERVER_MESSAGE__MESSAGE_ERROR;
    message.error = &error;
    session_send_message(s, &message);
}

/* ---- ending a session ---------------------------------------------------- */

/* Stops reading; the session is freed once what is queued has been written
 * (on_written), or at the end of the current callback if nothing is queued
 * (free_if_flushed). Never frees here, so callers may still touch s. */
static void finish_after_flush(session *s)
{
    s->state = SESSION_FLUSHING;
    bufferevent_disable(s->bev, EV_READ);
}

/* Called last by every callback that may have called finish_after_flush(). */
static void free_if_flushed(session *s)
{
    if (s->state == SESSION_FLUSHING && evbuffer_get_length(session_output(s)) == 0)
        session_free(s);
}

/* RFC 6455 7.1.7 "Fail the WebSocket Connection": send CLOSE with the code,
 * then close TCP without waiting for the peer's CLOSE. */
void session_fail(session *s, uint16_t code, const char *reason)
{
    if (s->state != SESSION_OPEN && s->state != SESSION_CLOSE_SENT)
        return;
    log_debug("session %" PRIx64 ": closing with %u (%s)", s->number, code, reason);
    send_close_frame(s, code, reason);
    finish_after_flush(s);
}

void session_hold(session *s)
{
    s->refs++;
}

void session_release(session *s)
{
    if (--s->refs > 0)
        return;
    sync_session_free(s->sync);
    free(s);
}

bool session_is_open(const session *s)
{
    return s->state == SESSION_OPEN;
}

uint64_t session_tag(const session *s)
{
    /* Unique per process: worker index above the per-worker number. */
    return ((uint64_t)(s->host->worker_index + 1) << 48) | s->number;
}

/* Closes the connection; the struct lives on while storage calls hold it. */
static void session_free(session *s)
{
    session_host *host = s->host;
    if (s->prev)
        s->prev->next = s->next;
    else
        host->sessions = s->next;
    if (s->next)
        s->next->prev = s->prev;
    if (s->upgraded)
        atomic_fetch_sub_explicit(&host->broker->sessions, 1, memory_order_relaxed);
    atomic_fetch_sub_explicit(&host->broker->connections, 1, memory_order_relaxed);
    metric_sub(&host->metrics->connections_open, 1);
    if (s->handshake_timer)
        event_free(s->handshake_timer);
    if (s->fragments)
        evbuffer_free(s->fragments);
    bufferevent_free(s->bev);   /* closes the socket (and frees the SSL) */
    s->handshake_timer = NULL;
    s->fragments = NULL;
    s->bev = NULL;
    s->state = SESSION_CLOSED;
    if (s->sync)
        sync_session_detach(s->sync);
    session_release(s);
    host->on_session_freed(host);
}

void session_destroy(session *s)
{
    session_free(s);
}

void session_go_away(session *s)
{
    switch (s->state) {
    case SESSION_TLS_HANDSHAKE:
    case SESSION_HTTP_UPGRADE:
        session_free(s);
        break;
    case SESSION_OPEN:
        send_close_frame(s, WS_CLOSE_GOING_AWAY, "server shutting down");
        s->state = SESSION_CLOSE_SENT;
        break;
    case SESSION_CLOSE_SENT:
    case SESSION_FLUSHING:
    case SESSION_CLOSED:
        break;
    }
}

/* ---- messages ------------------------------------------------------------ */

static uint64_t now_ms(void)
{
    struct timeval tv;
    gettimeofday(&tv, NULL);
    return (uint64_t)tv.tv_sec * 1000u + (uint64_t)tv.tv_usec / 1000u;
}

void session_send_welcome(session *s, const char *tenant)
{
    const broker_context *broker = s->host->broker;
    char session_id[32];
    snprintf(session_id, sizeof session_id, "%08" PRIx32 "-%" PRIx64, s->host->session_id_prefix,
             s->number);
    Nebula__Sync__V1__Limits limits = NEBULA__SYNC__V1__LIMITS__INIT;
    limits.max_message_size = (uint32_t)broker->max_message_size;
    Nebula__Sync__V1__Welcome welcome = NEBULA__SYNC__V1__WELCOME__INIT;
    welcome.session_id = session_id;
    welcome.tenant = (char *)tenant;
    welcome.server_time_ms = now_ms();
    welcome.heartbeat_interval_ms = (uint32_t)(broker->idle_timeout.tv_sec * 1000 +
                                               broker->idle_timeout.tv_usec / 1000);
    welcome.limits = &limits;
    welcome.server_version = NEBULA_VERSION;
    Nebula__Sync__V1__ServerMessage message = NEBULA__SYNC__V1__SERVER_MESSAGE__INIT;
    message.message_case = NEBULA__SYNC__V1__SERVER_MESSAGE__MESSAGE_WELCOME;
    message.welcome = &welcome;
    session_send_message(s, &message);
}

static void handle_binary_message(session *s, const uint8_t *data, size_t len)
{
    Nebula__Sync__V1__ClientMessage *message =
        nebula__sync__v1__client_message__unpack(NULL, len, data);
    if (!message) {
        session_send_error(s, NEBULA__SYNC__V1__ERROR_CODE__ERROR_CODE_INVALID_MESSAGE,
                   "binary message is not a valid ClientMessage protobuf");
        return;
    }
    sync_session_handle(s->sync, message);
    nebula__sync__v1__client_message__free_unpacked(message, NULL);
}

static void handle_message(session *s, uint8_t opcode, const uint8_t *data, size_t len)
{
    if (opcode == WS_OP_TEXT)
        session_send_error(s, NEBULA__SYNC__V1__ERROR_CODE__ERROR_CODE_UNSUPPORTED,
                   "text messages are not part of nebula-sync.v1; send binary protobuf");
    else
        handle_binary_message(s, data, len);
}

/* ---- frames -------------------------------------------------------------- */

static void handle_data_frame(session *s, const ws_frame *f)
{
    if (s->state != SESSION_OPEN)
        return;   /* RFC 6455 5.5.1: data after our CLOSE may be discarded */
    if (f->message_begins && f->message_ends) {
        handle_message(s, f->message_opcode, f->payload, f->payload_len);
        return;
    }
    if (!s->fragments && !(s->fragments = evbuffer_new())) {
        session_fail(s, WS_CLOSE_INTERNAL_ERROR, "out of memory");
        return;
    }
    evbuffer_add(s->fragments, f->payload, f->payload_len);
    if (!f->message_ends)
        return;
    size_t len = evbuffer_get_length(s->fragments);
    const uint8_t *message = evbuffer_pullup(s->fragments, -1);
    handle_message(s, f->message_opcode, message, len);
    /* Idle sessions should not keep a buffer around. */
    evbuffer_free(s->fragments);
    s->fragments = NULL;
}

static void handle_close_frame(session *s, const ws_frame *f)
{
    if (s->state == SESSION_OPEN) {
        /* RFC 6455 5.5.1: answer with a CLOSE echoing the status code. */
        if (f->peer_close_code == WS_CLOSE_NO_STATUS)
            send_frame(s, WS_OP_CLOSE, NULL, 0);
        else
            send_close_frame(s, f->peer_close_code, "");
    }
    finish_after_flush(s);
}

static void handle_frame(session *s, const ws_frame *f)
{
    switch (f->opcode) {
    case WS_OP_PING:
        if (s->state == SESSION_OPEN)
            send_frame(s, WS_OP_PONG, f->payload, f->payload_len);
        break;
    case WS_OP_PONG:
        break;   /* liveness already noted; unsolicited pongs are ignored */
    case WS_OP_CLOSE:
        handle_close_frame(s, f);
        break;
    default:
        handle_data_frame(s, f);
        break;
    }
}

/* Decodes the next frame at the front of input, pulling up (making
 * contiguous) only as many bytes as the codec asks for. */
static ws_read_status next_frame(session *s, struct evbuffer *input, ws_frame *f)
{
    size_t available = evbuffer_get_length(input);
    size_t want = available < WS_MAX_HEADER_LEN ? available : WS_MAX_HEADER_LEN;
    for (;;) {
        uint8_t *bytes = evbuffer_pullup(input, (ev_ssize_t)want);
        ws_read_status status = ws_reader_next(&s->reader, bytes, want, f);
        if (status != WS_READ_NEED_MORE || f->need > available)
            return status;
        want = f->need;
    }
}

/* The hard cap, checked while the peer keeps sending (e.g. pings it never
 * reads the pongs of): well above what live delivery may queue
 * (max_output_buffer, after which subscribers pause) and above a few
 * maximum-size messages. */
static bool output_overloaded(session *s)
{
    const broker_context *broker = s->host->broker;
    size_t cap = SESSION_MIN_OUTPUT_CAP;
    if (cap < broker->max_message_size * 4)
        cap = broker->max_message_size * 4;
    if (cap < broker->max_output_buffer * 2)
        cap = broker->max_output_buffer * 2;
    return evbuffer_get_length(session_output(s)) > cap;
}

static void read_frames(session *s, struct evbuffer *input)
{
    while ((s->state == SESSION_OPEN || s->state == SESSION_CLOSE_SENT) &&
           evbuffer_get_length(input) > 0) {
        ws_frame f;
        ws_read_status status = next_frame(s, input, &f);
        if (status == WS_READ_NEED_MORE)
            return;
        if (status == WS_READ_FAIL) {
            session_fail(s, f.close_code, f.error);
            return;
        }
        metric_add(&s->host->metrics->frames_in, 1);
        metric_add(&s->host->metrics->bytes_in, f.frame_len);
        handle_frame(s, &f);
        if (s->state == SESSION_FLUSHING)
            return;   /* input after a CLOSE is not read (RFC 6455 5.5.1) */
        evbuffer_drain(input, f.frame_len);
        if (output_overloaded(s)) {
            log_info("session %" PRIx64 ": dropping a peer that does not read its output",
                     s->number);
            evbuffer_drain(session_output(s), evbuffer_get_length(session_output(s)));
            finish_after_flush(s);
            return;
        }
    }
}

/* ---- HTTP upgrade -------------------------------------------------------- */

static bool complete_upgrade(session *s, const char *bearer_token)
{
    s->sync = sync_session_create(s->host->sync, s);
    if (!s->sync)
        return false;
    sync_session_set_header_token(s->sync, bearer_token);
    event_free(s->handshake_timer);
    s->handshake_timer = NULL;
    s->state = SESSION_OPEN;
    s->upgraded = true;
    atomic_fetch_add_explicit(&s->host->broker->sessions, 1, memory_order_relaxed);
    ws_reader_init(&s->reader, WS_ROLE_SERVER, s->host->broker->max_message_size);
    /* Silence on the read side for idle_timeout triggers a ping; a write that
     * makes no progress for that long means the peer is gone. */
    bufferevent_set_timeouts(s->bev, s->host->idle_timeout, s->host->idle_timeout);
    return true;
}

static void read_upgrade_request(session *s, struct evbuffer *input)
{
    size_t available = evbuffer_get_length(input);
    size_t len = available < WS_HANDSHAKE_MAX_REQUEST ? available : WS_HANDSHAKE_MAX_REQUEST;
    const char *request = (const char *)evbuffer_pullup(input, (ev_ssize_t)len);
    ws_handshake_result result;
    ws_handshake_evaluate(request, len, &s->host->broker->handshake_policy, &result);
    if (result.status == 0)
        return;

    char response[1024];
    size_t response_len = ws_handshake_response_write(&result, NEBULA_WS_SUBPROTOCOL, response,
                                                      sizeof response);
    evbuffer_add(session_output(s), response, response_len);
    metric_add(&s->host->metrics->bytes_out, response_len);
    if (result.status != 101) {
        log_debug("session %" PRIx64 ": upgrade refused with %d (%s)", s->number, result.status,
                  result.reason);
        metric_add(&s->host->metrics->handshake_failures[handshake_failure_from_status(result.status)], 1);
        finish_after_flush(s);
        return;
    }
    metric_add(&s->host->metrics->bytes_in, result.request_len);
    evbuffer_drain(input, result.request_len);
    if (!complete_upgrade(s, result.bearer_token)) {
        log_error("session %" PRIx64 ": out of memory completing the upgrade", s->number);
        finish_after_flush(s);
    }
}

/* ---- bufferevent callbacks ----------------------------------------------- */

static void on_readable(struct bufferevent *bev, void *arg)
{
    session *s = arg;
    struct evbuffer *input = bufferevent_get_input(bev);
    s->ping_outstanding = false;   /* any byte proves the peer alive */
    if (s->state == SESSION_HTTP_UPGRADE)
        read_upgrade_request(s, input);
    /* Frames may follow the upgrade request in the same packet. */
    read_frames(s, input);
    free_if_flushed(s);
}

static void on_written(struct bufferevent *bev, void *arg)
{
    (void)bev;
    session *s = arg;
    if (s->state == SESSION_FLUSHING) {
        session_free(s);
        return;
    }
    if (s->state == SESSION_OPEN) {
        sync_session_output_drained(s->sync);
        free_if_flushed(s);
    }
}

static void on_idle_timeout(session *s)
{
    if (s->state != SESSION_OPEN) {
        session_free(s);   /* a CLOSE went unanswered */
        return;
    }
    if (s->ping_outstanding) {
        session_fail(s, WS_CLOSE_GOING_AWAY, "idle timeout");
        free_if_flushed(s);
        return;
    }
    s->ping_outstanding = true;
    send_frame(s, WS_OP_PING, (const uint8_t *)"nebula", 6);
    bufferevent_enable(s->bev, EV_READ);   /* the timeout disabled reading */
}

static void on_event(struct bufferevent *bev, short what, void *arg)
{
    (void)bev;
    session *s = arg;
    if (what & BEV_EVENT_CONNECTED) {
        metric_add(&s->host->metrics->tls_handshakes, 1);
        s->state = SESSION_HTTP_UPGRADE;
        return;
    }
    if ((what & BEV_EVENT_TIMEOUT) && (what & BEV_EVENT_READING)) {
        on_idle_timeout(s);
        return;
    }
    if (s->state == SESSION_TLS_HANDSHAKE && (what & BEV_EVENT_ERROR))
        metric_add(&s->host->metrics->handshake_failures[HANDSHAKE_FAIL_TLS], 1);
    session_free(s);   /* EOF, error, or a write that stalled */
}

static void on_handshake_timeout(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    session *s = arg;
    log_debug("session %" PRIx64 ": handshake not finished in time", s->number);
    metric_add(&s->host->metrics->handshake_failures[HANDSHAKE_FAIL_TIMEOUT], 1);
    session_free(s);
}

/* ---- accepting ------------------------------------------------------------ */

static bool reserve_connection_slot(session_host *host)
{
    uint32_t limit = host->broker->max_connections;
    uint_fast32_t open = atomic_fetch_add_explicit(&host->broker->connections, 1,
                                                   memory_order_relaxed);
    if (open < limit)
        return true;
    atomic_fetch_sub_explicit(&host->broker->connections, 1, memory_order_relaxed);
    return false;
}

static void refuse_connection(session_host *host, evutil_socket_t fd)
{
    static const char busy[] =
        "HTTP/1.1 503 Service Unavailable\r\nContent-Type: text/plain\r\n"
        "Content-Length: 32\r\nConnection: close\r\n\r\n"
        "server at its connection limit\r\n";
    /* Best effort: a fresh socket's send buffer always has room for this. */
    if (!host->broker->tls_enabled && send(fd, busy, sizeof busy - 1, MSG_NOSIGNAL) < 0)
        log_debug("could not tell a refused peer why: %s", strerror(errno));
    metric_add(&host->metrics->connections_rejected, 1);
    evutil_closesocket(fd);
}

static struct bufferevent *open_bufferevent(session_host *host, evutil_socket_t fd)
{
    if (!host->broker->tls_enabled)
        return bufferevent_socket_new(host->base, fd, BEV_OPT_CLOSE_ON_FREE);
    SSL *ssl = tls_holder_new_ssl(&host->broker->tls);
    if (!ssl)
        return NULL;
    struct bufferevent *bev = bufferevent_openssl_socket_new(
        host->base, fd, ssl, BUFFEREVENT_SSL_ACCEPTING, BEV_OPT_CLOSE_ON_FREE);
    if (!bev) {
        SSL_free(ssl);
        return NULL;
    }
    /* Peers that drop TCP without close_notify are common; not an error. */
    bufferevent_openssl_set_allow_dirty_shutdown(bev, 1);
    return bev;
}

bool session_accept(session_host *host, evutil_socket_t fd)
{
    if (!reserve_connection_slot(host)) {
        refuse_connection(host, fd);
        return false;
    }
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);   /* we batch ourselves */
    session *s = calloc(1, sizeof *s);
    struct bufferevent *bev = s ? open_bufferevent(host, fd) : NULL;
    if (!bev) {
        log_error("cannot set up a connection: out of memory");
        free(s);
        evutil_closesocket(fd);
        atomic_fetch_sub_explicit(&host->broker->connections, 1, memory_order_relaxed);
        return false;
    }
    s->host = host;
    s->bev = bev;
    s->refs = 1;
    s->number = ++host->next_session_number;
    s->state = host->broker->tls_enabled ? SESSION_TLS_HANDSHAKE : SESSION_HTTP_UPGRADE;
    s->next = host->sessions;
    if (host->sessions)
        host->sessions->prev = s;
    host->sessions = s;
    metric_add(&host->metrics->connections_accepted, 1);
    metric_add(&host->metrics->connections_open, 1);

    s->handshake_timer = evtimer_new(host->base, on_handshake_timeout, s);
    if (!s->handshake_timer) {
        session_free(s);
        return false;
    }
    evtimer_add(s->handshake_timer, host->handshake_timeout);
    bufferevent_setcb(bev, on_readable, on_written, on_event, s);
    bufferevent_enable(bev, EV_READ);
    return true;
}
