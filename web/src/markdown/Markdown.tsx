// A message body rendered as Markdown. The element's children belong to a MarkdownView, not to
// Preact (Preact renders the element with no children and so never touches them). The first
// text is rendered before the browser paints (no empty frame, nothing jumps); later texts, as an
// answer streams in, at most once per animation frame, whatever the number of chunks.
import { useLayoutEffect, useRef } from 'preact/hooks';
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

/** Copy buttons of code blocks (inside the rendered HTML, so handled by delegation). */
function onBodyClick(e: MouseEvent): void {
  const target = e.target instanceof Element ? e.target : null;
  const button = target?.closest<HTMLElement>('button.code-copy');
  const code = button?.closest('.code-block')?.querySelector('pre > code');
  if (!button || !code) return;
  void copyText(code.textContent ?? '').then((ok) => flashLabel(button, t(ok ? 'msg.copied' : 'msg.copyFailed')));
}

export function Markdown({ text }: { text: string }) {
  const ref = useRef<HTMLDivElement>(null);
  const state = useRef<Scheduled | null>(null);

  useLayoutEffect(() => {
    const root = ref.current;
    if (!root) return;
    const s: Scheduled = { view: new MarkdownView(root), frame: 0, next: null };
    s.view.render(text);
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
    });
  }, [text]);

  return <div class="msg-body md" data-testid="message-body" ref={ref} onClick={onBodyClick} />;
}
