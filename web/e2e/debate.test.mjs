// End-to-end tests of multi-agent conversations in the browser (real binary, fake OpenAI-compatible
// provider streaming Markdown): a debate of 3 agents x 2 rounds with a mediator started from the
// composer, watched live by a second member (its stop control staying between two turns),
// surviving a reload mid-turn; a debate stopped from the UI; two agents answering one message side
// by side, one stopped alone; the French UI and the language switch. Also takes the screenshots
// of docs/screenshots/debate-*.png.
// Run: EMERGENCE_BIN=target/debug/emergence node --test e2e/debate.test.mjs
import assert from 'node:assert/strict';
import { copyFileSync, mkdirSync } from 'node:fs';
import path from 'node:path';
import { after, before, test } from 'node:test';
import { FakeOpenAI, chunked } from './fake-openai.mjs';
import { ARTIFACTS_DIR, REPO_DIR, launchBrowser, setupAgentServer, uniq } from './support.mjs';

const PASSWORD = 'e2e-password-123';
const SKIP = process.env.EMERGENCE_BIN ? false : 'needs EMERGENCE_BIN (the test starts a server with its own agents)';
const AGENTS = [
  ['alpha', 'Alpha'],
  ['beta', 'Beta'],
  ['gamma', 'Gamma'],
  ['judge', 'Judge'],
];

/** What each model says: Markdown with a table, a list and a code span, streamed in small chunks. */
function answerText(model, synthesis) {
  if (synthesis) {
    return `### Synthesis\n\n**Agreement:** ship small, measure.\n\n| camp | position |\n| --- | --- |\n| Alpha | ship now |\n| Beta | wait a week |\n\nConclusion: \`ship behind a flag\`.`;
  }
  return `**${model}** argues:\n\n- first, the *risk* is low\n- second, users wait\n\n> ${model} rests the case.`;
}

let fake = null;
let server = null;
let browser = null;

before(async () => {
  if (SKIP) return;
  fake = new FakeOpenAI((body) => {
    const synthesis = String(body?.messages?.[0]?.content ?? '').includes('closing synthesis');
    const slow = body?.model === 'slow';
    return { chunks: chunked(answerText(body?.model ?? '?', synthesis), slow ? 2 : 6), intervalMs: slow ? 80 : 60 };
  });
  await fake.start();
  server = await setupAgentServer({
    name: 'debate',
    fake,
    agents: [
      ...AGENTS.map(([id, name]) => ({ id, name, system_prompt: `You are ${name}.` })),
      { id: 'slow', name: 'Slow', system_prompt: 'You are slow.' },
    ],
  });
  browser = await launchBrowser();
});

after(async () => {
  await browser?.close().catch(() => {});
  await server?.dispose();
  await fake?.stop();
});

async function newUser(options = {}) {
  const context = await browser.newContext({ viewport: { width: 1280, height: 860 }, ...options });
  context.setDefaultTimeout(30_000);
  const page = await context.newPage();
  const errors = [];
  page.on('pageerror', (e) => errors.push(String(e)));
  const name = uniq('u');
  await page.goto(`${server.url}/`);
  await page.getByTestId('username').fill(name);
  await page.getByTestId('password').fill(PASSWORD);
  await page.getByTestId('register').click();
  await page.getByTestId('logout').waitFor();
  return { context, page, name, errors };
}

async function createThread(page, title) {
  await page.getByTestId('new-thread-title').fill(title);
  for (const [id] of AGENTS) await page.locator(`[data-testid="agent-option"][value="${id}"]`).check();
  await page.getByTestId('create-thread').click();
  await page.getByRole('heading', { name: title, exact: true }).waitFor();
  await page.locator('[data-testid="conn-status"][data-state="connected"]').waitFor();
}

async function startDebate(page, topic, agents, rounds, mediator) {
  await page.getByTestId('composer-agent').selectOption('__debate');
  for (const id of agents) await page.locator(`[data-testid="agent-chip"][value="${id}"]`).check();
  await page.getByTestId('debate-rounds').fill(String(rounds));
  if (mediator) await page.getByTestId('debate-mediator').selectOption(mediator);
  await page.getByTestId('composer').fill(topic);
  await page.getByTestId('composer').press('Enter');
}

/** The places ("Round 1", "Synthesis") and authors of the stored turns of the debate on screen. */
async function turns(page) {
  return page.locator('[data-testid="debate"] [data-testid="message"][data-agent]').evaluateAll((els) =>
    els.map((el) => `${el.getAttribute('data-author')}:${el.querySelector('[data-testid="debate-place"]')?.textContent ?? ''}`),
  );
}

const EXPECTED_TURNS = [
  'Alpha:Round 1',
  'Beta:Round 1',
  'Gamma:Round 1',
  'Alpha:Round 2',
  'Beta:Round 2',
  'Gamma:Round 2',
  'Judge:Synthesis',
];

test('a debate of 3 agents x 2 rounds with a mediator, watched by a second member, survives a reload', { skip: SKIP, timeout: 180_000 }, async () => {
  const a = await newUser();
  const b = await newUser();
  try {
    const title = uniq('Debate');
    await createThread(a.page, title);
    await a.page.getByTestId('member-username').fill(b.name);
    await a.page.getByTestId('add-member').click();
    await a.page.locator('[data-testid="member-status"][data-ok="true"]').waitFor();
    await b.page.getByTestId('refresh-threads').click();
    await b.page.getByTestId('thread-item').filter({ hasText: title }).click();
    await b.page.locator('[data-testid="conn-status"][data-state="connected"]').waitFor();

    await startDebate(a.page, 'Ship on **Monday** or wait a week?', ['alpha', 'beta', 'gamma'], 2, 'judge');
    // Both members see the debate unit with a running turn.
    for (const p of [a.page, b.page]) {
      await p.locator('[data-testid="debate"][data-running="true"] [data-testid="stream"]').first().waitFor();
    }
    // B's debate stays "running" (its stop control shown) from turn to turn, also between two
    // turns when no stream runs, until the synthesis ends it: one flip to "false", at the end.
    await b.page.evaluate(() => {
      const el = document.querySelector('[data-testid="debate"]');
      window.runningFlips = [];
      new MutationObserver(() => window.runningFlips.push(el.getAttribute('data-running'))).observe(el, {
        attributes: true,
        attributeFilter: ['data-running'],
      });
    });
    // Reload A in the middle of a turn: the debate is still one unit and goes on.
    await a.page.locator('[data-testid="debate"] [data-testid="stream"] .msg-body strong').first().waitFor();
    await a.page.reload();
    await a.page.locator('[data-testid="debate"]').waitFor();
    for (const p of [a.page, b.page]) {
      await p.waitForFunction(
        (n) => document.querySelectorAll('[data-testid="debate"] [data-testid="message"][data-agent]').length === n,
        EXPECTED_TURNS.length,
        { timeout: 60_000 },
      );
      await p.locator('[data-testid="debate"][data-running="false"]').waitFor();
      assert.deepEqual(await turns(p), EXPECTED_TURNS);
      assert.equal(await p.locator('[data-testid="debate"]').count(), 1, 'one debate unit');
    }
    assert.deepEqual(await b.page.evaluate(() => window.runningFlips), ['false'], 'running between turns');
    // The synthesis is rendered Markdown (a table), each turn names its model, with stats on hover.
    const synthesis = a.page.locator('[data-testid="message"][data-author="Judge"]');
    assert.equal(await synthesis.locator('table td').first().textContent(), 'Alpha');
    const stats = await a.page.locator('[data-testid="debate"] [data-testid="answer-stats"]').first().getAttribute('title');
    assert.match(stats, /^model alpha · 10 \+ \d+ tokens · [\d.]+ ?s(ec)?$/);
    assert.equal(await a.page.locator('[data-testid="debate"] [data-testid="stream"]').count(), 0);
    // The topic is the first entry of the unit.
    assert.match(await a.page.locator('[data-testid="debate"] [data-testid="message"]').first().textContent(), /Monday/);
    mkdirSync(ARTIFACTS_DIR, { recursive: true });
    await a.page.screenshot({ path: path.join(ARTIFACTS_DIR, 'debate.png') });
    await screenshots(a.page.url(), title, b);
    assert.deepEqual(a.errors, []);
    assert.deepEqual(b.errors, []);
  } finally {
    await a.context.close();
    await b.context.close();
  }
});

/** Desktop and phone, light and dark, of the finished debate, into docs/screenshots/. */
async function screenshots(url, title, user) {
  const dir = path.join(REPO_DIR, 'docs', 'screenshots');
  mkdirSync(dir, { recursive: true });
  const state = await user.context.storageState();
  for (const [form, viewport] of [
    ['desktop', { width: 1280, height: 860 }],
    ['phone', { width: 390, height: 844 }],
  ]) {
    for (const scheme of ['light', 'dark']) {
      const context = await browser.newContext({ viewport, colorScheme: scheme, storageState: state, deviceScaleFactor: 1 });
      const page = await context.newPage();
      await page.goto(url.replace(/#.*$/, '') + new URL(url).hash);
      await page.getByRole('heading', { name: title, exact: true }).waitFor();
      await page.locator('[data-testid="message"][data-author="Judge"] table').waitFor();
      await page.locator('[data-testid="message"][data-author="Judge"]').scrollIntoViewIfNeeded();
      const file = path.join(ARTIFACTS_DIR, `debate-${form}-${scheme}.png`);
      await page.screenshot({ path: file });
      copyFileSync(file, path.join(dir, `debate-${form}-${scheme}.png`));
      await context.close();
    }
  }
}

test('a debate is stopped from the UI: the running turn is kept as incomplete, no turn follows', { skip: SKIP, timeout: 120_000 }, async () => {
  const a = await newUser();
  try {
    await createThread(a.page, uniq('Stop'));
    await startDebate(a.page, 'Stop this one', ['slow', 'alpha'], 3, 'judge');
    const stream = a.page.locator('[data-testid="debate"] [data-testid="stream"]');
    await stream.locator('.msg-body strong').first().waitFor();
    await a.page.getByTestId('debate-stop').click();
    const partial = a.page.locator('[data-testid="debate"] [data-testid="message"][data-author="Slow"]');
    await partial.waitFor();
    assert.match(await partial.getByTestId('incomplete').textContent(), /incomplete: The answer was cancelled\./);
    await a.page.locator('[data-testid="debate"][data-running="false"]').waitFor();
    await new Promise((r) => setTimeout(r, 1500));
    assert.equal(await a.page.locator('[data-testid="debate"] [data-testid="message"][data-agent]').count(), 1);
    assert.equal(await stream.count(), 0);
    assert.deepEqual(a.errors, []);
  } finally {
    await a.context.close();
  }
});

test('two agents answer one message side by side; one is stopped alone', { skip: SKIP, timeout: 120_000 }, async () => {
  const a = await newUser();
  try {
    await createThread(a.page, uniq('Parallel'));
    await a.page.getByTestId('composer-agent').selectOption('__several');
    await a.page.locator('[data-testid="agent-chip"][value="slow"]').check();
    await a.page.locator('[data-testid="agent-chip"][value="beta"]').check();
    await a.page.getByTestId('composer').fill('Both of you, please.');
    await a.page.getByTestId('send').click();
    // Both stream at once, side by side (one row on a wide screen).
    const row = a.page.getByTestId('parallel');
    await row.locator('[data-testid="stream"]').nth(1).waitFor();
    const boxes = await row.locator('[data-testid="stream"]').evaluateAll((els) => els.map((e) => e.getBoundingClientRect().top));
    assert.equal(Math.round(boxes[0]), Math.round(boxes[1]), 'side by side');
    // Stop Slow once it has written something: a stream stopped before its first token leaves
    // no partial answer to keep, so nothing would be stored as incomplete.
    const slow = row.locator('[data-testid="stream"][data-agent="slow"]');
    const empty = (await slow.textContent()).length;
    await a.page.waitForFunction(
      (n) => (document.querySelector('[data-testid="parallel"] [data-testid="stream"][data-agent="slow"]')?.textContent.length ?? 0) > n + 20,
      empty,
    );
    await slow.locator('[data-testid="stream-stop"]').click();
    await row.locator('[data-testid="message"][data-author="Slow"] [data-testid="incomplete"]').waitFor();
    await row.locator('[data-testid="message"][data-author="Beta"]').waitFor();
    assert.equal(await row.locator('[data-testid="message"][data-author="Beta"] [data-testid="incomplete"]').count(), 0);
    assert.match(await row.locator('[data-testid="message"][data-author="Beta"] blockquote').textContent(), /beta rests the case/);
    // On a phone, the answers are stacked.
    await a.page.setViewportSize({ width: 390, height: 844 });
    const stacked = await row.locator('[data-testid="message"]').evaluateAll((els) => els.map((e) => e.getBoundingClientRect().top));
    assert.ok(stacked[1] > stacked[0] + 20, 'stacked on a phone');
    assert.deepEqual(a.errors, []);
  } finally {
    await a.context.close();
  }
});

test('a French reader gets the French UI and can switch language, which is remembered', { skip: SKIP, timeout: 90_000 }, async () => {
  const a = await newUser({ locale: 'fr-FR' });
  try {
    assert.equal(await a.page.getByTestId('logout').textContent(), 'Se déconnecter');
    assert.equal(await a.page.evaluate(() => document.documentElement.lang), 'fr');
    await createThread(a.page, uniq('Fil'));
    assert.equal(await a.page.getByTestId('send').textContent(), 'Envoyer');
    await a.page.getByTestId('composer-agent').selectOption('__debate');
    assert.equal(await a.page.getByTestId('send').textContent(), 'Lancer le débat');
    await a.page.getByTestId('lang').selectOption('en');
    assert.equal(await a.page.getByTestId('send').textContent(), 'Start debate');
    assert.equal(await a.page.getByTestId('logout').textContent(), 'Log out');
    await a.page.reload();
    await a.page.getByTestId('logout').waitFor();
    assert.equal(await a.page.getByTestId('logout').textContent(), 'Log out', 'the choice is remembered');
    assert.equal(await a.page.evaluate(() => document.documentElement.lang), 'en');
    assert.deepEqual(a.errors, []);
  } finally {
    await a.context.close();
  }
});

test('Esc in the composer stops the running answer; focus stays visible', { skip: SKIP, timeout: 90_000 }, async () => {
  const a = await newUser();
  try {
    await createThread(a.page, uniq('Esc'));
    await a.page.getByTestId('composer-agent').selectOption('slow');
    await a.page.getByTestId('composer').fill('Take your time.');
    await a.page.getByTestId('composer').press('Enter');
    await a.page.locator('[data-testid="stream"] .msg-body strong').first().waitFor();
    await a.page.getByTestId('composer').press('Escape');
    const partial = a.page.locator('[data-testid="message"][data-author="Slow"]');
    await partial.getByTestId('incomplete').waitFor();
    assert.equal(await a.page.getByTestId('stream').count(), 0);
    // The composer keeps the focus, with a visible outline.
    const outline = await a.page.getByTestId('composer').evaluate((el) => {
      const s = getComputedStyle(el);
      return document.activeElement === el ? `${s.outlineStyle} ${s.outlineWidth}` : 'not focused';
    });
    assert.match(outline, /^(solid|auto) [1-9]/);
    assert.deepEqual(a.errors, []);
  } finally {
    await a.context.close();
  }
});
