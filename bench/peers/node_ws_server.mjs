// Benchmark peer: a Node.js broadcast room on the `ws` library, written the way its README
// shows it (every text frame a client sends is sent to every open client, the sender included).
// `{"type":"ping"...}` frames get a pong, so `emergence load` can keep idle connections alive.
//
//   PORT=9002 node node_ws_server.mjs
//
// GET /readyz answers 200 so the bench can wait for the server to listen.
import http from 'node:http';
import { WebSocketServer, WebSocket } from 'ws';

const port = Number(process.env.PORT || 9002);
const host = process.env.HOST || '127.0.0.1';

const server = http.createServer((req, res) => {
  if (req.url === '/readyz' || req.url === '/healthz') {
    res.writeHead(200, { 'content-type': 'application/json' });
    res.end('{"status":"ready"}');
    return;
  }
  res.writeHead(404);
  res.end();
});

// perMessageDeflate stays off (the default for servers in ws 8); `emergence load` offers none.
const wss = new WebSocketServer({ server, path: '/ws', maxPayload: 256 * 1024 });

wss.on('connection', (socket) => {
  socket.on('error', () => {});
  socket.on('message', (data, isBinary) => {
    if (!isBinary && data.length < 64 && data.toString().startsWith('{"type":"ping"')) {
      socket.send('{"type":"pong","nonce":null}');
      return;
    }
    for (const client of wss.clients) {
      if (client.readyState === WebSocket.OPEN) {
        client.send(data, { binary: isBinary });
      }
    }
  });
});

server.listen(port, host, () => {
  console.log(`node ws room listening on http://${host}:${port}/ws`);
});

for (const sig of ['SIGTERM', 'SIGINT']) {
  process.on(sig, () => {
    for (const c of wss.clients) c.terminate();
    server.close(() => process.exit(0));
    setTimeout(() => process.exit(0), 1000).unref();
  });
}
