// The sidebar: the form that creates a thread (title, optional agents) and the thread list: a
// search box (filters the titles; Enter searches every message), pinned threads, the others, and
// the archived ones (fetched when that section opens).
import { useState } from 'preact/hooks';
import type { JSX } from 'preact';
import { errorText, toFormError } from './api';
import type { FormError } from './api';
import type { Chat } from './chat';
import { t, tn } from './i18n';
import { filterThreads } from './threadList';
import './threads.css';
import type { Thread } from './types';

export function NewThreadForm({ chat, onCreated }: { chat: Chat; onCreated: () => void }) {
  const [title, setTitle] = useState('');
  const [picked, setPicked] = useState<string[]>([]);
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState<FormError | null>(null);

  const submit = async (e: JSX.TargetedEvent<HTMLFormElement, Event>) => {
    e.preventDefault();
    if (busy) return;
    if (!title.trim()) {
      setError({ message: t('new.titleMissing') });
      return;
    }
    setBusy(true);
    setError(null);
    try {
      await chat.createThread(title.trim(), picked.filter((id) => chat.agents.some((a) => a.id === id)));
      setTitle('');
      setPicked([]);
      onCreated();
    } catch (err) {
      setError(toFormError(err));
    } finally {
      setBusy(false);
    }
  };

  const toggle = (id: string, on: boolean) =>
    setPicked((p) => (on ? [...p.filter((x) => x !== id), id] : p.filter((x) => x !== id)));

  return (
    <form class="new-thread" onSubmit={submit} aria-labelledby="new-thread-heading">
      <h2 id="new-thread-heading" class="section-title">
        {t('new.heading')}
      </h2>
      <label for="new-thread-title" class="sr-only">
        {t('new.title')}
      </label>
      <input
        id="new-thread-title"
        data-testid="new-thread-title"
        placeholder={t('new.title')}
        maxLength={200}
        value={title}
        onInput={(e) => setTitle(e.currentTarget.value)}
        aria-invalid={error?.fields?.title ? 'true' : undefined}
      />
      {chat.agents.length > 0 && (
        <fieldset class="agents">
          <legend>{t('new.agents')}</legend>
          {chat.agents.map((a) => (
            <label key={a.id} class="check">
              <input
                type="checkbox"
                data-testid="agent-option"
                value={a.id}
                checked={picked.includes(a.id)}
                onChange={(e) => toggle(a.id, e.currentTarget.checked)}
              />
              <span>{a.name}</span>
              {a.model && <small class="muted"> {a.model}</small>}
            </label>
          ))}
        </fieldset>
      )}
      {error && (
        <p class="form-error" role="alert">
          {error.message}
          {error.fields && Object.entries(error.fields).map(([k, v]) => ` ${k}: ${v}.`)}
        </p>
      )}
      <button type="submit" class="primary" data-testid="create-thread" disabled={busy}>
        {busy ? t('new.creating') : t('new.create')}
      </button>
    </form>
  );
}

interface ListProps {
  chat: Chat;
  onOpen: (id: string) => void;
  /** Enter in the search box: the search page, for every message. */
  onSearch: (q: string) => void;
  /** The import / export page. */
  onData: () => void;
}

export function ThreadList({ chat, onOpen, onSearch, onData }: ListProps) {
  const [filter, setFilter] = useState('');
  const [showArchived, setShowArchived] = useState(false);
  const [archivedError, setArchivedError] = useState<string | null>(null);
  const shown = filterThreads(chat.threads, filter);
  const pinned = shown.filter((th) => th.pinned);
  const others = shown.filter((th) => !th.pinned);
  const archived = chat.archived ? filterThreads(chat.archived, filter) : null;

  const toggleArchived = () => {
    const open = !showArchived;
    setShowArchived(open);
    setArchivedError(null);
    // Fetched each time the section opens: another device may have archived threads since.
    if (open) chat.loadArchived().catch((e) => setArchivedError(errorText(e)));
  };

  const item = (th: Thread) => (
    <li key={th.id}>
      <button
        type="button"
        class={`thread-item${th.id === chat.currentId ? ' current' : ''}`}
        data-testid="thread-item"
        data-thread-id={th.id}
        data-pinned={th.pinned ? 'true' : undefined}
        aria-current={th.id === chat.currentId ? 'true' : undefined}
        onClick={() => onOpen(th.id)}
      >
        <span class="thread-title">{th.title}</span>
        {th.pinned && (
          <svg class="pin-mark" viewBox="0 0 16 16" width="12" height="12" role="img" aria-label={t('side.pinnedMark')}>
            <path d="M5 1h6l-1 5 3 3H9l-1 6-1-6H3l3-3z" fill="currentColor" />
          </svg>
        )}
        {th.agents.length > 0 && <span class="badge">{tn('side.agentCount', th.agents.length)}</span>}
      </button>
    </li>
  );

  return (
    <nav class="thread-list" aria-labelledby="threads-heading">
      <form
        class="thread-search"
        role="search"
        onSubmit={(e) => {
          e.preventDefault();
          if (filter.trim()) onSearch(filter.trim());
        }}
      >
        <label for="thread-search" class="sr-only">
          {t('side.search')}
        </label>
        <input
          id="thread-search"
          type="search"
          data-testid="thread-search"
          placeholder={t('side.search')}
          title={t('side.searchHint')}
          maxLength={200}
          value={filter}
          onInput={(e) => setFilter(e.currentTarget.value)}
        />
        <button type="submit" data-testid="search-go" disabled={!filter.trim()}>
          {t('side.searchGo')}
        </button>
      </form>
      {pinned.length > 0 && (
        <section aria-labelledby="pinned-heading" data-testid="pinned-section">
          <h2 id="pinned-heading" class="section-title">
            {t('side.pinned')}
          </h2>
          <ul>{pinned.map(item)}</ul>
        </section>
      )}
      <div class="row spread">
        <h2 id="threads-heading" class="section-title">
          {t('side.threads')}
        </h2>
        <button type="button" class="link" data-testid="refresh-threads" onClick={() => void chat.loadThreads()}>
          {t('side.refresh')}
        </button>
      </div>
      {chat.threadsError && (
        <p class="form-error" role="alert">
          {chat.threadsError}
        </p>
      )}
      {chat.threadsLoaded && chat.threads.length === 0 && !chat.threadsError && <p class="muted">{t('side.none')}</p>}
      {chat.threads.length > 0 && shown.length === 0 && <p class="muted">{t('side.noMatch')}</p>}
      <ul data-testid="threads-section">{others.map(item)}</ul>
      <section class="archived" aria-labelledby="archived-heading">
        <h2 id="archived-heading" class="section-title">
          <button
            type="button"
            class="link"
            data-testid="toggle-archived"
            aria-expanded={showArchived ? 'true' : 'false'}
            onClick={toggleArchived}
          >
            {showArchived ? '▾' : '▸'} {t('side.archived')}
          </button>
        </h2>
        {showArchived && archivedError && (
          <p class="form-error" role="alert">
            {archivedError}
          </p>
        )}
        {showArchived && archived && archived.length === 0 && <p class="muted">{t('side.archivedNone')}</p>}
        {showArchived && archived && <ul data-testid="archived-section">{archived.map(item)}</ul>}
      </section>
      <button type="button" class="link" data-testid="nav-data" onClick={onData}>
        {t('side.importExport')}
      </button>
    </nav>
  );
}
