/* sync_messages: see sync_messages.h. */
#include "sync_messages.h"

#include <stdlib.h>

#include "bench_common.h"
#include "ws_frame.h"

#define STACK_FRAME 8192

bool sync_msg_send(struct bufferevent *bev, const uint8_t mask[4],
                   const Nebula__Sync__V1__ClientMessage *m)
{
    size_t len = nebula__sync__v1__client_message__get_packed_size(m);
    size_t hlen = bench_ws_header_len(len);
    uint8_t stackbuf[STACK_FRAME];
    uint8_t *buf = hlen + len <= sizeof stackbuf ? stackbuf : malloc(hlen + len);
    if (!buf)
        return false;
    nebula__sync__v1__client_message__pack(m, buf + hlen);
    bench_ws_send_masked(bev, WS_OP_BINARY, buf, hlen, len, mask);
    if (buf != stackbuf)
        free(buf);
    return true;
}

bool sync_msg_send_hello(struct bufferevent *bev, const uint8_t mask[4], const char *client_id,
                         const char *token, const char *client_version)
{
    Nebula__Sync__V1__Hello hello = NEBULA__SYNC__V1__HELLO__INIT;
    hello.client_id = (char *)client_id;
    hello.auth_token = (char *)(token ? token : "");
    hello.client_version = (char *)client_version;
    Nebula__Sync__V1__ClientMessage m = NEBULA__SYNC__V1__CLIENT_MESSAGE__INIT;
    m.message_case = NEBULA__SYNC__V1__CLIENT_MESSAGE__MESSAGE_HELLO;
    m.hello = &hello;
    return sync_msg_send(bev, mask, &m);
}

bool sync_msg_send_subscribe(struct bufferevent *bev, const uint8_t mask[4], const char *collection,
                             const struct sync_msg_cursor *cursor)
{
    Nebula__Sync__V1__Cursor cur = NEBULA__SYNC__V1__CURSOR__INIT;
    Nebula__Sync__V1__CollectionSubscription cs = NEBULA__SYNC__V1__COLLECTION_SUBSCRIPTION__INIT;
    cs.collection = (char *)collection;
    if (cursor) {
        cur.seq = cursor->seq;
        cur.epoch = (char *)cursor->epoch;
        cs.cursor = &cur;
    }
    Nebula__Sync__V1__CollectionSubscription *list[1] = {&cs};
    Nebula__Sync__V1__Subscribe sub = NEBULA__SYNC__V1__SUBSCRIBE__INIT;
    sub.n_collections = 1;
    sub.collections = list;
    Nebula__Sync__V1__ClientMessage m = NEBULA__SYNC__V1__CLIENT_MESSAGE__INIT;
    m.message_case = NEBULA__SYNC__V1__CLIENT_MESSAGE__MESSAGE_SUBSCRIBE;
    m.subscribe = &sub;
    return sync_msg_send(bev, mask, &m);
}
