// Math in messages: `$…$` and `\(…\)` inline, `$$…$$` and `\[…\]` as blocks. The parser turns
// them into placeholders that show the TeX source; KaTeX, a lazily loaded chunk (mathml.ts),
// typesets them as MathML, which the browser lays out itself: no KaTeX stylesheet, no fonts and
// no style attributes, so the strict CSP holds. A page without math never fetches the chunk.
import type { TokenizerAndRendererExtension } from 'marked';
import DOMPurify from 'dompurify';
import { Lazy } from './lazy';

export const typesetter = new Lazy(() => import('./mathml').then((m) => m.renderMathMl));

const esc = (s: string) => s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;');

// `$…$` follows Pandoc: no space just inside the dollars and no digit right after the closing
// one, so "from $5 to $10" stays text.
const INLINE = /^(?:\$\$(?!\s)([^$]+?)\$\$|\$(?![\s$])((?:\\.|[^\\$\n])+?)(?<![\s\\])\$(?!\d)|\\\(([\s\S]+?)\\\))/;
const BLOCK = /^(?:\$\$([\s\S]+?)\$\$|\\\[([\s\S]+?)\\\])[ \t]*(?:\n|$)/;

export const mathExtensions: TokenizerAndRendererExtension[] = [
  {
    name: 'mathBlock',
    level: 'block',
    start(src) {
      const m = /(?:^|\n)(?:\$\$|\\\[)/.exec(src);
      return m ? m.index + (m[0].startsWith('\n') ? 1 : 0) : undefined;
    },
    tokenizer(src) {
      const m = BLOCK.exec(src);
      if (m) return { type: 'mathBlock', raw: m[0], text: (m[1] ?? m[2]).trim() };
      return undefined;
    },
    renderer(token) {
      return `<div class="math math-display">${esc(token.text)}</div>\n`;
    },
  },
  {
    name: 'mathInline',
    level: 'inline',
    start(src) {
      const i = src.search(/\$|\\\(/);
      return i < 0 ? undefined : i;
    },
    tokenizer(src) {
      const m = INLINE.exec(src);
      if (m) return { type: 'mathInline', raw: m[0], text: (m[1] ?? m[2] ?? m[3]).trim() };
      return undefined;
    },
    renderer(token) {
      return `<span class="math math-inline">${esc(token.text)}</span>`;
    },
  },
];

/**
 * Typesets the math placeholders under `root` once KaTeX is there (asking for it otherwise). The
 * MathML is sanitised with DOMPurify's MathML profile; no style attribute survives.
 */
export function typeset(root: ParentNode): void {
  const pending = root.querySelectorAll<HTMLElement>('.math:not(.typeset)');
  if (pending.length === 0) return;
  const render = typesetter.get();
  if (!render) return;
  for (const el of pending) {
    const html = render(el.textContent ?? '', el.classList.contains('math-display'));
    const fragment = DOMPurify.sanitize(html, {
      USE_PROFILES: { mathMl: true },
      FORBID_ATTR: ['style', 'href', 'xlink:href', 'src'],
      RETURN_DOM_FRAGMENT: true,
    });
    el.replaceChildren(fragment);
    el.classList.add('typeset');
  }
}
