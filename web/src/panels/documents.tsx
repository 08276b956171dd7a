// The open thread's documents (issue #19, docs/documents.md): the list, live through `document`
// frames (queued -> reading -> ready, or failed with the reason), this page's uploads with their
// progress and refusals, opening a document's text, downloading it, and deleting it (its uploader
// or the thread's owner). The store is docStore.ts; files come from ../attach.tsx. Part of the
// lazy tools chunk: thread.tsx loads the list and shows this once there is something to show.
import { useState } from 'preact/hooks';
import { errorText } from '../api';
import type { Chat } from '../chat';
import type { DocumentView } from '../contract';
import { type Upload, fileUrl } from '../docStore';
import { type Key, formatNumber, lang, t, tn } from '../i18n';
import type { Thread, User } from '../types';

/** `0.9 kB`, `3.4 MB` in the reader's language. */
function formatSize(bytes: number): string {
  const mb = bytes >= 1024 * 1024;
  const value = mb ? bytes / (1024 * 1024) : bytes / 1024;
  return new Intl.NumberFormat(lang(), {
    style: 'unit',
    unit: mb ? 'megabyte' : 'kilobyte',
    unitDisplay: 'short',
    maximumFractionDigits: value < 10 ? 1 : 0,
  }).format(value);
}

const STAGES = new Set(['queued', 'extracting', 'indexed', 'failed']);

function stageText(d: DocumentView): string {
  return t((STAGES.has(d.stage) ? `docs.stage.${d.stage}` : 'docs.stage.queued') as Key);
}

export function DocumentsPanel({ chat, thread, me }: { chat: Chat; thread: Thread; me: User }) {
  const docs = chat.documents.lists.get(thread.id) ?? [];
  const uploads = chat.documents.uploads.filter((u) => u.thread === thread.id);
  const loadError = chat.documents.loadErrors.get(thread.id);
  const [open, setOpen] = useState(true);
  if (docs.length === 0 && uploads.length === 0 && !loadError) return null;
  const canDelete = (d: DocumentView) => d.uploader_id === me.id || thread.owner_id === me.id;

  return (
    <section class="docs" aria-labelledby="docs-h" data-testid="documents">
      <div class="docs-head">
        <h3 id="docs-h">{t('docs.heading')}</h3>
        <span class="muted small">{tn('docs.count', docs.length)}</span>
        {docs.length > 0 && (
          <button type="button" class="link" data-testid="documents-toggle" aria-expanded={open ? 'true' : 'false'} onClick={() => setOpen(!open)}>
            {open ? t('docs.hide') : t('docs.show')}
          </button>
        )}
      </div>
      {loadError && (
        <p class="form-error" role="alert">
          {t('docs.loadFailed', { error: loadError })}{' '}
          <button type="button" class="link" onClick={() => void chat.documents.load(thread.id)}>
            {t('docs.retry')}
          </button>
        </p>
      )}
      {(open || uploads.length > 0) && (
        <ul class="doc-list">
          {open && docs.map((d) => <DocumentRow key={d.id} chat={chat} thread={thread} doc={d} canDelete={canDelete(d)} />)}
          {uploads.map((u) => (
            <UploadRow key={`u${u.key}`} chat={chat} upload={u} />
          ))}
        </ul>
      )}
    </section>
  );
}

function DocumentRow({ chat, thread, doc, canDelete }: { chat: Chat; thread: Thread; doc: DocumentView; canDelete: boolean }) {
  const [asking, setAsking] = useState(false);
  const [error, setError] = useState<string | null>(null);
  const indexed = doc.status === 'indexed';
  const remove = async () => {
    setAsking(false);
    setError(null);
    try {
      await chat.documents.remove(thread.id, doc.id);
    } catch (e) {
      setError(t('docs.deleteFailed', { name: doc.name, error: errorText(e) }));
    }
  };
  const details = [formatSize(doc.size)];
  if (indexed && doc.pages) details.push(tn('docs.pages', doc.pages));
  return (
    <li class={`doc ${doc.status}`} data-testid="document" data-name={doc.name} data-stage={doc.stage} data-status={doc.status} data-id={doc.id}>
      <span class="doc-kind" aria-hidden="true">
        {doc.kind.toUpperCase()}
      </span>
      {indexed ? (
        <button type="button" class="link doc-name" data-testid="document-open" title={t('docs.openTitle', { name: doc.name })} onClick={() => chat.documents.openDocument(thread.id, doc)}>
          {doc.name}
        </button>
      ) : (
        <span class="doc-name">{doc.name}</span>
      )}
      <span class={`tag doc-stage${doc.status === 'failed' ? ' error' : ''}`} data-testid="document-stage" aria-live="polite">
        {stageText(doc)}
      </span>
      <small class="muted">{details.join(' · ')}</small>
      <span class="doc-actions">
        <a class="link" href={fileUrl(thread.id, doc.id)} download={doc.name} data-testid="document-download">
          {t('docs.download')}
        </a>
        {canDelete && !asking && (
          <button type="button" class="link" data-testid="document-delete" onClick={() => setAsking(true)}>
            {t('docs.delete')}
          </button>
        )}
      </span>
      {doc.status === 'failed' && doc.error && (
        <p class="doc-why field-error" data-testid="document-error">
          {t('docs.failedWhy', { reason: doc.error })}
        </p>
      )}
      {asking && (
        <div class="confirm" role="alertdialog" aria-label={t('docs.deleteConfirm', { name: doc.name })}>
          <p>{t('docs.deleteConfirm', { name: doc.name })}</p>
          <button type="button" class="primary danger" data-testid="document-delete-confirm" onClick={() => void remove()}>
            {t('docs.delete')}
          </button>
          <button type="button" onClick={() => setAsking(false)}>
            {t('thread.cancel')}
          </button>
        </div>
      )}
      {error && (
        <p class="form-error doc-why" role="alert">
          {error}
        </p>
      )}
    </li>
  );
}

function UploadRow({ chat, upload }: { chat: Chat; upload: Upload }) {
  if (upload.error)
    return (
      <li class="doc refused" data-testid="upload" data-state="refused" data-name={upload.name}>
        <p class="form-error" role="alert" data-testid="upload-error">
          {upload.error}
        </p>
        <button type="button" class="link" onClick={() => chat.documents.dismissUpload(upload.key)}>
          {t('msgs.dismiss')}
        </button>
      </li>
    );
  const total = Math.max(upload.total, 1);
  return (
    <li class="doc" data-testid="upload" data-state="sending" data-name={upload.name}>
      <span class="doc-name">{upload.name}</span>
      <span class="tag">{t('docs.uploading')}</span>
      <progress max={total} value={Math.min(upload.sent, total)} aria-label={upload.name} />
      <small class="muted">{formatNumber(Math.round((100 * upload.sent) / total))} %</small>
    </li>
  );
}
