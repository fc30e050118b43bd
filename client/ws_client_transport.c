/* ws_client_transport: the WebSocket connection of a nebula_client, on
 * libevent bufferevents (plain, or bufferevent_openssl for wss://).
 *
 *   NONE --connect()--> CONNECTING --(TCP [+TLS] up: send GET)--> UPGRADING
 *   UPGRADING --(valid 101)--> OPEN --(our CLOSE)--> CLOSE_SENT --(echo)--> NONE
 *   OPEN --(peer's CLOSE: echo it / a failure: send CLOSE)--> FLUSHING
 *   FLUSHING --(written, or deadline)--> NONE
 *   any --(EOF, socket/TLS error, deadline)--> NONE
 * Every way back to NONE goes through conn_finish(), which tears down first
 * and then reports (on_error if something failed, then on_closed), so the
 * application may reconnect from inside on_closed.
 *
 * Frames are parsed by the shared RFC 6455 codec (broker/ws_frame.h) in the
 * client role: server frames must be unmasked, every section 5 rule is
 * checked there, and a message announced larger than max_message_size fails
 * with 1009 before its payload is buffered. Our frames are masked with keys
 * taken from a pool of RAND_bytes() output (CSPRNG-unpredictable, as RFC
 * 6455 section 10.3 asks, at one RAND_bytes() call per 64 frames).
 *
 * Liveness: after the Welcome, a heartbeat_interval_ms with no byte from the
 * server makes us send a PING; a second silent interval drops the
 * connection (E_TIMEOUT). Server PINGs are answered with PONGs carrying the
 * same payload.
 *
 * All bufferevent callbacks are deferred (BEV_OPT_DEFER_CALLBACKS) so that
 * nothing here ever runs from inside an API call: a write that fails inside
 * nebula_client_push() surfaces later, from the event loop.
 */
#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/bufferevent_ssl.h>
#include <event2/event.h>
#include <event2/util.h>
#include <openssl/err.h>
#include <openssl/rand.h>
#include <openssl/x509v3.h>

#include "client_internal.h"

#ifndef NEBULA_VERSION
#define NEBULA_VERSION "0"
#endif

#define USER_AGENT "nebula-client/" NEBULA_VERSION
#define MIN_HEARTBEAT_MS 100

static void read_cb(struct bufferevent *bev, void *arg);
static void write_cb(struct bufferevent *bev, void *arg);
static void event_cb(struct bufferevent *bev, short what, void *arg);
static void deadline_cb(evutil_socket_t fd, short what, void *arg);
static void heartbeat_cb(evutil_socket_t fd, short what, void *arg);

/* ---- helpers ------------------------------------------------------------ */

static void arm_timer(struct event *ev, int ms)
{
    struct timeval tv = {ms / 1000, (ms % 1000) * 1000};
    evtimer_add(ev, &tv);
}

static void copy_text(char *dst, size_t cap, const char *src, size_t len)
{
    if (len >= cap)
        len = cap - 1;
    if (len)
        memcpy(dst, src, len);
    dst[len] = '\0';
}

static struct evbuffer *output(nebula_client *c)
{
    return bufferevent_get_output(c->conn.bev);
}

/* ---- per-handle events and TLS context ------------------------------------ */

int conn_init_events(nebula_client *c)
{
    c->conn.deadline = evtimer_new(c->base, deadline_cb, c);
    c->conn.heartbeat = event_new(c->base, -1, EV_PERSIST, heartbeat_cb, c);
    return c->conn.deadline && c->conn.heartbeat ? NEBULA_CLIENT_OK : NEBULA_CLIENT_E_NOMEM;
}

void conn_free_events(nebula_client *c)
{
    if (c->conn.deadline)
        event_free(c->conn.deadline);
    if (c->conn.heartbeat)
        event_free(c->conn.heartbeat);
    c->conn.deadline = c->conn.heartbeat = NULL;
}

int conn_init_tls(nebula_client *c)
{
    SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());
    if (!ctx)
        return NEBULA_CLIENT_E_NOMEM;
    bool ok = SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION) == 1;
    if (ok && c->tls_verify)
        ok = c->tls_ca_file ? SSL_CTX_load_verify_locations(ctx, c->tls_ca_file, NULL) == 1
                            : SSL_CTX_set_default_verify_paths(ctx) == 1;
    if (!ok) {
        SSL_CTX_free(ctx);
        ERR_clear_error();
        return NEBULA_CLIENT_E_TLS;
    }
    c->ssl_ctx = ctx;
    return NEBULA_CLIENT_OK;
}

/* One SSL for one connection: SNI (names only: RFC 6066 forbids IP
 * literals), peer verification against the URL's host (DNS name or IP
 * address SAN), and ALPN "http/1.1" (the server refuses other ALPN-only
 * offers). */
static SSL *new_ssl(nebula_client *c)
{
    SSL *ssl = SSL_new(c->ssl_ctx);
    if (!ssl)
        return NULL;
    bool ok = c->url.host_is_ip || SSL_set_tlsext_host_name(ssl, c->url.host) == 1;
    if (ok && c->tls_verify) {
        SSL_set_verify(ssl, SSL_VERIFY_PEER, NULL);
        if (c->url.host_is_ip) {
            ok = X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(ssl), c->url.host) == 1;
        } else {
            SSL_set_hostflags(ssl, X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS);
            ok = SSL_set1_host(ssl, c->url.host) == 1;
        }
    } else {
        SSL_set_verify(ssl, SSL_VERIFY_NONE, NULL);
    }
    static const unsigned char alpn[] = "\x08http/1.1";
    ok = ok && SSL_set_alpn_protos(ssl, alpn, sizeof alpn - 1) == 0;   /* 0 is success here */
    if (!ok) {
        SSL_free(ssl);
        ERR_clear_error();
        return NULL;
    }
    return ssl;
}

/* ---- sending ---------------------------------------------------------------- */

static bool next_mask(ws_conn *conn, uint8_t mask[4])
{
    if (conn->mask_used + 4 > CLIENT_MASK_POOL) {
        if (RAND_bytes(conn->mask_pool, CLIENT_MASK_POOL) != 1)
            return false;
        conn->mask_used = 0;
    }
    memcpy(mask, conn->mask_pool + conn->mask_used, 4);
    conn->mask_used += 4;
    return true;
}

/* A masked control frame (payload <= 125 bytes). */
static int send_control(nebula_client *c, uint8_t opcode, const uint8_t *payload, size_t len)
{
    uint8_t frame[WS_MAX_HEADER_LEN + WS_MAX_CONTROL_PAYLOAD];
    uint8_t mask[4];
    if (len > WS_MAX_CONTROL_PAYLOAD || !next_mask(&c->conn, mask))
        return NEBULA_CLIENT_E_NOMEM;
    size_t header = ws_frame_header_write(frame, opcode, true, len, mask);
    if (len)
        memcpy(frame + header, payload, len);
    ws_mask_apply(frame + header, len, mask, 0);
    return evbuffer_add(output(c), frame, header + len) == 0 ? NEBULA_CLIENT_OK
                                                             : NEBULA_CLIENT_E_NOMEM;
}

static int send_close_frame(nebula_client *c, uint16_t code, const char *reason)
{
    uint8_t payload[WS_MAX_CONTROL_PAYLOAD];
    size_t len = 0;
    if (code != WS_CLOSE_NO_STATUS)   /* 1005 means "say no code": an empty CLOSE */
        len = ws_close_payload_write(payload, code, reason ? reason : "");
    return send_control(c, WS_OP_CLOSE, payload, len);
}

/* The message is packed straight into the output buffer, behind its header,
 * and masked in place: one copy, and the frame lands in the buffer whole. */
int conn_send_message(nebula_client *c, const ProtobufCMessage *message)
{
    if (c->conn.phase != CONN_OPEN)
        return NEBULA_CLIENT_E_STATE;
    size_t len = protobuf_c_message_get_packed_size(message);
    if (c->server_max_message && len > c->server_max_message)
        return NEBULA_CLIENT_E_TOO_BIG;
    uint8_t header[WS_MAX_HEADER_LEN], mask[4];
    if (!next_mask(&c->conn, mask))
        return NEBULA_CLIENT_E_NOMEM;
    size_t header_len = ws_frame_header_write(header, WS_OP_BINARY, true, len, mask);
    struct evbuffer_iovec vec;
    if (evbuffer_reserve_space(output(c), (ev_ssize_t)(header_len + len), &vec, 1) != 1)
        return NEBULA_CLIENT_E_NOMEM;
    uint8_t *frame = vec.iov_base;
    memcpy(frame, header, header_len);
    protobuf_c_message_pack(message, frame + header_len);
    ws_mask_apply(frame + header_len, len, mask, 0);
    vec.iov_len = header_len + len;
    return evbuffer_commit_space(output(c), &vec, 1) == 0 ? NEBULA_CLIENT_OK
                                                          : NEBULA_CLIENT_E_NOMEM;
}

/* ---- ending a connection ----------------------------------------------------- */

void conn_teardown(nebula_client *c)
{
    ws_conn *conn = &c->conn;
    if (conn->deadline)
        evtimer_del(conn->deadline);
    if (conn->heartbeat)
        event_del(conn->heartbeat);
    if (conn->bev)
        bufferevent_free(conn->bev);   /* closes the socket, frees the SSL */
    if (conn->fragments)
        evbuffer_free(conn->fragments);
    conn->bev = NULL;
    conn->fragments = NULL;
    conn->phase = CONN_NONE;
    conn->generation++;
}

/* Tears down, then reports. The strings may point into buffers the teardown
 * frees, so they are copied first. */
static void conn_finish(nebula_client *c, int error, const char *error_message, int close_code,
                        const char *reason)
{
    char message[sizeof c->conn.final_error_message];
    char why[CLIENT_REASON_MAX];
    copy_text(message, sizeof message, error_message ? error_message : "",
              error_message ? strlen(error_message) : 0);
    copy_text(why, sizeof why, reason ? reason : "", reason ? strlen(reason) : 0);
    conn_teardown(c);
    client_on_closed(c, error, message, close_code, why);
}

static void finish_with_final(nebula_client *c)
{
    ws_conn *conn = &c->conn;
    conn_finish(c, conn->final_error, conn->final_error_message, conn->final_code,
                conn->final_reason);
}

/* Remembers how the connection ends, stops reading, and lets the output
 * drain: write_cb finishes once it is empty, the deadline if it never is.
 * Reports nothing now, so it is safe from anywhere, even an API call. */
static void begin_flush(nebula_client *c, int error, const char *error_message, int close_code,
                        const char *reason)
{
    ws_conn *conn = &c->conn;
    conn->final_error = error;
    copy_text(conn->final_error_message, sizeof conn->final_error_message,
              error_message ? error_message : "", error_message ? strlen(error_message) : 0);
    conn->final_code = close_code;
    copy_text(conn->final_reason, sizeof conn->final_reason, reason ? reason : "",
              reason ? strlen(reason) : 0);
    conn->phase = CONN_FLUSHING;
    bufferevent_disable(conn->bev, EV_READ);
    event_del(conn->heartbeat);
    /* Nothing queued: no write callback will come, so finish on the next
     * loop turn instead. */
    arm_timer(conn->deadline, evbuffer_get_length(output(c)) ? c->close_timeout_ms : 0);
}

void conn_fail(nebula_client *c, int error, const char *message, uint16_t code)
{
    switch (c->conn.phase) {
    case CONN_NONE:
    case CONN_FLUSHING:
        return;   /* already ending: the first reason wins */
    case CONN_OPEN:
        send_close_frame(c, code, message);
        begin_flush(c, error, message, code, message);
        return;
    case CONN_CLOSE_SENT:   /* our CLOSE is out already */
        begin_flush(c, error, message, code, message);
        return;
    case CONN_CONNECTING:
    case CONN_UPGRADING:
        begin_flush(c, error, message, WS_CLOSE_ABNORMAL, message);
        return;
    }
}

int conn_close(nebula_client *c, uint16_t code, const char *reason)
{
    if (c->conn.phase != CONN_OPEN)
        return NEBULA_CLIENT_E_STATE;
    int rc = send_close_frame(c, code, reason);
    if (rc != NEBULA_CLIENT_OK)
        return rc;
    c->conn.phase = CONN_CLOSE_SENT;
    event_del(c->conn.heartbeat);
    arm_timer(c->conn.deadline, c->close_timeout_ms);
    return NEBULA_CLIENT_OK;
}

/* ---- connecting -------------------------------------------------------------- */

static void reset_conn_state(ws_conn *conn)
{
    conn->fragments = NULL;
    conn->mask_used = CLIENT_MASK_POOL;   /* the first frame refills the pool */
    conn->heard = false;
    conn->ping_outstanding = false;
    conn->final_code = WS_CLOSE_ABNORMAL;
    conn->final_reason[0] = '\0';
    conn->final_error = 0;
    conn->final_error_message[0] = '\0';
}

static struct bufferevent *new_bufferevent(nebula_client *c)
{
    int options = BEV_OPT_CLOSE_ON_FREE | BEV_OPT_DEFER_CALLBACKS;
    if (!c->url.tls)
        return bufferevent_socket_new(c->base, -1, options);
    SSL *ssl = new_ssl(c);
    if (!ssl)
        return NULL;
    struct bufferevent *bev =
        bufferevent_openssl_socket_new(c->base, -1, ssl, BUFFEREVENT_SSL_CONNECTING, options);
    if (!bev) {
        SSL_free(ssl);
        return NULL;
    }
    /* Servers may close TCP right after the CLOSE echo, without TLS
     * close_notify; that is a normal end, not a truncation attack (the
     * WebSocket close handshake already says the data is complete). */
    bufferevent_openssl_set_allow_dirty_shutdown(bev, 1);
    return bev;
}

int conn_start(nebula_client *c)
{
    ws_conn *conn = &c->conn;
    reset_conn_state(conn);
    uint8_t raw_key[16];
    if (RAND_bytes(raw_key, sizeof raw_key) != 1)
        return NEBULA_CLIENT_E_NOMEM;
    ws_client_key_encode(raw_key, conn->key);
    ws_reader_init(&conn->reader, WS_ROLE_CLIENT, c->max_message_size);

    conn->bev = new_bufferevent(c);
    if (!conn->bev)
        return c->url.tls ? NEBULA_CLIENT_E_TLS : NEBULA_CLIENT_E_NOMEM;
    bufferevent_setcb(conn->bev, read_cb, write_cb, event_cb, c);
    bufferevent_enable(conn->bev, EV_READ | EV_WRITE);
    conn->phase = CONN_CONNECTING;
    if (bufferevent_socket_connect_hostname(conn->bev, c->dns_base, AF_UNSPEC, c->url.host,
                                            c->url.port) != 0) {
        conn_teardown(c);
        return NEBULA_CLIENT_E_CONNECT;
    }
    if (c->connect_timeout_ms > 0)
        arm_timer(conn->deadline, c->connect_timeout_ms);
    return NEBULA_CLIENT_OK;
}

/* TCP (and TLS) is up: send the upgrade request. */
static void on_connected(nebula_client *c)
{
    evutil_socket_t fd = bufferevent_getfd(c->conn.bev);
    int one = 1;
    if (fd >= 0)   /* small messages both ways: do not wait for Nagle */
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    char request[4096];
    size_t len = ws_client_request_write(request, sizeof request, &c->url, c->conn.key,
                                         CLIENT_SUBPROTOCOL, USER_AGENT);
    if (len == 0 || bufferevent_write(c->conn.bev, request, len) != 0) {
        conn_finish(c, NEBULA_CLIENT_E_NOMEM, "cannot queue the upgrade request",
                    WS_CLOSE_ABNORMAL, "upgrade request failed");
        return;
    }
    c->conn.phase = CONN_UPGRADING;
}

/* The first line of what the server said, for an error message. */
static void first_line(const char *data, size_t len, char *out, size_t cap)
{
    size_t n = 0;
    while (n < len && data[n] != '\r' && data[n] != '\n')
        n++;
    copy_text(out, cap, data, n);
    for (char *p = out; *p; p++)
        if ((unsigned char)*p < 0x20 || (unsigned char)*p > 0x7e)
            *p = '?';
}

static void read_upgrade(nebula_client *c)
{
    struct evbuffer *in = bufferevent_get_input(c->conn.bev);
    size_t len = evbuffer_get_length(in);
    if (len > WS_CLIENT_MAX_RESPONSE)
        len = WS_CLIENT_MAX_RESPONSE;
    const char *data = (const char *)evbuffer_pullup(in, (ev_ssize_t)len);
    if (!data)
        return;
    ws_client_response r;
    ws_client_response_check(data, len, c->conn.key, CLIENT_SUBPROTOCOL, &r);
    if (r.state == WS_CLIENT_RESPONSE_INCOMPLETE)
        return;
    if (r.state == WS_CLIENT_RESPONSE_REJECTED) {
        char line[96], message[160];
        first_line(data, len, line, sizeof line);
        snprintf(message, sizeof message, "%s (server said \"%s\")", r.error, line);
        conn_finish(c, NEBULA_CLIENT_E_HANDSHAKE, message, WS_CLOSE_ABNORMAL,
                    "WebSocket upgrade failed");
        return;
    }
    evbuffer_drain(in, r.response_len);
    c->conn.phase = CONN_OPEN;
    client_on_open(c);
}

/* ---- frames ----------------------------------------------------------------- */

static void deliver(nebula_client *c, uint8_t opcode, const uint8_t *data, size_t len)
{
    if (opcode == WS_OP_TEXT) {
        client_report_error(c, NEBULA_CLIENT_E_PROTOCOL,
                            "ignored a text message: not part of nebula-sync.v1");
        return;
    }
    client_on_message(c, data, len);
}

/* Single-frame messages go up straight from the input buffer; fragments are
 * collected, and the assembled message is detached before it goes up (the
 * connection may be gone when the callback returns). The reader already
 * enforced max_message_size over the sum of the fragments. */
static void on_data_frame(nebula_client *c, const ws_frame *f)
{
    ws_conn *conn = &c->conn;
    if (f->message_begins && f->message_ends) {
        deliver(c, f->message_opcode, f->payload, f->payload_len);
        return;
    }
    if (!conn->fragments && !(conn->fragments = evbuffer_new())) {
        conn_fail(c, NEBULA_CLIENT_E_NOMEM, "out of memory", WS_CLOSE_INTERNAL_ERROR);
        return;
    }
    if (f->payload_len && evbuffer_add(conn->fragments, f->payload, f->payload_len) != 0) {
        conn_fail(c, NEBULA_CLIENT_E_NOMEM, "out of memory", WS_CLOSE_INTERNAL_ERROR);
        return;
    }
    if (!f->message_ends)
        return;
    struct evbuffer *message = conn->fragments;
    conn->fragments = NULL;
    size_t len = evbuffer_get_length(message);
    const uint8_t *data = evbuffer_pullup(message, -1);
    if (data || len == 0)
        deliver(c, f->message_opcode, data, len);
    else
        conn_fail(c, NEBULA_CLIENT_E_NOMEM, "out of memory", WS_CLOSE_INTERNAL_ERROR);
    evbuffer_free(message);
}

static void on_peer_close(nebula_client *c, const ws_frame *f)
{
    char reason[CLIENT_REASON_MAX];
    copy_text(reason, sizeof reason, (const char *)f->close_reason, f->close_reason_len);
    if (c->conn.phase == CONN_CLOSE_SENT) {   /* the echo of ours: done */
        conn_finish(c, 0, NULL, f->peer_close_code, reason);
        return;
    }
    /* The server closes first (e.g. 1001 on drain, 1008 unauthenticated):
     * echo its code, as RFC 6455 5.5.1 asks, then close TCP. */
    send_close_frame(c, f->peer_close_code, "");
    begin_flush(c, 0, NULL, f->peer_close_code, reason);
}

static void on_frame(nebula_client *c, const ws_frame *f)
{
    switch (f->opcode) {
    case WS_OP_PING:
        if (c->conn.phase == CONN_OPEN)
            send_control(c, WS_OP_PONG, f->payload, f->payload_len);
        return;
    case WS_OP_PONG:
        c->conn.ping_outstanding = false;
        return;
    case WS_OP_CLOSE:
        on_peer_close(c, f);
        return;
    default:
        on_data_frame(c, f);
        return;
    }
}

static int error_for_close_code(uint16_t code)
{
    return code == WS_CLOSE_MESSAGE_TOO_BIG ? NEBULA_CLIENT_E_TOO_BIG : NEBULA_CLIENT_E_PROTOCOL;
}

/* Decodes frames from the input buffer while the connection reads. The
 * codec needs a frame contiguous: usually it is (one chunk); otherwise the
 * bytes it asks for are pulled up once they have all arrived. */
static void read_frames(nebula_client *c, uint64_t generation)
{
    while (conn_alive(c, generation) &&
           (c->conn.phase == CONN_OPEN || c->conn.phase == CONN_CLOSE_SENT)) {
        struct evbuffer *in = bufferevent_get_input(c->conn.bev);
        size_t avail = evbuffer_get_length(in);
        struct evbuffer_iovec first;
        if (avail == 0 || evbuffer_peek(in, -1, NULL, &first, 1) < 1)
            return;
        ws_frame f;
        ws_read_status st = ws_reader_next(&c->conn.reader, first.iov_base, first.iov_len, &f);
        if (st == WS_READ_NEED_MORE) {
            if (f.need > avail)
                return;   /* wait for the rest */
            if (first.iov_len >= f.need) {   /* the codec promises need > len */
                conn_fail(c, NEBULA_CLIENT_E_PROTOCOL, "frame reader made no progress",
                          WS_CLOSE_INTERNAL_ERROR);
                return;
            }
            if (!evbuffer_pullup(in, (ev_ssize_t)f.need)) {
                conn_fail(c, NEBULA_CLIENT_E_NOMEM, "out of memory", WS_CLOSE_INTERNAL_ERROR);
                return;
            }
            continue;   /* the first chunk now holds f.need bytes */
        }
        if (st == WS_READ_FAIL) {
            conn_fail(c, error_for_close_code(f.close_code), f.error, f.close_code);
            return;
        }
        on_frame(c, &f);
        if (!conn_alive(c, generation))
            return;
        evbuffer_drain(bufferevent_get_input(c->conn.bev), f.frame_len);
    }
}

/* ---- libevent callbacks ------------------------------------------------------- */

static void read_cb(struct bufferevent *bev, void *arg)
{
    (void)bev;
    nebula_client *c = arg;
    client_enter(c);
    uint64_t generation = c->conn.generation;
    c->conn.heard = true;
    if (c->conn.phase == CONN_UPGRADING)
        read_upgrade(c);
    if (conn_alive(c, generation))
        read_frames(c, generation);
    client_leave(c);
}

static void write_cb(struct bufferevent *bev, void *arg)
{
    nebula_client *c = arg;
    client_enter(c);
    if (c->conn.phase == CONN_FLUSHING && evbuffer_get_length(bufferevent_get_output(bev)) == 0)
        finish_with_final(c);
    client_leave(c);
}

/* Why a connection failed, as an error code and message. */
static int describe_failure(nebula_client *c, char *message, size_t cap)
{
    struct bufferevent *bev = c->conn.bev;
    int dns = bufferevent_socket_get_dns_error(bev);
    if (dns) {
        snprintf(message, cap, "cannot resolve %.64s: %s", c->url.host, evutil_gai_strerror(dns));
        return NEBULA_CLIENT_E_CONNECT;
    }
    int err = EVUTIL_SOCKET_ERROR();   /* libevent restores it for deferred callbacks */
    unsigned long tls_err = c->url.tls ? bufferevent_get_openssl_error(bev) : 0;
    while (c->url.tls && bufferevent_get_openssl_error(bev))
        ;   /* drain the rest of the queue */
    if (tls_err) {
        SSL *ssl = bufferevent_openssl_get_ssl(bev);
        long verify = ssl ? SSL_get_verify_result(ssl) : X509_V_OK;
        if (verify != X509_V_OK)
            snprintf(message, cap, "TLS certificate verification failed: %s",
                     X509_verify_cert_error_string(verify));
        else
            ERR_error_string_n(tls_err, message, cap);
        return NEBULA_CLIENT_E_TLS;
    }
    if (c->conn.phase == CONN_CONNECTING) {
        snprintf(message, cap, "connect to %.64s port %u: %s", c->url.host, (unsigned)c->url.port,
                 err ? evutil_socket_error_to_string(err) : "connection closed");
        return c->url.tls && !err ? NEBULA_CLIENT_E_TLS : NEBULA_CLIENT_E_CONNECT;
    }
    snprintf(message, cap, "connection error: %s",
             err ? evutil_socket_error_to_string(err) : "unknown");
    return NEBULA_CLIENT_E_CLOSED;
}

static void on_eof(nebula_client *c)
{
    switch (c->conn.phase) {
    case CONN_FLUSHING:   /* the server closed first after the CLOSE exchange: fine */
        finish_with_final(c);
        return;
    case CONN_CLOSE_SENT:
        conn_finish(c, NEBULA_CLIENT_E_CLOSED, "the server closed TCP without echoing our CLOSE",
                    WS_CLOSE_ABNORMAL, "no close echo");
        return;
    case CONN_CONNECTING:
        conn_finish(c, c->url.tls ? NEBULA_CLIENT_E_TLS : NEBULA_CLIENT_E_CONNECT,
                    "the server closed the connection during connect", WS_CLOSE_ABNORMAL,
                    "connection closed");
        return;
    case CONN_UPGRADING:
        conn_finish(c, NEBULA_CLIENT_E_HANDSHAKE,
                    "the server closed the connection before answering the upgrade",
                    WS_CLOSE_ABNORMAL, "connection closed");
        return;
    case CONN_OPEN:
    case CONN_NONE:
        conn_finish(c, NEBULA_CLIENT_E_CLOSED, "the server closed TCP without a CLOSE frame",
                    WS_CLOSE_ABNORMAL, "connection lost");
        return;
    }
}

static void event_cb(struct bufferevent *bev, short what, void *arg)
{
    (void)bev;
    nebula_client *c = arg;
    client_enter(c);
    if (what & BEV_EVENT_CONNECTED) {
        on_connected(c);
    } else if (what & BEV_EVENT_EOF) {
        on_eof(c);
    } else if (what & BEV_EVENT_ERROR) {
        if (c->conn.phase == CONN_FLUSHING) {
            finish_with_final(c);   /* e.g. a reset after the server's CLOSE */
        } else {
            char message[160];
            int error = describe_failure(c, message, sizeof message);
            conn_finish(c, error, message, WS_CLOSE_ABNORMAL, "connection failed");
        }
    }
    client_leave(c);
}

static void deadline_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    nebula_client *c = arg;
    client_enter(c);
    char message[96];
    switch (c->conn.phase) {
    case CONN_FLUSHING:
        finish_with_final(c);
        break;
    case CONN_CLOSE_SENT:
        snprintf(message, sizeof message, "no CLOSE echo within %d ms", c->close_timeout_ms);
        conn_finish(c, NEBULA_CLIENT_E_TIMEOUT, message, WS_CLOSE_ABNORMAL, "close timed out");
        break;
    case CONN_CONNECTING:
    case CONN_UPGRADING:
    case CONN_OPEN:
        if (c->ready)
            break;   /* the Welcome won the race; conn_session_ready() disarmed us */
        snprintf(message, sizeof message, "no session within %d ms", c->connect_timeout_ms);
        conn_finish(c, NEBULA_CLIENT_E_TIMEOUT, message, WS_CLOSE_ABNORMAL, "connect timed out");
        break;
    case CONN_NONE:
        break;
    }
    client_leave(c);
}

/* Liveness: the server pings us after heartbeat_interval of our silence and
 * answers our pings, so a healthy server is never silent for long. A tick
 * with nothing heard sends a ping; a second one in a row gives up. */
static void heartbeat_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    nebula_client *c = arg;
    client_enter(c);
    ws_conn *conn = &c->conn;
    if (conn->phase != CONN_OPEN) {
        /* not ours to judge: closing has its own deadline */
    } else if (conn->heard) {
        conn->heard = false;
    } else if (!conn->ping_outstanding) {
        conn->ping_outstanding = true;
        send_control(c, WS_OP_PING, NULL, 0);
    } else {
        conn_finish(c, NEBULA_CLIENT_E_TIMEOUT, "the server stopped answering (no pong)",
                    WS_CLOSE_ABNORMAL, "server silent");
    }
    client_leave(c);
}

void conn_session_ready(nebula_client *c, uint32_t interval_ms)
{
    evtimer_del(c->conn.deadline);
    if (interval_ms == 0)
        return;
    if (interval_ms < MIN_HEARTBEAT_MS)
        interval_ms = MIN_HEARTBEAT_MS;
    struct timeval tv = {(time_t)(interval_ms / 1000), (suseconds_t)(interval_ms % 1000) * 1000};
    c->conn.heard = true;   /* the Welcome itself */
    event_add(c->conn.heartbeat, &tv);
}
