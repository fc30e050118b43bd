/* peer_socketio: see peer_socketio.h. */
#include "peer_socketio.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>


#include "bench_common.h"
#include "peer_events.h"
#include "socketio_codec.h"
#include "ws_frame.h"

#define REGISTER_ACK_ID 0           /* batches are numbered from 1 */
#define HEAD_MAX 64                 /* 42<id>["client:sync",  */

enum sio_state {
    ST_AWAIT_OPEN,                  /* upgraded; Engine.IO open comes first */
    ST_AWAIT_CONNECT,               /* sent 40 */
    ST_AWAIT_REGISTERED,            /* sent client:info and the empty client:sync */
    ST_READY,
};

/* One connection's Socket.IO session; owned by its client thread. */
struct sio_conn {
    enum sio_state state;
    uint64_t max_payload;           /* the server's, from its open packet (0: none said) */
    struct peer_batch batch;        /* publishers */
    uint8_t *buf;                   /* frame header room + one whole batch packet */
    size_t cap;
};

/* Sends text (len bytes) as one text message; copies it into a frame. */
static void send_text(struct fanout_conn *c, const char *text, size_t len)
{
    uint8_t stackbuf[1024];
    size_t hlen = bench_ws_header_len(len);
    uint8_t *buf = hlen + len <= sizeof stackbuf ? stackbuf : malloc(hlen + len);
    if (!buf) {
        fanout_conn_fail(c, "out of memory");
        return;
    }
    memcpy(buf + hlen, text, len);
    fanout_conn_send(c, WS_OP_TEXT, buf, hlen, len);
    if (buf != stackbuf)
        free(buf);
}

static void *sio_conn_new(struct fanout_conn *c)
{
    struct sio_conn *s = calloc(1, sizeof *s);
    if (!s || fanout_conn_role(c) != FANOUT_PUBLISHER)
        return s;
    const struct fanout_params *prm = fanout_params();
    char client_id[FANOUT_CLIENT_ID_MAX];
    fanout_conn_client_id(c, client_id);
    if (!peer_batch_init(&s->batch, prm->batch, (size_t)prm->size, prm->run_id,
                         (uint32_t)fanout_conn_index(c), prm->collection, client_id)) {
        free(s);
        return NULL;
    }
    size_t len = HEAD_MAX + peer_batch_max_len(&s->batch) + 1;
    s->cap = bench_ws_header_len(len) + len;
    s->buf = malloc(s->cap);
    if (!s->buf) {
        peer_batch_free(&s->batch);
        free(s);
        return NULL;
    }
    return s;
}

static void sio_conn_free(void *state)
{
    struct sio_conn *s = state;
    if (!s)
        return;
    peer_batch_free(&s->batch);
    free(s->buf);
    free(s);
}

static bool sio_request_path(const char *url_path, char *out, size_t cap)
{
    /* Socket.IO answers on /socket.io/ and needs EIO=4&transport=websocket
     * to speak Engine.IO v4 over the websocket transport from the start. */
    const char *path = strcmp(url_path, "/") == 0 ? SIO_PATH : url_path;
    int n;
    if (strstr(path, "EIO="))
        n = snprintf(out, cap, "%s", path);
    else
        n = snprintf(out, cap, "%s%c%s", path, strchr(path, '?') ? '&' : '?', SIO_QUERY);
    return n > 0 && (size_t)n < cap;
}

static bool sio_on_upgraded(struct fanout_conn *c, void *state)
{
    (void)c;
    struct sio_conn *s = state;
    s->state = ST_AWAIT_OPEN;
    return true;
}

static bool on_open(struct fanout_conn *c, struct sio_conn *s, const struct sio_packet *p)
{
    if (s->state != ST_AWAIT_OPEN)
        return fanout_conn_fail(c, "a second Engine.IO open packet");
    s->max_payload = sio_open_max_payload(p);
    if (fanout_conn_role(c) == FANOUT_PUBLISHER && s->max_payload &&
        HEAD_MAX + peer_batch_max_len(&s->batch) > s->max_payload)
        return fanout_conn_fail(c, "a client:sync of up to %zu bytes would exceed the server's "
                                "maxPayload %" PRIu64 " (Socket.IO maxHttpBufferSize): lower "
                                "--batch or --size", HEAD_MAX + peer_batch_max_len(&s->batch),
                                s->max_payload);
    const char *token = fanout_params()->token;
    if (token) {
        size_t tl = peer_json_string(NULL, 0, token);
        char *msg = malloc(tl + 16);
        if (!msg)
            return fanout_conn_fail(c, "out of memory");
        memcpy(msg, "40{\"token\":", 11);
        peer_json_string(msg + 11, tl + 1, token);
        memcpy(msg + 11 + tl, "}", 2);
        send_text(c, msg, 12 + tl);
        free(msg);
    } else {
        send_text(c, "40", 2);
    }
    s->state = ST_AWAIT_CONNECT;
    return true;
}

/* client:info, then an empty client:sync whose ack says the server knows us. */
static bool send_registration(struct fanout_conn *c, struct sio_conn *s)
{
    const struct fanout_params *prm = fanout_params();
    char client_id[FANOUT_CLIENT_ID_MAX];
    fanout_conn_client_id(c, client_id);
    size_t need = 64 + peer_json_string(NULL, 0, client_id) + peer_json_string(NULL, 0, prm->collection);
    char *msg = malloc(need);
    if (!msg)
        return fanout_conn_fail(c, "out of memory");
    size_t n = sio_event_head(msg, false, 0, "client:info");
    n += (size_t)sprintf(msg + n, "{\"clientId\":");
    n += peer_json_string(msg + n, need - n, client_id);
    n += (size_t)sprintf(msg + n, ",\"collections\":[");
    if (fanout_conn_role(c) == FANOUT_SUBSCRIBER)
        n += peer_json_string(msg + n, need - n, prm->collection);
    n += (size_t)sprintf(msg + n, "]}]");
    send_text(c, msg, n);
    free(msg);

    char sync[HEAD_MAX];
    size_t m = sio_event_head(sync, true, REGISTER_ACK_ID, "client:sync");
    memcpy(sync + m, "[]]", 3);
    send_text(c, sync, m + 3);
    s->state = ST_AWAIT_REGISTERED;
    return true;
}

static bool on_ack(struct fanout_conn *c, struct sio_conn *s, const struct sio_packet *p,
                   uint64_t now)
{
    char why[256];
    bool ok = sio_ack_success(p, why, sizeof why);
    if (s->state == ST_AWAIT_REGISTERED && p->id == REGISTER_ACK_ID) {
        if (!ok)
            return fanout_conn_fail(c, "registration (client:info + client:sync) refused: %s", why);
        s->state = ST_READY;
        return fanout_conn_ready(c);
    }
    if (s->state != ST_READY || fanout_conn_role(c) != FANOUT_PUBLISHER)
        return fanout_conn_fail(c, "unexpected ack %" PRIu64, p->id);
    return fanout_pub_settled(c, p->id, ok, ok ? NULL : why, now);
}

static bool on_event(struct fanout_conn *c, const struct sio_packet *p, uint64_t now)
{
    const uint8_t *args;
    size_t n;
    if (!sio_event_args(p, "server:sync", &args, &n) || fanout_conn_role(c) != FANOUT_SUBSCRIBER)
        return true;                  /* nothing this scenario listens to */
    fanout_sub_events_json(c, args, n, now);
    return true;
}

static bool sio_on_message(struct fanout_conn *c, void *state, uint8_t *msg, size_t len,
                           uint64_t now)
{
    struct sio_conn *s = state;
    struct sio_packet p;
    if (!sio_parse(msg, len, &p))
        return fanout_conn_fail(c, "not an Engine.IO v4 packet: '%.*s'", (int)(len > 60 ? 60 : len),
                                (const char *)msg);
    if (p.other_namespace)
        return fanout_conn_fail(c, "a packet for a namespace other than '/': '%.*s'",
                                (int)(len > 60 ? 60 : len), (const char *)msg);
    switch (p.kind) {
    case SIO_OPEN:
        return on_open(c, s, &p);
    case SIO_PING:
        send_text(c, "3", 1);
        return true;
    case SIO_PONG:
    case SIO_NOOP:
        return true;
    case SIO_CONNECT:
        if (s->state != ST_AWAIT_CONNECT)
            return fanout_conn_fail(c, "unexpected Socket.IO connect");
        return send_registration(c, s);
    case SIO_ACK:
        return on_ack(c, s, &p, now);
    case SIO_EVENT:
        return on_event(c, &p, now);
    case SIO_CLOSE:
        return fanout_conn_fail(c, "the server closed the Engine.IO session");
    case SIO_DISCONNECT:
        return fanout_conn_fail(c, "the server disconnected the Socket.IO session");
    case SIO_CONNECT_ERROR:
        return fanout_conn_fail(c, "Socket.IO connect refused: %.*s",
                                (int)(p.data_len > 200 ? 200 : p.data_len), (const char *)p.data);
    case SIO_UNSUPPORTED:
        break;
    }
    return fanout_conn_fail(c, "unsupported packet '%.*s' (upgrade or binary)",
                            (int)(len > 60 ? 60 : len), (const char *)msg);
}

static bool sio_send_batch(struct fanout_conn *c, void *state, uint64_t request_id, uint64_t first,
                           uint64_t ts_ns)
{
    struct sio_conn *s = state;
    size_t max = HEAD_MAX + peer_batch_max_len(&s->batch) + 1;
    size_t hlen = bench_ws_header_len(max);
    char *text = (char *)s->buf + hlen;
    size_t n = sio_event_head(text, true, request_id, "client:sync");
    n += peer_batch_write(&s->batch, text + n, first, ts_ns, bench_wall_ns() / 1000000u);
    text[n++] = ']';
    /* the frame header goes right in front of the text: its length depends
     * on the text's, which is only known now */
    size_t h = bench_ws_header_len(n);
    fanout_conn_send(c, WS_OP_TEXT, s->buf + (hlen - h), h, n);
    return true;
}

const struct fanout_target peer_socketio_target = {
    .name = "socketio",
    .default_url = "ws://127.0.0.1:3000" SIO_PATH "?" SIO_QUERY,
    .subprotocol = NULL,
    .acked = true,
    .request_path = sio_request_path,
    .conn_new = sio_conn_new,
    .conn_free = sio_conn_free,
    .on_upgraded = sio_on_upgraded,
    .on_message = sio_on_message,
    .send_batch = sio_send_batch,
};
