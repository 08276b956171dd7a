// End-to-end test of an agent's reasoning in the browser (issue #18): a fake OpenAI-compatible
// provider streams `delta.reasoning_content` before the answer. The page shows it live in a folded
// "Reasoning" disclosure above the answer (collapsed by default), never in the answer's text; it
// expands on a click and is still there, folded, after a reload (from the stored history).
// Run: EMERGENCE_BIN=target/debug/emergence node --test e2e/reasoning.test.mjs
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, before, test } from 'node:test';
import { FakeOpenAI } from './fake-openai.mjs';
import { launchBrowser, setupOwnServer } from './support.mjs';

const PASSWORD = 'e2e-password-123';
const SKIP = process.env.EMERGENCE_BIN ? false : 'needs EMERGENCE_BIN (the test starts a server with its own agents)';
const THOUGHTS = Array.from({ length: 30 }, (_, i) => `step${i} `);
const REASONING = THOUGHTS.join('');
const ANSWER = 'The answer is forty-two.';

let fake = null;
let server = null;
let browser = null;
let configDir = null;

before(async () => {
  if (SKIP) return;
  fake = new FakeOpenAI(() => ({ reasoning: THOUGHTS, chunks: ANSWER.split(/(?= )/), intervalMs: 60 }));
  await fake.start();
  configDir = mkdtempSync(path.join(os.tmpdir(), 'emergence-e2e-reasoning-cfg-'));
  const config = path.join(configDir, 'emergence.toml');
  writeFileSync(
    config,
    [
      '[[agent]]',
      'id = "thinker"',
      'name = "Thinker"',
      'provider = "openai"',
      'model = "thinking-model"',
      'colour = "#7a3db8"',
      '',
      '[providers]',
      `openai_base_url = "${fake.url}"`,
      'openai_api_key = "e2e-fake-key"',
      '',
    ].join('\n'),
  );
  server = await setupOwnServer({
    name: 'reasoning',
    env: { EMERGENCE_CONFIG: config, OPENAI_BASE_URL: fake.url, OPENAI_API_KEY: 'e2e-fake-key' },
  });
  browser = await launchBrowser();
});

after(async () => {
  await browser?.close().catch(() => {});
  await server?.dispose();
  await fake?.stop();
  if (configDir) rmSync(configDir, { recursive: true, force: true });
});

function uniq(prefix) {
  const r = Math.random().toString(36).slice(2, 8);
  return `${prefix}_${Date.now().toString(36)}${r}`.slice(0, 32);
}

test('reasoning shows folded above the answer, live, expands on a click and survives a reload', { skip: SKIP, timeout: 120_000 }, async () => {
  const context = await browser.newContext({ viewport: { width: 1280, height: 800 } });
  context.setDefaultTimeout(20_000);
  const page = await context.newPage();
  const pageErrors = [];
  page.on('pageerror', (e) => pageErrors.push(String(e)));
  try {
    await page.goto(`${server.url}/`);
    await page.getByTestId('username').fill(uniq('thinker'));
    await page.getByTestId('password').fill(PASSWORD);
    await page.getByTestId('register').click();
    await page.getByTestId('logout').waitFor();

    const title = `Thinking ${uniq('t')}`;
    const thinker = page.getByTestId('agent-option').and(page.locator('[value="thinker"]'));
    await thinker.waitFor();
    await page.getByTestId('new-thread-title').fill(title);
    await thinker.check();
    await page.getByTestId('create-thread').click();
    await page.getByRole('heading', { name: title, exact: true }).waitFor();
    await page.locator('[data-testid="conn-status"][data-state="connected"]').waitFor({ timeout: 30_000 });

    await page.getByTestId('composer-agent').selectOption('thinker');
    await page.getByTestId('composer').fill('Think it through.');
    await page.getByTestId('send').click();

    // While streaming: the disclosure is there, folded, and its text grows.
    const live = page.locator('[data-testid="stream"] [data-testid="reasoning"]');
    await live.waitFor({ timeout: 30_000 });
    assert.equal(await live.evaluate((d) => d.open), false, 'folded by default while streaming');
    assert.equal(await live.locator('summary').textContent(), 'Reasoning…');
    await page.waitForFunction(
      () => (document.querySelector('[data-testid="stream"] [data-testid="reasoning-text"]')?.textContent ?? '').includes('step5'),
      null,
      { timeout: 30_000, polling: 50 },
    );
    assert.equal(await live.getByTestId('reasoning-text').isVisible(), false, 'the folded text is hidden');
    // The agent's colour from GET /api/agents on its answer.
    const edge = await page.getByTestId('stream').evaluate((el) => getComputedStyle(el).getPropertyValue('--agent-colour').trim());
    assert.equal(edge, '#7a3db8');

    // The stored answer: the reasoning folded above it, never inside the answer's text.
    const answer = page.getByTestId('message').filter({ hasText: 'forty-two' });
    await answer.waitFor({ timeout: 30_000 });
    const check = async (where) => {
      const body = (await answer.getByTestId('message-body').textContent()).trim();
      assert.equal(body, ANSWER, `${where}: the answer alone`);
      const details = answer.getByTestId('reasoning');
      assert.equal(await details.evaluate((d) => d.open), false, `${where}: folded by default`);
      assert.equal(await details.locator('summary').textContent(), 'Reasoning');
      assert.equal(await details.getByTestId('reasoning-text').isVisible(), false, `${where}: hidden while folded`);
      await details.locator('summary').click();
      assert.equal(await details.evaluate((d) => d.open), true, `${where}: expands on a click`);
      assert.equal(await details.getByTestId('reasoning-text').isVisible(), true);
      assert.equal(await details.getByTestId('reasoning-text').textContent(), REASONING);
    };
    await check('after the stream');
    await page.reload();
    await page.getByRole('heading', { name: title, exact: true }).waitFor();
    await answer.waitFor();
    await check('after a reload');
    assert.equal(fake.requests.length, 1, 'the provider was asked once');
    assert.deepEqual(pageErrors, [], 'no script errors');
  } finally {
    await context.close();
  }
});
