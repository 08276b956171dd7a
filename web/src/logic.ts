// Pure helpers (no DOM, no network) used by the chat store.
import { parseAsk } from './ask';
import type { LiveStream, Message, PendingSend } from './types';

/** Length in Unicode code points, the unit of stream `offset`s and of the contract's limits. */
export function cpLen(s: string): number {
  let n = 0;
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c >= 0xd800 && c <= 0xdbff && i + 1 < s.length) {
      const d = s.charCodeAt(i + 1);
      if (d >= 0xdc00 && d <= 0xdfff) i++;
    }
    n++;
  }
  return n;
}

/**
 * Merges messages into a list sorted by `seq`, one entry per seq. A server copy replaces a local
 * placeholder for the same seq; otherwise the first copy wins (duplicates by seq or id are dropped).
 * Returns the same array when nothing changed.
 */
export function mergeMessages(list: Message[], incoming: Message[]): Message[] {
  if (incoming.length === 0) return list;
  // Fast path: one new message after the current tail.
  if (incoming.length === 1) {
    const m = incoming[0];
    const last = list[list.length - 1];
    if (!last || m.seq > last.seq) {
      if (list.some((x) => x.id === m.id && !x.local)) return list;
      return [...list, m];
    }
  }
  const bySeq = new Map<number, Message>();
  for (const m of list) bySeq.set(m.seq, m);
  let changed = false;
  for (const m of incoming) {
    const have = bySeq.get(m.seq);
    if (!have || (have.local && !m.local)) {
      bySeq.set(m.seq, m);
      changed = true;
    }
  }
  if (!changed) return list;
  const seenIds = new Set<string>();
  const out: Message[] = [];
  for (const m of [...bySeq.values()].sort((a, b) => a.seq - b.seq)) {
    if (seenIds.has(m.id)) continue;
    seenIds.add(m.id);
    out.push(m);
  }
  return out;
}

/** Highest seq among messages the server delivered (local placeholders excluded). */
export function maxServerSeq(list: Message[], floor = 0): number {
  let max = floor;
  for (const m of list) if (!m.local && m.seq > max) max = m.seq;
  return max;
}

export type ChunkResult = 'applied' | 'duplicate' | 'gap';

/**
 * Applies a `stream_chunk`: only when `offset` equals the current length; a chunk with a smaller
 * offset is already contained (ignored); a larger offset means something is missing.
 */
export function applyChunk(s: LiveStream, offset: number, delta: string): ChunkResult {
  if (offset === s.len) {
    s.text += delta;
    s.len += cpLen(delta);
    return 'applied';
  }
  return offset < s.len ? 'duplicate' : 'gap';
}

/** Applies a `stream_snapshot`: the text (and reasoning) so far replace whatever we had. */
export function applySnapshot(s: LiveStream, text: string, reasoning?: string): void {
  s.text = text;
  s.len = cpLen(text);
  s.reasoning = reasoning ?? '';
  s.reasoningLen = cpLen(s.reasoning);
}

/** Applies a `stream_reasoning` delta at `offset` (code points of reasoning before it). */
export function applyReasoning(s: LiveStream, offset: number, delta: string): ChunkResult {
  const len = s.reasoningLen ?? 0;
  if (offset === len) {
    s.reasoning = (s.reasoning ?? '') + delta;
    s.reasoningLen = len + cpLen(delta);
    return 'applied';
  }
  return offset < len ? 'duplicate' : 'gap';
}

export function isMessage(v: unknown): v is Message {
  if (!v || typeof v !== 'object') return false;
  const m = v as Partial<Message>;
  return (
    typeof m.id === 'string' &&
    typeof m.seq === 'number' &&
    typeof m.body === 'string' &&
    !!m.author &&
    typeof m.author === 'object' &&
    typeof m.author.id === 'string'
  );
}

/** Outbox entries restored from storage, ignoring anything malformed. */
export function parseOutbox(raw: string | null): PendingSend[] {
  if (!raw) return [];
  try {
    const data: unknown = JSON.parse(raw);
    if (!Array.isArray(data)) return [];
    return data
      .filter(
        (x): x is PendingSend =>
          !!x &&
          typeof x === 'object' &&
          typeof x.client_id === 'string' &&
          typeof x.thread === 'string' &&
          typeof x.body === 'string' &&
          (x.agent === undefined || typeof x.agent === 'string'),
      )
      .map((x) => ({
        client_id: x.client_id,
        thread: x.thread,
        body: x.body,
        ...parseAsk(x as unknown as Record<string, unknown>),
        created_at: typeof x.created_at === 'string' ? x.created_at : new Date().toISOString(),
        state: x.state === 'queued' ? 'queued' : 'sending',
      }));
  } catch {
    return [];
  }
}

/** A random UUID; falls back to getRandomValues where randomUUID needs a secure context. */
export function newClientId(): string {
  const c = globalThis.crypto;
  if (c && typeof c.randomUUID === 'function') return c.randomUUID();
  const b = new Uint8Array(16);
  c.getRandomValues(b);
  b[6] = (b[6] & 0x0f) | 0x40;
  b[8] = (b[8] & 0x3f) | 0x80;
  const h = Array.from(b, (x) => x.toString(16).padStart(2, '0')).join('');
  return `${h.slice(0, 8)}-${h.slice(8, 12)}-${h.slice(12, 16)}-${h.slice(16, 20)}-${h.slice(20)}`;
}
