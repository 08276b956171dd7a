// The document viewer (issue #19): a modal dialog with a document's extracted text, grouped by
// page for PDF ("Page 3"), opened at a citation's passage (highlighted and scrolled into view) or
// at the start; a link downloads the original file. The text comes from
// `GET .../documents/{doc}/chunks` a window at a time: passages around the cited one first, more
// on request, so a 50,000-passage document costs what is shown. Part of the lazy tools chunk.
import { useEffect, useLayoutEffect, useRef, useState } from 'preact/hooks';
import { api, errorText } from '../api';
import type { Chat } from '../chat';
import type { ChunkList, ChunkView } from '../contract';
import { type Viewing, fileUrl } from '../docStore';
import { t } from '../i18n';

/** Passages shown before the cited one, and fetched per request for more. */
const BEFORE = 20;
const WINDOW = 60;

interface Text {
  chunks: ChunkView[];
  /** More passages exist before the first shown / after the last shown. */
  earlier: boolean;
  later: boolean;
}

const chunksPath = (v: Viewing, from: number, limit: number) =>
  `/api/threads/${encodeURIComponent(v.thread)}/documents/${encodeURIComponent(v.document_id)}/chunks?from_ord=${from}&limit=${limit}`;

async function fetchChunks(v: Viewing, from: number, limit: number): Promise<ChunkView[]> {
  const r = await api<ChunkList>('GET', chunksPath(v, from, limit));
  return Array.isArray(r?.chunks) ? r.chunks : [];
}

/** Consecutive passages of one page (or of no page, for formats without pages). */
function byPage(chunks: ChunkView[]): { page?: number; chunks: ChunkView[] }[] {
  const groups: { page?: number; chunks: ChunkView[] }[] = [];
  for (const c of chunks) {
    const last = groups[groups.length - 1];
    if (last && last.page === c.page) last.chunks.push(c);
    else groups.push({ page: c.page, chunks: [c] });
  }
  return groups;
}

export function DocViewer({ chat, viewing }: { chat: Chat; viewing: Viewing }) {
  const dialog = useRef<HTMLDialogElement>(null);
  const body = useRef<HTMLDivElement>(null);
  const [text, setText] = useState<Text | null>(null);
  const [error, setError] = useState<string | null>(null);
  const [busy, setBusy] = useState(false);
  /** Scroll to the cited passage once, when the first window arrives. */
  const scrolled = useRef(false);
  const cited = viewing.ord;

  useEffect(() => {
    const opener = document.activeElement instanceof HTMLElement ? document.activeElement : null;
    const d = dialog.current;
    if (d && !d.open) d.showModal();
    return () => opener?.focus();
  }, []);

  useEffect(() => {
    let live = true;
    scrolled.current = false;
    setText(null);
    setError(null);
    const from = cited === undefined ? 0 : Math.max(0, cited - BEFORE);
    fetchChunks(viewing, from, WINDOW).then(
      (chunks) => live && setText({ chunks, earlier: from > 0, later: chunks.length === WINDOW }),
      (e) => live && setError(errorText(e)),
    );
    return () => {
      live = false;
    };
  }, [viewing.document_id, cited]);

  useLayoutEffect(() => {
    if (!text || scrolled.current) return;
    scrolled.current = true;
    const target = body.current?.querySelector<HTMLElement>('[data-cited="true"]');
    if (target) target.scrollIntoView({ block: 'center' });
  }, [text]);

  const more = async (where: 'earlier' | 'later') => {
    if (!text || busy) return;
    setBusy(true);
    try {
      if (where === 'earlier') {
        const first = text.chunks[0]?.ord ?? 0;
        const from = Math.max(0, first - WINDOW);
        const got = await fetchChunks(viewing, from, first - from);
        setText({ ...text, chunks: [...got, ...text.chunks], earlier: from > 0 });
      } else {
        const next = (text.chunks[text.chunks.length - 1]?.ord ?? -1) + 1;
        const got = await fetchChunks(viewing, next, WINDOW);
        setText({ ...text, chunks: [...text.chunks, ...got], later: got.length === WINDOW });
      }
    } catch (e) {
      setError(errorText(e));
    } finally {
      setBusy(false);
    }
  };

  const close = () => chat.documents.closeViewer();
  const note =
    viewing.n === undefined
      ? null
      : viewing.page
        ? t('viewer.citedPage', { n: viewing.n, page: viewing.page })
        : t('viewer.cited', { n: viewing.n });

  return (
    <dialog
      ref={dialog}
      class="doc-viewer"
      aria-label={t('viewer.label', { name: viewing.name })}
      data-testid="doc-viewer"
      onClose={close}
      onClick={(e) => {
        // A click on the backdrop (the dialog element itself, outside its content) closes it.
        if (e.target === dialog.current) dialog.current?.close();
      }}
    >
      <div class="doc-viewer-inner">
        <header class="doc-viewer-head">
          <h2>{viewing.name}</h2>
          {note && <p class="muted small">{note}</p>}
          <span class="doc-viewer-actions">
            <a href={fileUrl(viewing.thread, viewing.document_id)} download={viewing.name} data-testid="doc-viewer-download">
              {t('viewer.download')}
            </a>
            <button type="button" data-testid="doc-viewer-close" onClick={() => dialog.current?.close()}>
              {t('viewer.close')}
            </button>
          </span>
        </header>
        <div class="doc-text" ref={body} data-testid="doc-text" aria-busy={text ? undefined : 'true'}>
          {error && (
            <p class="form-error" role="alert">
              {t('viewer.failed', { error })}
            </p>
          )}
          {!text && !error && <p class="muted">{t('viewer.loading')}</p>}
          {text?.earlier && (
            <button type="button" class="link" data-testid="doc-earlier" disabled={busy} onClick={() => void more('earlier')}>
              {t('viewer.earlier')}
            </button>
          )}
          {text && text.chunks.length === 0 && <p class="muted">{t('viewer.empty')}</p>}
          {text &&
            byPage(text.chunks).map((g) => (
              <section key={`${g.page ?? 'all'}-${g.chunks[0].ord}`} class="doc-page" data-testid="doc-page" data-page={g.page === undefined ? undefined : String(g.page)}>
                {g.page !== undefined && <h3>{t('viewer.page', { n: g.page })}</h3>}
                {g.chunks.map((c, i) => (
                  <Passage key={c.ord} chunk={c} cited={c.ord === cited} showHeading={!!c.heading && c.heading !== g.chunks[i - 1]?.heading} />
                ))}
              </section>
            ))}
          {text?.later && (
            <button type="button" class="link" data-testid="doc-later" disabled={busy} onClick={() => void more('later')}>
              {t('viewer.later')}
            </button>
          )}
        </div>
      </div>
    </dialog>
  );
}

function Passage({ chunk, cited, showHeading }: { chunk: ChunkView; cited: boolean; showHeading: boolean }) {
  return (
    <div class="doc-passage" data-ord={String(chunk.ord)} data-cited={cited ? 'true' : undefined}>
      {showHeading && <h4>{chunk.heading}</h4>}
      {cited ? (
        <p>
          <mark class="cited" data-testid="cited-passage">
            {chunk.text}
          </mark>
        </p>
      ) : (
        <p>{chunk.text}</p>
      )}
    </div>
  );
}
