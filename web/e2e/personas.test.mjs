// End-to-end: an admin creates a provider connection (with a key) and an agent on it in the Admin
// page, picking the model from the connection's own list; back in the chat, the new agent is
// offered at once, answers with the fake provider's text, and the key went to the provider but
// is never shown again.
// Run: EMERGENCE_BIN=target/debug/emergence node --test e2e/personas.test.mjs
import assert from 'node:assert/strict';
import { mkdirSync } from 'node:fs';
import path from 'node:path';
import { after, before, test } from 'node:test';
import { FakeOpenAI } from './fake-openai.mjs';
import { ARTIFACTS_DIR, launchBrowser, setupOwnServer } from './support.mjs';

const PASSWORD = 'e2e-password-123';
const KEY = 'sk-e2e-personas-4b7d1e9a3c';
const ANSWER = 'Greetings from the oracle.';
const SKIP = process.env.EMERGENCE_BIN ? false : 'set EMERGENCE_BIN to run the personas end-to-end test';

let fake = null;
let server = null;
let browser = null;

before(async () => {
  if (SKIP) return;
  fake = new FakeOpenAI(() => ({ chunks: ANSWER.split(/(?= )/), intervalMs: 20 }));
  fake.models = ['oracle-1', 'text-embedding-3-small'];
  await fake.start();
  server = await setupOwnServer({ name: 'personas', env: { EMERGENCE_OLLAMA_URL: 'off' } });
  browser = await launchBrowser();
});

after(async () => {
  await browser?.close().catch(() => {});
  await server?.dispose();
  await fake?.stop();
});

test('an admin creates an agent in the UI, then asks it and gets the provider answer', { skip: SKIP, timeout: 120_000 }, async () => {
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
    await page.getByTestId('nav-admin').click();

    // The settings' agents are listed read-only.
    const agents = page.getByTestId('admin-agents');
    await agents.getByTestId('agent-row-anima').waitFor();

    // A connection with a key: the key is never shown again, only its last 4 characters.
    await page.getByTestId('conn-name').fill('fake');
    await page.getByTestId('conn-kind').selectOption('openai');
    await page.getByTestId('conn-url').fill(fake.url);
    await page.getByTestId('conn-key').fill(KEY);
    await page.getByTestId('conn-save').click();
    await page.getByTestId('conn-fake').getByTestId('conn-key-state').filter({ hasText: '9a3c' }).waitFor();
    assert.equal(await page.getByTestId('conn-key').inputValue(), '');

    // An agent on it, its model picked from the connection's list (embedding models left out).
    await page.getByTestId('agent-name').fill('Oracle');
    await page.getByTestId('agent-prompt').fill('You answer in one sentence.');
    await page.getByTestId('agent-conn').selectOption({ label: 'fake (openai)' });
    await page.getByTestId('agent-models-hint').waitFor();
    const offered = await page.locator('#agent-models option').evaluateAll((os) => os.map((o) => o.value));
    assert.deepEqual(offered, ['oracle-1']);
    await page.getByTestId('agent-model').fill('oracle-1');
    await page.getByTestId('agent-save').click();
    await agents.getByTestId('agent-row-oracle').getByTestId('agent-state').filter({ hasText: 'active' }).waitFor();
    mkdirSync(ARTIFACTS_DIR, { recursive: true });
    await page.screenshot({ path: path.join(ARTIFACTS_DIR, 'admin-personas.png'), fullPage: true });
    const html = await page.content();
    assert.ok(!html.includes(KEY), 'the key is not in the page');

    // Back in the chat: the agent is offered and answers.
    await page.getByTestId('nav-admin').click();
    await page.getByTestId('new-thread-title').fill('Ask the oracle');
    await page.getByTestId('create-thread').click();
    await page.getByRole('heading', { name: 'Ask the oracle', exact: true }).waitFor();
    await page.locator('[data-testid="conn-status"][data-state="connected"]').waitFor({ timeout: 30_000 });
    await page.getByTestId('composer-agent').selectOption('oracle');
    await page.getByTestId('composer').fill('What is next?');
    await page.getByTestId('send').click();
    await page.getByTestId('message').filter({ hasText: ANSWER }).waitFor({ timeout: 20_000 });
    const call = fake.requests.find((r) => r.body?.model === 'oracle-1');
    assert.ok(call, 'the provider was called with the picked model');
    assert.equal(call.headers.authorization, `Bearer ${KEY}`);
    assert.equal(call.body.messages[0].role, 'system');
    assert.match(call.body.messages[0].content, /You answer in one sentence\./);
    assert.deepEqual(pageErrors, []);
  } finally {
    await context.close();
  }
});
