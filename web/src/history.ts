// The messages of the threads this page holds (docs/protocol.md, history pages): one view per
// thread with the messages the server delivered, pages of history over HTTP (latest, older,
// the gap after a reconnect), merged by seq. The chat store (chat.ts) builds on it and feeds it
// the messages that arrive over the WebSocket.
import { ApiError, api, errorText } from './api';
import { ThreadDirectory } from './directory';
import { t } from './i18n';
import { isMessage, maxServerSeq, mergeMessages } from './logic';
import type { Message } from './types';

/** Messages per history page. */
export const PAGE = 50;
const GAP_PAGE = 500;

export interface ThreadView {
  messages: Message[];
  /** Highest seq the server delivered to us (HTTP or `message` frames): the `after_seq` to resume from. */
  lastSeq: number;
  loaded: boolean;
  loading: boolean;
  error: string | null;
  /** True when the oldest message of the thread is in `messages`. */
  complete: boolean;
  loadingOlder: boolean;
}

export abstract class ThreadHistory extends ThreadDirectory {
  views = new Map<string, ThreadView>();

  /** Messages the server stored: the sends they confirm leave the outbox. */
  protected abstract delivered(msgs: Message[]): void;

  protected view(id: string): ThreadView {
    let v = this.views.get(id);
    if (!v) {
      v = { messages: [], lastSeq: 0, loaded: false, loading: false, error: null, complete: false, loadingOlder: false };
      this.views.set(id, v);
    }
    return v;
  }

  protected async fetchMessages(id: string, query: string): Promise<Message[]> {
    const r = await api<{ messages: Message[] }>(
      'GET',
      `/api/threads/${encodeURIComponent(id)}/messages?${query}`,
    );
    return Array.isArray(r?.messages) ? r.messages.filter(isMessage) : [];
  }

  /** Latest page of history. `replace` drops what we had (after a `resync`). */
  async loadHistory(id: string, replace = false): Promise<void> {
    const v = this.view(id);
    v.loading = true;
    v.error = null;
    this.emit();
    try {
      const msgs = await this.fetchMessages(id, `limit=${PAGE}`);
      if (replace) {
        const top = maxServerSeq(msgs);
        v.messages = v.messages.filter((m) => m.seq > top);
      }
      this.absorb(id, msgs);
      v.loaded = true;
      v.complete = msgs.length < PAGE || (msgs.length > 0 && msgs[0].seq <= 1);
    } catch (e) {
      // Deleted, or this user removed, while the page was not watching it.
      if (e instanceof ApiError && e.status === 404) return this.lost(id);
      v.error = t('msgs.loadFailed', { error: errorText(e) });
    } finally {
      v.loading = false;
      this.emit();
    }
  }

  async loadOlder(id: string): Promise<void> {
    const v = this.view(id);
    const first = v.messages.find((m) => !m.local);
    if (!first || v.loadingOlder || v.complete) return;
    v.loadingOlder = true;
    this.emit();
    try {
      const msgs = await this.fetchMessages(id, `before_seq=${first.seq}&limit=${PAGE}`);
      v.messages = mergeMessages(v.messages, msgs);
      if (msgs.length < PAGE || (msgs.length > 0 && msgs[0].seq <= 1)) v.complete = true;
    } catch (e) {
      this.notify(id, t('msgs.olderFailed', { error: errorText(e) }));
    } finally {
      v.loadingOlder = false;
      this.emit();
    }
  }

  /** Fetches everything after `lastSeq` over HTTP (used when a subscription did not replay). */
  protected async fillGap(id: string, head: number): Promise<void> {
    const v = this.view(id);
    try {
      for (let i = 0; i < 10 && v.lastSeq < head; i++) {
        const msgs = await this.fetchMessages(id, `after_seq=${v.lastSeq}&limit=${GAP_PAGE}`);
        if (msgs.length === 0) return;
        this.absorb(id, msgs);
        this.emit();
      }
      if (v.lastSeq < head) await this.loadHistory(id, true);
    } catch {
      /* the next reconnect or resync tries again */
    }
  }

  /** Adds server-delivered messages to a thread (and lets the outbox drop what they confirm). */
  protected absorb(threadId: string, msgs: Message[]): void {
    if (msgs.length === 0) return;
    const v = this.view(threadId);
    v.messages = mergeMessages(v.messages, msgs);
    v.lastSeq = maxServerSeq(msgs, v.lastSeq);
    this.delivered(msgs);
    const t = this.threads.find((x) => x.id === threadId);
    if (t && v.lastSeq > (t.last_seq ?? 0)) {
      t.last_seq = v.lastSeq;
      if (this.threads[0] !== t) this.threads = [t, ...this.threads.filter((x) => x !== t)];
    }
  }
}
