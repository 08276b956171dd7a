// The Markdown answers the fake provider streams in markdown.test.mjs.

export const CODE = [
  'fn main() {',
  '    let greeting = "hello <world> & \\"friends\\"";',
  '    println!("{greeting}");',
  '}',
].join('\n');

/** GFM in one answer: a table, a task list, strikethrough, a Rust fence, autolinks, math. */
export const RICH = [
  '# Release notes',
  '',
  'Some **bold**, some *emphasis* and ~~struck~~ text.',
  '',
  '| Feature | Status | Count |',
  '|:--------|:------:|------:|',
  '| Tables | done | 3 |',
  '| Lists | ~~late~~ done | 12 |',
  '',
  '- [x] parse the answer',
  '- [ ] render it',
  '',
  '```rust',
  CODE,
  '```',
  '',
  'Docs at https://example.com/docs and www.example.org, mail someone@example.com.',
  '',
  'Math too: $e^{i\\pi} + 1 = 0$, and',
  '',
  '$$',
  '\\sum_{k=1}^{n} k = \\frac{n(n+1)}{2}',
  '$$',
  '',
].join('\n');

/** Everything a hostile agent (or user) could try; `window.__pwned` must stay unset. */
export const HOSTILE = [
  'Hostile content follows.',
  '',
  '<img src=x onerror="window.__pwned = \'img\'">',
  '',
  '<script>window.__pwned = "script"</script>',
  '',
  '[js link](javascript:window.__pwned=%22link%22) and [data link](data:text/html,<script>window.__pwned=1</script>)',
  'and [vb link](vbscript:msgbox) and <javascript:window.__pwned=1> and ![pic](javascript:window.__pwned=1)',
  '',
  '<div onmouseover="window.__pwned = \'div\'">raw html block</div>',
  '',
  '<iframe src="javascript:window.__pwned=\'iframe\'"></iframe>',
  '',
  'inline <svg onload="window.__pwned=\'svg\'"></svg> and <a href="javascript:window.__pwned=1">raw anchor</a>',
  '',
  '<style>body { display: none }</style>',
  '',
  'math: $\\href{javascript:window.__pwned=1}{click me}$ and $\\htmlId{x}{y}$',
  '',
  '[safe](https://example.com/safe "a title")',
  '',
].join('\n');

/**
 * About 20,000 words of Markdown in sections: headings, paragraphs, lists, now and then a table
 * and a code fence. Returns the text and what it contains.
 */
export function longAnswer(targetWords = 20_000) {
  const parts = [];
  let words = 0;
  let sections = 0;
  let tables = 0;
  let fences = 0;
  const add = (text) => {
    parts.push(text);
    words += text.split(/\s+/).filter(Boolean).length;
  };
  while (words < targetWords) {
    sections += 1;
    const n = sections;
    add(`## Section ${n}\n\n`);
    const sentence = (i) => `Sentence ${i} of section ${n} talks about *agents*, **streams** and \`code\` at length.`;
    add(`${Array.from({ length: 12 }, (_, i) => sentence(i)).join(' ')}\n\n`);
    add(`${Array.from({ length: 4 }, (_, i) => `- point ${i} of section ${n}, with a [link](https://example.com/${n}/${i})`).join('\n')}\n\n`);
    if (n % 10 === 0) {
      tables += 1;
      add(`| key | value |\n|---|---:|\n${Array.from({ length: 4 }, (_, i) => `| k${i} | ${n * i} |`).join('\n')}\n\n`);
    }
    if (n % 7 === 0) {
      fences += 1;
      add(`\`\`\`python\ndef section_${n}(x):\n    return x * ${n}  # section ${n}\n\`\`\`\n\n`);
    }
  }
  return { text: parts.join(''), words, sections, tables, fences };
}
