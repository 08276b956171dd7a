// Live agent streams: applying the server's stream frames (contract.ts) to what the page shows.
// A stream is text that grows by offset-addressed chunks; a gap asks for a snapshot.
import type { MessageView, ServerFrame } from './contract';
import { applyChunk, applySnapshot } from './logic';
import type { LiveStream } from './types';

/** The server frame of type `T`. */
export type FrameOf<T extends ServerFrame['type']> = Extract<ServerFrame, { type: T }>;

/** The frames that concern a running agent stream. */
export type StreamFrame = FrameOf<'stream_start' | 'stream_snapshot' | 'stream_chunk' | 'stream_end' | 'stream_error'>;

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
    case 'stream_start':
      if (s) s.agent = f.agent;
      else streams.set(sid, { stream_id: sid, thread: f.thread, agent: f.agent, text: '', len: 0 });
      return { kind: 'none' };
    case 'stream_snapshot':
      if (!s) {
        s = { stream_id: sid, thread: f.thread, agent: { id: '', name: 'Agent' }, text: '', len: 0 };
        streams.set(sid, s);
      }
      applySnapshot(s, f.text);
      return { kind: 'none' };
    case 'stream_chunk':
      if (!s || applyChunk(s, f.offset, f.delta) === 'gap') return { kind: 'gap' };
      return { kind: 'none' };
    case 'stream_end':
      streams.delete(sid);
      return { kind: 'answer', message: f.message };
    case 'stream_error': {
      streams.delete(sid);
      const who = s?.agent.name ?? 'The agent';
      const why = f.message || f.code.replace(/_/g, ' ');
      return {
        kind: 'failed',
        text: f.code === 'cancelled' ? `${who}'s answer was cancelled.` : `${who}'s answer stopped: ${why}`,
      };
    }
  }
}
