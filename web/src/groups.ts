// How the messages of a thread are laid out: every message and live answer of a debate together
// as one unit (where the debate starts), and runs of agent answers side by side (several agents
// asked at once); everything else one by one. Pure: no DOM.
import type { Message } from './types';

export interface Entry<T> {
  key: string;
  /** The debate the entry belongs to. */
  debate?: string;
  /** An agent's answer (stored or live). */
  agent: boolean;
  item: T;
}

export type Block<T> =
  | { kind: 'one'; key: string; entry: Entry<T> }
  | { kind: 'debate'; key: string; id: string; entries: Entry<T>[] }
  | { kind: 'parallel'; key: string; entries: Entry<T>[] };

export function layout<T>(entries: Entry<T>[]): Block<T>[] {
  const out: Block<T>[] = [];
  const debates = new Map<string, Entry<T>[]>();
  let run: Entry<T>[] = [];
  const flush = () => {
    if (run.length >= 2) out.push({ kind: 'parallel', key: `par-${run[0].key}`, entries: run });
    else for (const e of run) out.push({ kind: 'one', key: e.key, entry: e });
    run = [];
  };
  for (const e of entries) {
    if (e.debate) {
      flush();
      const group = debates.get(e.debate);
      if (group) group.push(e);
      else {
        const fresh = [e];
        debates.set(e.debate, fresh);
        out.push({ kind: 'debate', key: `d-${e.debate}`, id: e.debate, entries: fresh });
      }
    } else if (e.agent) {
      run.push(e);
    } else {
      flush();
      out.push({ kind: 'one', key: e.key, entry: e });
    }
  }
  flush();
  return out;
}

/** Whether a debate has run all its turns (its topic's plan) or stopped (an incomplete turn). */
export function debateOver(topic: Message | undefined, messages: Message[]): boolean {
  const d = topic?.debate;
  if (!d) return true;
  const turns = messages.filter((m) => m.debate?.id === d.id && m.debate.role !== 'topic');
  if (turns.some((m) => m.status === 'incomplete')) return true;
  return turns.length >= (d.agents?.length ?? 0) * (d.rounds ?? 1) + (d.mediator ? 1 : 0);
}
