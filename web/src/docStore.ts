// The documents of the threads this page shows (issue #19, docs/documents.md): each thread's list
// (`GET .../documents`, then kept live by `document` frames), this page's uploads with their
// progress and refusals, deletion, and the passage the document viewer shows. The chat store
// (chat.ts) owns one and feeds it the frames.
import { ApiError, api, errorText, uploadFile } from './api';
import type { Citation, DocumentView, ServerFrame } from './contract';
import { t } from './i18n';

export type DocumentFrame = Extract<ServerFrame, { type: 'document' }>;

/** A file this page is sending, or one the server refused (shown until dismissed). */
export interface Upload {
  key: number;
  thread: string;
  name: string;
  sent: number;
  total: number;
  /** Why the server refused it, in the reader's language. */
  error?: string;
}

/** What the viewer shows: a document, at a cited passage (`ord`, `page`) or from its start. */
export interface Viewing {
  thread: string;
  document_id: string;
  name: string;
  /** The cited passage's `ord` and page, and the citation's number. */
  ord?: number;
  page?: number;
  n?: number;
}

/** How far along a document is: a frame or a list never takes it back to an earlier stage. */
const STAGE_RANK: Record<string, number> = { queued: 0, extracting: 1, indexed: 2, failed: 2 };
const rank = (d: DocumentView) => STAGE_RANK[d.stage] ?? 0;

const docsPath = (thread: string) => `/api/threads/${encodeURIComponent(thread)}/documents`;

/** The route of a document's file as uploaded (`Content-Disposition: attachment`). */
export function fileUrl(thread: string, doc: string): string {
  return `${docsPath(thread)}/${encodeURIComponent(doc)}/file`;
}

/** The sentence for a refused upload: the three limits of the contract by name, else the reason. */
export function refusalText(e: unknown, name: string): string {
  const code = e instanceof ApiError ? e.code : '';
  if (code === 'file_too_large' || code === 'too_large' || code === 'http_413') return t('docs.tooLarge', { name });
  if (code === 'unsupported_type') return t('docs.unsupported', { name });
  if (code === 'quota_exceeded') return t('docs.quota', { name });
  return t('docs.uploadFailed', { name, error: errorText(e) });
}

export class DocumentShelf {
  /** Each thread's documents, oldest first, once loaded. */
  readonly lists = new Map<string, DocumentView[]>();
  /** A thread's list that could not be loaded: why. */
  readonly loadErrors = new Map<string, string>();
  uploads: Upload[] = [];
  viewing: Viewing | null = null;
  /** Deleted documents: a list fetched before the deletion must not bring them back. */
  private readonly gone = new Set<string>();
  private uploadSeq = 0;

  constructor(private readonly emit: () => void) {}

  /** Fetches a thread's list (when it opens, and after a reconnect: frames are not replayed). */
  async load(thread: string): Promise<void> {
    try {
      const r = await api<{ documents: DocumentView[] }>('GET', docsPath(thread));
      const fresh = (Array.isArray(r?.documents) ? r.documents : []).filter((d) => !this.gone.has(d.id));
      const known = new Map((this.lists.get(thread) ?? []).map((d) => [d.id, d]));
      // A frame newer than the list's snapshot wins.
      this.lists.set(
        thread,
        fresh.map((d) => {
          const k = known.get(d.id);
          return k && rank(k) > rank(d) ? k : d;
        }),
      );
      this.loadErrors.delete(thread);
    } catch (e) {
      this.loadErrors.set(thread, errorText(e));
    }
    this.emit();
  }

  /** A `document` frame: a document appeared, moved on, or was deleted. */
  apply(f: DocumentFrame): void {
    const doc = f.document;
    if (f.deleted) {
      this.gone.add(doc.id);
      this.drop(f.thread, doc.id);
      return;
    }
    if (!this.gone.has(doc.id)) this.put(f.thread, doc);
  }

  /** Uploads `file` to `thread`; a refusal stays on screen as an upload with an error. */
  async upload(thread: string, file: File): Promise<void> {
    const item: Upload = { key: ++this.uploadSeq, thread, name: file.name, sent: 0, total: file.size };
    this.uploads = [...this.uploads, item];
    this.emit();
    try {
      const doc = await uploadFile<DocumentView>(docsPath(thread), file, (sent, total) => {
        item.sent = sent;
        item.total = total;
        this.emit();
      });
      this.uploads = this.uploads.filter((u) => u !== item);
      if (doc?.id) this.put(thread, doc);
    } catch (e) {
      this.uploads = this.uploads.map((u) => (u === item ? { ...u, error: refusalText(e, file.name) } : u));
    }
    this.emit();
  }

  dismissUpload(key: number): void {
    this.uploads = this.uploads.filter((u) => u.key !== key);
    this.emit();
  }

  /** Deletes a document (its uploader or the thread's owner). */
  async remove(thread: string, id: string): Promise<void> {
    await api<void>('DELETE', `${docsPath(thread)}/${encodeURIComponent(id)}`);
    this.gone.add(id);
    this.drop(thread, id);
  }

  /** Opens the viewer at a citation's passage. */
  openCitation(thread: string, c: Citation): void {
    this.viewing = { thread, document_id: c.document_id, name: c.name, ord: c.ord, page: c.page ?? undefined, n: c.n };
    this.emit();
  }

  /** Opens the viewer at a document's start. */
  openDocument(thread: string, d: DocumentView): void {
    this.viewing = { thread, document_id: d.id, name: d.name };
    this.emit();
  }

  closeViewer(): void {
    this.viewing = null;
    this.emit();
  }

  /** Forgets a thread that is gone for this user. */
  forget(thread: string): void {
    this.lists.delete(thread);
    this.loadErrors.delete(thread);
    this.uploads = this.uploads.filter((u) => u.thread !== thread);
    if (this.viewing?.thread === thread) this.viewing = null;
  }

  private put(thread: string, doc: DocumentView): void {
    const list = this.lists.get(thread) ?? [];
    const i = list.findIndex((d) => d.id === doc.id);
    if (i < 0) this.lists.set(thread, [...list, doc]);
    else if (rank(doc) >= rank(list[i])) this.lists.set(thread, list.map((d, j) => (j === i ? doc : d)));
    this.emit();
  }

  private drop(thread: string, id: string): void {
    const list = this.lists.get(thread);
    if (list) this.lists.set(thread, list.filter((d) => d.id !== id));
    if (this.viewing?.document_id === id) this.viewing = null;
    this.emit();
  }
}
