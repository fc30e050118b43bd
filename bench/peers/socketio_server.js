// socketio_server.js: the NebulaDB sync plugin's reference server, for
// nebula-sync-bench fanout --target socketio to measure beside nebula-syncd.
//
// It does what the seed's createSyncServer() does with its defaults (Node +
// Socket.IO 4, MemorySyncStorage, no authenticate): a client emits
// `client:info` {clientId, collections} and is remembered with them (and is
// sent, as `server:sync`, the stored events of those collections that other
// clients wrote); it emits `client:sync` (events, ack): the events are
// appended to one in-memory array, `server:sync` (its events) goes to every
// other client subscribed to their collections, and the ack is
// {success: true} ({success: false, error} for a client that sent no
// client:info). Events older than 7 days are dropped every hour. Nothing
// here is tuned: the point is to measure the server the broker replaces.
//
// usage: node socketio_server.js PORT    (or PORT in the environment)
// Listens on 127.0.0.1 only; prints one line "ready: ..." on stdout once it
// accepts connections; SIGTERM or SIGINT stops it.
'use strict';

const http = require('http');
const { Server } = require('socket.io');

const RETENTION_MS = 7 * 24 * 60 * 60 * 1000;
const CLEANUP_INTERVAL_MS = 60 * 60 * 1000;

const port = Number(process.argv[2] || process.env.PORT);
if (!Number.isInteger(port) || port < 1 || port > 65535) {
  console.error('usage: node socketio_server.js PORT (1..65535)');
  process.exit(2);
}

// The seed's MemorySyncStorage: one array, searched linearly.
class MemorySyncStorage {
  constructor() {
    this.events = [];
  }
  async saveEvents(events) {
    this.events.push(...events);
  }
  async getEventsForClient(clientId, collections) {
    return this.events.filter(e => e.clientId !== clientId && collections.includes(e.collection));
  }
  async clearEventsBefore(timestamp) {
    const before = this.events.length;
    this.events = this.events.filter(e => e.timestamp >= timestamp);
    return before - this.events.length;
  }
}

const storage = new MemorySyncStorage();
const httpServer = http.createServer();
const io = new Server(httpServer, {});   // the seed's default socketOptions
const clients = new Map();               // socket id -> {clientId, collections, lastSyncTime}

// Each other client gets, in one server:sync, the events of its collections.
function broadcastEvents(events, excludeSocketId) {
  const byCollection = {};
  for (const e of events) (byCollection[e.collection] ||= []).push(e);
  for (const [socketId, info] of clients) {
    if (socketId === excludeSocketId) continue;
    const clientEvents = info.collections.flatMap(c => byCollection[c] || []);
    if (clientEvents.length > 0) io.to(socketId).emit('server:sync', clientEvents);
  }
}

io.on('connection', socket => {
  socket.on('client:info', async info => {
    const { clientId, collections } = info;
    clients.set(socket.id, { clientId, collections, lastSyncTime: Date.now() });
    const events = await storage.getEventsForClient(clientId, collections);
    if (events.length > 0) socket.emit('server:sync', events);
  });

  socket.on('client:sync', async (events, callback) => {
    const info = clients.get(socket.id);
    if (!info) {
      callback({ success: false, error: 'Client not registered' });
      return;
    }
    try {
      await storage.saveEvents(events);
      info.lastSyncTime = Date.now();
      broadcastEvents(events, socket.id);
      callback({ success: true });
    } catch (error) {
      console.error('socketio_server: error processing client events:', error);
      callback({ success: false, error: 'Error processing events' });
    }
  });

  socket.on('disconnect', () => clients.delete(socket.id));
});

const cleanup = setInterval(async () => {
  const n = await storage.clearEventsBefore(Date.now() - RETENTION_MS);
  if (n > 0) console.error(`socketio_server: cleaned up ${n} old events`);
}, CLEANUP_INTERVAL_MS);
cleanup.unref();

function stop() {
  io.close();
  process.exit(0);
}
process.on('SIGTERM', stop);
process.on('SIGINT', stop);

httpServer.on('error', err => {
  console.error(`socketio_server: cannot listen on 127.0.0.1:${port}: ${err.message}`);
  process.exit(1);
});
httpServer.listen(port, '127.0.0.1', () => {
  console.log(`ready: socketio ws://127.0.0.1:${port}/socket.io/?EIO=4&transport=websocket ` +
              `pid ${process.pid} (socket.io ${require('socket.io/package.json').version}, ` +
              `node ${process.version})`);
});
