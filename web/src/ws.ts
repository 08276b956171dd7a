// WebSocket client: one connection, exponential backoff with full jitter, app-level pings.
import type { ServerFrame } from './contract';

export const BACKOFF_BASE_MS = 250;
export const BACKOFF_CAP_MS = 10_000;
export const PING_INTERVAL_MS = 25_000;

/** Full jitter: random(0, min(cap, base * 2^attempt)). */
export function backoffDelay(attempt: number, rand: () => number = Math.random): number {
  const ceiling = Math.min(BACKOFF_CAP_MS, BACKOFF_BASE_MS * 2 ** Math.min(attempt, 16));
  return Math.floor(rand() * ceiling);
}

export type SocketPhase = 'connecting' | 'open' | 'waiting' | 'stopped';

export interface SocketHandlers {
  /** Every server frame (an object with a string `type`, typed by the generated contract). */
  frame(f: ServerFrame): void;
  /** Phase or countdown changed. */
  change(): void;
  /** Closed with 4401: the session is no longer valid. */
  unauthorized(): void;
}

/**
 * The WebSocket endpoint of this origin. No credential in the URL: the browser sends the HttpOnly
 * session cookie with the upgrade request (and the server checks its Origin).
 */
export function wsUrl(loc: Location = location): string {
  const scheme = loc.protocol === 'https:' ? 'wss:' : 'ws:';
  return `${scheme}//${loc.host}/ws`;
}

export class Socket {
  phase: SocketPhase = 'stopped';
  /** When the next attempt starts (ms since epoch) while `phase === 'waiting'`. */
  retryAt: number | null = null;
  /** True once `welcome` arrived on the current connection. */
  welcomed = false;
  lastClose: { code: number; reason: string } | null = null;

  private ws: WebSocket | null = null;
  private attempt = 0;
  private retryTimer: ReturnType<typeof setTimeout> | null = null;
  private pingTimer: ReturnType<typeof setInterval> | null = null;
  private nonce = 0;
  private unanswered = 0;

  constructor(
    private url: () => string,
    private h: SocketHandlers,
  ) {}

  start(): void {
    if (this.phase !== 'stopped') return;
    this.connect();
  }

  stop(): void {
    this.phase = 'stopped';
    this.clearRetry();
    this.clearPing();
    const ws = this.ws;
    this.ws = null;
    if (ws) {
      this.detach(ws);
      try {
        ws.close(1000, 'bye');
      } catch {
        /* already closed */
      }
    }
    this.h.change();
  }

  /** Skip the remaining wait (the "Retry now" button, `online` events, tab shown again). */
  retryNow(): void {
    if (this.phase !== 'waiting') return;
    this.clearRetry();
    this.connect();
  }

  /** Sends a frame if the socket is open and welcomed; returns whether it was sent. */
  send(frame: unknown): boolean {
    const ws = this.ws;
    if (!ws || ws.readyState !== WebSocket.OPEN || !this.welcomed) return false;
    try {
      ws.send(JSON.stringify(frame));
      return true;
    } catch {
      return false;
    }
  }

  private connect(): void {
    this.retryAt = null;
    this.welcomed = false;
    this.phase = 'connecting';
    this.h.change();
    let ws: WebSocket;
    try {
      ws = new WebSocket(this.url());
    } catch {
      this.scheduleRetry(false);
      return;
    }
    this.ws = ws;
    ws.onopen = () => {
      if (this.ws !== ws) return;
      this.phase = 'open';
      this.startPing();
      this.h.change();
    };
    ws.onmessage = (ev: MessageEvent) => {
      if (this.ws !== ws || typeof ev.data !== 'string') return;
      let f: unknown;
      try {
        f = JSON.parse(ev.data);
      } catch {
        return;
      }
      if (!f || typeof f !== 'object' || typeof (f as { type?: unknown }).type !== 'string') return;
      // The server builds every frame from the contract's types (src/contract.rs).
      const frame = f as ServerFrame;
      if (frame.type === 'welcome') {
        this.attempt = 0;
        this.welcomed = true;
        this.h.change();
      } else if (frame.type === 'pong') {
        this.unanswered = 0;
      }
      this.h.frame(frame);
    };
    ws.onclose = (ev: CloseEvent) => {
      if (this.ws !== ws) return;
      this.ws = null;
      this.lastClose = { code: ev.code, reason: ev.reason };
      const wasWelcomed = this.welcomed;
      this.welcomed = false;
      this.clearPing();
      if (ev.code === 4401) {
        this.phase = 'stopped';
        this.h.change();
        this.h.unauthorized();
        return;
      }
      // 1012: the instance is restarting/draining; reconnect at once (once per good connection).
      this.scheduleRetry(ev.code === 1012 && wasWelcomed);
    };
    ws.onerror = () => {
      /* onclose follows and decides */
    };
  }

  private scheduleRetry(immediate: boolean): void {
    if (this.phase === 'stopped') return;
    this.clearRetry();
    const delay = immediate ? 0 : backoffDelay(this.attempt);
    if (!immediate) this.attempt += 1;
    this.phase = 'waiting';
    this.retryAt = Date.now() + delay;
    this.retryTimer = setTimeout(() => {
      this.retryTimer = null;
      if (this.phase === 'waiting') this.connect();
    }, delay);
    this.h.change();
  }

  private startPing(): void {
    this.clearPing();
    this.unanswered = 0;
    this.pingTimer = setInterval(() => {
      const ws = this.ws;
      if (!ws || ws.readyState !== WebSocket.OPEN) return;
      if (this.unanswered >= 2) {
        // Two pings without a pong: the link is dead even if the browser has not noticed yet.
        this.detach(ws);
        this.ws = null;
        try {
          ws.close(4000, 'ping timeout');
        } catch {
          /* ignore */
        }
        this.welcomed = false;
        this.clearPing();
        this.scheduleRetry(false);
        return;
      }
      this.nonce += 1;
      this.unanswered += 1;
      try {
        ws.send(JSON.stringify({ type: 'ping', nonce: this.nonce }));
      } catch {
        /* onclose will follow */
      }
    }, PING_INTERVAL_MS);
  }

  private detach(ws: WebSocket): void {
    ws.onopen = null;
    ws.onmessage = null;
    ws.onclose = null;
    ws.onerror = null;
  }

  private clearPing(): void {
    if (this.pingTimer !== null) clearInterval(this.pingTimer);
    this.pingTimer = null;
  }

  private clearRetry(): void {
    if (this.retryTimer !== null) clearTimeout(this.retryTimer);
    this.retryTimer = null;
    this.retryAt = null;
  }
}
