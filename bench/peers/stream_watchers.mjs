// The watchers of the agent-stream scenario (bench/agentstream.py): W WebSocket clients subscribed
// to each of S threads, spread over several worker threads (each its own event loop, so the
// client is not the bottleneck). One socket per thread then asks the agent for an answer, and
// every socket reads the answer's `stream_chunk` frames (the Emergence protocol, docs/protocol.md
// 7.8; the peer relay speaks the same frames).
//
//   node stream_watchers.mjs config.json
//
// config: {ws_url, token, threads: [...], watchers, workers, agent, timeout_secs, connect_concurrency}
// stdout protocol: prints `READY` when every socket is subscribed, waits for a line on stdin,
// prints `GO` when the asks are sent, then `DONE <json>` with the merged figures:
// per chunk latency (the fake provider's emit timestamp in the chunk text -> receipt, both
// CLOCK_MONOTONIC on this machine) as a 0.1 ms histogram, chunks received, duplicates, lost
// (announced total - distinct received, per socket and answer), offset gaps, answers never seen,
// and the client's own CPU time and worst event-loop delay.
import { readFileSync } from 'node:fs';
import { Worker, isMainThread, parentPort, workerData } from 'node:worker_threads';
import { fileURLToPath } from 'node:url';
import { randomUUID } from 'node:crypto';
import readline from 'node:readline';
import WebSocket from 'ws';

const nowUs = () => Number(process.hrtime.bigint() / 1000n);
const MARKER = /\[(\d+)\/(\d+)@(\d+)\]/g;

if (isMainThread) {
  const cfg = JSON.parse(readFileSync(process.argv[2], 'utf8'));
  const n = Math.max(1, Math.min(cfg.workers || 2, cfg.threads.length));
  const workers = [];
  let ready = 0;
  let done = 0;
  const results = [];
  const started = process.cpuUsage();
  const finish = () => {
    const merged = { hist: {}, chunks: 0, duplicates: 0, lost: 0, gaps: 0, streams_seen: 0, streams_ended: 0,
      streams_expected: 0, streams_missing: 0, sockets: 0, connect_errors: 0, errors: [], loop_delay_max_ms: 0,
      tokens: 0 };
    for (const r of results) {
      for (const [k, v] of Object.entries(r.hist)) merged.hist[k] = (merged.hist[k] || 0) + v;
      for (const k of ['chunks', 'duplicates', 'lost', 'gaps', 'streams_seen', 'streams_ended', 'streams_expected',
        'streams_missing', 'sockets', 'connect_errors', 'tokens']) merged[k] += r[k];
      merged.errors.push(...r.errors.slice(0, 5));
      merged.loop_delay_max_ms = Math.max(merged.loop_delay_max_ms, r.loop_delay_max_ms);
    }
    const cpu = process.cpuUsage(started);
    merged.client_cpu_seconds = (cpu.user + cpu.system) / 1e6;
    merged.errors = merged.errors.slice(0, 10);
    // stdout is a pipe (asynchronous in Node): exit once the line is written.
    process.stdout.write(`DONE ${JSON.stringify(merged)}\n`, () => process.exit(0));
  };
  for (let w = 0; w < n; w++) {
    const threads = cfg.threads.filter((_, i) => i % n === w);
    const worker = new Worker(fileURLToPath(import.meta.url), { workerData: { ...cfg, threads } });
    worker.on('message', (m) => {
      if (m.type === 'ready' && ++ready === n) process.stdout.write('READY\n');
      if (m.type === 'result') {
        results.push(m.result);
        if (++done === n) finish();
      }
    });
    worker.on('error', (e) => {
      process.stderr.write(`worker error: ${e.stack || e}\n`);
      process.exit(2);
    });
    workers.push(worker);
  }
  const rl = readline.createInterface({ input: process.stdin });
  rl.once('line', () => {
    for (const w of workers) w.postMessage({ type: 'go' });
    process.stdout.write('GO\n');
  });
} else {
  runWorker(workerData);
}

function runWorker(cfg) {
  const hist = new Map();
  const res = { chunks: 0, duplicates: 0, lost: 0, gaps: 0, streams_seen: 0, streams_ended: 0, streams_expected: 0,
    streams_missing: 0, sockets: 0, connect_errors: 0, errors: [], loop_delay_max_ms: 0, tokens: 0 };
  const socketsByThread = new Map();
  const all = [];
  let subscribed = 0;
  const want = cfg.threads.length * cfg.watchers;
  let ended = 0;
  let finished = false;

  // Worst event-loop delay: a 10 ms timer that should fire on time.
  let last = nowUs();
  const lag = setInterval(() => {
    const t = nowUs();
    res.loop_delay_max_ms = Math.max(res.loop_delay_max_ms, (t - last) / 1000 - 10);
    last = t;
  }, 10);

  function watcher(thread) {
    // Per answer (stream_id): announced total, distinct seqs seen, text length for the offset check,
    // and the unparsed tail (a marker split across two frames).
    const w = { thread, ws: null, streams: new Map(), ended: 0 };
    return w;
  }

  // The hot path: a stream_chunk is read with three regular expressions instead of JSON.parse
  // (its delta is the fake's plain ASCII text), so the client stays cheap per frame.
  const STREAM_ID = /"stream_id":"([^"]+)"/;
  const OFFSET = /"offset":(\d+)/;
  const DELTA = /"delta":"((?:[^"\\]|\\.)*)"/;
  function onFrame(w, raw) {
    const t = nowUs();
    if (raw.startsWith('{"type":"stream_chunk"')) {
      const delta = JSON.parse(`"${DELTA.exec(raw)[1]}"`);
      chunk(w, t, STREAM_ID.exec(raw)[1], Number(OFFSET.exec(raw)[1]), delta);
      return;
    }
    const f = JSON.parse(raw);
    switch (f.type) {
      case 'welcome':
        w.ws.send(JSON.stringify({ type: 'subscribe', thread: w.thread, after_seq: 0 }));
        return;
      case 'subscribed':
        if (!w.subscribed) {
          w.subscribed = true;
          if (++subscribed === want) parentPort.postMessage({ type: 'ready' });
        }
        return;
      case 'stream_start': {
        if (!w.streams.has(f.stream_id)) w.streams.set(f.stream_id, { total: -1, seen: new Set(), len: 0, tail: '' });
        return;
      }
      case 'stream_chunk':
        chunk(w, t, f.stream_id, f.offset, f.delta);
        return;
      case 'stream_end':
      case 'stream_error': {
        const s = w.streams.get(f.stream_id);
        if (f.type === 'stream_error') res.errors.push(`stream_error ${f.code || ''} ${f.error_class || ''}`);
        if (s && !s.ended) {
          s.ended = true;
          w.ended += 1;
          if (++ended === want) report();
        }
        return;
      }
      case 'error':
        res.errors.push(`error ${f.code}: ${f.message}`);
        return;
      default:
    }
  }

  function chunk(w, t, streamId, offset, delta) {
    let s = w.streams.get(streamId);
    if (!s) w.streams.set(streamId, (s = { total: -1, seen: new Set(), len: 0, tail: '' }));
    if (offset !== s.len) res.gaps += 1;
    s.len = offset + [...delta].length;
    const text = s.tail + delta;
    let m;
    let end = 0;
    MARKER.lastIndex = 0;
    while ((m = MARKER.exec(text))) {
      const seq = Number(m[1]);
      s.total = Number(m[2]);
      end = MARKER.lastIndex;
      if (s.seen.has(seq)) {
        res.duplicates += 1;
        continue;
      }
      s.seen.add(seq);
      res.chunks += 1;
      const bucket = Math.max(0, Math.round((t - Number(m[3])) / 100));
      hist.set(bucket, (hist.get(bucket) || 0) + 1);
    }
    const open = text.lastIndexOf('[');
    s.tail = open >= end ? text.slice(open) : '';
  }

  function report() {
    if (finished) return;
    finished = true;
    clearInterval(lag);
    for (const w of all) {
      res.streams_expected += 1;
      if (w.streams.size === 0) res.streams_missing += 1;
      for (const s of w.streams.values()) {
        res.streams_seen += 1;
        if (s.ended) res.streams_ended += 1;
        res.lost += Math.max(0, s.total - s.seen.size);
        if (s.total < 0) res.streams_missing += 1;
      }
      w.ws?.terminate();
    }
    res.tokens = res.chunks * (cfg.tokens_per_chunk || 3);
    parentPort.postMessage({ type: 'result', result: { ...res, hist: Object.fromEntries(hist) } });
  }

  // Connect every socket, at most connect_concurrency handshakes at once.
  const queue = [];
  for (const thread of cfg.threads) {
    const list = [];
    for (let i = 0; i < cfg.watchers; i++) {
      const w = watcher(thread);
      list.push(w);
      all.push(w);
      queue.push(w);
    }
    socketsByThread.set(thread, list);
  }
  let inflight = 0;
  const url = `${cfg.ws_url}?token=${encodeURIComponent(cfg.token)}`;
  function pump() {
    while (inflight < (cfg.connect_concurrency || 64) && queue.length) {
      const w = queue.shift();
      inflight += 1;
      const ws = new WebSocket(url, { perMessageDeflate: false, skipUTF8Validation: true });
      w.ws = ws;
      let opened = false;
      ws.on('open', () => {
        opened = true;
        res.sockets += 1;
        inflight -= 1;
        pump();
      });
      ws.on('message', (data) => onFrame(w, data.toString()));
      ws.on('error', (e) => {
        if (!opened) {
          res.connect_errors += 1;
          inflight -= 1;
          pump();
        }
        if (res.errors.length < 20) res.errors.push(`socket: ${e.message}`);
      });
      ws.on('close', (code) => {
        if (!finished && res.errors.length < 20) res.errors.push(`closed ${code}`);
      });
    }
  }
  pump();

  parentPort.on('message', (m) => {
    if (m.type !== 'go') return;
    for (const [thread, list] of socketsByThread) {
      list[0].ws.send(JSON.stringify({ type: 'send', thread, client_id: randomUUID(), body: `@${cfg.agent} go`,
        agent: cfg.agent }));
    }
    setTimeout(report, (cfg.timeout_secs || 60) * 1000).unref();
  });
}
