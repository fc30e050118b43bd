/* peer_wsbroadcast: see peer_wsbroadcast.h. */
#include "peer_wsbroadcast.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bench_common.h"
#include "peer_events.h"
#include "ws_frame.h"

/* A publisher's batch writer and frame buffer; owned by its client thread.
 * Subscribers keep no state (NULL would mean out of memory: an empty one). */
struct wsb_conn {
    struct peer_batch batch;
    uint8_t *buf;
    size_t cap;
};

static void *wsb_conn_new(struct fanout_conn *c)
{
    struct wsb_conn *s = calloc(1, sizeof *s);
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
    size_t len = peer_batch_max_len(&s->batch);
    s->cap = bench_ws_header_len(len) + len;
    s->buf = malloc(s->cap);
    if (!s->buf) {
        peer_batch_free(&s->batch);
        free(s);
        return NULL;
    }
    return s;
}

static void wsb_conn_free(void *state)
{
    struct wsb_conn *s = state;
    if (!s)
        return;
    peer_batch_free(&s->batch);
    free(s->buf);
    free(s);
}

static bool wsb_request_path(const char *url_path, char *out, size_t cap)
{
    int n = snprintf(out, cap, "%s", url_path);
    return n > 0 && (size_t)n < cap;
}

static bool wsb_on_upgraded(struct fanout_conn *c, void *state)
{
    (void)state;
    /* ws adds a connection to the set it broadcasts to before it writes the
     * 101: once we have read it, we receive every later message. */
    return fanout_conn_ready(c);
}

static bool wsb_on_message(struct fanout_conn *c, void *state, uint8_t *msg, size_t len,
                           uint64_t now)
{
    (void)state;
    if (fanout_conn_role(c) != FANOUT_SUBSCRIBER)
        return true;                  /* another publisher's batch */
    fanout_sub_events_json(c, msg, len, now);
    return true;
}

static bool wsb_send_batch(struct fanout_conn *c, void *state, uint64_t request_id, uint64_t first,
                           uint64_t ts_ns)
{
    (void)request_id;
    struct wsb_conn *s = state;
    size_t hlen = bench_ws_header_len(peer_batch_max_len(&s->batch));
    size_t n = peer_batch_write(&s->batch, (char *)s->buf + hlen, first, ts_ns,
                                bench_wall_ns() / 1000000u);
    size_t h = bench_ws_header_len(n);
    fanout_conn_send(c, WS_OP_TEXT, s->buf + (hlen - h), h, n);
    return true;
}

const struct fanout_target peer_wsbroadcast_target = {
    .name = "ws-broadcast",
    .default_url = "ws://127.0.0.1:3001/",
    .subprotocol = NULL,
    .acked = false,
    .request_path = wsb_request_path,
    .conn_new = wsb_conn_new,
    .conn_free = wsb_conn_free,
    .on_upgraded = wsb_on_upgraded,
    .on_message = wsb_on_message,
    .send_batch = wsb_send_batch,
};
