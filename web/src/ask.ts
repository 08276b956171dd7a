// What a message asks of the agents (one answers, several answer at once, or a debate), and the
// WebSocket frame that carries it: `send` with `agent` / `agents`, or `debate` with the message
// as its topic (docs/protocol.md §7.7, §7.9).
import type { PendingSend } from './types';

export interface DebateAsk {
  /** 2-4 agents, in speaking order. */
  agents: string[];
  /** 1-10 rounds. */
  rounds: number;
  /** An agent that writes the closing synthesis. */
  mediator?: string;
}

export interface Ask {
  agent?: string;
  /** Several agents answering at once (1-4). */
  agents?: string[];
  debate?: DebateAsk;
}

export const MAX_PARALLEL = 4;
export const MAX_DEBATERS = 4;
export const MAX_ROUNDS = 10;

/** The frame that sends (or resends: the same `client_id`) a pending message. */
export function frameFor(p: PendingSend): Record<string, unknown> {
  if (p.debate) {
    const frame: Record<string, unknown> = {
      type: 'debate',
      thread: p.thread,
      client_id: p.client_id,
      topic: p.body,
      agents: p.debate.agents,
      rounds: p.debate.rounds,
    };
    if (p.debate.mediator) frame.mediator = p.debate.mediator;
    return frame;
  }
  const frame: Record<string, unknown> = { type: 'send', thread: p.thread, client_id: p.client_id, body: p.body };
  if (p.agents && p.agents.length > 0) frame.agents = p.agents;
  else if (p.agent) frame.agent = p.agent;
  return frame;
}

function strings(v: unknown): v is string[] {
  return Array.isArray(v) && v.every((x) => typeof x === 'string');
}

/** The ask of an outbox entry read back from storage (anything malformed is dropped). */
export function parseAsk(x: Record<string, unknown>): Ask {
  const ask: Ask = {};
  if (typeof x.agent === 'string') ask.agent = x.agent;
  if (strings(x.agents)) ask.agents = x.agents;
  const d = x.debate as Record<string, unknown> | undefined;
  if (d && typeof d === 'object' && strings(d.agents) && typeof d.rounds === 'number') {
    ask.debate = { agents: d.agents, rounds: d.rounds };
    if (typeof d.mediator === 'string') ask.debate.mediator = d.mediator;
  }
  return ask;
}
