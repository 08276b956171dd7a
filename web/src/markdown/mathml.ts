// The lazily loaded math chunk: KaTeX, asked for MathML only (see math.ts). `trust: false` keeps
// \href, \url, \includegraphics and HTML extensions out; errors show as the TeX source.
import katex from 'katex';

export function renderMathMl(tex: string, display: boolean): string {
  return katex.renderToString(tex, {
    output: 'mathml',
    displayMode: display,
    throwOnError: false,
    trust: false,
    strict: 'ignore',
    maxSize: 20,
    maxExpand: 200,
  });
}
