// End-to-end: accounts and access in the browser. An approval-mode server: the first account is
// the admin, a second one waits ("waiting for approval") until the admin approves it on the Admin
// page; "My account" changes the password and creates an API token. An invite-mode server: an
// invite link from the Admin page registers a new account, and a reset link from it sets a new
// password.
// Run: EMERGENCE_BIN=target/debug/emergence node --test e2e/accounts.test.mjs
import assert from 'node:assert/strict';
import { mkdirSync } from 'node:fs';
import path from 'node:path';
import { after, before, test } from 'node:test';
import { ARTIFACTS_DIR, launchBrowser, setupOwnServer } from './support.mjs';

const PASSWORD = 'e2e-password-123';
const SKIP = process.env.EMERGENCE_BIN ? false : 'set EMERGENCE_BIN to run the accounts end-to-end tests';

let approval = null;
let invite = null;
let browser = null;

before(async () => {
  if (SKIP) return;
  approval = await setupOwnServer({ env: { EMERGENCE_REGISTRATION: 'approval' }, name: 'approval' });
  invite = await setupOwnServer({ env: { EMERGENCE_REGISTRATION: 'invite' }, name: 'invite' });
  browser = await launchBrowser();
});

after(async () => {
  await browser?.close().catch(() => {});
  await approval?.dispose();
  await invite?.dispose();
});

async function newPage() {
  const context = await browser.newContext({ viewport: { width: 1280, height: 800 } });
  context.setDefaultTimeout(20_000);
  return { context, page: await context.newPage() };
}

async function fillAndRegister(page, url, username) {
  await page.goto(url);
  await page.getByTestId('username').fill(username);
  await page.getByTestId('password').fill(PASSWORD);
  await page.getByTestId('register').click();
}

// The screenshots in docs/ (admin.png, account.png) come from usage.test.mjs, whose pages hold
// usage figures; these stay in target/e2e.
function shot(page, name) {
  mkdirSync(ARTIFACTS_DIR, { recursive: true });
  const file = path.join(ARTIFACTS_DIR, name);
  return page.evaluate(() => document.querySelector('.accounts-main')?.scrollTo(0, 0)).then(() => page.screenshot({ path: file }));
}

test('a pending user waits until the admin approves them; my account changes the password and makes tokens', { skip: SKIP, timeout: 180_000 }, async () => {
  const admin = await newPage();
  const bob = await newPage();
  try {
    await fillAndRegister(admin.page, `${approval.url}/`, 'root');
    await admin.page.getByTestId('nav-admin').waitFor();

    await fillAndRegister(bob.page, `${approval.url}/`, 'bob');
    await bob.page.getByTestId('pending').waitFor();
    assert.equal(await bob.page.getByTestId('nav-admin').count(), 0);

    await admin.page.getByTestId('nav-admin').click();
    const row = admin.page.getByTestId('user-bob');
    await row.getByTestId('status').filter({ hasText: 'pending' }).waitFor();
    await row.getByTestId('approve').click();
    await row.getByTestId('status').filter({ hasText: 'active' }).waitFor();
    await admin.page.getByTestId('new-invite').click();
    await admin.page.getByTestId('link').waitFor();
    await shot(admin.page, 'admin-users.png');

    // Approved: "check again" opens the chat, without the admin link.
    await bob.page.getByTestId('pending-check').click();
    await bob.page.getByTestId('logout').waitFor();
    assert.equal(await bob.page.getByTestId('nav-admin').count(), 0);

    await bob.page.getByTestId('nav-account').click();
    await bob.page.getByTestId('account-page').waitFor();
    await bob.page.getByTestId('pw-current').fill(PASSWORD);
    await bob.page.getByTestId('pw-new').fill('a brand new password');
    await bob.page.getByTestId('pw-submit').click();
    await bob.page.getByTestId('pw-done').waitFor();
    await bob.page.getByTestId('token-name').fill('backup script');
    await bob.page.getByTestId('token-scope').selectOption('read');
    await bob.page.getByTestId('token-create').click();
    const token = await bob.page.getByTestId('token-shown').textContent();
    assert.match(token, /^v1\./);
    await bob.page.getByTestId('tokens').getByText('backup script').waitFor();
    await bob.page.getByTestId('sessions').locator('li').first().waitFor();
    await shot(bob.page, 'account-tokens.png');

    // The token works for reading and is refused for writing, as the page said.
    const threads = await fetch(`${approval.url}/api/threads`, { headers: { authorization: `Bearer ${token}` } });
    assert.equal(threads.status, 200);
    const write = await fetch(`${approval.url}/api/threads`, {
      method: 'POST',
      headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' },
      body: JSON.stringify({ title: 'nope' }),
    });
    assert.equal(write.status, 403);
    // The new password is the one that logs in.
    const login = await fetch(`${approval.url}/api/auth/login`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ username: 'bob', password: 'a brand new password' }),
    });
    assert.equal(login.status, 200);
  } finally {
    await admin.context.close();
    await bob.context.close();
  }
});

test('an invite link from the admin page registers a new account on an invite-only server', { skip: SKIP, timeout: 120_000 }, async () => {
  const admin = await newPage();
  const guest = await newPage();
  try {
    await fillAndRegister(admin.page, `${invite.url}/`, 'root');
    await admin.page.getByTestId('nav-admin').click();
    // Without an invite, registering is refused with a clear message.
    await fillAndRegister(guest.page, `${invite.url}/`, 'carol');
    await guest.page.getByTestId('auth-error').waitFor();
    await admin.page.getByTestId('new-invite').click();
    const link = await admin.page.getByTestId('link').textContent();
    assert.match(link, /\/#\/invite\/[A-Za-z0-9_-]+$/);
    await guest.page.goto(link);
    await guest.page.getByTestId('invite-notice').waitFor();
    await guest.page.getByTestId('username').fill('carol');
    await guest.page.getByTestId('password').fill(PASSWORD);
    await guest.page.getByTestId('register').click();
    await guest.page.getByTestId('logout').waitFor();
    // Single use: the same link no longer works.
    const again = await fetch(`${invite.url}/api/auth/register`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ username: 'dave', password: PASSWORD, invite: link.split('/').pop() }),
    });
    assert.equal(again.status, 403);
    assert.equal((await again.json()).error.code, 'invite_invalid');
    // The admin hands carol a reset link; opening it sets a new password, which then logs in.
    await admin.page.reload();
    await admin.page.getByTestId('nav-admin').click();
    await admin.page.getByTestId('user-carol').getByTestId('reset').click();
    const reset = await admin.page.getByTestId('link').textContent();
    assert.match(reset, /\/#\/reset\/[A-Za-z0-9_-]+$/);
    const other = await newPage();
    try {
      await other.page.goto(reset);
      await other.page.getByTestId('reset-password').fill('carol new password');
      await other.page.getByTestId('reset-submit').click();
      await other.page.getByTestId('reset-done').waitFor();
    } finally {
      await other.context.close();
    }
    const login = await fetch(`${invite.url}/api/auth/login`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ username: 'carol', password: 'carol new password' }),
    });
    assert.equal(login.status, 200);
  } finally {
    await admin.context.close();
    await guest.context.close();
  }
});
