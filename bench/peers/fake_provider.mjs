// Benchmark fake of an OpenAI-compatible provider for the agent-stream scenario (bench/agentstream.py).
// POST /v1/chat/completions answers with a server-sent event stream in the real wire format
// (chat.completion.chunk objects, a finish chunk, a usage chunk, then [DONE]) at a realistic pace:
// each answer draws a rate of 30-80 tokens/s, sends TOKENS_PER_CHUNK tokens per chunk after a
// 100-400 ms first-token delay, and lasts about ANSWER_SECS seconds.
//
// Every chunk's text starts with a marker `[seq/total@emit_us] `: its sequence number in the answer,
// the answer's chunk count, and the CLOCK_MONOTONIC time in microseconds (process.hrtime) taken
// just before the write, so a watcher on the same machine computes provider-emit -> receipt
// latency and counts lost or duplicated chunks.
//
// All streams are paced by one 1 ms timing wheel (not a timer per chunk), so thousands of
// concurrent streams cost little; GET /stats reports how late chunks left against their schedule
// (the proof that the fake is not the bottleneck), POST /stats/reset clears the counters.
//
//   PORT=9100 ANSWER_SECS=10 node fake_provider.mjs
import http from 'node:http';

const port = Number(process.env.PORT || 9100);
const host = process.env.HOST || '127.0.0.1';
const answerSecs = Number(process.env.ANSWER_SECS || 10);
const tokensPerChunk = Number(process.env.TOKENS_PER_CHUNK || 3);
const WORDS = 'the a of to and in is it that for on with as was at by an be this which or from but not are'.split(' ');

const nowUs = () => Number(process.hrtime.bigint() / 1000n);
let stats;
function resetStats() {
  stats = { requests: 0, finished: 0, aborted: 0, chunks: 0, tokens: 0, lateness: new Map(), active: 0 };
}
resetStats();

// Timing wheel: due time (ms, monotonic) -> streams to advance then.
const wheel = new Map();
let cursor = Math.floor(nowUs() / 1000);
function schedule(stream, atMs) {
  const slot = Math.max(Math.ceil(atMs), cursor + 1);
  let list = wheel.get(slot);
  if (!list) wheel.set(slot, (list = []));
  list.push(stream);
}
function tick() {
  const now = Math.floor(nowUs() / 1000);
  for (; cursor <= now; cursor++) {
    const list = wheel.get(cursor);
    if (!list) continue;
    wheel.delete(cursor);
    for (const s of list) step(s, now);
  }
  setTimeout(tick, 1);
}

// The hot path builds each chunk from two constant halves (the text is plain ASCII: nothing to escape).
const HEAD = 'data: {"id":"chatcmpl-bench","object":"chat.completion.chunk","created":0,"model":"fake-stream",'
  + '"choices":[{"index":0,"delta":{"content":"';
const TAIL = '"},"finish_reason":null}]}\n\n';

function chunkJson(content, finish) {
  return `data: ${JSON.stringify({
    id: 'chatcmpl-bench', object: 'chat.completion.chunk', created: 0, model: 'fake-stream',
    choices: [{ index: 0, delta: content === null ? {} : { content }, finish_reason: finish }],
  })}\n\n`;
}

function step(s, nowMs) {
  if (s.res.destroyed) return;
  if (s.i < s.total) {
    const lateMs = Math.max(0, Math.round(nowMs - s.dueMs));
    stats.lateness.set(lateMs, (stats.lateness.get(lateMs) || 0) + 1);
    let words = '';
    for (let k = 0; k < tokensPerChunk; k++) words += `${WORDS[(s.i * tokensPerChunk + k) % WORDS.length]} `;
    s.res.write(`${HEAD}[${s.i}/${s.total}@${nowUs()}] ${words}${TAIL}`);
    stats.chunks += 1;
    stats.tokens += tokensPerChunk;
    s.i += 1;
    s.dueMs = s.startMs + s.i * s.intervalMs;
    schedule(s, s.dueMs);
    return;
  }
  const completion = s.total * tokensPerChunk;
  s.res.write(chunkJson(null, 'stop'));
  s.res.write(`data: ${JSON.stringify({ id: 'chatcmpl-bench', object: 'chat.completion.chunk', choices: [],
    usage: { prompt_tokens: 20, completion_tokens: completion, total_tokens: completion + 20 } })}\n\n`);
  s.res.end('data: [DONE]\n\n');
  s.done = true;
  stats.finished += 1;
  stats.active -= 1;
}

function percentile(hist, q) {
  const keys = [...hist.keys()].sort((a, b) => a - b);
  let n = 0;
  for (const k of keys) n += hist.get(k);
  let seen = 0;
  for (const k of keys) {
    seen += hist.get(k);
    if (seen >= q * n) return k;
  }
  return null;
}

const server = http.createServer((req, res) => {
  if (req.url === '/readyz') {
    res.writeHead(200, { 'content-type': 'application/json' });
    res.end('{"status":"ready"}');
    return;
  }
  if (req.url === '/stats') {
    res.writeHead(200, { 'content-type': 'application/json' });
    const { lateness, ...rest } = stats;
    res.end(JSON.stringify({ ...rest, lateness_p50_ms: percentile(lateness, 0.5),
      lateness_p99_ms: percentile(lateness, 0.99), lateness_max_ms: percentile(lateness, 1) }));
    return;
  }
  if (req.url === '/stats/reset' && req.method === 'POST') {
    resetStats();
    res.writeHead(204);
    res.end();
    return;
  }
  if (req.method === 'GET' && req.url === '/v1/models') {
    res.writeHead(200, { 'content-type': 'application/json' });
    res.end(JSON.stringify({ object: 'list', data: [{ id: 'fake-stream', object: 'model' }] }));
    return;
  }
  if (req.method !== 'POST' || req.url !== '/v1/chat/completions') {
    res.writeHead(404, { 'content-type': 'application/json' });
    res.end('{"error":{"message":"not found"}}');
    return;
  }
  req.resume();
  req.on('end', () => {
    stats.requests += 1;
    stats.active += 1;
    const rate = 30 + Math.random() * 50;
    const intervalMs = (1000 * tokensPerChunk) / rate;
    const total = Math.max(1, Math.round((rate * answerSecs) / tokensPerChunk));
    res.writeHead(200, { 'content-type': 'text/event-stream', 'cache-control': 'no-cache' });
    res.flushHeaders();
    res.write(`data: ${JSON.stringify({ id: 'chatcmpl-bench', object: 'chat.completion.chunk',
      choices: [{ index: 0, delta: { role: 'assistant' }, finish_reason: null }] })}\n\n`);
    const startMs = nowUs() / 1000 + 100 + Math.random() * 300;
    const s = { res, i: 0, total, intervalMs, startMs, dueMs: startMs, done: false };
    res.on('close', () => {
      if (!s.done) {
        stats.aborted += 1;
        stats.active -= 1;
        s.done = true;
      }
    });
    schedule(s, startMs);
  });
});
server.keepAliveTimeout = 60_000;
server.listen(port, host, () => {
  console.log(`fake provider on http://${host}:${port}/v1 (${answerSecs} s answers)`);
  tick();
});

for (const sig of ['SIGTERM', 'SIGINT']) {
  process.on(sig, () => {
    server.closeAllConnections?.();
    server.close(() => process.exit(0));
    setTimeout(() => process.exit(0), 500).unref();
  });
}
