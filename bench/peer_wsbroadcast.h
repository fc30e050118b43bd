/* peer_wsbroadcast: `nebula-sync-bench fanout --target ws-broadcast`, the
 * fan-out scenario against a plain WebSocket broadcast server
 * (bench/peers/ws_broadcast_server.js: every message goes to every other
 * connection): the floor of what relaying a message costs in Node, with no
 * protocol, storage or acknowledgement at all.
 *
 * Connections upgrade on the URL's path (any; "/" by default) with no
 * subprotocol and are ready at once. A publisher's batch is one text message,
 * the JSON array of its events (peer_events.h), the same bytes as the
 * events of a socketio client:sync. There is no answer: the driver counts a
 * batch as done once it is handed to the socket and paces publishers by
 * their output buffer or by --rate. Subscribers report each event of this
 * run; publishers receive the other publishers' batches too (the server
 * sends everything to everyone) and drop them.
 */
#ifndef NEBULA_BENCH_PEER_WSBROADCAST_H
#define NEBULA_BENCH_PEER_WSBROADCAST_H

#include "fanout_target.h"

extern const struct fanout_target peer_wsbroadcast_target;

#endif
