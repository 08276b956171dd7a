// The chat store: the open thread, live agent streams, the outbox, notices, and the WebSocket
// protocol; the thread lists are in directory.ts, the messages' history in history.ts, the
// threads' documents in docStore.ts.
import { budgetText } from './agentText';
import { api, errorText } from './api';
import { type Ask, frameFor } from './ask';
import { DocumentShelf } from './docStore';
import { t } from './i18n';
import { cpLen, mergeMessages, newClientId, parseOutbox } from './logic';
import type { ErrorCode, ServerFrame } from './contract';
import { type FrameOf, type StreamFrame, applyStreamFrame, noteDebateTurns } from './streams';
import type { Agent, LiveStream, Message, PendingSend, Thread, User } from './types';
import { PAGE, ThreadHistory } from './history';
import { setHash, threadFromHash } from './route';
import { readOutbox, writeOutbox } from './outbox';
import { Socket, wsUrl } from './ws';
import { Versions } from './versions';

export const MAX_BODY_CHARS = 16384;
const RETRYABLE = new Set<ErrorCode>(['rate_limited', 'unavailable', 'internal']);

export type ConnIndicator = 'connected' | 'reconnecting' | 'degraded';

export interface Notice {
  id: number;
  thread: string | null;
  text: string;
}


export class Chat extends ThreadHistory {
  agents: Agent[] = [];
  currentId: string | null = null;
  /** Unacknowledged sends (also in localStorage). */
  outbox: PendingSend[] = [];
  /** Sends the server refused; shown until discarded or retried. */
  failed: PendingSend[] = [];
  streams = new Map<string, LiveStream>();
  /** Debates whose last turn ended and whose next has not started yet (still stoppable). */
  betweenTurns = new Set<string>();
  /** Stored answers that were streamed on this page: message id -> stream id (see messages.tsx). */
  answerStreams = new Map<string, string>();
  notices: Notice[] = [];
  /** A search hit to show: the open thread scrolls to this message once it is rendered. */
  focus: { thread: string; seq: number } | null = null;
  db: 'up' | 'down' = 'up';
  readonly socket: Socket;
  /** Which version of each answer shows, and regenerate requests awaiting their ack. */
  readonly versions = new Versions((f) => this.socket.send(f), () => this.emit());
  /** The threads' documents, uploads and the document viewer. */
  readonly documents = new DocumentShelf(() => this.emit());
  onUnauthorized: () => void = () => {};
  /** Bumped by every `memory` frame (this user's memory items changed): the Memory panel reloads. */
  memoryVersion = 0;
  /** The socket authenticated as someone else (the cookie changed, e.g. a login in another tab). */
  onUserChanged: () => void = () => {};

  private listeners = new Set<() => void>();
  private subscribedTo: string | null = null;
  private subscribedWithAfter = false;
  private welcomes = 0;
  private retryTimers = new Map<string, ReturnType<typeof setTimeout>>();
  private noticeSeq = 0;
  private lastSnapshotRequest = 0;
  private destroyed = false;
  /** Thread opened from the URL, until the thread list confirms we may see it. */
  private unconfirmedId: string | null = null;
  private readonly outboxKey: string;

  constructor(readonly me: User) {
    super();
    this.outboxKey = `emergence.outbox.${me.id}`;
    this.socket = new Socket(() => wsUrl(), {
      frame: (f) => this.onFrame(f),
      change: () => this.emit(),
      unauthorized: () => this.onUnauthorized(),
    });
  }

  // ---- lifecycle and subscriptions -------------------------------------------------------------

  start(): void {
    this.outbox = parseOutbox(readOutbox(this.outboxKey));
    this.socket.start();
    const fromUrl = threadFromHash(location.hash);
    if (fromUrl) {
      this.unconfirmedId = fromUrl;
      this.openThread(fromUrl);
    }
    void this.loadThreads();
    void this.loadAgents();
    window.addEventListener('online', this.wake);
    document.addEventListener('visibilitychange', this.wake);
  }

  destroy(): void {
    this.destroyed = true;
    this.socket.stop();
    for (const t of this.retryTimers.values()) clearTimeout(t);
    this.retryTimers.clear();
    window.removeEventListener('online', this.wake);
    document.removeEventListener('visibilitychange', this.wake);
    this.listeners.clear();
  }

  subscribe(fn: () => void): () => void {
    this.listeners.add(fn);
    return () => this.listeners.delete(fn);
  }

  protected emit(): void {
    for (const fn of this.listeners) fn();
  }

  private wake = (): void => {
    if (document.visibilityState !== 'hidden') this.socket.retryNow();
  };

  indicator(): ConnIndicator {
    if (this.socket.phase === 'open' && this.socket.welcomed) return this.db === 'down' ? 'degraded' : 'connected';
    return 'reconnecting';
  }

  // ---- HTTP ------------------------------------------------------------------------------------

  async loadThreads(): Promise<void> {
    try {
      const r = await api<{ threads: Thread[] }>('GET', '/api/threads');
      if (this.destroyed) return;
      this.threads = Array.isArray(r?.threads) ? r.threads : [];
      this.threadsError = null;
      // A thread from the URL that we are not a member of (or that is gone): close it.
      const fromUrl = this.unconfirmedId;
      this.unconfirmedId = null;
      if (fromUrl && this.currentId === fromUrl && !this.threads.some((t) => t.id === fromUrl)) await this.confirmArchived(fromUrl);
    } catch (e) {
      this.threadsError = errorText(e);
    }
    this.threadsLoaded = true;
    this.emit();
  }

  async loadAgents(): Promise<void> {
    try {
      const r = await api<{ agents: Agent[] }>('GET', '/api/agents');
      if (this.destroyed) return;
      this.agents = Array.isArray(r?.agents) ? r.agents : [];
      this.emit();
    } catch {
      /* agents are optional for the UI */
    }
  }

  async createThread(title: string, agents: string[]): Promise<Thread> {
    const body: { title: string; agents?: string[] } = { title };
    if (agents.length > 0) body.agents = agents;
    const t = await api<Thread>('POST', '/api/threads', body);
    this.threads = [t, ...this.threads.filter((x) => x.id !== t.id)];
    this.openThread(t.id);
    return t;
  }

  /** Opens a thread at one message (a search hit), with the history around it. */
  async openAt(id: string, seq: number): Promise<void> {
    this.focus = { thread: id, seq };
    if (![...this.threads, ...(this.archived ?? [])].some((x) => x.id === id)) {
      // A hit in a thread the lists do not hold yet (an archived one): fetch it to show it.
      const th = await api<Thread>('GET', `/api/threads/${encodeURIComponent(id)}`);
      if (th.archived) this.archived = [th, ...(this.archived ?? [])];
      else this.threads = [th, ...this.threads];
    }
    if (!this.views.get(id)?.messages.some((m) => m.seq === seq && !m.local)) {
      const msgs = await this.fetchMessages(id, `around_seq=${seq}&limit=${PAGE}`);
      // The page replaces what we had; subscribing with its last seq replays what is newer.
      if (this.currentId === id) this.closeThread();
      this.views.delete(id);
      const v = this.view(id);
      this.absorb(id, msgs);
      v.loaded = true;
      v.complete = msgs.length === 0 || msgs[0].seq <= 1;
    }
    this.openThread(id);
    this.emit();
  }

  /** This page forgets a thread that is gone for this user. */
  protected forget(id: string): void {
    this.views.delete(id);
    this.documents.forget(id);
    if (this.currentId === id) this.closeThread();
  }

  // ---- opening threads -------------------------------------------------------------------------

  openThread(id: string): void {
    if (this.currentId === id) return;
    if (this.subscribedTo && this.subscribedTo !== id) {
      this.socket.send({ type: 'unsubscribe', thread: this.subscribedTo });
      this.subscribedTo = null;
    }
    for (const [sid, s] of this.streams) if (s.thread !== id) this.streams.delete(sid);
    this.currentId = id;
    setHash(`#/t/${encodeURIComponent(id)}`);
    const v = this.view(id);
    this.emit();
    if (!v.loaded) {
      void this.loadHistory(id).then(() => {
        if (this.currentId === id) this.subscribeCurrent();
      });
    } else {
      this.subscribeCurrent();
    }
  }

  closeThread(): void {
    if (this.subscribedTo) this.socket.send({ type: 'unsubscribe', thread: this.subscribedTo });
    this.subscribedTo = null;
    this.streams.clear();
    this.currentId = null;
    setHash('');
    this.emit();
  }

  private subscribeCurrent(): void {
    const id = this.currentId;
    if (!id || !this.socket.welcomed) return;
    const v = this.view(id);
    if (v.loading && !v.loaded) return; // subscribes once the first page of history is in
    const frame: { type: 'subscribe'; thread: string; after_seq?: number } = { type: 'subscribe', thread: id };
    if (v.lastSeq > 0) frame.after_seq = v.lastSeq;
    if (this.socket.send(frame)) {
      this.subscribedTo = id;
      this.subscribedWithAfter = frame.after_seq !== undefined;
    }
  }

  // ---- sending ---------------------------------------------------------------------------------

  /** Queues a message (or a debate's topic) for the open thread; returns an error text when the
   * body is not valid. */
  send(rawBody: string, ask: Ask = {}): string | null {
    const thread = this.currentId;
    if (!thread) return t('composer.noThread');
    const body = rawBody.trim();
    if (!body) return t('composer.empty');
    const n = cpLen(body);
    if (n > MAX_BODY_CHARS) return t('composer.tooLong', { n, max: MAX_BODY_CHARS });
    const item: PendingSend = {
      client_id: newClientId(),
      thread,
      body,
      created_at: new Date().toISOString(),
      state: 'sending',
    };
    Object.assign(item, ask);
    this.outbox.push(item);
    this.saveOutbox();
    this.transmit(item);
    this.emit();
    return null;
  }

  private transmit(p: PendingSend): void {
    this.socket.send(frameFor(p)); // when not connected, the welcome handler sends it
  }

  private flushOutbox(): void {
    for (const t of this.retryTimers.values()) clearTimeout(t);
    this.retryTimers.clear();
    for (const p of this.outbox) this.transmit(p);
  }

  retryFailed(clientId: string): void {
    const p = this.failed.find((x) => x.client_id === clientId);
    if (!p) return;
    this.failed = this.failed.filter((x) => x !== p);
    const again: PendingSend = { ...p, state: 'sending', error: undefined };
    this.outbox.push(again);
    this.saveOutbox();
    this.transmit(again);
    this.emit();
  }

  discardFailed(clientId: string): void {
    this.failed = this.failed.filter((x) => x.client_id !== clientId);
    this.emit();
  }

  cancelStream(streamId: string): void {
    this.socket.send({ type: 'cancel', stream_id: streamId });
  }

  /** Stops a whole debate: its running turn ends `cancelled`, no further turn runs. */
  cancelDebate(debateId: string): void {
    this.socket.send({ type: 'cancel', debate_id: debateId });
  }

  protected delivered(msgs: Message[]): void {
    let outboxChanged = false;
    for (const m of msgs) {
      if (m.author.kind === 'user' && m.author.id === this.me.id && m.client_id) {
        if (this.dropPending(m.client_id)) outboxChanged = true;
        this.failed = this.failed.filter((p) => p.client_id !== m.client_id);
      }
    }
    if (outboxChanged) this.saveOutbox();
  }

  private dropPending(clientId: string): boolean {
    const before = this.outbox.length;
    this.outbox = this.outbox.filter((p) => p.client_id !== clientId);
    const t = this.retryTimers.get(clientId);
    if (t !== undefined) {
      clearTimeout(t);
      this.retryTimers.delete(clientId);
    }
    return this.outbox.length !== before;
  }

  private saveOutbox(): void {
    writeOutbox(this.outboxKey, this.outbox);
  }

  notify(thread: string | null, text: string): void {
    this.notices = [...this.notices.slice(-4), { id: ++this.noticeSeq, thread, text }];
    this.emit();
  }

  dismissNotice(id: number): void {
    this.notices = this.notices.filter((n) => n.id !== id);
    this.emit();
  }

  // ---- frames ----------------------------------------------------------------------------------

  private onFrame(f: ServerFrame): void {
    switch (f.type) {
      case 'welcome': {
        // The cookie is shared by every tab: after a login as someone else elsewhere, a reconnect
        // authenticates as that user. Never resend this user's outbox under another identity.
        if (f.user.id !== this.me.id) {
          this.socket.stop();
          this.onUserChanged();
          return;
        }
        this.db = f.db === 'down' ? 'down' : 'up';
        this.subscribedTo = null;
        // Running streams come back as stream_start + stream_snapshot after resubscribing.
        this.streams.clear();
        this.welcomes += 1;
        this.subscribeCurrent();
        this.flushOutbox();
        this.versions.resend();
        if (this.welcomes > 1) void this.loadThreads();
        // `document` frames are not replayed: what changed while away is read over HTTP.
        if (this.welcomes > 1 && this.currentId) void this.documents.load(this.currentId);
        break;
      }
      case 'status':
        if (f.db === 'down' || f.db === 'up') {
          const cameBack = this.db === 'down' && f.db === 'up';
          this.db = f.db;
          if (cameBack) this.onDatabaseBack();
        }
        break;
      case 'subscribed':
        this.onSubscribed(f);
        break;
      case 'message':
        this.onMessage(f);
        break;
      case 'ack':
        this.onAck(f);
        break;
      case 'error':
        this.onError(f);
        break;
      case 'thread_updated':
      case 'members_updated':
      case 'removed':
        this.onDirectoryFrame(f);
        break;
      case 'document':
        this.documents.apply(f);
        return;
      case 'memory':
        this.memoryVersion += 1;
        break;
      case 'resync':
        if (this.views.has(f.thread)) void this.loadHistory(f.thread, true);
        break;
      case 'stream_start':
      case 'stream_snapshot':
      case 'stream_chunk':
      case 'stream_reasoning':
      case 'stream_retry':
      case 'stream_end':
      case 'stream_error':
        if (f.thread === this.currentId) this.onStream(f);
        break;
      default:
        return; // pong and frames of newer servers: nothing to show
    }
    this.emit();
  }

  /** The database is reachable again: repeat queued sends (idempotent) and reload what failed. */
  private onDatabaseBack(): void {
    this.flushOutbox();
    if (this.threadsError) void this.loadThreads();
    const id = this.currentId;
    const v = id ? this.views.get(id) : undefined;
    if (id && v && (v.error || !v.loaded) && !v.loading) void this.loadHistory(id);
  }

  private onSubscribed(f: FrameOf<'subscribed'>): void {
    if (f.thread !== this.currentId) return;
    const v = this.view(f.thread);
    // Without after_seq the server replays nothing: fetch what we lack up to the head over HTTP.
    if (!this.subscribedWithAfter && v.lastSeq < f.head_seq) {
      if (v.lastSeq === 0) void this.loadHistory(f.thread);
      else void this.fillGap(f.thread, f.head_seq);
    }
  }

  private onMessage(f: FrameOf<'message'>): void {
    const { type: _t, thread, ...message } = f;
    this.absorb(thread, [{ ...message, thread_id: thread }]);
  }

  private onAck(f: FrameOf<'ack'>): void {
    const cid = f.client_id;
    if (this.versions.settle(cid)) return;
    const p = this.outbox.find((x) => x.client_id === cid);
    if (!p) return;
    if (f.status === 'queued') {
      p.state = 'queued';
      this.saveOutbox();
    } else if (f.status === 'persisted') {
      this.dropPending(cid);
      this.saveOutbox();
      const v = this.views.get(p.thread);
      if (v && f.seq !== undefined) {
        // Shown as sent right away; the server's `message` replaces this placeholder.
        const placeholder: Message = {
          id: f.message_id ?? `local-${cid}`,
          thread_id: p.thread,
          seq: f.seq,
          client_id: cid,
          author: { kind: 'user', id: this.me.id, name: this.me.username },
          body: p.body,
          created_at: new Date().toISOString(),
          local: true,
        };
        v.messages = mergeMessages(v.messages, [placeholder]);
      }
    }
  }

  private onError(f: FrameOf<'error'>): void {
    const code = f.code;
    const text = budgetText(f.code, f.resets_at) ?? (f.message || code.replace(/_/g, ' '));
    const cid = f.client_id;
    if (!cid) {
      if (code !== 'unauthorized') this.notify(this.currentId, text);
      return;
    }
    if (this.versions.refused(cid, RETRYABLE.has(code), f.retry_after_ms, () => this.notify(this.currentId, text))) return;
    const p = this.outbox.find((x) => x.client_id === cid);
    if (!p) return;
    if (RETRYABLE.has(code)) {
      const wait = f.retry_after_ms !== undefined && f.retry_after_ms >= 0 ? f.retry_after_ms : 1000;
      const old = this.retryTimers.get(cid);
      if (old !== undefined) clearTimeout(old);
      this.retryTimers.set(
        cid,
        setTimeout(() => {
          this.retryTimers.delete(cid);
          const still = this.outbox.find((x) => x.client_id === cid);
          if (still) this.transmit(still);
        }, Math.min(wait, 60_000)),
      );
      return;
    }
    this.dropPending(cid);
    this.saveOutbox();
    this.failed = [...this.failed, { ...p, state: 'failed', error: text }];
    // A spent budget is said where the user is typing, with when it resets.
    if (code === 'budget_exceeded') this.notify(p.thread, text);
  }

  private requestSnapshot(): void {
    // Resubscribing makes the server send stream_start + stream_snapshot for running streams.
    const now = Date.now();
    if (now - this.lastSnapshotRequest < 2000) return;
    this.lastSnapshotRequest = now;
    this.subscribeCurrent();
  }

  private onStream(f: StreamFrame): void {
    if (f.type === 'stream_start' && f.version_of) this.versions.showLatest(f.version_of);
    // The model that really answers may have changed (a local model found or gone): show it.
    if (f.type === 'stream_start' && f.agent.model) {
      const agent = this.agents.find((a) => a.id === f.agent.id);
      if (agent) agent.model = f.agent.model;
    }
    noteDebateTurns(this.betweenTurns, this.streams, f);
    const outcome = applyStreamFrame(this.streams, f);
    if (outcome.kind === 'gap') this.requestSnapshot();
    else if (outcome.kind === 'answer') {
      this.answerStreams.set(outcome.message.id, f.stream_id);
      const v = this.view(f.thread);
      v.messages = mergeMessages(v.messages, [{ ...outcome.message, thread_id: f.thread, local: true }]);
    } else if (outcome.kind === 'failed') this.notify(f.thread, outcome.text);
  }
}
