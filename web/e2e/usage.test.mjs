// End-to-end: usage, cost and budgets in the browser. A server whose agent talks to a fake
// OpenAI-compatible provider (12 tokens an answer), with a price for its model and a default
// budget of 20 tokens a day: two answers pass, the third ask shows the translated "budget spent"
// notice with when it resets and reaches no provider. "My account" shows my usage this month and
// what is left; the Admin page draws tokens per day, lists agents and models with their cost,
// serves the CSV, and an override set there lets the user ask again. Screenshots of both pages.
// A French reader gets the same refusal in French.
// Run: EMERGENCE_BIN=target/debug/emergence node --test e2e/usage.test.mjs
import assert from 'node:assert/strict';
import { copyFileSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, before, test } from 'node:test';
import { FakeOpenAI } from './fake-openai.mjs';
import { ARTIFACTS_DIR, REPO_DIR, launchBrowser, setupOwnServer } from './support.mjs';

const PASSWORD = 'e2e-password-123';
const SKIP = process.env.EMERGENCE_BIN ? false : 'needs EMERGENCE_BIN (the test starts a server with its own agent)';

let fake = null;
let server = null;
let browser = null;
let configDir = null;

before(async () => {
  if (SKIP) return;
  fake = new FakeOpenAI(() => ({ chunks: ['Hello', ' there'], intervalMs: 10 }));
  await fake.start();
  configDir = mkdtempSync(path.join(os.tmpdir(), 'emergence-e2e-usage-cfg-'));
  const config = path.join(configDir, 'emergence.toml');
  writeFileSync(
    config,
    [
      '[[agent]]', 'id = "helper"', 'name = "Helper"', 'provider = "openai"', 'model = "m1"', '',
      '[providers]', `openai_base_url = "${fake.url}"`, 'openai_api_key = "e2e-fake-key"', 'ollama_url = ""', '',
      '[prices."m1"]', 'input_per_million = 1000.0', 'output_per_million = 2000.0', '',
      '[budgets]', 'daily_tokens = 20', '',
    ].join('\n'),
  );
  server = await setupOwnServer({ name: 'usage', env: { EMERGENCE_CONFIG: config } });
  browser = await launchBrowser();
});

after(async () => {
  await browser?.close().catch(() => {});
  await server?.dispose();
  await fake?.stop();
  if (configDir) rmSync(configDir, { recursive: true, force: true });
});

/** A screenshot of the whole accounts page (the window grown to its height for the shot). */
async function shot(page, name) {
  mkdirSync(ARTIFACTS_DIR, { recursive: true });
  const file = path.join(ARTIFACTS_DIR, name);
  const size = page.viewportSize();
  const height = await page.evaluate(() => {
    const main = document.querySelector('.accounts-main');
    main?.scrollTo(0, 0);
    return (main?.scrollHeight ?? 0) + (document.querySelector('.topbar')?.clientHeight ?? 0);
  });
  await page.setViewportSize({ width: size.width, height: Math.max(size.height, height + 8) });
  await page.screenshot({ path: file });
  await page.setViewportSize(size);
  if (process.env.UPDATE_SCREENSHOTS === '1') copyFileSync(file, path.join(REPO_DIR, 'docs', 'screenshots', name));
}

async function ask(page, text) {
  await page.getByTestId('composer-agent').selectOption('helper');
  await page.getByTestId('composer').fill(text);
  await page.getByTestId('send').click();
}

test('a spent budget is said in the composer; my account and the admin page show usage, cost and budgets', { skip: SKIP, timeout: 180_000 }, async () => {
  const context = await browser.newContext({ viewport: { width: 1280, height: 900 } });
  context.setDefaultTimeout(20_000);
  const page = await context.newPage();
  const pageErrors = [];
  page.on('pageerror', (e) => pageErrors.push(String(e)));
  try {
    await page.goto(`${server.url}/`);
    await page.getByTestId('username').fill('root');
    await page.getByTestId('password').fill(PASSWORD);
    await page.getByTestId('register').click();
    await page.getByTestId('logout').waitFor();
    await page.getByTestId('new-thread-title').fill('Costs');
    await page.getByTestId('create-thread').click();
    await page.getByRole('heading', { name: 'Costs', exact: true }).waitFor();
    await page.locator('[data-testid="conn-status"][data-state="connected"]').waitFor({ timeout: 30_000 });

    // Two answers of 12 tokens: the second starts at 12, under the 20 of the day.
    for (const [i, text] of ['first question', 'second question'].entries()) {
      await ask(page, text);
      await page.getByTestId('message').filter({ hasText: 'Hello there' }).nth(i).waitFor();
    }
    assert.equal(fake.requests.length, 2);
    // The third: refused before any provider call, said where the user types.
    await ask(page, 'third question');
    const notice = page.locator('.notice-line').filter({ hasText: 'budget is spent' });
    await notice.waitFor();
    const tomorrow = new Date(Date.UTC(new Date().getUTCFullYear(), new Date().getUTCMonth(), new Date().getUTCDate() + 1));
    assert.match(await notice.textContent(), /Your usage budget is spent\. It resets on .+\./);
    assert.ok((await notice.textContent()).includes(String(tomorrow.getFullYear())));
    assert.equal(fake.requests.length, 2, 'no provider call for the refused ask');

    // My account: this month's usage and the budget left.
    await page.getByTestId('nav-account').click();
    await page.getByTestId('account-page').waitFor();
    await page.getByTestId('my-usage-summary').filter({ hasText: '2 answers, 24 tokens' }).waitFor();
    await page.getByTestId('usage-helper-m1').waitFor();
    const budget = await page.getByTestId('my-budget').textContent();
    assert.match(budget, /0 of 20 tokens left/);
    assert.match(budget, /no limit/);
    await shot(page, 'account.png');

    // Admin: a bar for today, the agent and model with its cost, the CSV, the budgets.
    await page.getByTestId('nav-admin').click();
    await page.getByTestId('admin-usage').waitFor();
    const today = new Date().toISOString().slice(0, 10);
    const bar = page.locator(`[data-testid="usage-chart"] rect[data-day="${today}"]`);
    assert.equal(await bar.getAttribute('data-tokens'), '24');
    assert.ok(Number(await bar.getAttribute('height')) > 0);
    const row = page.getByTestId('usage-helper-m1');
    // 20 prompt tokens x 1000 / M + 4 answer tokens x 2000 / M = 0.028
    assert.match(await row.textContent(), /0\.028/);
    const href = await page.getByTestId('usage-csv').getAttribute('href');
    const csv = await page.evaluate(async (u) => (await fetch(u)).text(), href);
    const [header, line] = csv.trim().split('\n');
    assert.equal(header, 'day,agent,model,user_id,username,answers,prompt_tokens,completion_tokens,total_tokens,cost');
    assert.match(line, new RegExp(`^${today},helper,m1,[^,]+,root,2,20,4,24,0\\.028000$`));
    const mine = page.getByTestId('budget-user-root');
    await mine.getByTestId('daily').fill('1000');
    await mine.getByTestId('save').click();
    await page.getByTestId('budget-saved').waitFor();
    await shot(page, 'admin.png');

    // With the override the user may ask again.
    await page.getByTestId('nav-admin').click(); // "Back to chat": the thread is still open
    await page.getByTestId('composer').waitFor();
    await ask(page, 'fourth question');
    await page.getByTestId('message').filter({ hasText: 'Hello there' }).nth(2).waitFor();
    assert.equal(fake.requests.length, 3);
    assert.deepEqual(pageErrors, [], 'no script errors');
  } finally {
    await context.close();
  }
});

test('a French reader is told in French that the budget is spent, with when it resets', { skip: SKIP, timeout: 120_000 }, async () => {
  const context = await browser.newContext({ viewport: { width: 1280, height: 800 }, locale: 'fr-FR' });
  context.setDefaultTimeout(20_000);
  const page = await context.newPage();
  try {
    await page.goto(`${server.url}/`);
    await page.getByTestId('username').fill('marie');
    await page.getByTestId('password').fill(PASSWORD);
    await page.getByTestId('register').click();
    await page.getByTestId('logout').waitFor();
    await page.getByTestId('new-thread-title').fill('Budget');
    await page.getByTestId('create-thread').click();
    await page.getByRole('heading', { name: 'Budget', exact: true }).waitFor();
    await page.locator('[data-testid="conn-status"][data-state="connected"]').waitFor({ timeout: 30_000 });
    const before = fake.requests.length;
    for (const [i, text] of ['une', 'deux'].entries()) {
      await ask(page, text);
      await page.getByTestId('message').filter({ hasText: 'Hello there' }).nth(i).waitFor();
    }
    await ask(page, 'trois');
    const notice = page.locator('.notice-line').filter({ hasText: 'budget' });
    await notice.waitFor();
    assert.match(await notice.textContent(), /Votre budget d’utilisation est épuisé\. Il sera renouvelé le .+\./);
    assert.equal(fake.requests.length, before + 2, 'no provider call for the refused ask');
  } finally {
    await context.close();
  }
});
