// End-to-end test of what a reader sees when the provider fails, in French: a 429 with
// `retry-after-ms` shows "Nouvel essai dans N s…" on the streaming answer (with the model that
// answers), then the answer arrives; a gateway's 500 full of upstream junk shows the short French
// sentence of its class and none of the junk.
// Run: EMERGENCE_BIN=target/debug/emergence npm run e2e   (needs EMERGENCE_BIN: a server of its own)
import assert from 'node:assert/strict';
import { mkdirSync } from 'node:fs';
import http from 'node:http';
import path from 'node:path';
import { after, before, test } from 'node:test';
import { ARTIFACTS_DIR, launchBrowser, setupAgentServer } from './support.mjs';

const PASSWORD = 'e2e-password-123';
const ANSWER = 'Bonjour après une pause.';
const LEAK = 'litellm.InternalServerError: <openai.OpenAI object at 0x7f3a> http://10.1.2.3:8000/v1';
const SKIP = process.env.EMERGENCE_BIN ? false : 'needs EMERGENCE_BIN (the test starts a server with its own agents)';

/** An OpenAI-compatible provider: model `patient` is rate limited once, `broken` always fails. */
class FakeOpenAI {
  requests = [];

  async start() {
    this.server = http.createServer((req, res) => {
      let raw = '';
      req.setEncoding('utf8');
      req.on('data', (d) => (raw += d));
      req.on('end', () => this.handle(req, res, raw));
    });
    await new Promise((resolve) => this.server.listen(0, '127.0.0.1', resolve));
    this.url = `http://127.0.0.1:${this.server.address().port}/v1`;
  }

  handle(req, res, raw) {
    const body = JSON.parse(raw || '{}');
    this.requests.push(body.model);
    const tries = this.requests.filter((m) => m === body.model).length;
    if (body.model === 'broken' || (body.model === 'patient' && tries === 1)) {
      const status = body.model === 'broken' ? 500 : 429;
      const headers = { 'Content-Type': 'application/json' };
      if (status === 429) headers['retry-after-ms'] = '3000';
      res.writeHead(status, headers);
      res.end(JSON.stringify({ error: { message: LEAK, type: 'server_error' } }));
      return;
    }
    res.writeHead(200, { 'Content-Type': 'text/event-stream' });
    for (const word of ANSWER.split(/(?= )/)) {
      res.write(`data: ${JSON.stringify({ choices: [{ index: 0, delta: { content: word }, finish_reason: null }] })}\n\n`);
    }
    res.write('data: [DONE]\n\n');
    res.end();
  }

  async stop() {
    this.server?.closeAllConnections?.();
    await new Promise((resolve) => (this.server ? this.server.close(() => resolve()) : resolve()));
  }
}

let fake = null;
let server = null;
let browser = null;

before(async () => {
  if (SKIP) return;
  fake = new FakeOpenAI();
  await fake.start();
  server = await setupAgentServer({
    name: 'retry',
    fake,
    agents: [
      { id: 'patient', name: 'Patient' },
      { id: 'broken', name: 'Broken' },
    ],
    providers: { ollama_url: '' },
  });
  browser = await launchBrowser();
});

after(async () => {
  await browser?.close().catch(() => {});
  await server?.dispose();
  await fake?.stop();
});

test('a French reader sees the retry countdown and short French errors, never upstream text', { skip: SKIP, timeout: 90_000 }, async () => {
  const context = await browser.newContext({ viewport: { width: 1280, height: 800 }, locale: 'fr-FR' });
  context.setDefaultTimeout(20_000);
  const page = await context.newPage();
  const pageErrors = [];
  page.on('pageerror', (e) => pageErrors.push(String(e)));
  try {
    await page.goto(`${server.url}/`);
    await page.getByTestId('username').fill(`fr_${Date.now().toString(36)}`);
    await page.getByTestId('password').fill(PASSWORD);
    await page.getByTestId('register').click();
    await page.getByTestId('logout').waitFor();
    await page.getByTestId('new-thread-title').fill('Pannes');
    await page.getByTestId('create-thread').click();
    await page.getByRole('heading', { name: 'Pannes', exact: true }).waitFor();
    await page.locator('[data-testid="conn-status"][data-state="connected"]').waitFor({ timeout: 30_000 });

    // Rate limited once: the streaming answer says when it tries again, and which model answers.
    await page.getByTestId('composer-agent').selectOption('patient');
    await page.getByTestId('composer').fill('Tu es là ?');
    await page.getByTestId('send').click();
    const notice = page.getByTestId('stream-retry');
    await notice.waitFor({ timeout: 10_000 });
    assert.match(await notice.textContent(), /^Nouvel essai dans [123] s…$/);
    assert.equal(await page.getByTestId('stream-model').textContent(), 'patient');
    mkdirSync(ARTIFACTS_DIR, { recursive: true });
    await page.screenshot({ path: path.join(ARTIFACTS_DIR, 'stream-retry.png') });
    const answer = page.getByTestId('message').filter({ hasText: ANSWER });
    await answer.waitFor({ timeout: 15_000 });
    assert.deepEqual(fake.requests, ['patient', 'patient']);

    // A 500 full of upstream junk: the French sentence of its class, nothing of the junk.
    await page.getByTestId('composer-agent').selectOption('broken');
    await page.getByTestId('composer').fill('Et toi ?');
    await page.getByTestId('send').click();
    const line = page.locator('.notice-line').filter({ hasText: 'Broken' });
    await line.waitFor({ timeout: 15_000 });
    assert.match(await line.textContent(), /Broken: Le fournisseur du modèle est indisponible pour le moment\./);
    const html = await page.content();
    for (const leak of ['litellm', '0x7f3a', '10.1.2.3']) assert.ok(!html.includes(leak), `${leak} reached the page`);
    await page.screenshot({ path: path.join(ARTIFACTS_DIR, 'stream-error-fr.png') });
    assert.deepEqual(pageErrors, [], 'no script errors');
  } finally {
    await context.close();
  }
});
