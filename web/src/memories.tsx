// The Memory panel of "My account" (issue #19, docs/memories.md): the opt-in switch, the items
// (newest first, a page at a time), inline edit, delete, delete all, and add by hand. The list
// reloads whenever a `memory` frame says an item changed (a fact captured from one of my
// messages, a thread summary, a change made in another tab). Same chunk as the account page.
import { useEffect, useRef, useState } from 'preact/hooks';
import { api, errorText } from './api';
import type { Chat } from './chat';
import type { MemoryList, MemorySettingsView, MemoryView } from './contract';
import { formatDateTime, t } from './i18n';

function Item({ item, run }: { item: MemoryView; run: (op: () => Promise<unknown>) => Promise<boolean> }) {
  const [editing, setEditing] = useState<string | null>(null);
  const path = `/api/memories/${encodeURIComponent(item.id)}`;
  const save = async (e: Event) => {
    e.preventDefault();
    if (editing !== null && (await run(() => api('PATCH', path, { text: editing })))) setEditing(null);
  };
  return (
    <li data-testid="memory-item" data-kind={item.kind} data-id={item.id}>
      <span class="muted">{item.kind === 'summary' ? t('mem.summary') : t('mem.fact')}</span>{' '}
      {editing === null ? (
        <>
          <span data-testid="memory-text">{item.text}</span>{' '}
          <span class="muted">{formatDateTime(item.updated_at)}</span>{' '}
          <button type="button" data-testid="memory-edit" onClick={() => setEditing(item.text)}>
            {t('mem.edit')}
          </button>
          <button type="button" data-testid="memory-delete" onClick={() => void run(() => api('DELETE', path))}>
            {t('mem.delete')}
          </button>
        </>
      ) : (
        <form class="row" onSubmit={(e) => void save(e)}>
          <input
            data-testid="memory-edit-text"
            aria-label={t('mem.edit')}
            value={editing}
            onInput={(e) => setEditing((e.target as HTMLInputElement).value)}
          />
          <button type="submit" data-testid="memory-save">{t('mem.save')}</button>
          <button type="button" onClick={() => setEditing(null)}>{t('mem.cancel')}</button>
        </form>
      )}
    </li>
  );
}

export function MemoryPanel({ chat }: { chat?: Chat }) {
  const [settings, setSettings] = useState<MemorySettingsView | null>(null);
  const [items, setItems] = useState<MemoryView[]>([]);
  const [next, setNext] = useState<string | undefined>(undefined);
  const [draft, setDraft] = useState('');
  const [error, setError] = useState<string | null>(null);
  const [version, setVersion] = useState(chat?.memoryVersion ?? 0);

  // Each reload and each change takes a number; a reload's answers are shown only if nothing
  // newer began since (an answer that left the server before a change would undo it on screen).
  const latest = useRef(0);
  const reload = () => {
    const mine = ++latest.current;
    const current = () => mine === latest.current;
    void api<MemorySettingsView>('GET', '/api/memories/settings').then(
      (s) => current() && setSettings(s),
      (e) => setError(errorText(e)),
    );
    void api<MemoryList>('GET', '/api/memories').then(
      (l) => {
        if (!current()) return;
        setItems(l.memories);
        setNext(l.next_before);
      },
      (e) => setError(errorText(e)),
    );
  };
  useEffect(reload, [version]);
  useEffect(() => chat?.subscribe(() => setVersion(chat.memoryVersion)), [chat]);

  /** Runs `op`, then reloads; true when it succeeded (a failure is shown). */
  const run = async (op: () => Promise<unknown>): Promise<boolean> => {
    latest.current += 1;
    setError(null);
    let ok = true;
    try {
      await op();
    } catch (e) {
      setError(errorText(e));
      ok = false;
    }
    reload();
    return ok;
  };
  const more = () => {
    if (!next) return;
    void api<MemoryList>('GET', `/api/memories?before=${encodeURIComponent(next)}`).then(
      (l) => {
        setItems((have) => [...have, ...l.memories]);
        setNext(l.next_before);
      },
      (e) => setError(errorText(e)),
    );
  };
  const add = async (e: Event) => {
    e.preventDefault();
    if (draft.trim() && (await run(() => api('POST', '/api/memories', { text: draft })))) setDraft('');
  };
  const clearAll = () => {
    if (confirm(t('mem.confirmAll'))) void run(() => api('DELETE', '/api/memories'));
  };

  return (
    <section class="card" aria-labelledby="memory-h" data-testid="memory-panel">
      <h2 id="memory-h">{t('mem.title')}</h2>
      <p class="muted">{t('mem.intro')}</p>
      {settings && (
        <p class="row">
          <label>
            <input
              type="checkbox"
              data-testid="memory-enabled"
              checked={settings.enabled}
              onChange={(e) => {
                const enabled = (e.target as HTMLInputElement).checked;
                // Shown at once: a render before the server answers keeps the box as clicked
                // (the reload after the change shows what the server kept).
                setSettings({ ...settings, enabled });
                void run(() => api('PUT', '/api/memories/settings', { enabled }));
              }}
            />{' '}
            {t('mem.enabled')}
          </label>{' '}
          <span class="muted" data-testid="memory-count">
            {t('mem.count', { n: settings.count, max: settings.max_items })}
          </span>
        </p>
      )}
      <form class="row" onSubmit={(e) => void add(e)}>
        <input
          data-testid="memory-new"
          aria-label={t('mem.addLabel')}
          placeholder={t('mem.addLabel')}
          maxLength={settings?.max_chars}
          value={draft}
          onInput={(e) => setDraft((e.target as HTMLInputElement).value)}
        />
        <button type="submit" data-testid="memory-add">{t('mem.add')}</button>
      </form>
      {items.length === 0 ? (
        <p data-testid="memory-empty">{t('mem.empty')}</p>
      ) : (
        <ul data-testid="memory-list">
          {items.map((m) => (
            <Item key={`${m.id}/${m.updated_at}`} item={m} run={run} />
          ))}
        </ul>
      )}
      {next && (
        <button type="button" class="link" onClick={more}>
          {t('mem.more')}
        </button>
      )}
      {items.length > 0 && (
        <button type="button" data-testid="memory-delete-all" onClick={clearAll}>
          {t('mem.deleteAll')}
        </button>
      )}
      {error && (
        <p class="form-error" role="alert">
          {error}
        </p>
      )}
    </section>
  );
}
