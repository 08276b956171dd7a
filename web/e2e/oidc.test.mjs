// End-to-end: single sign-on (OpenID Connect) in headless Chromium against a real OpenID
// provider process (the npm `oidc-provider` package, OpenID Certified; ./oidc-provider.mjs) on
// loopback. A new user signs in through the provider's login page and lands in the chat; they
// come back later as the same account. A forged `state`, a replayed provider redirect, a used
// code presented again and an id_token for another audience each end on a clear, translated
// page (English and French). An SSO-only server (EMERGENCE_PASSWORD_LOGIN=off) shows no password
// form, only the provider's button.
// Run: EMERGENCE_BIN=target/debug/emergence node --test e2e/oidc.test.mjs
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { copyFileSync, mkdirSync, mkdtempSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { after, before, test } from 'node:test';
import { ARTIFACTS_DIR, REPO_DIR, freePort, launchBrowser, setupOwnServer } from './support.mjs';

const SKIP = process.env.EMERGENCE_BIN ? false : 'set EMERGENCE_BIN to run the single sign-on end-to-end tests';
const HERE = path.dirname(fileURLToPath(import.meta.url));

let mixed = null; // password and SSO
let ssoOnly = null; // SSO only
let op = null;
let browser = null;

/** The settings file naming the test provider (its secret comes from the environment). */
function configFile(opPort) {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'emergence-e2e-oidc-'));
  const file = path.join(dir, 'emergence.toml');
  const issuer = `http://127.0.0.1:${opPort}`;
  writeFileSync(
    file,
    `[[auth.oidc]]
name = "test"
label = "Test ID"
issuer = "${issuer}"
client_id = "emergence"
client_secret_env = "E2E_OIDC_SECRET"

[[auth.oidc]]
name = "wrongaud"
label = "Other audience"
issuer = "${issuer}"
client_id = "emergence-wrongaud"
client_secret = "wrongaud-secret"
`,
  );
  return file;
}

async function startProvider(port, apps) {
  const proc = spawn(process.execPath, [path.join(HERE, 'oidc-provider.mjs'), '--port', String(port), '--app', apps.join(',')], {
    stdio: ['ignore', 'pipe', 'ignore'],
  });
  const lines = createInterface({ input: proc.stdout });
  await new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error('the OpenID provider did not start')), 20_000);
    lines.on('line', (l) => {
      if (l.startsWith('ready ')) {
        clearTimeout(timer);
        resolve();
      }
    });
    proc.once('exit', () => reject(new Error('the OpenID provider exited')));
  });
  return proc;
}

before(async () => {
  if (SKIP) return;
  const opPort = await freePort();
  const config = configFile(opPort);
  const env = { EMERGENCE_CONFIG: config, E2E_OIDC_SECRET: 'emergence-secret' };
  mixed = await setupOwnServer({ env, name: 'oidc' });
  ssoOnly = await setupOwnServer({ env: { ...env, EMERGENCE_PASSWORD_LOGIN: 'off' }, name: 'oidc-only' });
  op = await startProvider(opPort, [mixed.url, ssoOnly.url]);
  browser = await launchBrowser();
});

after(async () => {
  await browser?.close().catch(() => {});
  op?.kill();
  await mixed?.dispose();
  await ssoOnly?.dispose();
});

async function newPage(locale = 'en-US') {
  const context = await browser.newContext({ viewport: { width: 1280, height: 800 }, locale });
  context.setDefaultTimeout(20_000);
  return { context, page: await context.newPage() };
}

/** At the provider's login page: sign in as `login`. */
async function providerLogin(page, login) {
  await page.locator('input[name="login"]').fill(login);
  await page.locator('button[type="submit"]').click();
}

/** A screenshot in target/e2e (and docs/screenshots with UPDATE_SCREENSHOTS=1). */
async function shot(page, name) {
  mkdirSync(ARTIFACTS_DIR, { recursive: true });
  const file = path.join(ARTIFACTS_DIR, name);
  await page.screenshot({ path: file });
  if (process.env.UPDATE_SCREENSHOTS === '1') copyFileSync(file, path.join(REPO_DIR, 'docs', 'screenshots', name));
}

async function me(page) {
  return page.evaluate(async () => (await fetch('/api/me')).json());
}

/**
 * Sign in at the provider's form, but stop at its redirect back to the server: the login POST is
 * sent by the page's own context and its redirects followed with the context's cookies until they
 * point at `/auth/oidc/...`; that URL is returned and the browser is not sent there. (Playwright
 * cannot reroute a request that a redirect started, so the tests tamper with the URL here.)
 */
async function signInUntilCallback(page, login) {
  let resolve;
  const got = new Promise((r) => (resolve = r));
  await page.route('**/interaction/*/login', async (route) => {
    let res = await route.fetch({ maxRedirects: 0 });
    let url = new URL(res.headers().location, route.request().url()).toString();
    while (!url.includes('/auth/oidc/')) {
      res = await page.context().request.get(url, { maxRedirects: 0 });
      url = new URL(res.headers().location, url).toString();
    }
    resolve(url);
    await route.fulfill({ status: 200, contentType: 'text/html', body: '<p>stopped before the callback</p>' });
  });
  await providerLogin(page, login);
  const url = await got;
  await page.unroute('**/interaction/*/login');
  return url;
}

/** A fresh browser at the sign-in page, sent to the provider by the `name` button. */
async function startAt(name, locale) {
  const ctx = await newPage(locale);
  await ctx.page.goto(`${mixed.url}/`);
  await ctx.page.getByTestId(`sso-${name}`).click();
  return ctx;
}

function withParam(url, key, value) {
  const u = new URL(url);
  u.searchParams.set(key, value);
  return u.toString();
}

const EN = {
  state: 'This sign-in link is not valid any more (it was already used, expired, or was started in another browser). Please sign in again.',
  failed: 'The provider did not confirm this sign-in (the code was refused or already used). Please sign in again.',
  token: 'The provider’s answer could not be trusted (its identity token is not for this server, or is expired or forged). You were not signed in.',
};
const FR_TOKEN =
  'La réponse du fournisseur n’est pas digne de confiance (son jeton d’identité n’est pas destiné à ce serveur, a expiré ou est falsifié). Vous n’êtes pas connecté.';

test('a new user signs in through the provider and comes back as the same account', { skip: SKIP, timeout: 120_000 }, async () => {
  const first = await newPage();
  let oliviaId = null;
  try {
    await first.page.goto(`${mixed.url}/`);
    // Both ways to sign in are offered.
    await first.page.getByTestId('username').waitFor();
    await shot(first.page, 'sso-login.png');
    await first.page.getByTestId('sso-test').click();
    await providerLogin(first.page, 'olivia');
    await first.page.getByTestId('logout').waitFor();
    // Signed in by the session cookie, as after a password login; the code left the address bar.
    assert.equal(new URL(first.page.url()).hash, '');
    const olivia = await me(first.page);
    assert.equal(olivia.username, 'olivia');
    assert.equal(olivia.status, 'active');
    oliviaId = olivia.id;
    const cookies = await first.context.cookies(mixed.url);
    const session = cookies.find((c) => c.name === 'emergence_session');
    assert.ok(session?.httpOnly, 'the session is an HttpOnly cookie');

    // Log out, sign in again (the provider remembers the browser): the same account.
    await first.page.getByTestId('logout').click();
    await first.page.getByTestId('sso-test').click();
    await first.page.getByTestId('logout').waitFor();
    assert.equal((await me(first.page)).id, olivia.id);
  } finally {
    await first.context.close();
  }
  // Another browser, signing in at the provider again: still the same account.
  const second = await newPage();
  try {
    await second.page.goto(`${mixed.url}/`);
    await second.page.getByTestId('sso-test').click();
    await providerLogin(second.page, 'olivia');
    await second.page.getByTestId('logout').waitFor();
    const again = await me(second.page);
    assert.equal(again.id, oliviaId);
    assert.equal(again.username, 'olivia');
  } finally {
    await second.context.close();
  }
});

test('a forged state, a replayed redirect, a reused code and a token for another audience are refused', { skip: SKIP, timeout: 150_000 }, async () => {
  const contexts = [];
  try {
    // A forged `state`: the provider's answer with another state than the one this browser got.
    const forged = await startAt('test');
    contexts.push(forged.context);
    const answer = await signInUntilCallback(forged.page, 'peggy');
    await forged.page.goto(withParam(answer, 'state', 'forged-by-an-attacker'));
    await forged.page.getByTestId('sso-error').filter({ hasText: EN.state }).waitFor();
    assert.equal(await forged.page.getByTestId('logout').count(), 0);
    assert.equal(new URL(forged.page.url()).hash, '', 'the reason left the address bar');

    // A real answer, then replayed: the state is spent.
    const real = await startAt('test');
    contexts.push(real.context);
    const realAnswer = await signInUntilCallback(real.page, 'peggy');
    await real.page.goto(realAnswer);
    await real.page.getByTestId('logout').waitFor();
    await real.page.getByTestId('logout').click();
    await real.page.getByTestId('sso-test').waitFor();
    await real.page.goto(realAnswer);
    await real.page.getByTestId('sso-error').filter({ hasText: EN.state }).waitFor();
    assert.equal(await real.page.getByTestId('logout').count(), 0);

    // The used code with a fresh state of this browser: the provider refuses it.
    const reuse = await startAt('test');
    contexts.push(reuse.context);
    const fresh = await signInUntilCallback(reuse.page, 'peggy');
    await reuse.page.goto(withParam(fresh, 'code', new URL(realAnswer).searchParams.get('code')));
    await reuse.page.getByTestId('sso-error').filter({ hasText: EN.failed }).waitFor();
    assert.equal(await reuse.page.getByTestId('logout').count(), 0);

    // An id_token signed by the provider but for another audience.
    const other = await startAt('wrongaud');
    contexts.push(other.context);
    await providerLogin(other.page, 'peggy');
    await other.page.getByTestId('sso-error').filter({ hasText: EN.token }).waitFor();
    assert.equal(await other.page.getByTestId('logout').count(), 0);

    // The same refusal, in French.
    const fr = await startAt('wrongaud', 'fr-FR');
    contexts.push(fr.context);
    await providerLogin(fr.page, 'quentin');
    await fr.page.getByTestId('sso-error').filter({ hasText: FR_TOKEN }).waitFor();
    await shot(fr.page, 'sso-error-fr.png');
    assert.match(await fr.page.getByTestId('sso-test').innerText(), /Se connecter avec Test ID/);
  } finally {
    for (const c of contexts) await c.close().catch(() => {});
  }
});

test('an SSO-only server shows the provider and no password form', { skip: SKIP, timeout: 90_000 }, async () => {
  const { context, page } = await newPage();
  try {
    await page.goto(`${ssoOnly.url}/`);
    await page.getByTestId('sso-test').waitFor();
    assert.equal(await page.getByTestId('username').count(), 0);
    assert.equal(await page.getByTestId('password').count(), 0);
    // The server refuses a password login with its contract code, whatever the page shows.
    const refused = await page.evaluate(async () => {
      const r = await fetch('/api/auth/login', {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ username: 'x-user', password: 'whatever-password' }),
      });
      return { status: r.status, code: (await r.json()).error.code };
    });
    assert.deepEqual(refused, { status: 403, code: 'password_login_disabled' });
    await page.getByTestId('sso-test').click();
    await providerLogin(page, 'rupert');
    await page.getByTestId('logout').waitFor();
    assert.equal((await me(page)).username, 'rupert');
  } finally {
    await context.close();
  }
});
