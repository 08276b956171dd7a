// The sources of an agent answer given passages of the thread's documents (issue #19): numbered
// chips under the answer, and the answer's own `[n]` made clickable (`markCitations`); both open
// the document viewer at the cited passage (page for PDF).
import type { Chat } from './chat';
import type { Citation } from './contract';
import { t } from './i18n';

export function Citations({ chat, thread, list }: { chat: Chat; thread: string; list: Citation[] }) {
  return (
    <ol class="citations" aria-label={t('cite.label')} data-testid="citations">
      {list.map((c) => (
        <li key={c.n}>
          <button
            type="button"
            class="cite-chip"
            data-testid="citation"
            data-n={String(c.n)}
            title={c.quote}
            aria-label={t('cite.open', { n: c.n, name: c.page ? `${c.name}, ${t('cite.page', { n: c.page })}` : c.name })}
            onClick={() => chat.documents.openCitation(thread, c)}
          >
            <span class="cite-n">{c.n}</span>
            <span class="cite-name">{c.name}</span>
            {c.page ? <span class="muted">{t('cite.page', { n: c.page })}</span> : null}
          </button>
        </li>
      ))}
    </ol>
  );
}

const REF = /\[(\d{1,3})\]/g;
const HAS_REF = /\[\d{1,3}\]/;

/**
 * Turns each `[n]` of a rendered answer whose `n` is in `numbers` into a button (`cite-ref`,
 * `data-cite`); text in code, links and buttons is left alone, and so are the root's own text
 * nodes (the Markdown view replaces those). Running it again changes nothing.
 */
export function markCitations(root: HTMLElement, numbers: ReadonlySet<number>): void {
  if (numbers.size === 0) return;
  const found: Text[] = [];
  const walker = document.createTreeWalker(root, NodeFilter.SHOW_TEXT);
  for (let n = walker.nextNode(); n; n = walker.nextNode()) {
    const text = n as Text;
    const parent = text.parentElement;
    if (!parent || parent === root || parent.closest('code, pre, a, button, .math')) continue;
    if (HAS_REF.test(text.data)) found.push(text);
  }
  for (const text of found) {
    const fragment = document.createDocumentFragment();
    let last = 0;
    for (const m of text.data.matchAll(REF)) {
      const n = Number(m[1]);
      if (!numbers.has(n) || m.index === undefined) continue;
      fragment.append(text.data.slice(last, m.index));
      const button = document.createElement('button');
      button.type = 'button';
      button.className = 'cite-ref';
      button.dataset.cite = String(n);
      button.textContent = m[0];
      button.setAttribute('aria-label', t('cite.ref', { n }));
      fragment.append(button);
      last = m.index + m[0].length;
    }
    if (last === 0) continue;
    fragment.append(text.data.slice(last));
    text.replaceWith(fragment);
  }
}
