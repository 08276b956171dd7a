// The code highlighter, loaded on demand: the first fenced block in a language it knows fetches
// the `languages` chunk (highlight.js core and a few grammars); until then code shows plain, and
// views re-highlight their blocks when it arrives. A page with no such block never fetches it.
import { Lazy } from './lazy';

/** Languages of the lazy chunk, with the names people write after ``` (see languages.ts). */
const KNOWN = new Set([
  'javascript', 'js', 'jsx', 'mjs', 'cjs',
  'typescript', 'ts', 'tsx', 'mts', 'cts',
  'python', 'py', 'gyp',
  'rust', 'rs',
  'bash', 'sh', 'zsh', 'shell', 'console', 'shellsession',
  'json', 'jsonc',
  'xml', 'html', 'xhtml', 'svg', 'rss', 'atom', 'plist',
  'css',
  'sql',
  'go', 'golang',
  'java', 'jsp',
  'c', 'h',
  'cpp', 'cc', 'c++', 'h++', 'hpp', 'hh', 'hxx', 'cxx',
  'yaml', 'yml',
  'diff', 'patch',
  'markdown', 'md', 'mkdown', 'mkd',
  'dockerfile', 'docker',
  'ini', 'toml',
]);

export const highlighter = new Lazy(() => import('./languages').then((m) => m.highlighter));

/**
 * Highlighted HTML of `code` (only `<span class="hljs-…">` around escaped text), or null when the
 * highlighter is not loaded yet (loading starts) or does not know `lang`.
 */
export function highlightCode(code: string, lang: string): string | null {
  if (!KNOWN.has(lang.toLowerCase())) return null;
  return highlighter.get()?.highlight(code, lang) ?? null;
}
