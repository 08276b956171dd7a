// The Markdown dialect of messages: CommonMark + GFM (tables, task lists, strikethrough,
// autolinks) through marked, configured for untrusted text: raw HTML is shown as text, only
// http(s) and mailto links are links, images are shown as links (the CSP loads no outside
// images), fenced code gets a language label, a copy button and, once the lazy highlighter is
// loaded, highlighting, and math becomes placeholders for the lazy typesetter (math.ts). The
// HTML still goes through the sanitiser (sanitize.ts).
import { Lexer, Marked, type Links, type Token, type TokensList } from 'marked';
import { t } from '../i18n';
import { highlightCode } from './highlight';
import { mathExtensions } from './math';
import { isSafeUrl } from './sanitize';

const ESCAPES: Record<string, string> = { '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' };

export function escapeHtml(s: string): string {
  return s.replace(/[&<>"']/g, (c) => ESCAPES[c]);
}

function codeBlock(code: string, lang: string): string {
  const highlighted = lang ? highlightCode(code, lang) : null;
  const attrs = lang
    ? ` class="language-${escapeHtml(lang)}${highlighted !== null ? ' hljs' : ''}" data-lang="${escapeHtml(lang)}"`
    : '';
  return (
    '<div class="code-block">' +
    `<div class="code-bar"><span class="code-lang">${escapeHtml(lang)}</span>` +
    `<button type="button" class="code-copy" title="${escapeHtml(t('md.copyCodeTitle'))}">${escapeHtml(t('msg.copy'))}</button></div>` +
    `<pre><code${attrs}>${highlighted ?? escapeHtml(code)}</code></pre>` +
    '</div>\n'
  );
}

const marked = new Marked(
  { gfm: true, breaks: true, async: false },
  { extensions: mathExtensions },
  {
    renderer: {
      // Raw HTML, block or inline, is text: nothing a message says becomes markup.
      html({ text, block }) {
        return block ? `<p>${escapeHtml(text.trim()).replace(/\n/g, '<br>')}</p>\n` : escapeHtml(text);
      },
      link({ href, title, tokens }) {
        const text = this.parser.parseInline(tokens);
        if (!isSafeUrl(href)) return text;
        const t = title ? ` title="${escapeHtml(title)}"` : '';
        return `<a href="${escapeHtml(href)}"${t}>${text}</a>`;
      },
      image({ href, title, text }) {
        const label = escapeHtml(text || href);
        if (!isSafeUrl(href)) return label;
        const t = title ? ` title="${escapeHtml(title)}"` : '';
        return `<a href="${escapeHtml(href)}"${t}>${label}</a>`;
      },
      // A line break keeps its newline in the text, for copying and for text matching.
      br() {
        return '<br>\n';
      },
      code({ text, lang }) {
        const name = (lang ?? '').trim().split(/\s+/)[0].toLowerCase();
        return codeBlock(text, name);
      },
    },
  },
);

/** Block tokens of `src`, lexed with the link definitions `links` already known. */
export function lex(src: string, links: Links): TokensList {
  const lexer = new Lexer(marked.defaults);
  Object.assign(lexer.tokens.links, links);
  return lexer.lex(src);
}

/** The HTML of block tokens (not yet sanitised). */
export function renderTokens(tokens: Token[]): string {
  return marked.parser(tokens);
}

/** marked's input normalisation of line endings, done first so offsets agree with `raw`s. */
export function normalize(text: string): string {
  return text.includes('\r') ? text.replace(/\r\n?/g, '\n') : text;
}
