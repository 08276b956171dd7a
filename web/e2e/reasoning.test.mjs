// End-to-end test of an agent's reasoning in the browser (issue #18): a fake OpenAI-compatible
// provider streams `delta.reasoning_content` before the answer. The page shows it live in a folded
// "Reasoning" disclosure above the answer (collapsed by default), never in the answer's text; it
// expands on a click and is still there, folded, after a reload (from the stored history). A long
// thread with an agent of a small context window shows the folded "earlier messages summarised"
// marker on its answer, with the summary the provider wrote.
// Run: EMERGENCE_BIN=target/debug/emergence node --test e2e/reasoning.test.mjs
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { FakeOpenAI } from './fake-openai.mjs';
import { launchBrowser, setupAgentServer, uniq } from './support.mjs';

const PASSWORD = 'e2e-password-123';
const SKIP = process.env.EMERGENCE_BIN ? false : 'needs EMERGENCE_BIN (the test starts a server with its own agents)';
const THOUGHTS = Array.from({ length: 30 }, (_, i) => `step${i} `);
const REASONING = THOUGHTS.join('');
const ANSWER = 'The answer is forty-two.';
const SUMMARY = 'Summary: the plan was settled early.';

let fake = null;
let server = null;
let browser = null;

before(async () => {
  if (SKIP) return;
  fake = new FakeOpenAI((body) => {
    // The summariser's request (agents::summary::SUMMARY_PROMPT) gets a summary.
    if (String(body?.messages?.[0]?.content ?? '').startsWith('You summarise conversations'))
      return { chunks: [SUMMARY], intervalMs: 10 };
    return { reasoning: THOUGHTS, chunks: ANSWER.split(/(?= )/), intervalMs: 60 };
  });
  await fake.start();
  server = await setupAgentServer({
    name: 'reasoning',
    fake,
    agents: [
      { id: 'thinker', name: 'Thinker', model: 'thinking-model', colour: '#7a3db8' },
      { id: 'brief', name: 'Brief', model: 'brief-model', context_tokens: 120 },
    ],
  });
  browser = await launchBrowser();
});

after(async () => {
  await browser?.close().catch(() => {});
  await server?.dispose();
  await fake?.stop();
});

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

test('a long thread shows the folded summary marker on the answer of an agent with a small window', { skip: SKIP, timeout: 120_000 }, async () => {
  const context = await browser.newContext({ viewport: { width: 1280, height: 800 } });
  context.setDefaultTimeout(20_000);
  const page = await context.newPage();
  try {
    await page.goto(`${server.url}/`);
    await page.getByTestId('username').fill(uniq('brief'));
    await page.getByTestId('password').fill(PASSWORD);
    await page.getByTestId('register').click();
    await page.getByTestId('logout').waitFor();
    const title = `Long ${uniq('t')}`;
    const brief = page.getByTestId('agent-option').and(page.locator('[value="brief"]'));
    await brief.waitFor();
    await page.getByTestId('new-thread-title').fill(title);
    await brief.check();
    await page.getByTestId('create-thread').click();
    await page.getByRole('heading', { name: title, exact: true }).waitFor();
    await page.locator('[data-testid="conn-status"][data-state="connected"]').waitFor({ timeout: 30_000 });
    // Eight long turns, none asking an agent (through the API, as the page's own session).
    const thread = await page.evaluate(async (t) => {
      const r = await fetch('/api/threads', { credentials: 'same-origin' });
      return (await r.json()).threads.find((x) => x.title === t).id;
    }, title);
    await page.evaluate(async (id) => {
      for (let i = 1; i <= 8; i++) {
        const body = `early-${i}: we weigh the plan once more. ${'Details that only matter to this turn. '.repeat(4)}`;
        const r = await fetch(`/api/threads/${id}/messages`, {
          method: 'POST',
          credentials: 'same-origin',
          headers: { 'Content-Type': 'application/json' },
          body: JSON.stringify({ client_id: `early-${i}`, body }),
        });
        if (r.status !== 201) throw new Error(`post ${i}: ${r.status}`);
      }
    }, thread);
    await page.getByTestId('composer-agent').selectOption('brief');
    await page.getByTestId('composer').fill('Where do we stand?');
    await page.getByTestId('send').click();
    const answer = page.locator('[data-testid="message"][data-agent="brief"]');
    await answer.waitFor({ timeout: 30_000 });
    const marker = answer.getByTestId('context-summary');
    await marker.waitFor();
    assert.equal(await marker.getAttribute('data-through'), '8');
    assert.equal(await marker.evaluate((d) => d.open), false, 'folded by default');
    assert.match(await marker.locator('summary').textContent(), /up to #8/);
    await marker.locator('summary').click();
    assert.equal((await marker.locator('p').textContent()).trim(), SUMMARY);
    // The provider saw the summary, not the early turns.
    const asked = fake.requests.filter((r) => r.body?.model === 'brief-model');
    assert.equal(asked.length, 2, 'one summary request, then the answer');
    const answerRequest = JSON.stringify(asked[1].body);
    assert.ok(answerRequest.includes(SUMMARY) && !answerRequest.includes('early-1:'), answerRequest);
  } finally {
    await context.close();
  }
});
