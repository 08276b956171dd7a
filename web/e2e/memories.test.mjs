// End-to-end: the Memory panel of "My account" (issue #19, docs/memories.md). Memory is off for a
// new account; turned on in the panel, a fact stated in a thread appears in the panel open in
// another tab, live (the `memory` frame); it is edited inline, an item is added by hand and
// another deleted; the built-in offline agent then mentions the remembered fact in its answer;
// "Delete everything" empties the list. A French reader sees the panel in French.
// Run: EMERGENCE_BIN=target/debug/emergence node --test e2e/memories.test.mjs
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { launchBrowser, setupOwnServer } from './support.mjs';

const PASSWORD = 'e2e-password-123';
const SKIP = process.env.EMERGENCE_BIN ? false : 'needs EMERGENCE_BIN (the test starts a server of its own)';

let server = null;
let browser = null;

before(async () => {
  if (SKIP) return;
  server = await setupOwnServer({ name: 'memories', env: { EMERGENCE_OLLAMA_URL: '' } });
  browser = await launchBrowser();
});

after(async () => {
  await browser?.close().catch(() => {});
  await server?.dispose();
});

async function register(page, username) {
  await page.goto(`${server.url}/`);
  await page.getByTestId('username').fill(username);
  await page.getByTestId('password').fill(PASSWORD);
  await page.getByTestId('register').click();
  await page.getByTestId('logout').waitFor();
}

test('memory is opt-in, fills live, is edited and deleted in the panel, and the offline agent uses it', { skip: SKIP, timeout: 180_000 }, async () => {
  const context = await browser.newContext({ viewport: { width: 1280, height: 900 } });
  context.setDefaultTimeout(20_000);
  const chat = await context.newPage();
  const pageErrors = [];
  chat.on('pageerror', (e) => pageErrors.push(String(e)));
  try {
    await register(chat, 'mona');
    await chat.getByTestId('new-thread-title').fill('Bikes');
    await chat.getByTestId('create-thread').click();
    await chat.getByRole('heading', { name: 'Bikes', exact: true }).waitFor();

    // A second tab on "My account": memory is off and empty; turn it on.
    const panel = await context.newPage();
    panel.on('pageerror', (e) => pageErrors.push(String(e)));
    panel.on('dialog', (d) => void d.accept());
    await panel.goto(`${server.url}/`);
    await panel.getByTestId('nav-account').click();
    await panel.getByTestId('memory-panel').waitFor();
    await panel.locator('[data-testid="conn-status"][data-state="connected"]').waitFor({ timeout: 30_000 });
    const toggle = panel.getByTestId('memory-enabled');
    assert.equal(await toggle.isChecked(), false, 'off for a new account');
    await panel.getByTestId('memory-empty').waitFor();
    await toggle.check();
    await panel.getByTestId('memory-count').filter({ hasText: '0 of 200 items' }).waitFor();
    assert.equal(await toggle.isChecked(), true);

    // A fact stated in the thread shows up in the other tab by itself.
    await chat.locator('[data-testid="conn-status"][data-state="connected"]').waitFor({ timeout: 30_000 });
    await chat.getByTestId('composer').fill('Remember that my favourite colour is teal.');
    await chat.getByTestId('send').click();
    const item = panel.getByTestId('memory-item').filter({ hasText: 'My favourite colour is teal' });
    await item.waitFor();
    assert.equal(await item.getAttribute('data-kind'), 'fact');

    // Edit it inline.
    await item.getByTestId('memory-edit').click();
    await panel.getByTestId('memory-edit-text').fill('My favourite colour is teal, or failing that green');
    await panel.getByTestId('memory-save').click();
    await panel.getByTestId('memory-text').filter({ hasText: 'or failing that green' }).waitFor();

    // Add one by hand, then delete it.
    await panel.getByTestId('memory-new').fill('I ride to work every day');
    await panel.getByTestId('memory-add').click();
    const added = panel.getByTestId('memory-item').filter({ hasText: 'I ride to work every day' });
    await added.waitFor();
    await panel.getByTestId('memory-count').filter({ hasText: '2 of 200 items' }).waitFor();
    await added.getByTestId('memory-delete').click();
    await added.waitFor({ state: 'detached' });
    assert.equal(await panel.getByTestId('memory-item').count(), 1);

    // The offline agent answers with what it was asked to remember.
    await chat.getByTestId('composer-agent').selectOption('anima');
    await chat.getByTestId('composer').fill('Which colour should my new bike be?');
    await chat.getByTestId('send').click();
    await chat
      .getByTestId('message')
      .filter({ hasText: 'From what you asked me to remember: "My favourite colour is teal, or failing that green".' })
      .waitFor({ timeout: 60_000 });

    // Delete everything.
    await panel.getByTestId('memory-delete-all').click();
    await panel.getByTestId('memory-empty').waitFor();
    assert.deepEqual(pageErrors, [], 'no script errors');
  } finally {
    await context.close();
  }
});

test('a French reader sees the Memory panel in French', { skip: SKIP, timeout: 60_000 }, async () => {
  const context = await browser.newContext({ viewport: { width: 1280, height: 800 }, locale: 'fr-FR' });
  context.setDefaultTimeout(20_000);
  const page = await context.newPage();
  try {
    await register(page, 'marie');
    await page.getByTestId('nav-account').click();
    await page.getByRole('heading', { name: 'Mémoire', exact: true }).waitFor();
    await page.getByText('Retenir des choses sur moi').waitFor();
    await page.getByTestId('memory-empty').filter({ hasText: 'Rien n’est retenu' }).waitFor();
  } finally {
    await context.close();
  }
});
