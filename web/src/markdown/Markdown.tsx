// A message body rendered as Markdown. The element's children belong to a MarkdownView, not to
// Preact (Preact renders the element with no children and so never touches them). The first
// text is rendered before the browser paints (no empty frame, nothing jumps); later texts, as an
// answer streams in, at most once per animation frame, whatever the number of chunks. An answer
// with citations gets its `[n]` made clickable after each render (../citations.tsx).
import { useLayoutEffect, useRef } from 'preact/hooks';
import { markCitations } from '../citations';
import { copyText, flashLabel } from '../clipboard';
import { t } from '../i18n';
import { highlighter } from './highlight';
import { typesetter } from './math';
import { MarkdownView } from './view';
import './markdown.css';

interface Scheduled {
  view: MarkdownView;
  frame: number;
  next: string | null;
}

/** Copy buttons of code blocks and citation references (inside the rendered HTML, so handled by
 *  delegation). */
function onBodyClick(e: MouseEvent, onCite?: (n: number) => void): void {
  const target = e.target instanceof Element ? e.target : null;
  const ref = target?.closest<HTMLElement>('button.cite-ref');
  if (ref && onCite) {
    onCite(Number(ref.dataset.cite));
    return;
  }
  const button = target?.closest<HTMLElement>('button.code-copy');
  const code = button?.closest('.code-block')?.querySelector('pre > code');
  if (!button || !code) return;
  void copyText(code.textContent ?? '').then((ok) => flashLabel(button, t(ok ? 'msg.copied' : 'msg.copyFailed')));
}

interface Props {
  text: string;
  /** The numbers of the answer's citations: their `[n]` become buttons that call `onCite`. */
  cites?: number[];
  onCite?: (n: number) => void;
}

export function Markdown({ text, cites, onCite }: Props) {
  const ref = useRef<HTMLDivElement>(null);
  const state = useRef<Scheduled | null>(null);
  const numbers = useRef<Set<number>>(new Set());
  numbers.current = new Set(cites ?? []);
  const citeKey = (cites ?? []).join(',');
  const mark = () => {
    if (ref.current) markCitations(ref.current, numbers.current);
  };

  useLayoutEffect(() => {
    const root = ref.current;
    if (!root) return;
    const s: Scheduled = { view: new MarkdownView(root), frame: 0, next: null };
    s.view.render(text);
    mark();
    state.current = s;
    const offs = [highlighter, typesetter].map((chunk) => chunk.onReady(() => s.view.refresh()));
    return () => {
      for (const off of offs) off();
      if (s.frame) cancelAnimationFrame(s.frame);
      s.view.dispose();
      state.current = null;
    };
  }, []);

  useLayoutEffect(() => {
    const s = state.current;
    if (!s) return;
    s.next = text;
    if (s.frame) return;
    s.frame = requestAnimationFrame(() => {
      s.frame = 0;
      const next = s.next;
      s.next = null;
      if (next !== null) s.view.render(next);
      mark();
    });
  }, [text]);

  // A streamed answer becomes the stored message (same text) that carries the citations.
  useLayoutEffect(mark, [citeKey]);

  return <div class="msg-body md" data-testid="message-body" ref={ref} onClick={(e) => onBodyClick(e, onCite)} />;
}
