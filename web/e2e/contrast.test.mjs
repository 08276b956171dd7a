// WCAG AA contrast, audited in the browser (real binary, fake OpenAI-compatible provider): axe-core's
// `color-contrast` rule (4.5:1 for text, 3:1 for large text) over the main screens, in the light and
// the dark theme: the login form, a thread with a Markdown answer (table, code, link), an
// incomplete answer, a regenerated answer's versions, a debate and the composer in debate mode,
// and the account and admin pages. Also: Enter sends, Shift+Enter adds a line, the focus is visible.
// Run: EMERGENCE_BIN=target/debug/emergence node --test e2e/contrast.test.mjs
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { after, before, test } from 'node:test';
import { FakeOpenAI, chunked } from './fake-openai.mjs';
import { launchBrowser, setupAgentServer, uniq } from './support.mjs';

const PASSWORD = 'e2e-password-123';
const SKIP = process.env.EMERGENCE_BIN ? false : 'needs EMERGENCE_BIN (the test starts a server with its own agents)';
const AXE = readFileSync(createRequire(import.meta.url).resolve('axe-core/axe.min.js'), 'utf8');
const ANSWER =
  '### Findings\n\n| camp | position |\n| --- | --- |\n| Alpha | ship now |\n\nRun `cargo test`, see [the docs](https://example.com/docs).\n\n```rust\nfn main() { println!("hi"); }\n```\n\n> quoted ~~old~~ text';

let fake = null;
let server = null;
let browser = null;

before(async () => {
  if (SKIP) return;
  fake = new FakeOpenAI((body) => {
    const slow = body?.model === 'slow';
    return { chunks: chunked(ANSWER, slow ? 3 : 24), intervalMs: slow ? 150 : 20 };
  });
  await fake.start();
  server = await setupAgentServer({
    name: 'contrast',
    fake,
    agents: [
      { id: 'alpha', name: 'Alpha', system_prompt: 'You are Alpha.' },
      { id: 'beta', name: 'Beta', system_prompt: 'You are Beta.' },
      { id: 'slow', name: 'Slow', system_prompt: 'You are Slow.' },
    ],
  });
  browser = await launchBrowser();
});

after(async () => {
  await browser?.close().catch(() => {});
  await server?.dispose();
  await fake?.stop();
});

/** axe-core's color-contrast violations on the page as it is: one line per failing element. */
async function contrastFailures(page, screen) {
  await page.evaluate(AXE);
  const violations = await page.evaluate(async () => {
    const r = await window.axe.run(document, { runOnly: { type: 'rule', values: ['color-contrast'] }, resultTypes: ['violations'] });
    return r.violations.flatMap((v) => v.nodes.map((n) => `${n.target.join(' ')}: ${n.any.map((a) => a.message).join('; ')}`));
  });
  return violations.map((v) => `${screen}: ${v}`);
}

test('every main screen meets WCAG AA contrast in the light and the dark theme', { skip: SKIP, timeout: 180_000 }, async () => {
  // The screens are set up once (light), then audited in both themes from the same session.
  const setup = await browser.newContext({ viewport: { width: 1280, height: 900 } });
  setup.setDefaultTimeout(30_000);
  const page = await setup.newPage();
  const name = uniq('u');
  await page.goto(`${server.url}/`);
  await page.getByTestId('username').fill(name);
  await page.getByTestId('password').fill(PASSWORD);
  await page.getByTestId('register').click();
  await page.getByTestId('logout').waitFor();
  const title = uniq('Contrast');
  await page.getByTestId('new-thread-title').fill(title);
  for (const id of ['alpha', 'beta', 'slow']) await page.locator(`[data-testid="agent-option"][value="${id}"]`).check();
  await page.getByTestId('create-thread').click();
  await page.getByRole('heading', { name: title, exact: true }).waitFor();
  await page.locator('[data-testid="conn-status"][data-state="connected"]').waitFor();
  // A rendered answer, regenerated once (versions), an incomplete answer, a debate.
  await page.getByTestId('composer-agent').selectOption('alpha');
  await page.getByTestId('composer').fill('Summarise, please.');
  await page.getByTestId('composer').press('Enter');
  await page.locator('[data-testid="message"][data-agent="alpha"] table').waitFor();
  await page.locator('[data-testid="message"][data-agent="alpha"] [data-testid="regenerate"]').click();
  await page.waitForFunction(() => document.querySelector('[data-testid="message"][data-agent="alpha"] [data-testid="version-label"]')?.textContent === '2 / 2');
  await page.getByTestId('composer-agent').selectOption('slow');
  await page.getByTestId('composer').fill('Slowly now.');
  await page.getByTestId('composer').press('Enter');
  await page.locator('[data-testid="stream"] .msg-body h3').first().waitFor();
  await page.getByTestId('stream-stop').click();
  await page.locator('[data-testid="message"][data-agent="slow"] [data-testid="incomplete"]').waitFor();
  await page.getByTestId('composer-agent').selectOption('__debate');
  for (const id of ['alpha', 'beta']) await page.locator(`[data-testid="agent-chip"][value="${id}"]`).check();
  await page.getByTestId('debate-rounds').fill('1');
  await page.getByTestId('composer').fill('Tabs or spaces?');
  await page.getByTestId('composer').press('Enter');
  await page.waitForFunction(() => document.querySelectorAll('[data-testid="debate"] [data-testid="message"][data-agent]').length === 2);
  // Keyboard: Shift+Enter adds a line, Enter sends.
  await page.getByTestId('composer-agent').selectOption('');
  await page.getByTestId('composer').fill('first line');
  await page.getByTestId('composer').press('Shift+Enter');
  await page.getByTestId('composer').type('second line');
  assert.equal(await page.getByTestId('composer').inputValue(), 'first line\nsecond line');
  await page.getByTestId('composer').press('Enter');
  await page.locator('[data-testid="message"][data-state="sent"]', { hasText: 'second line' }).waitFor();
  assert.equal(await page.getByTestId('composer').inputValue(), '');
  const threadUrl = page.url();
  const state = await setup.storageState();
  await setup.close();

  const failures = [];
  for (const colorScheme of ['light', 'dark']) {
    // Logged out: the login form.
    const anon = await browser.newContext({ viewport: { width: 1280, height: 900 }, colorScheme, bypassCSP: true });
    const login = await anon.newPage();
    await login.goto(`${server.url}/`);
    await login.getByTestId('username').waitFor();
    failures.push(...(await contrastFailures(login, `login (${colorScheme})`)));
    await anon.close();

    const context = await browser.newContext({ viewport: { width: 1280, height: 900 }, colorScheme, storageState: state, bypassCSP: true });
    context.setDefaultTimeout(30_000);
    const p = await context.newPage();
    await p.goto(threadUrl);
    await p.getByRole('heading', { name: title, exact: true }).waitFor();
    await p.locator('[data-testid="debate"] [data-testid="message"][data-agent]').nth(1).waitFor();
    await p.locator('[data-testid="message"] pre code').first().waitFor();
    // The theme really is the one asked for.
    const dark = await p.evaluate(() => matchMedia('(prefers-color-scheme: dark)').matches);
    assert.equal(dark, colorScheme === 'dark');
    // The composer in debate mode shows its chips, rounds and mediator.
    await p.getByTestId('composer-agent').selectOption('__debate');
    await p.getByTestId('composer').focus();
    failures.push(...(await contrastFailures(p, `thread (${colorScheme})`)));
    // The focused composer has a visible outline.
    const outline = await p.getByTestId('composer').evaluate((el) => {
      const s = getComputedStyle(el);
      return `${s.outlineStyle} ${s.outlineWidth}`;
    });
    assert.match(outline, /^(solid|auto) [1-9]/, `focus visible (${colorScheme})`);
    await p.getByTestId('nav-account').click();
    await p.locator('.accounts-main h2, .accounts-main h1').first().waitFor();
    failures.push(...(await contrastFailures(p, `account (${colorScheme})`)));
    await p.getByTestId('nav-admin').click();
    await p.locator('.accounts-main h2, .accounts-main h1').first().waitFor();
    failures.push(...(await contrastFailures(p, `admin (${colorScheme})`)));
    await context.close();
  }
  assert.deepEqual(failures, [], `contrast below WCAG AA:\n${failures.join('\n')}`);
});
