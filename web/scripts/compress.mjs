// Post-build step: checks the dist layout, writes .br (quality 11) and .gz (level 9) next to every
// .js/.css/.html/.svg file, prints sizes, and fails when first-load JS (the entry script; lazy
// chunks are fetched only when needed) or a lazy chunk exceeds its budget.
import { readdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { dirname, join, relative, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { brotliCompressSync, constants, gzipSync } from 'node:zlib';

const here = dirname(fileURLToPath(import.meta.url));
const dist = resolve(here, '..', 'dist');
const JS_BUDGET_BROTLI = 60 * 1024;
/**
 * Lazy chunks, fetched only when a message needs them, and their brotli budgets: the code
 * highlighter (src/markdown/languages.ts), the math typesetter (src/markdown/mathml.ts), the
 * account and admin pages (src/accounts.tsx, fetched when first opened), and the thread tools,
 * search and import / export pages (src/tools.ts, fetched when first opened).
 */
const LAZY_BUDGETS = { languages: 40 * 1024, mathml: 80 * 1024, accounts: 8 * 1024, tools: 12 * 1024 };
const LAZY = /^assets\/(languages|mathml|accounts|tools)-[A-Za-z0-9_-]+\.js$/;
const COMPRESSIBLE = /\.(js|css|html|svg)$/;

function walk(dir) {
  const out = [];
  for (const name of readdirSync(dir).sort()) {
    const p = join(dir, name);
    if (statSync(p).isDirectory()) out.push(...walk(p));
    else out.push(p);
  }
  return out;
}

const fail = (msg) => {
  console.error(`compress: ${msg}`);
  process.exit(1);
};

// Layout: index.html, favicon.svg, assets/index-<hash>.js, assets/index-<hash>.css, the lazy
// assets/languages-<hash>.js, assets/mathml-<hash>.js, assets/accounts-<hash>.js (the account
// and admin pages) and assets/tools-<hash>.js (thread tools, search, import / export), nothing else.
const files = walk(dist)
  .map((p) => relative(dist, p).split('\\').join('/'))
  .filter((p) => !p.endsWith('.br') && !p.endsWith('.gz'));
const js = files.filter((f) => /^assets\/index-[A-Za-z0-9_-]+\.js$/.test(f));
const css = files.filter((f) => /^assets\/index-[A-Za-z0-9_-]+\.css$/.test(f));
const lazy = files.filter((f) => LAZY.test(f));
const expected = new Set(['index.html', 'favicon.svg', ...js, ...css, ...lazy]);
const extra = files.filter((f) => !expected.has(f));
if (!files.includes('index.html')) fail('dist/index.html is missing');
if (!files.includes('favicon.svg')) fail('dist/favicon.svg is missing');
if (js.length !== 1) fail(`expected exactly one JS file in dist/assets, found ${js.length}`);
if (css.length !== 1) fail(`expected exactly one CSS file in dist/assets, found ${css.length}`);
for (const name of Object.keys(LAZY_BUDGETS)) {
  const found = lazy.filter((f) => f.startsWith(`assets/${name}-`));
  if (found.length !== 1) fail(`expected one lazy ${name} chunk, found ${found.length}`);
}
if (extra.length > 0) fail(`unexpected files in dist: ${extra.join(', ')}`);

const html = readFileSync(join(dist, 'index.html'), 'utf8');
if (/<script(?![^>]*\bsrc=)[^>]*>/i.test(html)) fail('index.html contains an inline <script>');
if (/\sstyle\s*=/i.test(html) || /<style[\s>]/i.test(html)) fail('index.html contains inline styles');
if (!html.includes(`src="/${js[0]}"`)) fail(`index.html does not reference /${js[0]}`);
if (!html.includes(`href="/${css[0]}"`)) fail(`index.html does not reference /${css[0]}`);
for (const f of lazy) if (html.includes(f)) fail(`index.html references the lazy chunk ${f}`);

const rows = [];
let jsBrotli = 0;
const lazyBrotli = {};
for (const f of files) {
  if (!COMPRESSIBLE.test(f)) continue;
  const p = join(dist, f);
  const raw = readFileSync(p);
  const br = brotliCompressSync(raw, {
    params: {
      [constants.BROTLI_PARAM_QUALITY]: 11,
      [constants.BROTLI_PARAM_SIZE_HINT]: raw.length,
      [constants.BROTLI_PARAM_MODE]: f.endsWith('.svg') || f.endsWith('.html') || f.endsWith('.css')
        ? constants.BROTLI_MODE_TEXT
        : constants.BROTLI_MODE_GENERIC,
    },
  });
  const gz = gzipSync(raw, { level: 9 });
  writeFileSync(`${p}.br`, br);
  writeFileSync(`${p}.gz`, gz);
  const lazyName = LAZY.exec(f)?.[1];
  if (lazyName) lazyBrotli[lazyName] = br.length;
  else if (f.endsWith('.js')) jsBrotli += br.length;
  rows.push([f, raw.length, gz.length, br.length]);
}

const kb = (n) => `${(n / 1024).toFixed(2)} KB`;
const w = Math.max(...rows.map((r) => r[0].length), 4);
console.log(`\n${'file'.padEnd(w)}  ${'raw'.padStart(10)}  ${'gzip'.padStart(10)}  ${'brotli'.padStart(10)}`);
for (const [f, raw, gz, br] of rows) {
  console.log(`${f.padEnd(w)}  ${kb(raw).padStart(10)}  ${kb(gz).padStart(10)}  ${kb(br).padStart(10)}`);
}
const total = rows.reduce((a, r) => [a[0] + r[1], a[1] + r[2], a[2] + r[3]], [0, 0, 0]);
console.log(`${'total'.padEnd(w)}  ${kb(total[0]).padStart(10)}  ${kb(total[1]).padStart(10)}  ${kb(total[2]).padStart(10)}`);
console.log(`first-load JS: ${kb(jsBrotli)} brotli (budget ${kb(JS_BUDGET_BROTLI)})`);
if (jsBrotli > JS_BUDGET_BROTLI) fail('first-load JS is over budget');
for (const [name, budget] of Object.entries(LAZY_BUDGETS)) {
  console.log(`lazy ${name} chunk: ${kb(lazyBrotli[name])} brotli (budget ${kb(budget)})`);
  if (lazyBrotli[name] > budget) fail(`the lazy ${name} chunk is over budget`);
}
