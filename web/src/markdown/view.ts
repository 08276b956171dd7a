// Renders a growing Markdown text into one element, block by block, for answers that arrive a
// few words at a time. Every top-level block (paragraph, list, table, code fence, …) except the
// last is final once a later block has started: appending text cannot change it. Those blocks
// are lexed, rendered, sanitised and inserted once, and their DOM nodes are never touched
// again; each update lexes only the text from the last block on and replaces only that block's
// nodes. So an update costs the size of the last block, not of the answer, and what the reader
// has already seen neither moves nor flickers.
//
// The one way new text can change finished blocks is a link reference definition
// (`[label]: url`) that they use: when the definitions in the unfinished tail change, the whole
// text is rendered again (rare: answers seldom use reference links).
//
// A long text that arrives at once (a long answer from history, or a snapshot after a reload)
// is lexed at once but rendered bottom-up: the last blocks, which the reader sees (the list
// sticks to the bottom), before the first paint, then the earlier ones a slice per animation
// frame, in front of them (the browser's scroll anchoring keeps the view where it is), so no
// single task renders the whole text.
import type { Links, Token, TokensList } from 'marked';
import { highlightCode } from './highlight';
import { typeset } from './math';
import { lex, normalize, renderTokens } from './parser';
import { sanitizedFragment } from './sanitize';

/** Finished blocks (block tokens) rendered in one go when a long text arrives at once. */
const SLICE = 40;

/** The definitions in `links` that `base` does not have, as a comparable string. */
function signature(links: Links, base: Links): string {
  let out = '';
  for (const [label, l] of Object.entries(links)) {
    if (!(label in base)) out += `${label}\u0000${l.href}\u0000${l.title ?? ''}\u0001`;
  }
  return out;
}

/** Where the last block of `tokens` starts in their source, or null when it cannot be known. */
function lastBlockStart(tokens: TokensList, srcLength: number): { index: number; offset: number } | null {
  let offset = 0;
  let last: { index: number; offset: number } | null = null;
  tokens.forEach((t, index) => {
    if (t.type !== 'space') last = { index, offset };
    offset += t.raw.length;
  });
  // The raws of marked's block tokens tile the source; if not, treat it all as unfinished.
  return offset === srcLength ? last : null;
}

export class MarkdownView {
  /** Normalised text of the finished blocks (a prefix of every later text). */
  private done = '';
  /** Link definitions made in the finished text. */
  private doneLinks: Links = {};
  /** `signature` of the definitions in the unfinished tail at the last update. */
  private tailLinks = '';
  /** The nodes of the last, unfinished block (replaced by each update). */
  private live: ChildNode[] = [];
  private text = '';
  /** Finished blocks of a long first text not rendered yet, in order (see the top). */
  private backlog: Token[] = [];
  private backlogFrame = 0;

  constructor(private readonly root: HTMLElement) {}

  /** Shows `raw` (usually the previous text plus what arrived since). */
  render(raw: string): void {
    const text = normalize(raw);
    if (text === this.text) return;
    this.text = text;
    if (!text.startsWith(this.done)) this.clear();
    let tail = text.slice(this.done.length);
    let tokens = lex(tail, this.doneLinks);
    if (this.done && signature(tokens.links, this.doneLinks) !== this.tailLinks) {
      this.clear();
      tail = text;
      tokens = lex(tail, {});
    }
    for (const n of this.live) n.remove();
    this.live = [];
    const last = lastBlockStart(tokens, tail.length);
    const from = last?.index ?? 0;
    if (last && last.index > 0) {
      const finishedTokens = tokens.slice(0, last.index);
      if (finishedTokens.length > SLICE && this.root.firstChild === null) {
        this.backlog = finishedTokens.slice(0, -SLICE);
        this.root.append(this.fragment(finishedTokens.slice(-SLICE)));
        this.renderBacklog();
      } else {
        this.root.append(this.fragment(finishedTokens));
      }
      const finished = tail.slice(0, last.offset);
      if (Object.keys(tokens.links).length > Object.keys(this.doneLinks).length) {
        this.doneLinks = lex(finished, this.doneLinks).links;
      }
      this.done += finished;
    }
    this.tailLinks = signature(tokens.links, this.doneLinks);
    const fragment = this.fragment(tokens.slice(from));
    this.live = Array.from(fragment.childNodes);
    this.root.append(fragment);
  }

  /** Highlights code and typesets math shown before their lazy chunks arrived. */
  refresh(): void {
    for (const code of this.root.querySelectorAll<HTMLElement>('code[data-lang]:not(.hljs)')) {
      const html = highlightCode(code.textContent ?? '', code.dataset.lang ?? '');
      if (html === null) continue;
      code.replaceChildren(sanitizedFragment(html));
      code.classList.add('hljs');
    }
    typeset(this.root);
  }

  /** Stops rendering (the element is going away). */
  dispose(): void {
    if (this.backlogFrame) cancelAnimationFrame(this.backlogFrame);
    this.backlogFrame = 0;
    this.backlog = [];
  }

  /** Renders the backlog's last slice in front of what is there, in the next frame, until done. */
  private renderBacklog(): void {
    if (this.backlogFrame || this.backlog.length === 0) return;
    this.backlogFrame = requestAnimationFrame(() => {
      this.backlogFrame = 0;
      const slice = this.backlog.splice(Math.max(0, this.backlog.length - SLICE));
      this.root.insertBefore(this.fragment(slice), this.root.firstChild);
      this.renderBacklog();
    });
  }

  /** Rendered, sanitised and typeset (when the typesetter is there) tokens. */
  private fragment(tokens: TokensList | Token[]): DocumentFragment {
    const fragment = sanitizedFragment(renderTokens(tokens));
    typeset(fragment);
    return fragment;
  }

  private clear(): void {
    this.dispose();
    this.root.replaceChildren();
    this.done = '';
    this.doneLinks = {};
    this.tailLinks = '';
    this.live = [];
  }
}
