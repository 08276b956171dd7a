// Where the outbox (sends not yet acknowledged) survives a reload: localStorage, one key per user.
import type { PendingSend } from './types';

export function readOutbox(key: string): string | null {
  try {
    return localStorage.getItem(key);
  } catch {
    return null;
  }
}

export function writeOutbox(key: string, outbox: PendingSend[]): void {
  try {
    if (outbox.length === 0) localStorage.removeItem(key);
    else
      localStorage.setItem(
        key,
        JSON.stringify(
          outbox.map(({ client_id, thread, body, agent, agents, debate, created_at, state }) => ({
            client_id,
            thread,
            body,
            agent,
            agents,
            debate,
            created_at,
            state,
          })),
        ),
      );
  } catch {
    /* storage full or disabled: the in-memory outbox still works */
  }
}
