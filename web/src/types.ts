// Shapes of the public contract that the UI relies on. Wire frames, error codes and the message
// shape come from contract.ts, generated from the server's Rust types.
import type { DebateAsk } from './ask';
import type { AuthorView, DebateRole, MessageView } from './contract';

export interface User {
  id: string;
  username: string;
  /** From register, login and `GET /api/me` (absent in the cached hint). */
  role?: 'admin' | 'user';
  status?: 'active' | 'pending' | 'disabled';
}

/**
 * Answer of register/login. It also carries `token` (for scripts and tools using Bearer), which
 * the browser UI deliberately leaves out: it authenticates with the HttpOnly session cookie.
 */
export interface AuthResponse {
  user: User;
}

export interface Agent {
  id: string;
  name: string;
  provider?: string;
  model?: string;
  /** `#rrggbb`, when the agent has a colour (settings or admin UI). */
  colour?: string;
}

export interface Thread {
  id: string;
  title: string;
  owner_id: string;
  agents: string[];
  created_at: string;
  last_seq: number;
  /** This user archived it (hidden from the main list) or pinned it (listed first). */
  archived?: boolean;
  pinned?: boolean;
}

/** `PATCH /api/threads/{id}`: title, agents and owner are the owner's; archive and pin each member's own. */
export interface ThreadPatch {
  title?: string;
  agents?: string[];
  owner_id?: string;
  archived?: boolean;
  pinned?: boolean;
}

export type Author = AuthorView;

export type Message = MessageView & {
  /** Set on placeholders built locally from an ack; replaced by the server's copy. */
  local?: boolean;
};

export type SendState = 'sending' | 'queued' | 'failed';

/** A message this user sent that the server has not yet acknowledged as persisted. */
export interface PendingSend {
  client_id: string;
  thread: string;
  body: string;
  agent?: string;
  /** Several agents answering at once. */
  agents?: string[];
  /** The message is a debate's topic. */
  debate?: DebateAsk;
  created_at: string;
  state: SendState;
  error?: string;
}

export interface LiveStream {
  stream_id: string;
  thread: string;
  /** Who answers, and with which model (`stream_start`). */
  agent: { id: string; name: string; model?: string };
  text: string;
  /** Length of `text` in Unicode code points (the unit of `offset`). */
  len: number;
  /** The model's reasoning so far (`stream_reasoning`), shown folded; and its length. */
  reasoning?: string;
  reasoningLen?: number;
  /** While a failed try waits to be retried: when the retry starts (ms since the epoch). */
  retryUntil?: number;
  /** A debate stream's debate, round and part (`stream_start`). */
  debate_id?: string;
  round?: number;
  role?: DebateRole;
  /** A new version of the answer with this id (`stream_start`). */
  version_of?: string;
  /** When this page saw it start (ms since the epoch). */
  startedAt: number;
}

export interface ApiErrorBody {
  error?: { code?: string; message?: string; fields?: Record<string, string> };
}
