// A fake OpenAI-compatible provider for the end-to-end tests: it answers
// POST /v1/chat/completions with a server-sent event stream, one chunk every `intervalMs`, in the
// real wire format (chat.completion.chunk, then usage, then [DONE]). What it streams is chosen
// per request by `answer(body)`, which returns `{ chunks, intervalMs, reasoning? }`: `reasoning`
// chunks stream first as `delta.reasoning_content` (DeepSeek, vLLM and gateways send the model's
// thinking so), with `completion_tokens_details.reasoning_tokens` in the usage. GET /v1/models
// lists `models` (default `fake-model`).
import http from 'node:http';

/** The text of the last user message of an OpenAI request body. */
export function lastUserText(body) {
  const messages = Array.isArray(body?.messages) ? body.messages : [];
  for (let i = messages.length - 1; i >= 0; i--) {
    if (messages[i]?.role === 'user') return String(messages[i].content ?? '');
  }
  return '';
}

/** Splits `text` into chunks of about `size` characters (never inside a surrogate pair). */
export function chunked(text, size) {
  const chars = Array.from(text);
  const out = [];
  for (let i = 0; i < chars.length; i += size) out.push(chars.slice(i, i + size).join(''));
  return out;
}

export class FakeOpenAI {
  requests = [];
  streamsFinished = 0;

  constructor(answer) {
    this.answer = answer;
  }

  async start() {
    this.server = http.createServer((req, res) => {
      let raw = '';
      req.setEncoding('utf8');
      req.on('data', (d) => (raw += d));
      req.on('end', () => this.handle(req, res, raw));
    });
    await new Promise((resolve) => this.server.listen(0, '127.0.0.1', resolve));
    this.url = `http://127.0.0.1:${this.server.address().port}/v1`;
  }

  handle(req, res, raw) {
    if (req.method === 'GET' && req.url === '/v1/models') {
      // The model list, as OpenAI sends it (the admin UI's model picker reads it).
      res.writeHead(200, { 'Content-Type': 'application/json' });
      res.end(JSON.stringify({ object: 'list', data: (this.models ?? ['fake-model']).map((id) => ({ id, object: 'model' })) }));
      return;
    }
    if (req.method !== 'POST' || req.url !== '/v1/chat/completions') {
      res.writeHead(404, { 'Content-Type': 'application/json' });
      res.end(JSON.stringify({ error: { message: 'not found' } }));
      return;
    }
    let body = null;
    try {
      body = JSON.parse(raw);
    } catch {
      /* recorded as null */
    }
    this.requests.push({ headers: req.headers, body });
    const { chunks, intervalMs, reasoning = [] } = this.answer(body);
    res.writeHead(200, { 'Content-Type': 'text/event-stream', 'Cache-Control': 'no-cache', Connection: 'keep-alive' });
    res.flushHeaders();
    let i = 0;
    const timer = setInterval(() => {
      if (res.destroyed) {
        clearInterval(timer);
        return;
      }
      if (i < reasoning.length + chunks.length) {
        const delta = i < reasoning.length ? { content: null, reasoning_content: reasoning[i] } : { content: chunks[i - reasoning.length] };
        const chunk = { id: 'c', object: 'chat.completion.chunk', choices: [{ index: 0, delta, finish_reason: null }] };
        res.write(`data: ${JSON.stringify(chunk)}\n\n`);
        i += 1;
        return;
      }
      clearInterval(timer);
      const completion = chunks.length + reasoning.length;
      const usage = { prompt_tokens: 10, completion_tokens: completion, total_tokens: completion + 10 };
      if (reasoning.length > 0) usage.completion_tokens_details = { reasoning_tokens: reasoning.length };
      res.write(`data: ${JSON.stringify({ choices: [], usage })}\n\n`);
      res.write('data: [DONE]\n\n');
      res.end();
      this.streamsFinished += 1;
    }, intervalMs);
    res.on('close', () => clearInterval(timer));
  }

  async stop() {
    this.server?.closeAllConnections?.();
    await new Promise((resolve) => (this.server ? this.server.close(() => resolve()) : resolve()));
  }
}
