// Live agent streams: applying the server's stream frames (contract.ts) to what the page shows.
// A stream is text that grows by offset-addressed chunks; a gap asks for a snapshot.
import type { MessageView, ServerFrame } from './contract';
import { budgetText, failureText } from './agentText';
import { t } from './i18n';
import { applyChunk, applyReasoning, applySnapshot } from './logic';
import type { LiveStream } from './types';

/** The server frame of type `T`. */
export type FrameOf<T extends ServerFrame['type']> = Extract<ServerFrame, { type: T }>;

/** The frames that concern a running agent stream. */
export type StreamFrame = FrameOf<
  'stream_start' | 'stream_snapshot' | 'stream_chunk' | 'stream_reasoning' | 'stream_retry' | 'stream_end' | 'stream_error'
>;

/** What applying a stream frame asks of the page. */
export type StreamOutcome =
  | { kind: 'none' }
  /** A chunk arrived for text we do not have: resubscribe to get a snapshot. */
  | { kind: 'gap' }
  /** The stream ended with its stored answer. */
  | { kind: 'answer'; message: MessageView }
  /** The stream stopped: a sentence for the user. */
  | { kind: 'failed'; text: string };

/** Apply one stream frame to the streams of the open thread. */
export function applyStreamFrame(streams: Map<string, LiveStream>, f: StreamFrame): StreamOutcome {
  const sid = f.stream_id;
  let s = streams.get(sid);
  switch (f.type) {
    case 'stream_start': {
      const place = { debate_id: f.debate_id, round: f.round, role: f.role, version_of: f.version_of };
      if (s) Object.assign(s, { agent: f.agent }, place);
      else streams.set(sid, { stream_id: sid, thread: f.thread, agent: f.agent, text: '', len: 0, startedAt: Date.now(), ...place });
      return { kind: 'none' };
    }
    case 'stream_snapshot':
      if (!s) {
        s = { stream_id: sid, thread: f.thread, agent: { id: '', name: t('msg.someAgent') }, text: '', len: 0, startedAt: Date.now() };
        streams.set(sid, s);
      }
      applySnapshot(s, f.text, f.reasoning);
      s.retryUntil = undefined;
      return { kind: 'none' };
    case 'stream_reasoning':
      if (!s || applyReasoning(s, f.offset, f.delta) === 'gap') return { kind: 'gap' };
      s.retryUntil = undefined;
      return { kind: 'none' };
    case 'stream_chunk':
      if (!s || applyChunk(s, f.offset, f.delta) === 'gap') return { kind: 'gap' };
      s.retryUntil = undefined;
      return { kind: 'none' };
    case 'stream_retry':
      if (s) s.retryUntil = Date.now() + f.retry_in_ms;
      return { kind: 'none' };
    case 'stream_end':
      streams.delete(sid);
      return { kind: 'answer', message: f.message };
    case 'stream_error': {
      streams.delete(sid);
      const who = s?.agent.name ?? t('msg.someAgent');
      // The sentence of the error class in the reader's language, never the provider's text.
      const why = budgetText(f.code, f.resets_at) ?? failureText(f.error_class, f.message || f.code.replace(/_/g, ' '));
      return { kind: 'failed', text: `${who}: ${why}` };
    }
  }
}

/**
 * Keeps `between` (debates whose last turn ended and whose next has not started: still under way,
 * still stoppable) up to date with a frame, before it is applied to `streams`.
 */
export function noteDebateTurns(between: Set<string>, streams: Map<string, LiveStream>, f: StreamFrame): void {
  const debate = f.type === 'stream_start' ? f.debate_id : streams.get(f.stream_id)?.debate_id;
  if (!debate) return;
  if (f.type === 'stream_end') between.add(debate);
  else if (f.type === 'stream_start' || f.type === 'stream_error') between.delete(debate);
}
