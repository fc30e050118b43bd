/* peer_socketio: `nebula-sync-bench fanout --target socketio`, the fan-out
 * scenario against the NebulaDB sync plugin's reference server (Node +
 * Socket.IO 4, bench/peers/socketio_server.js) over its own protocol.
 *
 * Per connection: GET /socket.io/?EIO=4&transport=websocket (no
 * subprotocol), Engine.IO open, Socket.IO connect ("40", or 40{"token":T}
 * with --token: the seed's authenticate reads handshake.auth.token), then
 * the seed client's registration: client:info {clientId, collections} (a
 * subscriber lists the collection, a publisher none, so that publishers only
 * publish, as on nebula-syncd). The seed acknowledges no client:info, so each
 * connection then sends a client:sync of no events with ack id 0: its
 * {success:true} proves the server has registered the client (Socket.IO
 * handles one socket's packets in order), and the connection is ready.
 *
 * A publisher's batch is  42<n>["client:sync",[events]]  (peer_events.h),
 * answered by 43<n>[{"success":true}]. A subscriber reads
 * 42["server:sync",[events]] and reports each event of this run. Server
 * pings ("2") are answered ("3").
 */
#ifndef NEBULA_BENCH_PEER_SOCKETIO_H
#define NEBULA_BENCH_PEER_SOCKETIO_H

#include "fanout_target.h"

extern const struct fanout_target peer_socketio_target;

#endif
