// The search page: every message of every thread this user can read (`GET /api/search`), with
// filters (thread, author or agent, dates), highlighted snippets and paging. A hit opens its
// thread at that message, with the history around it (chat.openAt).
import { useEffect, useState } from 'preact/hooks';
import type { JSX } from 'preact';
import { api, errorText } from '../api';
import type { Chat } from '../chat';
import type { SearchHitView, SearchResults } from '../contract';
import { formatTime, t } from '../i18n';
import { snippetParts } from '../threadList';

interface Props {
  chat: Chat;
  /** The words typed in the thread list's search box. */
  query: string;
  /** A hit was chosen: show the chat at that message. */
  onOpen: (thread: string, seq: number) => void;
}

const PAGE = 20;

interface Filters {
  q: string;
  thread: string;
  author: string;
  agent: string;
  from: string;
  to: string;
}

/** A date field (`YYYY-MM-DD`, local time) as an RFC 3339 instant, `days` later. */
function instant(date: string, days = 0): string | null {
  if (!date) return null;
  const d = new Date(`${date}T00:00:00`);
  if (Number.isNaN(d.getTime())) return null;
  d.setDate(d.getDate() + days);
  return d.toISOString();
}

function searchUrl(f: Filters, offset: number): string {
  const p = new URLSearchParams({ q: f.q.trim(), limit: String(PAGE) });
  if (offset > 0) p.set('offset', String(offset));
  if (f.thread) p.set('thread', f.thread);
  if (f.author.trim()) p.set('author', f.author.trim());
  if (f.agent) p.set('agent', f.agent);
  const from = instant(f.from);
  const to = instant(f.to, 1); // the "to" day is included: the server's `to` is exclusive
  if (from) p.set('from', from);
  if (to) p.set('to', to);
  return `/api/search?${p}`;
}

export function SearchPage({ chat, query, onOpen }: Props) {
  const [f, setF] = useState<Filters>({ q: query, thread: '', author: '', agent: '', from: '', to: '' });
  const [hits, setHits] = useState<SearchHitView[] | null>(null);
  const [next, setNext] = useState<number | null>(null);
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState<string | null>(null);
  const [openError, setOpenError] = useState<string | null>(null);

  const fetchPage = async (filters: Filters, offset: number) => {
    if (!filters.q.trim()) return;
    setBusy(true);
    setError(null);
    try {
      const r = await api<SearchResults>('GET', searchUrl(filters, offset));
      setHits((h) => (offset > 0 && h ? [...h, ...r.hits] : r.hits));
      setNext(r.next_offset ?? null);
    } catch (e) {
      setError(t('search.failed', { error: errorText(e) }));
    } finally {
      setBusy(false);
    }
  };

  // A new search from the thread list's box.
  useEffect(() => {
    const filters = { ...f, q: query };
    setF(filters);
    void fetchPage(filters, 0);
  }, [query]);

  const submit = (e: JSX.TargetedEvent<HTMLFormElement, Event>) => {
    e.preventDefault();
    void fetchPage(f, 0);
  };
  const set = (k: keyof Filters) => (e: JSX.TargetedEvent<HTMLInputElement | HTMLSelectElement, Event>) =>
    setF({ ...f, [k]: e.currentTarget.value });
  const open = (h: SearchHitView) => {
    setOpenError(null);
    chat.openAt(h.thread, h.seq).then(
      () => onOpen(h.thread, h.seq),
      (e) => setOpenError(errorText(e)),
    );
  };
  const threads = [...chat.threads, ...(chat.archived ?? [])];

  return (
    <div class="search-page" data-testid="search-page">
      <h2>{t('search.heading')}</h2>
      <form class="search-form" role="search" onSubmit={submit}>
        <label>
          {t('search.query')}
          <input type="search" data-testid="search-q" maxLength={200} value={f.q} onInput={set('q')} />
        </label>
        <label>
          {t('search.thread')}
          <select data-testid="search-thread" value={f.thread} onChange={set('thread')}>
            <option value="">{t('search.anyThread')}</option>
            {threads.map((th) => (
              <option key={th.id} value={th.id}>
                {th.title}
              </option>
            ))}
          </select>
        </label>
        <label>
          {t('search.author')}
          <input data-testid="search-author" maxLength={32} autocapitalize="none" value={f.author} onInput={set('author')} />
        </label>
        {chat.agents.length > 0 && (
          <label>
            {t('search.agent')}
            <select data-testid="search-agent" value={f.agent} onChange={set('agent')}>
              <option value="">{t('search.anyAgent')}</option>
              {chat.agents.map((a) => (
                <option key={a.id} value={a.id}>
                  {a.name}
                </option>
              ))}
            </select>
          </label>
        )}
        <label>
          {t('search.from')}
          <input type="date" data-testid="search-from" value={f.from} onInput={set('from')} />
        </label>
        <label>
          {t('search.to')}
          <input type="date" data-testid="search-to" value={f.to} onInput={set('to')} />
        </label>
        <button type="submit" class="primary" data-testid="search-submit" disabled={busy || !f.q.trim()}>
          {busy ? t('search.searching') : t('search.submit')}
        </button>
      </form>
      {error && (
        <p class="form-error" role="alert">
          {error}
        </p>
      )}
      {openError && (
        <p class="form-error" role="alert">
          {openError}
        </p>
      )}
      {hits && hits.length === 0 && !busy && <p class="muted" data-testid="search-none">{t('search.none')}</p>}
      {hits && hits.length > 0 && (
        <ol class="hits" aria-label={t('search.results')} data-testid="search-hits">
          {hits.map((h) => (
            <li key={h.message_id}>
              <button type="button" class="hit" data-testid="search-hit" data-seq={String(h.seq)} title={t('search.open', { title: h.thread_title })} onClick={() => open(h)}>
                <span class="hit-meta">
                  <strong>{h.thread_title}</strong> · {h.author.name} · <time dateTime={h.created_at}>{formatTime(h.created_at)}</time>
                </span>
                <span class="snippet">
                  {snippetParts(h.snippet).map((p, i) => (p.mark ? <mark key={i}>{p.text}</mark> : p.text))}
                </span>
              </button>
            </li>
          ))}
        </ol>
      )}
      {next !== null && (
        <button type="button" data-testid="search-more" disabled={busy} onClick={() => void fetchPage(f, next)}>
          {t('search.more')}
        </button>
      )}
    </div>
  );
}
