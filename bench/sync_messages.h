/* sync_messages: the nebula-sync.v1 messages the load tools send while a
 * connection sets up (Hello, Subscribe), packed with protobuf-c and written
 * as one masked binary WebSocket frame (RFC 6455 5.3). Both nebula-ws-bench
 * (handshake_load.c) and nebula-sync-bench (sync_load.c) use them, so both
 * say the same thing to the broker. Pushes stay with the publisher code,
 * which reuses its buffers.
 *
 * No state; each call packs into a stack buffer (or a heap one for a large
 * message) and copies the frame once into the bufferevent's output.
 */
#ifndef NEBULA_BENCH_SYNC_MESSAGES_H
#define NEBULA_BENCH_SYNC_MESSAGES_H

#include <stdbool.h>
#include <stdint.h>

#include "nebula_sync.pb-c.h"

struct bufferevent;

/* A cursor to subscribe from: replay the events after seq of epoch. */
struct sync_msg_cursor {
    uint64_t seq;
    const char *epoch;
};

/* Each returns false only when out of memory (nothing was sent). */
bool sync_msg_send(struct bufferevent *bev, const uint8_t mask[4],
                   const Nebula__Sync__V1__ClientMessage *m);

/* Hello{client_id, auth_token (token, or empty when NULL), client_version}. */
bool sync_msg_send_hello(struct bufferevent *bev, const uint8_t mask[4], const char *client_id,
                         const char *token, const char *client_version);

/* Subscribe to one collection, from cursor or (NULL) with none: a snapshot. */
bool sync_msg_send_subscribe(struct bufferevent *bev, const uint8_t mask[4], const char *collection,
                             const struct sync_msg_cursor *cursor);

#endif
