// Benchmark peer for the agent-stream scenario: a Node.js relay on the `ws` library doing the
// same job as Emergence there, written the straightforward way. Clients subscribe to a thread;
// a `send` naming an agent makes the relay call the OpenAI-compatible provider (stream: true),
// read its server-sent events, and forward each content delta as a `stream_chunk` frame (the
// Emergence frame shapes, so the same watchers read both) to every subscriber of that thread,
// then `stream_end` with the whole text. No accounts, no storage, no coalescing: the floor of
// what the job costs in Node.
//
//   PORT=9003 PROVIDER_URL=http://127.0.0.1:9100/v1 node agent_relay.mjs
import http from 'node:http';
import { randomUUID } from 'node:crypto';
import { WebSocketServer, WebSocket } from 'ws';

const port = Number(process.env.PORT || 9003);
const host = process.env.HOST || '127.0.0.1';
const provider = new URL(`${process.env.PROVIDER_URL || 'http://127.0.0.1:9100/v1'}/chat/completions`);
const agent = new http.Agent({ keepAlive: true, maxSockets: Infinity });
const rooms = new Map(); // thread -> Set of sockets

const server = http.createServer((req, res) => {
  if (req.url === '/readyz' || req.url === '/healthz') {
    res.writeHead(200, { 'content-type': 'application/json' });
    res.end('{"status":"ready"}');
    return;
  }
  res.writeHead(404);
  res.end();
});

function broadcast(thread, frame) {
  const data = JSON.stringify(frame);
  for (const c of rooms.get(thread) || []) {
    if (c.readyState === WebSocket.OPEN) c.send(data);
  }
}

function answer(thread, agentId) {
  const streamId = randomUUID();
  broadcast(thread, { type: 'stream_start', thread, stream_id: streamId, agent: { id: agentId, name: agentId } });
  let text = '';
  let offset = 0;
  const body = JSON.stringify({ model: 'fake-stream', stream: true, messages: [{ role: 'user', content: 'go' }] });
  const req = http.request(provider, { method: 'POST', agent, headers: { 'content-type': 'application/json',
    'content-length': Buffer.byteLength(body) } }, (res) => {
    res.setEncoding('utf8');
    let buf = '';
    res.on('data', (d) => {
      buf += d;
      let i;
      while ((i = buf.indexOf('\n\n')) >= 0) {
        const event = buf.slice(0, i);
        buf = buf.slice(i + 2);
        if (!event.startsWith('data: ')) continue;
        const payload = event.slice(6);
        if (payload === '[DONE]') continue;
        const delta = JSON.parse(payload).choices?.[0]?.delta?.content;
        if (!delta) continue;
        broadcast(thread, { type: 'stream_chunk', thread, stream_id: streamId, offset, delta });
        text += delta;
        offset += [...delta].length;
      }
    });
    res.on('end', () => {
      broadcast(thread, { type: 'stream_end', thread, stream_id: streamId,
        message: { thread_id: thread, author: { kind: 'agent', id: agentId, name: agentId }, body: text } });
    });
  });
  req.on('error', (e) => broadcast(thread, { type: 'stream_error', thread, stream_id: streamId, code: 'provider_error',
    message: String(e.message) }));
  req.end(body);
}

const wss = new WebSocketServer({ server, path: '/ws', maxPayload: 256 * 1024 });
wss.on('connection', (socket) => {
  const mine = new Set();
  socket.on('error', () => {});
  socket.send(JSON.stringify({ type: 'welcome', connection_id: randomUUID() }));
  socket.on('message', (data) => {
    let f;
    try {
      f = JSON.parse(data.toString());
    } catch {
      return;
    }
    if (f.type === 'subscribe') {
      if (!rooms.has(f.thread)) rooms.set(f.thread, new Set());
      rooms.get(f.thread).add(socket);
      mine.add(f.thread);
      socket.send(JSON.stringify({ type: 'subscribed', thread: f.thread, head_seq: 0 }));
    } else if (f.type === 'send') {
      socket.send(JSON.stringify({ type: 'ack', client_id: f.client_id, status: 'persisted', thread: f.thread }));
      if (f.agent) answer(f.thread, f.agent);
    } else if (f.type === 'ping') {
      socket.send(JSON.stringify({ type: 'pong', nonce: f.nonce ?? null }));
    }
  });
  socket.on('close', () => {
    for (const t of mine) rooms.get(t)?.delete(socket);
  });
});

server.listen(port, host, () => console.log(`agent relay on http://${host}:${port}/ws -> ${provider}`));

for (const sig of ['SIGTERM', 'SIGINT']) {
  process.on(sig, () => {
    for (const c of wss.clients) c.terminate();
    server.close(() => process.exit(0));
    setTimeout(() => process.exit(0), 1000).unref();
  });
}
