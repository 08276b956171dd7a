// End-to-end test of a resumable agent stream in the browser: reload the page in the middle of an
// answer, and the answer continues where it was (stream_snapshot, then live chunks) and is stored
// exactly once. The agent runs on the `openai` provider against a fake OpenAI-compatible server in
// this process that streams slowly.
// Run: EMERGENCE_BIN=target/debug/emergence npm run e2e   (needs EMERGENCE_BIN: a server of its own)
import assert from 'node:assert/strict';
import { mkdirSync } from 'node:fs';
import path from 'node:path';
import { after, before, test } from 'node:test';
import { FakeOpenAI } from './fake-openai.mjs';
import { ARTIFACTS_DIR, launchBrowser, setupAgentServer, sleep, uniq } from './support.mjs';

const PASSWORD = 'e2e-password-123';
const WORDS = 120;
const CHUNK_MS = 50;
const EXPECTED = Array.from({ length: WORDS }, (_, i) => `w${i}`).join(' ');
const SKIP = process.env.EMERGENCE_BIN ? false : 'needs EMERGENCE_BIN (the test starts a server with its own agents)';

// ---- setup ----------------------------------------------------------------------------------------

let fake = null;
let server = null;
let browser = null;

before(async () => {
  if (SKIP) return;
  // One word per chunk, slowly.
  fake = new FakeOpenAI(() => ({ chunks: Array.from({ length: WORDS }, (_, i) => `w${i} `), intervalMs: CHUNK_MS }));
  await fake.start();
  server = await setupAgentServer({
    name: 'stream',
    fake,
    agents: [{ id: 'slowbot', name: 'Slowbot', system_prompt: 'You answer slowly, one word at a time.', model: 'slow' }],
  });
  browser = await launchBrowser();
});

after(async () => {
  await browser?.close().catch(() => {});
  await server?.dispose();
  await fake?.stop();
});

/** The words of a text, checked to be exactly w0, w1, …, w(n-1): nothing missing, nothing twice. */
function checkedWords(text, where) {
  const words = text.split(/\s+/).filter(Boolean);
  words.forEach((w, i) => assert.equal(w, `w${i}`, `${where}: word ${i} is "${w}" in "${text.slice(0, 400)}"`));
  return words.length;
}

// ---- the test -------------------------------------------------------------------------------------

test('reload mid-answer and the answer continues where it was', { skip: SKIP, timeout: 120_000 }, async () => {
  const context = await browser.newContext({ viewport: { width: 1280, height: 800 } });
  context.setDefaultTimeout(20_000);
  context.setDefaultNavigationTimeout(30_000);
  const page = await context.newPage();
  const pageErrors = [];
  page.on('pageerror', (e) => pageErrors.push(String(e)));
  try {
    // Register.
    await page.goto(`${server.url}/`);
    await page.getByTestId('username').fill(uniq('streamer'));
    await page.getByTestId('password').fill(PASSWORD);
    await page.getByTestId('register').click();
    await page.getByTestId('logout').waitFor();

    // A thread with Slowbot in it.
    const title = `Slow answers ${uniq('t')}`;
    const slowbot = page.getByTestId('agent-option').and(page.locator('[value="slowbot"]'));
    await slowbot.waitFor();
    assert.equal(await page.getByTestId('agent-option').count(), 1, 'the settings file replaces the default agents');
    await page.getByTestId('new-thread-title').fill(title);
    await slowbot.check();
    await page.getByTestId('create-thread').click();
    await page.getByRole('heading', { name: title, exact: true }).waitFor();
    await page.locator('[data-testid="conn-status"][data-state="connected"]').waitFor({ timeout: 30_000 });

    // Ask Slowbot.
    await page.getByTestId('composer-agent').selectOption('slowbot');
    await page.getByTestId('composer').fill('Count slowly, please.');
    await page.getByTestId('send').click();
    await page.locator('[data-testid="message"][data-state="sent"]').filter({ hasText: 'Count slowly, please.' }).waitFor();

    // Wait until the live answer shows at least 20 words.
    const streamBody = page.locator('[data-testid="stream"] .msg-body');
    await page.getByTestId('stream').waitFor({ timeout: 30_000 });
    await page.waitForFunction(
      () => (document.querySelector('[data-testid="stream"] .msg-body')?.textContent ?? '').split(/\s+/).filter(Boolean).length >= 20,
      null,
      { timeout: 30_000, polling: 50 },
    );
    const beforeReload = checkedWords(await streamBody.textContent(), 'before the reload');
    assert.ok(beforeReload >= 20 && beforeReload < WORDS, `words before the reload: ${beforeReload}`);

    // Reload in the middle of the answer.
    await page.reload();
    await page.getByRole('heading', { name: title, exact: true }).waitFor();

    // The stream is back with the text so far (the snapshot), and keeps growing from there.
    await page.getByTestId('stream').waitFor({ timeout: 15_000 });
    const samples = [];
    let finalSeen = false;
    const deadline = Date.now() + 30_000;
    while (Date.now() < deadline) {
      const text = await page.evaluate(() => {
        const el = document.querySelector('[data-testid="stream"] .msg-body');
        return el ? el.textContent ?? '' : null;
      });
      if (text === null) {
        finalSeen = true;
        break;
      }
      samples.push(checkedWords(text, `stream after the reload (sample ${samples.length})`));
      if (samples.length === 3) {
        mkdirSync(ARTIFACTS_DIR, { recursive: true });
        await page.screenshot({ path: path.join(ARTIFACTS_DIR, 'stream.png') });
      }
      await sleep(40);
    }
    assert.ok(finalSeen, 'the stream ended');
    assert.ok(samples.length >= 3, `the stream was seen after the reload (${samples.length} samples)`);
    assert.ok(samples[0] >= beforeReload, `after the reload the stream starts where it was (${samples[0]} >= ${beforeReload})`);
    for (let i = 1; i < samples.length; i++) {
      assert.ok(samples[i] >= samples[i - 1], `the stream never goes back (${samples[i - 1]} → ${samples[i]})`);
    }
    assert.ok(samples.at(-1) > samples[0], `the stream continued after the reload (${samples[0]} → ${samples.at(-1)} words)`);

    // The stored answer: the complete text, exactly once.
    const answers = page.getByTestId('message').filter({ has: page.getByTestId('message-body').getByText('w119', { exact: false }) });
    await answers.first().waitFor({ timeout: 15_000 });
    await sleep(1000); // let any duplicate show up
    assert.equal(await answers.count(), 1, 'the answer is shown once');
    const body = (await answers.getByTestId('message-body').textContent()).trim();
    assert.equal(checkedWords(body, 'stored answer'), WORDS);
    assert.equal(body.replace(/\s+/g, ' '), EXPECTED);
    assert.equal(await answers.getAttribute('data-author'), 'Slowbot');
    assert.equal(await page.getByTestId('stream').count(), 0, 'no stream is left on screen');
    assert.equal(await page.getByTestId('message').count(), 2, 'the question and the answer, nothing else');

    // The same after another reload (from the stored history).
    await page.reload();
    await page.getByRole('heading', { name: title, exact: true }).waitFor();
    await answers.first().waitFor();
    assert.equal(await answers.count(), 1, 'stored once');
    assert.equal((await answers.getByTestId('message-body').textContent()).trim(), EXPECTED.trim());

    assert.equal(fake.requests.length, 1, 'the provider was asked exactly once');
    const req = fake.requests[0];
    assert.equal(req.body?.model, 'slow');
    assert.equal(req.body?.stream, true);
    assert.equal(req.headers.authorization, 'Bearer e2e-fake-key');
    assert.deepEqual(pageErrors, [], 'no script errors');

    await page.screenshot({ path: path.join(ARTIFACTS_DIR, 'stream-done.png') });
  } finally {
    await context.close();
  }
});
