// End-to-end tests of managing, searching and taking away threads in the browser (real binary,
// real Chromium): inline rename and agent changes seen live by another member, pin and archive
// (each member's own), the members panel (remove, hand over, leave; the other screens update
// live), delete; search from the thread list with filters and paging, a hit opening its thread
// scrolled to the message with the history around it; export (JSON, Markdown, the whole
// archive) and import (a JSON export, ChatGPT's conversations.json, twice creates nothing new).
// Also takes docs/screenshots/threads.png and threads-search.png (with UPDATE_SCREENSHOTS=1).
// Run: EMERGENCE_BIN=target/debug/emergence node --test e2e/threads.test.mjs
import assert from 'node:assert/strict';
import { copyFileSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, before, test } from 'node:test';
import { ARTIFACTS_DIR, REPO_DIR, launchBrowser, setupOwnServer, sleep, uniq } from './support.mjs';

const PASSWORD = 'e2e-password-123';
const SKIP = process.env.EMERGENCE_BIN ? false : 'needs EMERGENCE_BIN (the test starts a server with its own agents)';

let server = null;
let browser = null;
let configDir = null;

before(async () => {
  if (SKIP) return;
  // Two agents to attach to threads; nobody asks them anything, so no provider is called.
  configDir = mkdtempSync(path.join(os.tmpdir(), 'emergence-e2e-threads-cfg-'));
  const config = path.join(configDir, 'emergence.toml');
  const lines = [];
  for (const [id, name] of [['alpha', 'Alpha'], ['beta', 'Beta']]) {
    lines.push('[[agent]]', `id = "${id}"`, `name = "${name}"`, `system_prompt = "You are ${name}."`, 'provider = "openai"', `model = "${id}"`, '');
  }
  lines.push('[providers]', 'openai_base_url = "http://127.0.0.1:9"', 'openai_api_key = "e2e-unused"', '');
  writeFileSync(config, lines.join('\n'));
  server = await setupOwnServer({ name: 'threads', env: { EMERGENCE_CONFIG: config, EMERGENCE_SEND_RATE_PER_SEC: '0' } });
  browser = await launchBrowser();
});

after(async () => {
  await browser?.close().catch(() => {});
  await server?.dispose();
  if (configDir) rmSync(configDir, { recursive: true, force: true });
});

async function newUser(viewport = { width: 1280, height: 860 }) {
  const context = await browser.newContext({ viewport, acceptDownloads: true });
  context.setDefaultTimeout(20_000);
  const page = await context.newPage();
  const errors = [];
  page.on('pageerror', (e) => errors.push(String(e)));
  const name = uniq('u');
  await page.goto(`${server.url}/`);
  await page.getByTestId('username').fill(name);
  await page.getByTestId('password').fill(PASSWORD);
  await page.getByTestId('register').click();
  await page.getByTestId('logout').waitFor();
  await page.locator('[data-testid="conn-status"][data-state="connected"]').waitFor();
  return { context, page, name, errors };
}

async function createThread(page, title) {
  await page.getByTestId('new-thread-title').fill(title);
  await page.getByTestId('create-thread').click();
  await page.getByRole('heading', { name: title, exact: true }).waitFor();
}

async function addMember(page, username) {
  await page.getByTestId('member-username').fill(username);
  await page.getByTestId('add-member').click();
  await page.locator('[data-testid="member-status"][data-ok="true"]').waitFor();
}

function item(page, title) {
  return page.getByTestId('thread-item').filter({ hasText: title });
}

async function openThread(page, title) {
  const deadline = Date.now() + 20_000;
  while ((await item(page, title).count()) === 0) {
    if (Date.now() > deadline) throw new Error(`thread "${title}" never appeared in the list`);
    await page.getByTestId('refresh-threads').click();
    await sleep(300);
  }
  await item(page, title).first().click();
  await page.getByRole('heading', { name: title, exact: true }).waitFor();
}

/** The open thread's id, from the page's address. */
function threadId(page) {
  return decodeURIComponent(new URL(page.url()).hash.replace(/^#\/t\//, ''));
}

/** Stores messages through the API as the page's user (the session cookie), in order. */
async function postMany(page, thread, bodies) {
  await page.evaluate(
    async ({ thread, bodies }) => {
      for (const [i, body] of bodies.entries()) {
        const r = await fetch(`/api/threads/${encodeURIComponent(thread)}/messages`, {
          method: 'POST',
          headers: { 'Content-Type': 'application/json' },
          body: JSON.stringify({ client_id: `seed-${thread}-${i}`, body }),
        });
        if (r.status !== 201) throw new Error(`post ${i}: ${r.status}`);
      }
    },
    { thread, bodies },
  );
}

/** Member rows of the open members panel: "name:role". */
async function memberRows(page) {
  return page
    .getByTestId('member')
    .evaluateAll((els) => els.map((el) => `${el.getAttribute('data-username')}:${el.getAttribute('data-role')}`));
}

async function waitMembers(page, expected) {
  const deadline = Date.now() + 10_000;
  let rows = [];
  while (Date.now() < deadline) {
    rows = await memberRows(page);
    if (JSON.stringify(rows) === JSON.stringify(expected)) return;
    await sleep(100);
  }
  assert.deepEqual(rows, expected);
}

function shot(page, name) {
  mkdirSync(ARTIFACTS_DIR, { recursive: true });
  const file = path.join(ARTIFACTS_DIR, name);
  const top = () => document.querySelector('.accounts-main')?.scrollTo(0, 0);
  return page.evaluate(top).then(() => page.screenshot({ path: file })).then(() => {
    if (process.env.UPDATE_SCREENSHOTS === '1') copyFileSync(file, path.join(REPO_DIR, 'docs', 'screenshots', name));
  });
}

test('rename, agents, pin, archive, members (remove, hand over, leave) and delete, live on the other screens', { skip: SKIP, timeout: 180_000 }, async () => {
  const a = await newUser();
  const b = await newUser();
  const c = await newUser();
  try {
    const title = uniq('Plans');
    const other = uniq('Other');
    await createThread(a.page, other);
    await createThread(a.page, title);
    await addMember(a.page, b.name);
    await addMember(a.page, c.name);
    await openThread(b.page, title);
    await openThread(c.page, title);

    // Inline rename by the owner: the member's heading and list follow live.
    const renamed = `${title} (weekend)`;
    await a.page.getByTestId('rename').click();
    await a.page.getByTestId('rename-title').fill(renamed);
    await a.page.getByTestId('rename-save').click();
    await a.page.getByRole('heading', { name: renamed, exact: true }).waitFor();
    await b.page.getByRole('heading', { name: renamed, exact: true }).waitFor();
    await item(b.page, renamed).waitFor();
    // A member cannot rename.
    assert.equal(await b.page.getByTestId('rename').count(), 0);

    // The owner changes the thread's agents from the settings panel; the member sees them live.
    await a.page.getByTestId('toggle-manage').click();
    await a.page.locator('[data-testid="thread-agent"][value="alpha"]').check();
    await a.page.getByTestId('agents-save').click();
    await b.page.getByText('Agents: Alpha', { exact: true }).waitFor();

    // Pin: the thread moves to the pinned section, for the owner only.
    await a.page.getByTestId('toggle-pin').click();
    await a.page.getByTestId('pinned-section').getByTestId('thread-item').filter({ hasText: renamed }).waitFor();
    assert.equal(await a.page.getByTestId('threads-section').getByTestId('thread-item').filter({ hasText: renamed }).count(), 0);
    assert.equal(await b.page.getByTestId('pinned-section').count(), 0);

    // Archive the other thread: out of the list, into the archived section; unarchive brings it back.
    await openThread(a.page, other);
    await a.page.getByTestId('toggle-archive').click();
    await a.page.getByTestId('threads-section').getByTestId('thread-item').filter({ hasText: other }).waitFor({ state: 'detached' });
    await a.page.getByTestId('toggle-archived').click();
    await a.page.getByTestId('archived-section').getByTestId('thread-item').filter({ hasText: other }).waitFor();
    await a.page.reload();
    await a.page.getByRole('heading', { name: other, exact: true }).waitFor();
    assert.equal(await item(a.page, other).count(), 0, 'an archived thread stays out of the list after a reload');
    await a.page.getByTestId('toggle-archived').click();
    await a.page.getByTestId('archived-section').getByTestId('thread-item').filter({ hasText: other }).click();
    await a.page.getByTestId('toggle-archive').filter({ hasText: 'Unarchive' }).click();
    await a.page.getByTestId('threads-section').getByTestId('thread-item').filter({ hasText: other }).waitFor();
    assert.equal(await a.page.getByTestId('archived-section').getByTestId('thread-item').count(), 0);

    // Members with their roles, on the owner's and on a member's panel.
    await item(a.page, renamed).click();
    await a.page.getByRole('heading', { name: renamed, exact: true }).waitFor();
    await a.page.getByTestId('pinned-section').waitFor();
    if ((await a.page.getByTestId('thread-tools').count()) === 0) await a.page.getByTestId('toggle-manage').click();
    await waitMembers(a.page, [`${a.name}:owner`, `${b.name}:member`, `${c.name}:member`]);
    await b.page.getByTestId('toggle-manage').click();
    await waitMembers(b.page, [`${a.name}:owner`, `${b.name}:member`, `${c.name}:member`]);
    assert.equal(await b.page.getByTestId('member-remove').count(), 0, 'a member removes nobody');
    assert.equal(await b.page.getByTestId('delete-thread').count(), 0, 'a member deletes nothing');
    await shot(a.page, 'threads-members.png');

    // The owner removes c: c's screen drops the thread with a notice, b's list updates live.
    await a.page.locator('[data-testid="member"]', { hasText: c.name }).getByTestId('member-remove').click();
    await waitMembers(b.page, [`${a.name}:owner`, `${b.name}:member`]);
    await c.page.getByText(`You were removed from “${renamed}”.`).waitFor();
    assert.equal(await item(c.page, renamed).count(), 0);
    assert.equal(await c.page.getByRole('heading', { name: renamed, exact: true }).count(), 0);

    // The owner hands the thread over to b: b is the owner on both screens and may rename.
    await a.page.locator('[data-testid="member"]', { hasText: b.name }).getByTestId('member-make-owner').click();
    await a.page.getByTestId('member-confirm').click();
    await waitMembers(b.page, [`${b.name}:owner`, `${a.name}:member`]);
    await waitMembers(a.page, [`${b.name}:owner`, `${a.name}:member`]);
    await b.page.getByTestId('rename').waitFor();
    await b.page.getByTestId('delete-thread').waitFor();

    // a leaves: gone from a's list, b's members follow live.
    await a.page.getByTestId('member-leave').click();
    await a.page.getByTestId('member-confirm').click();
    await item(a.page, renamed).waitFor({ state: 'detached' });
    await waitMembers(b.page, [`${b.name}:owner`]);

    // b adds c back, c opens it, b deletes it: gone for both, c is told why.
    await addMember(b.page, c.name);
    await openThread(c.page, renamed);
    await b.page.getByTestId('delete-thread').click();
    await b.page.getByTestId('delete-confirm').click();
    await item(b.page, renamed).waitFor({ state: 'detached' });
    await c.page.getByText(`“${renamed}” was deleted by its owner.`).waitFor();
    assert.equal(await item(c.page, renamed).count(), 0);
    await c.page.getByTestId('refresh-threads').click();
    await sleep(500);
    assert.equal(await item(c.page, renamed).count(), 0, 'a deleted thread never comes back');

    // A thread c is not looking at: being added puts it in c's list live (no refresh), and its
    // deletion takes it out live, with the notice.
    const unseen = uniq('Unseen');
    await createThread(b.page, unseen);
    await addMember(b.page, c.name);
    await item(c.page, unseen).waitFor();
    await b.page.getByTestId('toggle-manage').click();
    await b.page.getByTestId('delete-thread').click();
    await b.page.getByTestId('delete-confirm').click();
    await item(b.page, unseen).waitFor({ state: 'detached' });
    await c.page.getByText(`“${unseen}” was deleted by its owner.`).waitFor();
    await item(c.page, unseen).waitFor({ state: 'detached' });

    assert.deepEqual([...a.errors, ...b.errors, ...c.errors], []);
  } finally {
    await a.context.close();
    await b.context.close();
    await c.context.close();
  }
});

test('search from the thread list: filters, paging, and a hit opens the thread at the message', { skip: SKIP, timeout: 180_000 }, async () => {
  const a = await newUser();
  try {
    const hay = uniq('Haystack');
    const other = uniq('Barn');
    await createThread(a.page, other);
    // Markup in a message is shown as text in its snippet, never parsed.
    await postMany(a.page, threadId(a.page), ['a needle <img src=x onerror="window.__pwned=1"> in the barn', 'straw in the barn']);
    await createThread(a.page, hay);
    const hayId = threadId(a.page);
    // 90 messages: the needle is message 40, far from the latest page (41-90).
    const bodies = Array.from({ length: 90 }, (_, i) => (i + 1 === 40 ? 'the golden needle is here' : `straw number ${i + 1}`));
    await postMany(a.page, hayId, bodies);
    await a.page.reload();
    await a.page.locator('[data-testid="message"][data-seq="90"]').waitFor();
    assert.equal(await a.page.locator('[data-testid="message"][data-seq="40"]').count(), 0, 'the needle is not on the first page');

    // For the screenshot: a pinned thread, an archived one, the list's three sections.
    await a.page.getByTestId('toggle-pin').click();
    await a.page.getByTestId('pinned-section').waitFor();
    await createThread(a.page, uniq('Launch notes'));
    await createThread(a.page, uniq('Old ideas'));
    await a.page.getByTestId('toggle-archive').click();
    await item(a.page, hay).click();
    await a.page.locator('[data-testid="message"][data-seq="90"]').waitFor();
    await a.page.getByTestId('toggle-archived').click();
    await a.page.getByTestId('archived-section').getByTestId('thread-item').waitFor();
    await shot(a.page, 'threads.png');

    // Enter in the thread list's box searches every message.
    await a.page.getByTestId('thread-search').fill('needle');
    await a.page.getByTestId('thread-search').press('Enter');
    await a.page.getByTestId('search-page').waitFor();
    await a.page.getByTestId('search-hit').nth(1).waitFor();
    assert.equal(await a.page.getByTestId('search-hit').count(), 2);
    assert.deepEqual((await a.page.locator('[data-testid="search-hit"] mark').allTextContents()).map((s) => s.toLowerCase()), ['needle', 'needle']);
    assert.equal(await a.page.locator('[data-testid="search-hits"] img').count(), 0);
    assert.match(await a.page.getByTestId('search-hits').textContent(), /<img src=x/);
    assert.equal(await a.page.evaluate(() => window.__pwned), undefined);

    // Filter by thread, then by a date range that excludes everything.
    await a.page.getByTestId('search-thread').selectOption(hayId);
    await a.page.getByTestId('search-submit').click();
    await a.page.waitForFunction(() => document.querySelectorAll('[data-testid="search-hit"]').length === 1);
    assert.match(await a.page.getByTestId('search-hit').textContent(), /golden needle/);
    await a.page.getByTestId('search-to').fill('2020-01-01');
    await a.page.getByTestId('search-submit').click();
    await a.page.getByTestId('search-none').waitFor();
    await a.page.getByTestId('search-to').fill('');
    await a.page.getByTestId('search-author').fill(a.name);
    await a.page.getByTestId('search-submit').click();
    await a.page.getByTestId('search-hit').waitFor();

    // Paging: 89 straws in this thread, 20 a page.
    await a.page.getByTestId('search-q').fill('straw');
    await a.page.getByTestId('search-submit').click();
    await a.page.waitForFunction(() => document.querySelectorAll('[data-testid="search-hit"]').length === 20);
    await shot(a.page, 'threads-search.png');
    await a.page.getByTestId('search-more').click();
    await a.page.waitForFunction(() => document.querySelectorAll('[data-testid="search-hit"]').length === 40);

    // The hit opens the thread scrolled to the message, with the history around it.
    await a.page.getByTestId('search-q').fill('golden needle');
    await a.page.getByTestId('search-submit').click();
    await a.page.waitForFunction(() => document.querySelectorAll('[data-testid="search-hit"]').length === 1);
    await a.page.getByTestId('search-hit').click();
    const target = a.page.locator('[data-testid="message"][data-seq="40"]');
    await target.waitFor();
    await a.page.getByRole('heading', { name: hay, exact: true }).waitFor();
    const visible = await target.evaluate((el) => {
      const box = el.getBoundingClientRect();
      const pane = el.closest('.messages').getBoundingClientRect();
      return box.top >= pane.top && box.bottom <= pane.bottom;
    });
    assert.ok(visible, 'the message is scrolled into view');
    assert.equal(await target.getAttribute('data-focused'), 'true');
    // Older history around the hit is there, and the rest loads on demand.
    await a.page.locator('[data-testid="message"][data-seq="16"]').waitFor({ state: 'attached' });
    assert.equal(await a.page.locator('[data-testid="message"][data-seq="15"]').count(), 0);
    await a.page.getByText('Load earlier messages').click();
    await a.page.locator('[data-testid="message"][data-seq="1"]').waitFor({ state: 'attached' });
    // Newer messages come back too (replayed after the page around the hit), and live ones follow.
    await a.page.locator('[data-testid="message"][data-seq="90"]').waitFor({ state: 'attached' });
    await a.page.getByTestId('composer').fill('after the jump');
    await a.page.getByTestId('composer').press('Enter');
    await a.page.locator('[data-testid="message"][data-seq="91"]').waitFor({ state: 'attached' });
    assert.deepEqual(a.errors, []);
  } finally {
    await a.context.close();
  }
});

async function download(page, testId) {
  const [file] = await Promise.all([page.waitForEvent('download'), page.getByTestId(testId).click()]);
  return readFileSync(await file.path(), 'utf8');
}

test('export a thread (JSON, Markdown) and all my data; import a JSON export and a ChatGPT file, twice', { skip: SKIP, timeout: 180_000 }, async () => {
  const a = await newUser();
  try {
    const title = uniq('Export');
    await createThread(a.page, title);
    await postMany(a.page, threadId(a.page), ['first **point**', 'second point']);
    await a.page.locator('[data-testid="message"][data-seq="2"]').waitFor();
    await a.page.getByTestId('toggle-manage').click();

    const md = await download(a.page, 'export-md');
    assert.match(md, new RegExp(`^# ${title}`, 'm'));
    assert.match(md, /first \*\*point\*\*/);
    assert.match(md, /second point/);
    const json = JSON.parse(await download(a.page, 'export-json'));
    assert.equal(json.format, 'emergence.thread.v1');
    assert.equal(json.title, title);
    assert.deepEqual(json.messages.map((m) => m.body), ['first **point**', 'second point']);

    await a.page.getByTestId('nav-data').click();
    await a.page.getByTestId('data-page').waitFor();
    const all = JSON.parse(await download(a.page, 'export-all'));
    assert.equal(all.format, 'emergence.export.v1');
    assert.equal(all.user.username, a.name);
    assert.deepEqual(all.threads.map((t) => t.title), [title]);

    // Importing the thread's export makes a copy; the same file again creates nothing.
    const dir = mkdtempSync(path.join(os.tmpdir(), 'emergence-e2e-import-'));
    try {
      const exportFile = path.join(dir, 'thread.json');
      writeFileSync(exportFile, JSON.stringify(json));
      await a.page.getByTestId('import-file').setInputFiles(exportFile);
      await a.page.getByTestId('import-result').filter({ hasText: '1 thread imported.' }).waitFor();
      await a.page.waitForFunction((t) => [...document.querySelectorAll('[data-testid="thread-item"]')].filter((e) => e.textContent.includes(t)).length === 2, title);
      await a.page.getByTestId('import-file').setInputFiles(exportFile);
      await a.page.getByTestId('import-result').filter({ hasText: '1 was already imported: nothing new.' }).waitFor();
      await sleep(300);
      assert.equal(await item(a.page, title).count(), 2, 'a second import creates nothing');

      // ChatGPT's conversations.json: a bare array of conversations.
      const gptTitle = uniq('From ChatGPT');
      const conversations = [
        {
          title: gptTitle,
          create_time: 1732000000,
          current_node: 'n3',
          mapping: {
            n1: { id: 'n1', parent: null, message: null },
            n2: { id: 'n2', parent: 'n1', message: { id: 'm2', author: { role: 'user' }, create_time: 1732000001, content: { content_type: 'text', parts: ['What is a haiku?'] } } },
            n3: { id: 'n3', parent: 'n2', message: { id: 'm3', author: { role: 'assistant' }, create_time: 1732000002, content: { content_type: 'text', parts: ['Three lines: five, seven, five.'] } } },
          },
        },
      ];
      const gptFile = path.join(dir, 'conversations.json');
      writeFileSync(gptFile, JSON.stringify(conversations));
      await a.page.getByTestId('import-file').setInputFiles(gptFile);
      await a.page.getByTestId('import-result').filter({ hasText: '1 thread imported.' }).waitFor();
      await a.page.getByTestId('import-file').setInputFiles(gptFile);
      await a.page.getByTestId('import-result').filter({ hasText: '1 was already imported: nothing new.' }).waitFor();
      assert.equal(await item(a.page, gptTitle).count(), 1);

      // A file that is not JSON is refused with a sentence, not a crash.
      const bad = path.join(dir, 'bad.json');
      writeFileSync(bad, 'not json at all');
      await a.page.getByTestId('import-file').setInputFiles(bad);
      await a.page.getByTestId('import-result').filter({ hasText: 'That file is not JSON.' }).waitFor();
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }

    // The imported conversation opens with its messages.
    await a.page.getByTestId('page-back').click();
    const gpt = a.page.getByTestId('thread-item').filter({ hasText: 'From ChatGPT' });
    await gpt.click();
    await a.page.getByText('What is a haiku?').waitFor();
    await a.page.getByText('Three lines: five, seven, five.').waitFor();
    assert.deepEqual(a.errors, []);
  } finally {
    await a.context.close();
  }
});
