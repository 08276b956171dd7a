// Versions of an agent answer: regenerating one stores a new message whose `version_of` names the
// first version. The page shows each answer once, in its first version's place, with "2 / 3"
// arrows; `Versions` keeps which version each reader picked and the regenerate requests that wait
// for their `ack` (repeated after a reconnect with the same client_id: the server starts an
// answer once per client_id).
import type { ClientFrameShape } from './contract';
import { newClientId } from './logic';
import type { Message } from './types';

/** The id every version of `m` shares: its first version's. */
export const versionGroup = (m: Message): string => m.version_of ?? m.id;

/**
 * Folds later versions into their answer's place: `shown` keeps one message per answer (its first
 * version, or the earliest version loaded when the first is not), in order; `groups` lists each
 * answer's versions by seq.
 */
export function foldVersions(messages: Message[]): { shown: Message[]; groups: Map<string, Message[]> } {
  const groups = new Map<string, Message[]>();
  if (!messages.some((m) => m.version_of)) return { shown: messages, groups };
  const shown: Message[] = [];
  for (const m of messages) {
    const g = versionGroup(m);
    const list = groups.get(g);
    if (list) list.push(m);
    else {
      groups.set(g, [m]);
      shown.push(m);
    }
  }
  return { shown, groups };
}

type RegenerateFrame = Extract<ClientFrameShape, { type: 'regenerate' }>;

export class Versions {
  /** The version index each answer shows (absent: its latest). */
  private picked = new Map<string, number>();
  /** Regenerate requests not yet acknowledged, by client_id. */
  private pending = new Map<string, RegenerateFrame>();

  constructor(
    private readonly send: (f: RegenerateFrame) => boolean,
    /** Redraws the page. */
    private readonly changed: () => void,
  ) {}

  /** The index shown among `total` versions of answer `group`. */
  index(group: string, total: number): number {
    const i = this.picked.get(group);
    return i === undefined ? total - 1 : Math.max(0, Math.min(total - 1, i));
  }

  pick(group: string, index: number): void {
    this.picked.set(group, index);
    this.changed();
  }

  /** A new version started: show it (the latest) again. */
  showLatest(group: string): void {
    this.picked.delete(group);
  }

  /** Ask for a new version of `m` (by its agent, or `agent`). */
  regenerate(thread: string, m: Message, agent?: string): void {
    const frame: RegenerateFrame = { type: 'regenerate', thread, client_id: newClientId(), message_id: m.id };
    if (agent) frame.agent = agent;
    this.pending.set(frame.client_id, frame);
    this.showLatest(versionGroup(m));
    this.send(frame); // when not connected, `resend` sends it after the welcome
    this.changed();
  }

  /** After a (re)connection: repeat what was not acknowledged (idempotent by client_id). */
  resend(): void {
    for (const f of this.pending.values()) this.send(f);
  }

  /** The server answered the request `clientId` (ack or error): true when it was ours. */
  settle(clientId: string | undefined): boolean {
    return clientId !== undefined && this.pending.delete(clientId);
  }

  /**
   * The server refused the request `clientId`: false when it is not ours. Ours is tried again
   * after `retryAfterMs` when `retryable`, else dropped and `tell` tells the reader why.
   */
  refused(clientId: string | undefined, retryable: boolean, retryAfterMs: number | undefined, tell: () => void): boolean {
    const f = clientId === undefined ? undefined : this.pending.get(clientId);
    if (!f) return false;
    if (!retryable) {
      this.pending.delete(f.client_id);
      tell();
      return true;
    }
    setTimeout(() => {
      if (this.pending.has(f.client_id)) this.send(f);
    }, Math.min(retryAfterMs ?? 1000, 60_000));
    return true;
  }
}
