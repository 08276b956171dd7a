// End-to-end tests of the web UI against a real Emergence server.
// Run: EMERGENCE_BIN=target/release/emergence npm run e2e   (or EMERGENCE_URL=http://127.0.0.1:18080)
import assert from 'node:assert/strict';
import { mkdirSync } from 'node:fs';
import path from 'node:path';
import { after, before, test } from 'node:test';
import { ARTIFACTS_DIR, HAVE_SERVER, launchBrowser, setupServer, sleep, uniq } from './support.mjs';

const PASSWORD = 'e2e-password-123';
const SKIP = HAVE_SERVER ? false : 'set EMERGENCE_URL or EMERGENCE_BIN to run the end-to-end tests';

let server = null;
let browser = null;

before(async () => {
  if (!HAVE_SERVER) return;
  server = await setupServer();
  browser = await launchBrowser();
});

after(async () => {
  await browser?.close().catch(() => {});
  await server?.dispose();
});

// ---- helpers ------------------------------------------------------------------------------------

async function newPage(viewport = { width: 1280, height: 800 }) {
  const context = await browser.newContext({ viewport });
  context.setDefaultTimeout(20_000);
  context.setDefaultNavigationTimeout(30_000);
  const page = await context.newPage();
  return { context, page };
}

async function register(page, username) {
  await page.goto(`${server.url}/`);
  await page.getByTestId('username').fill(username);
  await page.getByTestId('password').fill(PASSWORD);
  await page.getByTestId('register').click();
  await page.getByTestId('logout').waitFor();
}

async function waitConnected(page, timeout = 30_000) {
  await page.locator('[data-testid="conn-status"][data-state="connected"]').waitFor({ timeout });
}

async function createThread(page, title) {
  await page.getByTestId('new-thread-title').fill(title);
  await page.getByTestId('create-thread').click();
  await page.getByRole('heading', { name: title, exact: true }).waitFor();
}

async function addMember(page, username) {
  await page.getByTestId('member-username').fill(username);
  const answer = page.waitForResponse(
    (r) => r.request().method() === 'POST' && new URL(r.url()).pathname.endsWith('/members'),
  );
  await page.getByTestId('add-member').click();
  assert.equal((await answer).status(), 204, 'adding a member answers 204');
  await page.locator('[data-testid="member-status"][data-ok="true"]').waitFor();
}

async function openThread(page, title) {
  const item = page.getByTestId('thread-item').filter({ hasText: title });
  const deadline = Date.now() + 20_000;
  // The thread list is refreshed on demand; retry until the thread shows up.
  while ((await item.count()) === 0) {
    if (Date.now() > deadline) throw new Error(`thread "${title}" never appeared in the list`);
    await page.getByTestId('refresh-threads').click();
    await sleep(300);
  }
  await item.first().click();
  await page.getByRole('heading', { name: title, exact: true }).waitFor();
}

async function sendMessage(page, text) {
  const composer = page.getByTestId('composer');
  await composer.fill(text);
  await composer.press('Enter');
}

function messages(page, text) {
  return page.getByTestId('message').filter({
    has: page.getByTestId('message-body').getByText(text, { exact: true }),
  });
}

/** Two users in their own browser contexts, both looking at the same new thread. */
async function twoUsersInThread() {
  const a = await newPage();
  const b = await newPage();
  const userA = uniq('alice');
  const userB = uniq('bob');
  const title = `Thread ${uniq('t')}`;
  await register(b.page, userB);
  await register(a.page, userA);
  await createThread(a.page, title);
  await addMember(a.page, userB);
  await openThread(b.page, title);
  await waitConnected(a.page);
  await waitConnected(b.page);
  return { a, b, userA, userB, title };
}

// ---- tests --------------------------------------------------------------------------------------

test('first load makes at most 4 requests and a revisit transfers no asset body', { skip: SKIP, timeout: 90_000 }, async () => {
  const { context, page } = await newPage();
  try {
    const requests = [];
    const bad = [];
    page.on('request', (r) => requests.push(r.url()));
    page.on('response', (r) => {
      if (r.status() >= 400) bad.push(`${r.status()} ${r.url()}`);
    });
    page.on('requestfailed', (r) => bad.push(`failed ${r.url()} ${r.failure()?.errorText ?? ''}`));

    await page.goto(`${server.url}/`, { waitUntil: 'networkidle' });
    await page.getByTestId('username').waitFor();
    assert.ok(requests.length <= 4, `first load made ${requests.length} requests:\n${requests.join('\n')}`);
    assert.deepEqual(bad, [], 'no request failed or answered >= 400');

    // Revisit: watch the network at the protocol level to see what came from the cache. A
    // revalidated response shows up as 200 in Network.responseReceived (the cached copy) and as
    // 304 in Network.responseReceivedExtraInfo (what went over the wire).
    const cdp = await context.newCDPSession(page);
    await cdp.send('Network.enable');
    const seen = new Map(); // requestId -> { url, type }
    const wireStatus = new Map(); // requestId -> status on the wire
    const cached = new Set();
    cdp.on('Network.requestWillBeSent', (e) => seen.set(e.requestId, { url: e.request.url, type: e.type }));
    cdp.on('Network.requestServedFromCache', (e) => cached.add(e.requestId));
    cdp.on('Network.responseReceivedExtraInfo', (e) => wireStatus.set(e.requestId, e.statusCode));
    cdp.on('Network.responseReceived', (e) => {
      const r = e.response;
      if (r.fromDiskCache || r.fromPrefetchCache || r.fromServiceWorker) cached.add(e.requestId);
      if (!seen.has(e.requestId)) seen.set(e.requestId, { url: r.url, type: e.type });
    });
    bad.length = 0;
    await page.reload({ waitUntil: 'networkidle' });
    await page.getByTestId('username').waitFor();
    await sleep(300);

    const origin = new URL(server.url).origin;
    const checked = [];
    let sawDocument = false;
    for (const [id, r] of seen) {
      const u = new URL(r.url);
      if (u.origin !== origin) continue;
      const isDocument = r.type === 'Document';
      const isAsset = u.pathname.startsWith('/assets/') || u.pathname === '/favicon.svg';
      if (!isDocument && !isAsset) continue;
      sawDocument ||= isDocument;
      const status = wireStatus.get(id);
      const fromCache = cached.has(id);
      checked.push(`${u.pathname}: ${fromCache ? 'cache' : status}`);
      if (isDocument) {
        assert.ok(status === 304 || fromCache, `index.html revisit: expected 304, got ${status}`);
      } else {
        assert.ok(status === 304 || fromCache, `asset ${u.pathname} was transferred again (status ${status})`);
      }
    }
    assert.ok(sawDocument, `the reload of the document was observed (${checked.join(', ')})`);
    assert.deepEqual(bad, [], 'no request failed or answered >= 400 on revisit');
  } finally {
    await context.close();
  }
});

test('two users chat with each other live', { skip: SKIP, timeout: 120_000 }, async () => {
  const { a, b, userA, userB } = await twoUsersInThread();
  try {
    const fromA = `Hello from ${userA} ${uniq('m')}`;
    await sendMessage(a.page, fromA);
    await messages(b.page, fromA).waitFor({ timeout: 15_000 });
    await a.page.locator('[data-testid="message"][data-state="sent"]').filter({ hasText: fromA }).waitFor({ timeout: 15_000 });

    const fromB = `Hi ${userA}, this is ${userB}\nsecond line ${uniq('m')}`;
    await b.page.getByTestId('composer').fill(fromB);
    await b.page.getByTestId('send').click();
    const onA = messages(a.page, fromB);
    await onA.waitFor({ timeout: 15_000 });
    assert.equal(await onA.getByTestId('message-body').innerText(), fromB, 'newlines are preserved');
    await b.page.locator('[data-testid="message"][data-state="sent"]').filter({ hasText: fromB.split('\n')[1] }).waitFor();

    assert.equal(await messages(a.page, fromA).count(), 1);
    assert.equal(await messages(b.page, fromA).count(), 1);
    assert.equal(await messages(b.page, fromB).count(), 1);
    const seqs = await a.page.getByTestId('message').evaluateAll((els) =>
      els.map((e) => Number(e.getAttribute('data-seq'))).filter((n) => n > 0),
    );
    assert.deepEqual(seqs, [...seqs].sort((x, y) => x - y), 'messages are shown in seq order');
  } finally {
    await a.context.close();
    await b.context.close();
  }
});

test('a message sent while the server is down is delivered exactly once after it restarts', {
  skip: SKIP || (process.env.EMERGENCE_BIN ? false : 'needs EMERGENCE_BIN to stop and start the server'),
  timeout: 240_000,
}, async () => {
  const { a, b, userA } = await twoUsersInThread();
  let stopped = false;
  try {
    const before = `before the restart ${uniq('m')}`;
    await sendMessage(a.page, before);
    await messages(b.page, before).waitFor({ timeout: 15_000 });

    await server.stop();
    stopped = true;
    await a.page.locator('[data-testid="conn-status"][data-state="reconnecting"]').waitFor({ timeout: 30_000 });

    const during = `sent while the server is down by ${userA} ${uniq('m')}`;
    await sendMessage(a.page, during);
    const mine = messages(a.page, during);
    await mine.waitFor();
    const state = await mine.getAttribute('data-state');
    assert.ok(state === 'sending' || state === 'queued', `pending message state is ${state}`);
    const stored = await a.page.evaluate(() =>
      Object.keys(localStorage)
        .filter((k) => k.startsWith('emergence.outbox.'))
        .map((k) => localStorage.getItem(k))
        .join('\n'),
    );
    assert.ok(stored.includes(during), 'the unacknowledged message is kept in localStorage');

    await server.start();
    stopped = false;
    await a.page
      .locator('[data-testid="message"][data-state="sent"]')
      .filter({ has: a.page.getByTestId('message-body').getByText(during, { exact: true }) })
      .waitFor({ timeout: 60_000 });
    await messages(b.page, during).waitFor({ timeout: 60_000 });
    await waitConnected(a.page, 60_000);
    await waitConnected(b.page, 60_000);
    await sleep(2000); // let any duplicate show up
    assert.equal(await messages(b.page, during).count(), 1, 'the other user sees it exactly once');
    assert.equal(await messages(a.page, during).count(), 1, 'the sender sees it exactly once');
    assert.equal(await messages(b.page, before).count(), 1, 'older messages are not repeated');

    // And the stored thread agrees after a reload.
    await b.page.reload();
    await messages(b.page, during).waitFor({ timeout: 20_000 }).catch(async () => {
      await b.page.getByTestId('thread-item').first().click();
      await messages(b.page, during).waitFor({ timeout: 20_000 });
    });
    assert.equal(await messages(b.page, during).count(), 1, 'stored exactly once');
  } finally {
    if (stopped) await server.start().catch(() => {});
    await a.context.close();
    await b.context.close();
  }
});

test('the browser keeps no token: cookie session, no token in storage or in the WebSocket URL', { skip: SKIP, timeout: 120_000 }, async () => {
  const { context, page } = await newPage();
  try {
    const tokens = [];
    const wsUrls = [];
    page.on('response', (r) => {
      const p = new URL(r.url()).pathname;
      if ((p === '/api/auth/register' || p === '/api/auth/login') && r.ok()) {
        tokens.push(r.json().then((b) => b.token).catch(() => null));
      }
    });
    page.on('websocket', (ws) => wsUrls.push(ws.url()));
    const storedValues = () =>
      page.evaluate(() =>
        [localStorage, sessionStorage].flatMap((s) => Object.keys(s).map((k) => `${k}=${s.getItem(k)}`)),
      );

    const user = uniq('cookie');
    await register(page, user);
    const [token] = await Promise.all(tokens);
    assert.ok(typeof token === 'string' && token.length > 20, 'the register answer carried a token');
    await createThread(page, `Cookie ${uniq('t')}`);
    await waitConnected(page);
    const text = `cookie-authenticated ${uniq('m')}`;
    await sendMessage(page, text);
    await page.locator('[data-testid="message"][data-state="sent"]').filter({ hasText: text }).waitFor({ timeout: 15_000 });

    for (const v of await storedValues()) assert.ok(!v.includes(token), `storage holds the token: ${v.slice(0, 60)}`);
    assert.ok(!(await page.evaluate(() => document.cookie)).includes(token), 'the session cookie is HttpOnly');
    assert.ok(wsUrls.length > 0, 'the page opened a WebSocket');
    for (const u of wsUrls) {
      assert.equal(new URL(u).pathname, '/ws');
      assert.ok(!u.includes('token='), `WebSocket URL carries a token: ${u}`);
    }

    // The cookie alone keeps the session across a reload (the WebSocket authenticates with it too).
    await page.reload();
    await waitConnected(page);
    await messages(page, text).waitFor();
    for (const v of await storedValues()) assert.ok(!v.includes(token), `storage holds the token: ${v.slice(0, 60)}`);

    // Logout clears the cookie on the server side: a reload shows the login screen again.
    await page.getByTestId('logout').click();
    await page.getByTestId('username').waitFor();
    assert.ok(!(await storedValues()).some((v) => v.startsWith('emergence.user=')), 'logout forgets the user');
    const me = await page.evaluate(async () => (await fetch('/api/me')).status);
    assert.equal(me, 401, 'GET /api/me after logout');
    await page.reload();
    await page.getByTestId('username').waitFor();
    assert.ok(wsUrls.every((u) => !u.includes('token=')), 'no WebSocket URL ever carried a token');
  } finally {
    await context.close();
  }
});

test('200 reloads in a row from one IP see no 429', { skip: SKIP, timeout: 300_000 }, async () => {
  const { context, page } = await newPage();
  try {
    await register(page, uniq('reload'));
    await createThread(page, `Reloads ${uniq('t')}`);
    const limited = [];
    let responses = 0;
    page.on('response', (r) => {
      responses += 1;
      if (r.status() === 429) limited.push(r.url());
    });
    for (let i = 0; i < 200; i++) {
      const threads = page.waitForResponse((r) => new URL(r.url()).pathname === '/api/threads', { timeout: 20_000 });
      await page.reload({ waitUntil: 'load' });
      await threads;
    }
    assert.ok(responses >= 200, `saw ${responses} responses`);
    assert.equal(limited.length, 0, `429 answers: ${limited.slice(0, 5).join(', ')}`);
  } finally {
    await context.close();
  }
});

test('screenshot of the chat view', { skip: SKIP, timeout: 120_000 }, async () => {
  const { a, b, userA, userB, title } = await twoUsersInThread();
  try {
    await sendMessage(a.page, `Hi ${userB}! Welcome to “${title}”.`);
    await b.page.getByTestId('composer').fill('Thanks!\nMultiple lines\n  keep their shape.');
    await b.page.getByTestId('send').click();
    await sendMessage(a.page, 'Markup such as <b>bold</b> & <script>alert(1)</script> is shown as text.');
    await messages(a.page, 'Markup such as <b>bold</b> & <script>alert(1)</script> is shown as text.').waitFor();
    await a.page.locator('[data-testid="message"][data-state="sent"]').nth(1).waitFor();
    await messages(a.page, 'Thanks!\nMultiple lines\n  keep their shape.').waitFor();
    assert.equal(await a.page.locator('.msg-body b').count(), 0, 'message bodies are not parsed as HTML');

    mkdirSync(ARTIFACTS_DIR, { recursive: true });
    const file = path.join(ARTIFACTS_DIR, 'chat.png');
    await a.page.screenshot({ path: file });
    await a.page.setViewportSize({ width: 390, height: 780 });
    await sleep(300);
    await a.page.screenshot({ path: path.join(ARTIFACTS_DIR, 'chat-mobile.png') });
  } finally {
    await a.context.close();
    await b.context.close();
  }
});
