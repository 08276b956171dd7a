// End-to-end: the documents of a thread in the browser (issue #19; real binary, real extraction
// child, real Chromium). Alice uploads a 3-page PDF with the Attach button and a DOCX by dropping
// it on the thread; both reach "Ready" on her screen and, live, on Bob's (another member). She
// asks the offline agent a question answered on page 3 only: the answer quotes page 3 and cites
// it with a chip; the chip (and the answer's own "[1]") opens the viewer at "Page 3" with the
// passage highlighted and in view. The DOCX opens from the list and shows its text. Refusals are
// said in words: a pasted image (415), a file over the size limit (413), and Bob's upload over
// his storage quota (403); a corrupt PDF fails with its reason on both screens. Bob may not
// delete Alice's document; Alice deletes it and it leaves Bob's screen without a reload. The
// list, the sources and the viewer meet WCAG AA contrast (axe-core) in both themes.
// Run: EMERGENCE_BIN=target/debug/emergence node --test e2e/documents.test.mjs
import assert from 'node:assert/strict';
import { mkdirSync, readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import path from 'node:path';
import { after, before, test } from 'node:test';
import { docx, pdf } from './doc-fixtures.mjs';
import { ARTIFACTS_DIR, launchBrowser, setupOwnServer } from './support.mjs';

const PASSWORD = 'e2e-password-123';
const SKIP = process.env.EMERGENCE_BIN ? false : 'needs EMERGENCE_BIN (the test starts a server with small document limits)';
/** Limits small enough to reach in a test: 64 KiB per file, 100 KB per user. */
const MAX_BYTES = 64 * 1024;
const QUOTA_BYTES = 100_000;
/** Extraction runs in a child process: a loaded machine starts it slowly. */
const INDEXED_MS = 90_000;

const ATLAS = pdf([
  ['Chapter one describes the coastline.', 'Tides are gentle here.'],
  ['Chapter two lists the harbours and their ferries.'],
  ['Chapter three is about the lighthouse.', 'The lighthouse keeper of Vallombrosa is named Ottavia Brenner.'],
]);
const HANGAR = docx([
  ['Heading1', 'Airships'],
  [null, 'The zeppelin hangar measures four hundred metres.'],
]);
const FACT = 'The lighthouse keeper of Vallombrosa is named Ottavia Brenner.';
const AXE = readFileSync(createRequire(import.meta.url).resolve('axe-core/axe.min.js'), 'utf8');

let server = null;
let browser = null;

before(async () => {
  if (SKIP) return;
  server = await setupOwnServer({
    name: 'documents',
    env: {
      // The built-in agent answers offline, from the passages.
      EMERGENCE_OLLAMA_URL: 'off',
      EMERGENCE_DOCUMENTS_MAX_BYTES: String(MAX_BYTES),
      EMERGENCE_DOCUMENTS_QUOTA_BYTES: String(QUOTA_BYTES),
      EMERGENCE_SEND_RATE_PER_SEC: '0',
    },
  });
  browser = await launchBrowser();
});

after(async () => {
  await browser?.close().catch(() => {});
  await server?.dispose();
});

async function newUser(name) {
  // bypassCSP: the contrast audit injects axe-core (as contrast.test.mjs does).
  const context = await browser.newContext({ viewport: { width: 1280, height: 900 }, bypassCSP: true });
  context.setDefaultTimeout(20_000);
  const page = await context.newPage();
  const errors = [];
  page.on('pageerror', (e) => errors.push(String(e)));
  await page.goto(`${server.url}/`);
  await page.getByTestId('username').fill(name);
  await page.getByTestId('password').fill(PASSWORD);
  await page.getByTestId('register').click();
  await page.getByTestId('logout').waitFor();
  await page.locator('[data-testid="conn-status"][data-state="connected"]').waitFor({ timeout: 30_000 });
  return { context, page, errors };
}

const row = (page, name) => page.locator(`[data-testid="document"][data-name="${name}"]`);

async function indexed(page, name) {
  await page.locator(`[data-testid="document"][data-name="${name}"][data-stage="indexed"]`).waitFor({ timeout: INDEXED_MS });
}

/** Drops `bytes` as the file `name` on `selector`, the way a browser delivers a drag from the desktop. */
async function dropFile(page, selector, name, bytes, type) {
  await page.evaluate(
    ({ selector, name, data, type }) => {
      const target = document.querySelector(selector);
      const dt = new DataTransfer();
      dt.items.add(new File([Uint8Array.from(data)], name, { type }));
      for (const kind of ['dragenter', 'dragover', 'drop']) {
        target.dispatchEvent(new DragEvent(kind, { dataTransfer: dt, bubbles: true, cancelable: true }));
      }
    },
    { selector, name, data: [...bytes], type },
  );
}

/** Pastes a file into the composer, as a screenshot pasted from the clipboard. */
async function pasteFile(page, name, bytes, type) {
  await page.evaluate(
    ({ name, data, type }) => {
      const dt = new DataTransfer();
      dt.items.add(new File([Uint8Array.from(data)], name, { type }));
      const box = document.querySelector('[data-testid="composer"]');
      box.dispatchEvent(new ClipboardEvent('paste', { clipboardData: dt, bubbles: true, cancelable: true }));
    },
    { name, data: [...bytes], type },
  );
}

test('documents upload, index live for every member, and a page-3 citation opens page 3', { skip: SKIP, timeout: 300_000 }, async () => {
  const alice = await newUser('alice_docs');
  const bob = await newUser('bob_docs');
  const { page } = alice;
  try {
    await page.getByTestId('new-thread-title').fill('Library');
    await page.getByTestId('create-thread').click();
    await page.getByRole('heading', { name: 'Library', exact: true }).waitFor();
    await page.getByTestId('member-username').fill('bob_docs');
    await page.getByTestId('add-member').click();
    await page.locator('[data-testid="member-status"][data-ok="true"]').waitFor();
    await bob.page.getByTestId('thread-item').filter({ hasText: 'Library' }).click();
    await bob.page.getByRole('heading', { name: 'Library', exact: true }).waitFor();

    // The PDF by the Attach button, the DOCX dropped on the thread.
    await page.getByTestId('attach-input').setInputFiles({ name: 'atlas.pdf', mimeType: 'application/pdf', buffer: ATLAS });
    await dropFile(page, '[data-testid="thread"]', 'hangar.docx', HANGAR, 'application/vnd.openxmlformats-officedocument.wordprocessingml.document');
    await indexed(page, 'atlas.pdf');
    await indexed(page, 'hangar.docx');
    assert.equal(await page.getByTestId('drop-hint').count(), 0, 'the drop hint is gone after the drop');
    assert.match(await row(page, 'atlas.pdf').innerText(), /3 pages/);
    // Bob saw them appear and index without a reload.
    await indexed(bob.page, 'atlas.pdf');
    await indexed(bob.page, 'hangar.docx');
    assert.equal(await row(bob.page, 'atlas.pdf').getByTestId('document-delete').count(), 0, 'Bob may not delete Alice’s document');
    assert.equal(await row(page, 'atlas.pdf').getByTestId('document-delete').count(), 1);

    // Refusals, in words: a pasted image (415) and a file over the size limit (413).
    await pasteFile(page, 'photo.png', Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a, 1, 2, 3]), 'image/png');
    const refusedPng = page.locator('[data-testid="upload"][data-name="photo.png"] [data-testid="upload-error"]');
    await refusedPng.waitFor();
    assert.match(await refusedPng.innerText(), /“photo\.png” cannot be read: upload a PDF, Word \(\.docx\), Markdown, text, HTML or CSV file\./);
    await page.getByTestId('attach-input').setInputFiles({ name: 'big.txt', mimeType: 'text/plain', buffer: Buffer.alloc(MAX_BYTES + 1024, 'a') });
    const refusedBig = page.locator('[data-testid="upload"][data-name="big.txt"] [data-testid="upload-error"]');
    await refusedBig.waitFor();
    assert.match(await refusedBig.innerText(), /“big\.txt” is too large to upload/);
    assert.equal(await row(page, 'photo.png').count(), 0, 'a refused file is not listed');
    // A PDF that is not one is accepted, then fails with its reason, live.
    await page.getByTestId('attach-input').setInputFiles({ name: 'broken.pdf', mimeType: 'application/pdf', buffer: Buffer.from('%PDF-1.4\nnot really a PDF\n') });
    await page.locator('[data-testid="document"][data-name="broken.pdf"][data-stage="failed"]').waitFor({ timeout: INDEXED_MS });
    assert.equal(await row(page, 'broken.pdf').getByTestId('document-stage').innerText(), 'Failed');
    assert.match(await row(page, 'broken.pdf').getByTestId('document-error').innerText(), /^Not indexed: \S/);
    assert.equal(await row(page, 'broken.pdf').getByTestId('document-open').count(), 0, 'a failed document has no text to open');
    await row(bob.page, 'broken.pdf').getByTestId('document-error').waitFor();

    // Over the storage quota (403): Bob's two 60 KB notes do not both fit in 100 KB.
    const note = (c) => Buffer.alloc(60_000, `${c} `);
    await bob.page.getByTestId('attach-input').setInputFiles({ name: 'notes-a.txt', mimeType: 'text/plain', buffer: note('alpha') });
    await row(bob.page, 'notes-a.txt').waitFor();
    await bob.page.getByTestId('attach-input').setInputFiles({ name: 'notes-b.txt', mimeType: 'text/plain', buffer: note('beta') });
    const refusedQuota = bob.page.locator('[data-testid="upload"][data-name="notes-b.txt"] [data-testid="upload-error"]');
    await refusedQuota.waitFor();
    assert.match(await refusedQuota.innerText(), /your documents already use all of your storage space/);

    // The offline agent answers from page 3, quoting it, with a numbered source.
    await page.getByTestId('composer-agent').selectOption('anima');
    await page.getByTestId('composer').fill('Who is the lighthouse keeper of Vallombrosa?');
    await page.getByTestId('send').click();
    const answer = page.locator('[data-testid="message"][data-agent]').filter({ hasText: 'Ottavia Brenner' });
    await answer.waitFor({ timeout: 60_000 });
    const chip = answer.locator('[data-testid="citation"][data-n="1"]');
    await chip.waitFor();
    assert.match(await answer.getByTestId('message-body').innerText(), /"The lighthouse keeper of Vallombrosa is named Ottavia Brenner\." \[1\] \(atlas\.pdf, page 3\)/);
    assert.match(await chip.innerText(), /atlas\.pdf/);
    assert.match(await chip.innerText(), /p\. 3/);

    const failures = await contrastFailures(page, '[data-testid="thread"]', 'documents and sources');

    // The chip opens the viewer at page 3, the passage highlighted and in view.
    await chip.click();
    const viewer = page.getByTestId('doc-viewer');
    await viewer.waitFor();
    const cited = viewer.getByTestId('cited-passage');
    await cited.waitFor();
    assert.match(await cited.innerText(), /Ottavia Brenner/);
    const pageOfCited = viewer.locator('[data-testid="doc-page"]:has([data-testid="cited-passage"])');
    assert.equal(await pageOfCited.getAttribute('data-page'), '3');
    assert.equal(await pageOfCited.locator('h3').textContent(), 'Page 3');
    assert.ok(await inView(viewer.getByTestId('doc-text'), cited), 'the cited passage is scrolled into view');
    // The other pages are there too, under their own headings.
    assert.deepEqual(await viewer.locator('[data-testid="doc-page"]').evaluateAll((els) => els.map((e) => e.dataset.page)), ['1', '2', '3']);
    assert.match(await viewer.getByTestId('doc-viewer-download').getAttribute('href'), /\/documents\/[^/]+\/file$/);
    mkdirSync(ARTIFACTS_DIR, { recursive: true });
    await page.screenshot({ path: path.join(ARTIFACTS_DIR, 'documents-viewer.png') });
    failures.push(...(await contrastFailures(page, '[data-testid="doc-viewer"]', 'viewer')));
    assert.deepEqual(failures, [], `contrast below WCAG AA:\n${failures.join('\n')}`);
    await page.keyboard.press('Escape');
    await viewer.waitFor({ state: 'detached' });

    // The answer's own "[1]" opens the same passage.
    await answer.locator('button.cite-ref[data-cite="1"]').click();
    await page.getByTestId('cited-passage').filter({ hasText: FACT }).waitFor();
    await page.getByTestId('doc-viewer-close').click();
    await viewer.waitFor({ state: 'detached' });

    // The DOCX opens from the list with its heading and text.
    await row(page, 'hangar.docx').getByTestId('document-open').click();
    await viewer.getByText('The zeppelin hangar measures four hundred metres.').waitFor();
    assert.equal(await viewer.locator('h4').first().innerText(), 'Airships');
    await page.getByTestId('doc-viewer-close').click();
    await page.screenshot({ path: path.join(ARTIFACTS_DIR, 'documents-list.png') });

    // Alice deletes the DOCX: it leaves both screens, Bob's without a reload.
    await row(page, 'hangar.docx').getByTestId('document-delete').click();
    await row(page, 'hangar.docx').getByTestId('document-delete-confirm').click();
    await row(page, 'hangar.docx').waitFor({ state: 'detached' });
    await row(bob.page, 'hangar.docx').waitFor({ state: 'detached' });
    assert.equal(await row(bob.page, 'atlas.pdf').count(), 1);

    assert.deepEqual(alice.errors, []);
    assert.deepEqual(bob.errors, []);
  } finally {
    await alice.context.close();
    await bob.context.close();
  }
});

/** axe-core's color-contrast violations within `selector`, in the light and the dark theme. */
async function contrastFailures(page, selector, screen) {
  const failures = [];
  for (const colorScheme of ['light', 'dark']) {
    await page.emulateMedia({ colorScheme });
    if (!(await page.evaluate(() => 'axe' in window))) await page.evaluate(AXE);
    const found = await page.evaluate(async (selector) => {
      const r = await window.axe.run(selector, { runOnly: { type: 'rule', values: ['color-contrast'] }, resultTypes: ['violations'] });
      return r.violations.flatMap((v) => v.nodes.map((n) => `${n.target.join(' ')}: ${n.any.map((a) => a.message).join('; ')}`));
    }, selector);
    failures.push(...found.map((f) => `${screen} (${colorScheme}): ${f}`));
    if (colorScheme === 'dark') {
      mkdirSync(ARTIFACTS_DIR, { recursive: true });
      await page.screenshot({ path: path.join(ARTIFACTS_DIR, `documents-${screen.replace(/\W+/g, '-')}-dark.png`) });
    }
  }
  await page.emulateMedia({ colorScheme: 'light' });
  return failures;
}

/** True when `inner` is within the visible part of the scrolling `outer`. */
async function inView(outer, inner) {
  const [o, i] = [await outer.boundingBox(), await inner.boundingBox()];
  return Boolean(o && i && i.y >= o.y - 1 && i.y + Math.min(i.height, 40) <= o.y + o.height + 1);
}
