// End-to-end test of regenerating answers in the browser (real binary, fake OpenAI-compatible
// provider): an answer stopped half-way is regenerated from its "Regenerate" button, the new
// version streams in the answer's place and shows "2 / 2", the arrows switch versions (the first
// keeps its incomplete marker), a second member sees the versions, a reload keeps them, and
// another agent writes a further version ("Regenerate with…"). The provider is asked once per click.
// Run: EMERGENCE_BIN=target/debug/emergence node --test e2e/regenerate.test.mjs
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { FakeOpenAI, chunked } from './fake-openai.mjs';
import { launchBrowser, setupAgentServer, uniq } from './support.mjs';

const PASSWORD = 'e2e-password-123';
const SKIP = process.env.EMERGENCE_BIN ? false : 'needs EMERGENCE_BIN (the test starts a server with its own agents)';

/** Each answer says which call of the provider it is, so versions are told apart. */
const answer = (n) => `**Answer ${n}** — the sky is blue because of *Rayleigh scattering*.`;

let fake = null;
let server = null;
let browser = null;

before(async () => {
  if (SKIP) return;
  let calls = 0;
  fake = new FakeOpenAI(() => {
    calls += 1;
    // The first answer is slow (it gets stopped); the versions come fast.
    return calls === 1 ? { chunks: chunked(answer(1), 2), intervalMs: 120 } : { chunks: chunked(answer(calls), 8), intervalMs: 60 };
  });
  await fake.start();
  server = await setupAgentServer({
    name: 'regenerate',
    fake,
    agents: [
      { id: 'sage', name: 'Sage', system_prompt: 'You are Sage.' },
      { id: 'muse', name: 'Muse', system_prompt: 'You are Muse.' },
    ],
  });
  browser = await launchBrowser();
});

after(async () => {
  await browser?.close().catch(() => {});
  await server?.dispose();
  await fake?.stop();
});

async function newUser() {
  const context = await browser.newContext({ viewport: { width: 1280, height: 860 } });
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

/** The agent answers on screen: one per answer, whatever its versions. */
const answers = (page) => page.locator('[data-testid="message"][data-agent], [data-testid="stream"][data-agent]');

test('an incomplete answer is regenerated; versions switch with arrows and survive a reload', { skip: SKIP, timeout: 120_000 }, async () => {
  const a = await newUser();
  const b = await newUser();
  try {
    const title = uniq('Versions');
    await a.page.getByTestId('new-thread-title').fill(title);
    await a.page.locator('[data-testid="agent-option"][value="sage"]').check();
    await a.page.getByTestId('create-thread').click();
    await a.page.getByRole('heading', { name: title, exact: true }).waitFor();
    await a.page.getByTestId('member-username').fill(b.name);
    await a.page.getByTestId('add-member').click();
    await a.page.locator('[data-testid="member-status"][data-ok="true"]').waitFor();
    await a.page.locator('[data-testid="conn-status"][data-state="connected"]').waitFor();

    // Ask, and stop the answer once it has written something: it is kept as incomplete.
    await a.page.getByTestId('composer-agent').selectOption('sage');
    await a.page.getByTestId('composer').fill('Why is the sky blue?');
    await a.page.getByTestId('composer').press('Enter');
    await a.page.locator('[data-testid="stream"] .msg-body strong').first().waitFor();
    await a.page.getByTestId('stream-stop').click();
    const first = a.page.locator('[data-testid="message"][data-agent="sage"]');
    await first.getByTestId('incomplete').waitFor();
    assert.equal(await first.getByTestId('versions').count(), 0, 'one version: no arrows');

    // Regenerate it: the new version streams in the answer's place, then shows "2 / 2".
    await first.getByTestId('regenerate').click();
    await a.page.locator('[data-testid="stream"][data-agent="sage"] [data-testid="version-label"]').waitFor();
    assert.equal(await answers(a.page).count(), 1, 'in the answer’s place, not below it');
    const label = a.page.locator('[data-testid="message"][data-agent="sage"] [data-testid="version-label"]');
    await a.page.waitForFunction(() => document.querySelector('[data-testid="message"][data-agent="sage"] [data-testid="version-label"]')?.textContent === '2 / 2');
    const shown = a.page.locator('[data-testid="message"][data-agent="sage"]');
    assert.match(await shown.locator('.msg-body').textContent(), /Answer 2/);
    assert.equal(await shown.getByTestId('incomplete').count(), 0);
    assert.equal(await answers(a.page).count(), 1);

    // The arrows switch versions; the first keeps its incomplete marker.
    await shown.getByTestId('version-prev').click();
    assert.equal(await label.textContent(), '1 / 2');
    assert.match(await shown.locator('.msg-body').textContent(), /Answer 1/);
    await shown.getByTestId('incomplete').waitFor();
    assert.equal(await shown.getByTestId('version-prev').isDisabled(), true);
    await shown.getByTestId('version-next').click();
    assert.equal(await label.textContent(), '2 / 2');

    // The other member sees the same answer with its versions.
    await b.page.getByTestId('refresh-threads').click();
    await b.page.getByTestId('thread-item').filter({ hasText: title }).click();
    await b.page.locator('[data-testid="message"][data-agent="sage"] [data-testid="version-label"]').waitFor();
    assert.equal(await b.page.locator('[data-testid="message"][data-agent="sage"] [data-testid="version-label"]').textContent(), '2 / 2');

    // A reload keeps the versions, latest first, in the answer's place.
    await a.page.reload();
    await label.waitFor();
    assert.equal(await label.textContent(), '2 / 2');
    assert.equal(await answers(a.page).count(), 1);
    await shown.getByTestId('version-prev').click();
    assert.match(await shown.locator('.msg-body').textContent(), /Answer 1/);

    // A third version from the first one: "3 / 3", and the provider was asked once per click.
    await shown.getByTestId('regenerate').click();
    await a.page.waitForFunction(() => document.querySelector('[data-testid="message"][data-agent="sage"] [data-testid="version-label"]')?.textContent === '3 / 3');
    assert.match(await shown.locator('.msg-body').textContent(), /Answer 3/);
    await b.page.waitForFunction(() => document.querySelector('[data-testid="message"][data-agent="sage"] [data-testid="version-label"]')?.textContent === '3 / 3');
    // Another agent writes the next version, in the same place.
    await shown.getByTestId('regenerate-with').selectOption('muse');
    const byMuse = a.page.locator('[data-testid="message"][data-agent="muse"]');
    await byMuse.getByTestId('version-label').waitFor();
    assert.equal(await byMuse.getByTestId('version-label').textContent(), '4 / 4');
    assert.match(await byMuse.locator('.msg-body').textContent(), /Answer 4/);
    assert.equal(await answers(a.page).count(), 1);
    await byMuse.getByTestId('version-prev').click();
    assert.equal(await a.page.locator('[data-testid="message"][data-agent="sage"] [data-testid="version-label"]').textContent(), '3 / 4');
    assert.equal(fake.requests.length, 4);
    assert.deepEqual(
      fake.requests.map((r) => r.body?.model),
      ['sage', 'sage', 'sage', 'muse'],
    );
    assert.deepEqual(a.errors, []);
    assert.deepEqual(b.errors, []);
  } finally {
    await a.context.close();
    await b.context.close();
  }
});
