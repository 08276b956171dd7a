// Shapes of the public contract that the UI relies on. Wire frames, error codes and the message
// shape come from contract.ts, generated from the server's Rust types.
import type { AuthorView, MessageView } from './contract';

export interface User {
  id: string;
  username: string;
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
}

export interface Thread {
  id: string;
  title: string;
  owner_id: string;
  agents: string[];
  created_at: string;
  last_seq: number;
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
  created_at: string;
  state: SendState;
  error?: string;
}

export interface LiveStream {
  stream_id: string;
  thread: string;
  agent: { id: string; name: string };
  text: string;
  /** Length of `text` in Unicode code points (the unit of `offset`). */
  len: number;
}

export interface ApiErrorBody {
  error?: { code?: string; message?: string; fields?: Record<string, string> };
}
