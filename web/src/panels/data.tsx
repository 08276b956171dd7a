// The import / export page: download all my data as one JSON archive (`GET /api/me/export`), and
// import a file (`POST /api/import`): an Emergence export (one thread or an archive) or ChatGPT's
// conversations.json. Importing the same content twice creates nothing new (the server says which
// threads already existed).
import { useState } from 'preact/hooks';
import { api, errorText } from '../api';
import type { Chat } from '../chat';
import type { ImportResult } from '../contract';
import { t, tn } from '../i18n';

/** The body for `POST /api/import`: ChatGPT's file is a bare array of conversations. */
export function importBody(parsed: unknown): unknown {
  return Array.isArray(parsed) ? { conversations: parsed } : parsed;
}

export function DataPage({ chat }: { chat: Chat }) {
  const [busy, setBusy] = useState(false);
  const [result, setResult] = useState<{ ok: boolean; text: string } | null>(null);

  const importFile = async (file: File | undefined) => {
    if (!file) return;
    setBusy(true);
    setResult(null);
    try {
      let parsed: unknown;
      try {
        parsed = JSON.parse(await file.text());
      } catch {
        setResult({ ok: false, text: t('data.notJson') });
        return;
      }
      const r = await api<ImportResult>('POST', '/api/import', importBody(parsed));
      const created = r.threads.filter((x) => x.created).length;
      const existing = r.threads.length - created;
      const parts = [];
      if (created > 0 || existing === 0) parts.push(tn('data.created', created));
      if (existing > 0) parts.push(tn('data.existing', existing));
      setResult({ ok: true, text: parts.join(' ') });
      await chat.loadThreads();
    } catch (e) {
      setResult({ ok: false, text: t('data.failed', { error: errorText(e) }) });
    } finally {
      setBusy(false);
    }
  };

  return (
    <div class="accounts-page" data-testid="data-page">
      <section class="card" aria-labelledby="export-all-h">
        <h2 id="export-all-h">{t('data.heading')}</h2>
        <a data-testid="export-all" href="/api/me/export" download="emergence-export.json">
          {t('data.exportAll')}
        </a>
        <p class="muted small">{t('data.exportHint')}</p>
      </section>
      <section class="card" aria-labelledby="import-h">
        <h2 id="import-h">{t('data.import')}</h2>
        <p class="muted small">{t('data.importHint')}</p>
        <label>
          {t('data.importFile')}{' '}
          <input
            type="file"
            accept=".json,application/json"
            data-testid="import-file"
            disabled={busy}
            onChange={(e) => {
              const input = e.currentTarget;
              void importFile(input.files?.[0]).finally(() => {
                input.value = ''; // the same file can be chosen again
              });
            }}
          />
        </label>
        {busy && <p class="muted">{t('data.importing')}</p>}
        {result && (
          <p class={result.ok ? 'form-ok' : 'form-error'} role={result.ok ? 'status' : 'alert'} data-testid="import-result">
            {result.text}
          </p>
        )}
      </section>
    </div>
  );
}
