// Shared helpers for the end-to-end tests: the server under test and the browser.
//
// Server: when EMERGENCE_BIN is set, `$EMERGENCE_BIN serve` is spawned with PORT=<free port> (or the
// port of EMERGENCE_URL), DATABASE_URL=sqlite://<tmpdir>/e2e.db, EMERGENCE_REGISTRATION=open and EMERGENCE_AUTH_RATE_PER_MIN=0,
// and can be stopped (SIGTERM) and started again on the same port and database. Otherwise the
// server at EMERGENCE_URL is used as is (tests that need a restart are skipped).
//
// Browser: the system Chromium (CHROMIUM, default /usr/bin/chromium) through playwright-core; no
// browser is ever downloaded.
import { spawn } from 'node:child_process';
import { closeSync, mkdirSync, mkdtempSync, openSync, rmSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

export const WEB_DIR = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
export const REPO_DIR = path.resolve(WEB_DIR, '..');
export const ARTIFACTS_DIR = path.join(REPO_DIR, 'target', 'e2e');

export const CHROMIUM_PATH = process.env.CHROMIUM || '/usr/bin/chromium';
export const CHROMIUM_ARGS = [
  '--no-sandbox',
  '--disable-gpu',
  '--disable-quic',
  '--no-first-run',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
];

/** True when the environment names a server to test. */
export const HAVE_SERVER = Boolean(process.env.EMERGENCE_BIN || process.env.EMERGENCE_URL);

export async function launchBrowser() {
  const { chromium } = await import('playwright-core');
  return chromium.launch({ executablePath: CHROMIUM_PATH, headless: true, args: CHROMIUM_ARGS });
}

export function sleep(ms) {
  return new Promise((r) => setTimeout(r, ms));
}

export function freePort() {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.unref();
    srv.on('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const { port } = srv.address();
      srv.close(() => resolve(port));
    });
  });
}

/** Polls GET /readyz until it answers 200 (ready or degraded). */
export async function waitReady(baseUrl, timeoutMs = 30_000, isAlive = () => true) {
  const deadline = Date.now() + timeoutMs;
  let last = 'no answer';
  while (Date.now() < deadline) {
    if (!isAlive()) throw new Error('server process exited before it became ready');
    try {
      const res = await fetch(new URL('/readyz', baseUrl), { signal: AbortSignal.timeout(2000) });
      await res.arrayBuffer().catch(() => {});
      if (res.status === 200) return;
      last = `status ${res.status}`;
    } catch (e) {
      last = e?.cause?.code ?? e?.message ?? String(e);
    }
    await sleep(100);
  }
  throw new Error(`${baseUrl}/readyz not ready after ${timeoutMs} ms (${last})`);
}

/** A server process this test run owns. */
export class ManagedServer {
  canRestart = true;

  constructor(bin, port, dataDir, extraEnv = {}) {
    this.bin = bin;
    this.port = port;
    this.dataDir = dataDir;
    this.extraEnv = extraEnv;
    this.url = `http://127.0.0.1:${port}`;
    this.logPath = path.join(ARTIFACTS_DIR, `server-${port}.log`);
    this.proc = null;
    this.exited = null;
  }

  async start(timeoutMs = 60_000) {
    if (this.proc) throw new Error('server already running');
    mkdirSync(ARTIFACTS_DIR, { recursive: true });
    const log = openSync(this.logPath, 'a');
    const env = {
      ...process.env,
      PORT: String(this.port),
      DATABASE_URL: `sqlite://${path.join(this.dataDir, 'e2e.db')}`,
      EMERGENCE_AUTH_RATE_PER_MIN: '0',
      EMERGENCE_REGISTRATION: 'open',
      ...this.extraEnv,
    };
    const proc = spawn(this.bin, ['serve'], { cwd: REPO_DIR, env, stdio: ['ignore', log, log] });
    closeSync(log);
    this.proc = proc;
    let alive = true;
    this.exited = new Promise((resolve) => {
      proc.once('exit', (code, signal) => {
        alive = false;
        resolve({ code, signal });
      });
      proc.once('error', (err) => {
        alive = false;
        resolve({ code: null, signal: null, error: err });
      });
    });
    try {
      await waitReady(this.url, timeoutMs, () => alive);
    } catch (e) {
      await this.stop().catch(() => {});
      throw new Error(`${e.message}; see ${this.logPath}`);
    }
  }

  /** SIGTERM, then SIGKILL if the process has not exited within `graceMs`. */
  async stop(graceMs = 30_000) {
    const proc = this.proc;
    if (!proc) return;
    if (proc.exitCode === null && proc.signalCode === null) proc.kill('SIGTERM');
    let grace;
    const timer = new Promise((resolve) => {
      grace = setTimeout(() => resolve('timeout'), graceMs);
    });
    const outcome = await Promise.race([this.exited, timer]);
    clearTimeout(grace); // a pending grace timer would keep node (and the test file) alive for 30 s
    if (outcome === 'timeout') {
      proc.kill('SIGKILL');
      await this.exited;
    }
    this.proc = null;
  }

  async restart() {
    await this.stop();
    await this.start();
  }

  async dispose() {
    await this.stop();
    if (!process.env.EMERGENCE_E2E_KEEP) rmSync(this.dataDir, { recursive: true, force: true });
  }
}

/** A server someone else runs (EMERGENCE_URL without EMERGENCE_BIN). */
export class ExternalServer {
  canRestart = false;

  constructor(url) {
    this.url = url.replace(/\/+$/, '');
  }

  async start() {
    throw new Error('cannot start an external server (set EMERGENCE_BIN)');
  }

  async stop() {
    throw new Error('cannot stop an external server (set EMERGENCE_BIN)');
  }

  async restart() {
    throw new Error('cannot restart an external server (set EMERGENCE_BIN)');
  }

  async dispose() {}
}

/** The server under test, started and ready; null when none is configured. */
export async function setupServer() {
  const bin = process.env.EMERGENCE_BIN;
  const url = process.env.EMERGENCE_URL;
  if (bin) {
    const fromUrl = url ? Number(new URL(url).port) : 0;
    const port = fromUrl > 0 ? fromUrl : await freePort();
    const dir = mkdtempSync(path.join(os.tmpdir(), 'emergence-e2e-'));
    const server = new ManagedServer(bin.includes('/') ? path.resolve(bin) : bin, port, dir);
    await server.start();
    return server;
  }
  if (url) {
    const server = new ExternalServer(url);
    await waitReady(server.url, 30_000);
    return server;
  }
  return null;
}

/**
 * A server of its own for one test file, always spawned from EMERGENCE_BIN on a free port with a
 * fresh database, with `env` added to its environment (for example EMERGENCE_CONFIG). Returns
 * null when EMERGENCE_BIN is not set.
 */
export async function setupOwnServer({ env = {}, name = 'own' } = {}) {
  const bin = process.env.EMERGENCE_BIN;
  if (!bin) return null;
  const port = await freePort();
  const dir = mkdtempSync(path.join(os.tmpdir(), `emergence-e2e-${name}-`));
  const server = new ManagedServer(bin.includes('/') ? path.resolve(bin) : bin, port, dir, env);
  await server.start();
  return server;
}

/** The value of a TOML key: strings quoted (JSON's escapes are TOML's), numbers and booleans as is. */
function tomlValue(v) {
  return typeof v === 'string' ? JSON.stringify(v) : String(v);
}

/**
 * A server of its own (see setupOwnServer) whose agents answer through `fake`, a started
 * FakeOpenAI. Each of `agents` is `{ id, name, ...keys }`, written as an `[[agent]]` table with
 * `provider = "openai"` and `model = id` unless given; `providers` adds keys to `[providers]`.
 * The configuration file is removed with the server by `dispose()`. Returns null when
 * EMERGENCE_BIN is not set.
 */
export async function setupAgentServer({ name, fake, agents, providers = {}, env = {} }) {
  if (!process.env.EMERGENCE_BIN) return null;
  const configDir = mkdtempSync(path.join(os.tmpdir(), `emergence-e2e-${name}-cfg-`));
  const config = path.join(configDir, 'emergence.toml');
  const lines = [];
  for (const agent of agents) {
    const keys = { provider: 'openai', model: agent.id, ...agent };
    lines.push('[[agent]]', ...Object.entries(keys).map(([k, v]) => `${k} = ${tomlValue(v)}`), '');
  }
  const provider = { openai_base_url: fake.url, openai_api_key: 'e2e-fake-key', ...providers };
  lines.push('[providers]', ...Object.entries(provider).map(([k, v]) => `${k} = ${tomlValue(v)}`), '');
  writeFileSync(config, lines.join('\n'));
  const server = await setupOwnServer({
    name,
    env: { EMERGENCE_CONFIG: config, OPENAI_BASE_URL: fake.url, OPENAI_API_KEY: 'e2e-fake-key', ...env },
  });
  const dispose = server.dispose.bind(server);
  server.dispose = async () => {
    await dispose();
    rmSync(configDir, { recursive: true, force: true });
  };
  return server;
}

let uniqCounter = 0;

/** A fresh name (user, thread) for one test: `prefix_` and a unique suffix, at most 32 characters. */
export function uniq(prefix) {
  uniqCounter += 1;
  const r = Math.random().toString(36).slice(2, 6);
  return `${prefix}_${Date.now().toString(36)}${uniqCounter}${r}`.slice(0, 32);
}
