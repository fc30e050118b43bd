// ws_broadcast_server.js: the simplest possible fan-out server, for
// nebula-sync-bench fanout --target ws-broadcast: a plain WebSocket server
// (npm `ws`, its defaults: no compression) that re-sends every message it
// receives, text or binary, to every other open connection. No storage, no
// acknowledgements, no subscriptions, no ordering beyond one TCP stream: a
// floor for what any WebSocket fan-out in Node costs.
//
// usage: node ws_broadcast_server.js PORT    (or PORT in the environment)
// Listens on 127.0.0.1 only, any path; prints one line "ready: ..." on
// stdout once it accepts connections; SIGTERM or SIGINT stops it.
'use strict';

const { WebSocketServer, WebSocket } = require('ws');

const port = Number(process.argv[2] || process.env.PORT);
if (!Number.isInteger(port) || port < 1 || port > 65535) {
  console.error('usage: node ws_broadcast_server.js PORT (1..65535)');
  process.exit(2);
}

const wss = new WebSocketServer({ host: '127.0.0.1', port });

wss.on('connection', ws => {
  ws.on('message', (data, isBinary) => {
    for (const client of wss.clients) {
      if (client !== ws && client.readyState === WebSocket.OPEN) client.send(data, { binary: isBinary });
    }
  });
});

wss.on('error', err => {
  console.error(`ws_broadcast_server: cannot listen on 127.0.0.1:${port}: ${err.message}`);
  process.exit(1);
});
wss.on('listening', () => {
  console.log(`ready: ws-broadcast ws://127.0.0.1:${port}/ pid ${process.pid} ` +
              `(ws ${require('ws/package.json').version}, node ${process.version})`);
});

function stop() {
  wss.close();
  process.exit(0);
}
process.on('SIGTERM', stop);
process.on('SIGINT', stop);
