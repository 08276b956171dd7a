// The threads this user can see and their lifecycle (docs/protocol.md, 5.4): the main list (pinned
// first), the archived list, member lists with roles; rename, archive, pin, agents, hand-over,
// delete, add / remove / leave; and the frames that keep them live on every screen
// (`thread_updated`, `members_updated`, `removed`). The chat store (chat.ts) builds on it.
import { api } from './api';
import type { MemberView, ServerFrame } from './contract';
import { t } from './i18n';
import { applyUpdate, placeThread } from './threadList';
import type { Thread, ThreadPatch, User } from './types';

type DirectoryFrame = Extract<ServerFrame, { type: 'thread_updated' | 'members_updated' | 'removed' }>;

const path = (id: string) => `/api/threads/${encodeURIComponent(id)}`;

export abstract class ThreadDirectory {
  threads: Thread[] = [];
  threadsLoaded = false;
  threadsError: string | null = null;
  /** Threads this user archived (`?archived=true`), fetched when that section is first opened. */
  archived: Thread[] | null = null;
  /** Member lists with roles, by thread (`GET .../members`, then `members_updated` frames). */
  members = new Map<string, MemberView[]>();
  /** Threads this page is deleting or leaving: their `removed` frame needs no notice. */
  private leaving = new Set<string>();

  abstract readonly me: User;
  protected abstract emit(): void;
  /** Drops what the page holds for a thread that is gone (its messages, the open view). */
  protected abstract forget(id: string): void;
  abstract notify(thread: string | null, text: string): void;

  async addMember(threadId: string, username: string): Promise<void> {
    await api<void>('POST', `${path(threadId)}/members`, { username });
    await this.loadMembers(threadId);
  }

  async loadArchived(): Promise<void> {
    const r = await api<{ threads: Thread[] }>('GET', '/api/threads?archived=true');
    this.archived = Array.isArray(r?.threads) ? r.threads : [];
    this.emit();
  }

  /** Renames, archives, pins, changes agents or hands over; the answer takes the thread's place. */
  async patchThread(id: string, patch: ThreadPatch): Promise<Thread> {
    const th = await api<Thread>('PATCH', path(id), patch);
    const lists = placeThread(this.threads, this.archived, th);
    this.threads = lists.threads;
    this.archived = lists.archived;
    this.emit();
    if (patch.owner_id !== undefined) await this.loadMembers(id);
    return th;
  }

  async deleteThread(id: string): Promise<void> {
    this.leaving.add(id);
    await api<void>('DELETE', path(id));
    this.dropThread(id);
  }

  async loadMembers(id: string): Promise<void> {
    const r = await api<{ members: MemberView[] }>('GET', `${path(id)}/members`);
    this.members.set(id, Array.isArray(r?.members) ? r.members : []);
    this.emit();
  }

  /** The owner removes a member; a member removes themself (leaves). */
  async removeMember(id: string, userId: string): Promise<void> {
    const self = userId === this.me.id;
    if (self) this.leaving.add(id);
    await api<void>('DELETE', `${path(id)}/members/${encodeURIComponent(userId)}`);
    if (self) this.dropThread(id);
    else await this.loadMembers(id);
  }

  /** A thread from the URL that is not in the main list: archived (kept open) or not ours (closed). */
  protected async confirmArchived(id: string): Promise<void> {
    try {
      const th = await api<Thread>('GET', path(id));
      if (th.archived) {
        this.archived = [th, ...(this.archived ?? []).filter((x) => x.id !== id)];
        return;
      }
    } catch {
      /* 404: not a member, or gone */
    }
    this.forget(id);
  }

  /** Applies a lifecycle frame: of the open thread (in order with its messages), or of any
   *  other thread of this user's lists (`thread_updated`, `members_updated`, `removed`). */
  protected onDirectoryFrame(f: DirectoryFrame): void {
    switch (f.type) {
      case 'thread_updated':
        this.threads = applyUpdate(this.threads, f);
        if (this.archived) this.archived = applyUpdate(this.archived, f);
        break;
      case 'members_updated':
        this.members.set(f.thread, f.members);
        if (!this.listed(f.thread) && f.members.some((m) => m.user_id === this.me.id)) void this.adopt(f.thread);
        break;
      case 'removed': {
        const title = [...this.threads, ...(this.archived ?? [])].find((x) => x.id === f.thread)?.title;
        if (!this.leaving.delete(f.thread) && title !== undefined) this.notify(null, t(`removed.${f.reason}`, { title }));
        this.dropThread(f.thread);
        break;
      }
    }
  }

  private listed(id: string): boolean {
    return this.threads.some((x) => x.id === id) || (this.archived ?? []).some((x) => x.id === id);
  }

  /** Someone added this user to a thread: it takes its place in the lists, live. */
  private async adopt(id: string): Promise<void> {
    try {
      const th = await api<Thread>('GET', path(id));
      if (this.listed(id)) return;
      const lists = placeThread(this.threads, this.archived, th);
      this.threads = lists.threads;
      this.archived = lists.archived;
      this.emit();
    } catch {
      /* 404: removed again meanwhile */
    }
  }

  /** A thread of the lists answered 404: gone for this user, though no frame said so. */
  protected lost(id: string): void {
    const title = [...this.threads, ...(this.archived ?? [])].find((x) => x.id === id)?.title;
    if (title !== undefined) this.notify(null, t('removed.gone', { title }));
    this.dropThread(id);
  }

  /** The thread is gone for this user (deleted, removed, left): out of every list and view. */
  protected dropThread(id: string): void {
    this.threads = this.threads.filter((x) => x.id !== id);
    if (this.archived) this.archived = this.archived.filter((x) => x.id !== id);
    this.members.delete(id);
    this.forget(id);
    this.emit();
  }
}
