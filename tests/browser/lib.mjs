// Shared harness of the browser tests: start the example binaries and `ssehub serve` on free
// ports, drive headless Chromium through playwright-core, wait with bounded timeouts, and take
// screenshots into docs/screenshots/.
//
// Nothing here skips: a missing Chromium or binary is a test failure with a message saying what
// to run (tests/browser/run does all of it).
import { spawn } from 'node:child_process';
import { createHmac, randomUUID } from 'node:crypto';
import { existsSync, mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { request as httpsRequest } from 'node:https';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { chromium } from 'playwright-core';

export const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..');
const TARGET = process.env.CARGO_TARGET_DIR ? resolve(ROOT, process.env.CARGO_TARGET_DIR) : join(ROOT, 'target');
const BIN_DIR = join(TARGET, 'debug');
export const SCREENSHOTS = join(ROOT, 'docs', 'screenshots');
const CHROMIUM = process.env.CHROMIUM || '/usr/bin/chromium';

/** Path of a built binary; throws (fails the test) when it is not built. */
export function binary(name) {
  const path = join(BIN_DIR, name);
  if (!existsSync(path)) {
    throw new Error(`${path} is missing: build it with "cargo build -p ssehub-examples -p ssehub-cli" (tests/browser/run does)`);
  }
  return path;
}

/** A TCP port free right now on 127.0.0.1. */
export function freePort() {
  return new Promise((ok, fail) => {
    const srv = createServer();
    srv.unref();
    srv.on('error', fail);
    srv.listen(0, '127.0.0.1', () => {
      const { port } = srv.address();
      srv.close(() => ok(port));
    });
  });
}

/**
 * Starts a binary and resolves once it serves `readyPath` with 200. Output is kept for failure
 * messages. With `ca` (a PEM certificate to trust), it is served over https. Returns
 * { url, port, proc, output(), stop(signal) }.
 */
export async function start(name, { port, args = [], readyPath = '/healthz', timeout = 15000, ca } = {}) {
  port ??= await freePort();
  const exe = binary(name);
  const proc = spawn(exe, [...args, '--addr', `127.0.0.1:${port}`], {
    stdio: ['ignore', 'pipe', 'pipe'],
    env: { ...process.env, RUST_LOG: process.env.RUST_LOG || 'warn' },
  });
  let out = '';
  proc.stdout.on('data', (d) => { out += d; });
  proc.stderr.on('data', (d) => { out += d; });
  const exited = new Promise((ok) => proc.once('exit', (code, signal) => ok({ code, signal })));
  const url = `${ca ? 'https' : 'http'}://127.0.0.1:${port}`;
  const app = {
    url,
    port,
    proc,
    output: () => out,
    exited,
    /** Sends `signal` and waits for the process to exit (SIGKILL after 5 s). */
    async stop(signal = 'SIGTERM') {
      if (proc.exitCode !== null || proc.signalCode !== null) return exited;
      proc.kill(signal);
      const timer = setTimeout(() => proc.kill('SIGKILL'), 5000);
      const res = await exited;
      clearTimeout(timer);
      return res;
    },
  };
  try {
    await waitFor(async () => {
      if (proc.exitCode !== null) throw new Error(`${name} exited with ${proc.exitCode}:\n${out}`);
      return (await (ca ? httpsOk(url + readyPath, ca) : httpOk(url + readyPath))) || null;
    }, { timeout, what: `${name} to serve ${url}${readyPath}` });
  } catch (err) {
    proc.kill('SIGKILL');
    throw err;
  }
  return app;
}

async function httpOk(url) {
  try {
    const res = await fetch(url, { signal: AbortSignal.timeout(1000) });
    await res.arrayBuffer();
    return res.ok;
  } catch {
    return false;
  }
}

/**
 * An https request trusting `ca` (PEM), as node's fetch cannot be told to. Resolves with
 * { status, headers, text } once the whole body is read; rejects after `timeout` ms.
 */
export function httpsFetch(url, { ca, method = 'GET', headers = {}, body, timeout = 5000 } = {}) {
  return new Promise((ok, fail) => {
    const req = httpsRequest(url, { ca, method, headers, timeout }, (res) => {
      let text = '';
      res.setEncoding('utf8');
      res.on('data', (d) => { text += d; });
      res.on('end', () => ok({ status: res.statusCode, headers: res.headers, text }));
      res.on('error', fail);
    });
    req.on('timeout', () => req.destroy(new Error(`${method} ${url}: no answer within ${timeout} ms`)));
    req.on('error', fail);
    req.end(body);
  });
}

async function httpsOk(url, ca) {
  try {
    return (await httpsFetch(url, { ca, timeout: 1000 })).status === 200;
  } catch {
    return false;
  }
}

/** Resolves once `url` answers 200 again (after a restart). */
export function waitHealthy(url, timeout = 10000) {
  return waitFor(() => httpOk(url).then((ok) => ok || null), { timeout, what: `${url} to answer` });
}

/**
 * Polls `fn` until it returns something other than null/undefined/false, then resolves with it.
 * Rejects after `timeout` ms with a message naming `what` and the last value seen.
 */
export async function waitFor(fn, { timeout = 10000, interval = 50, what = 'condition' } = {}) {
  const deadline = Date.now() + timeout;
  let last;
  for (;;) {
    last = await fn();
    if (last !== null && last !== undefined && last !== false) return last;
    if (Date.now() > deadline) throw new Error(`timed out after ${timeout} ms waiting for ${what} (last: ${JSON.stringify(last)})`);
    await new Promise((r) => setTimeout(r, interval));
  }
}

/** Waits until the element's text is exactly `text` (or matches it, for a RegExp). */
export function waitText(page, selector, text, timeout = 10000) {
  return waitFor(async () => {
    const got = (await page.textContent(selector))?.trim();
    const ok = text instanceof RegExp ? text.test(got ?? '') : got === text;
    return ok ? got : false;
  }, { timeout, what: `${selector} to read ${text}` }).catch(async (err) => {
    const got = (await page.textContent(selector).catch(() => '?'))?.trim();
    throw new Error(`${err.message}; it reads ${JSON.stringify(got)}`);
  });
}

/**
 * Headless Chromium with a fresh, empty profile, and `args` added to its usual flags. Returns
 * { browser context, newPage(), close() }.
 */
export async function launchBrowser({ args = [] } = {}) {
  if (!existsSync(CHROMIUM)) {
    throw new Error(`${CHROMIUM} is missing: apt-get install -y chromium chromium-driver (tests/browser/run does)`);
  }
  const profile = mkdtempSync(join(tmpdir(), 'ssehub-chromium-'));
  const context = await chromium.launchPersistentContext(profile, {
    executablePath: CHROMIUM,
    headless: true,
    viewport: { width: 1100, height: 760 },
    deviceScaleFactor: 1,
    args: [
      '--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking',
      '--disable-quic', '--no-first-run', '--disable-component-update', '--disable-sync',
      ...args,
    ],
  });
  return {
    context,
    async newPage() {
      const page = await context.newPage();
      page.setDefaultTimeout(10000);
      return page;
    },
    async close() {
      await context.close().catch(() => {});
      rmSync(profile, { recursive: true, force: true });
    },
  };
}

/** Saves a PNG of the page to docs/screenshots/<name>.png. */
export async function screenshot(page, name, { fullPage = false } = {}) {
  mkdirSync(SCREENSHOTS, { recursive: true });
  await page.screenshot({ path: join(SCREENSHOTS, `${name}.png`), fullPage, animations: 'disabled' });
}

/** The issuer the tests' hubs trust (`serve --issuer ISSUER --jwt-key KEY`). */
export const ISSUER = 'https://issuer.ssehub.test';

/**
 * The hub's resource identifier for requests to `url` (`http://127.0.0.1:PORT`): without
 * `--resource-identifier` the hub derives it from each request's scheme and Host, so a token
 * for `127.0.0.1` is refused when sent to `localhost` and the other way round.
 */
export function resourceOf(url) {
  return `${new URL(url).origin}/.well-known/mercure`;
}

const b64json = (obj) => Buffer.from(JSON.stringify(obj)).toString('base64url');
const hs256 = (key, header, claims) => {
  const unsigned = `${b64json(header)}.${b64json(claims)}`;
  return `${unsigned}.${createHmac('sha256', key).update(unsigned).digest('base64url')}`;
};

/**
 * A Mercure 1.0 access token (RFC 9068 `at+jwt`, HS256, signed with `key`): `iss` `issuer`,
 * `aud` `audience` (the hub's resource identifier: see `resourceOf`), `exp` in `ttl` seconds,
 * and `publish` / `subscribe` grants in `authorization_details`, one detail per action. A grant
 * is a string (an exact matcher; `*` is the wildcard) or a `{ match, match_type }` object.
 */
export function accessToken(key, { issuer = ISSUER, audience, publish, subscribe, ttl = 3600, subject = 'browser-tests' } = {}) {
  if (!audience) throw new Error('accessToken: give the audience (resourceOf(hub.url))');
  const detail = (action, grants) => ({
    type: 'https://mercure.rocks/authorization-detail',
    actions: [action],
    topics: grants.map((g) => (typeof g === 'string' ? { match: g } : g)),
  });
  const authorization_details = [];
  if (publish) authorization_details.push(detail('publish', publish));
  if (subscribe) authorization_details.push(detail('subscribe', subscribe));
  const now = Math.floor(Date.now() / 1000);
  return hs256(key, { alg: 'HS256', typ: 'at+jwt' }, {
    iss: issuer,
    aud: audience,
    exp: now + ttl,
    iat: now,
    sub: subject,
    client_id: 'ssehub-browser-tests',
    jti: randomUUID(),
    authorization_details,
  });
}

/**
 * A pre-1.0 (0.x) HS256 JWT with the `mercure` claim, signed with `key`: what a hub accepts only
 * under `serve --legacy-protocol`, and refuses (401 `invalid_token`) otherwise.
 */
export function legacyToken(key, { publish, subscribe } = {}) {
  const mercure = {};
  if (publish) mercure.publish = publish;
  if (subscribe) mercure.subscribe = subscribe;
  return hs256(key, { alg: 'HS256', typ: 'JWT' }, { mercure });
}

/** The first `n` bytes of a response body, as text, then the connection is closed. */
export async function firstBytes(url, n, timeout = 5000) {
  const controller = new AbortController();
  const timer = setTimeout(() => controller.abort(), timeout);
  try {
    const res = await fetch(url, { signal: controller.signal, headers: { Accept: 'text/event-stream' } });
    const reader = res.body.getReader();
    let buf = Buffer.alloc(0);
    while (buf.length < n) {
      const { value, done } = await reader.read();
      if (done) break;
      buf = Buffer.concat([buf, value]);
    }
    return { res, text: buf.subarray(0, n).toString('utf8') };
  } finally {
    clearTimeout(timer);
    controller.abort();
  }
}
