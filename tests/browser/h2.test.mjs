// `ssehub serve --tls-cert --tls-key`: Chromium loads a page from the hub over TLS + HTTP/2 and
// keeps 20 EventSources open to the same origin, all receiving, where over HTTP/1.1 it holds
// only 6 connections per origin and the others wait.
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { ISSUER, accessToken, httpsFetch, launchBrowser, resourceOf, start, waitFor } from './lib.mjs';

const KEY = randomBytes(32).toString('hex');
// The hub speaks Mercure 1.0 and trusts ISSUER's tokens signed with KEY.
const AUTH = ['--issuer', ISSUER, '--jwt-key', KEY];
/** A 1.0 token for `hub` as reached at its url: `aud` is https://127.0.0.1:PORT/... over TLS. */
const tokenFor = (hub, grants) => accessToken(KEY, { audience: resourceOf(hub.url), ...grants });
const STREAMS = 20;
let dir;
let cert;
let browser;
const hubs = [];

before(async () => {
  dir = mkdtempSync(join(tmpdir(), 'ssehub-h2-'));
  // A self-signed certificate for 127.0.0.1, valid for a day.
  execFileSync('openssl', [
    'req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes',
    '-keyout', join(dir, 'key.pem'), '-out', join(dir, 'cert.pem'), '-days', '1',
    '-subj', '/CN=127.0.0.1', '-addext', 'subjectAltName=IP:127.0.0.1',
  ], { stdio: ['ignore', 'ignore', 'pipe'] });
  cert = readFileSync(join(dir, 'cert.pem'), 'utf8');
  browser = await launchBrowser({ args: ['--ignore-certificate-errors'] });
});

after(async () => {
  await browser?.close();
  for (const hub of hubs) await hub.stop();
  if (dir) rmSync(dir, { recursive: true, force: true });
});

/** Opens `n` EventSources to topics t0..t{n-1} in the page; their state is kept in `window.es`. */
function openStreams(page, n) {
  return page.evaluate((n) => {
    window.es = [];
    for (let i = 0; i < n; i++) {
      const source = new EventSource(`/.well-known/mercure?match=t${i}`);
      const entry = { source, open: false, got: [] };
      source.onopen = () => { entry.open = true; };
      source.onmessage = (e) => { entry.got.push({ data: e.data, id: e.lastEventId }); };
      window.es.push(entry);
    }
  }, n);
}

const opened = (page) => page.evaluate(() => window.es.map((e) => e.open));
const received = (page) => page.evaluate(() => window.es.map((e) => e.got));

test(`over TLS + HTTP/2, ${STREAMS} EventSources to one origin all receive`, { timeout: 60000 }, async () => {
  const hub = await start('ssehub', {
    args: ['serve', '--memory', ...AUTH, '--tls-cert', join(dir, 'cert.pem'), '--tls-key', join(dir, 'key.pem')],
    ca: cert,
  });
  hubs.push(hub);
  assert.ok(hub.url.startsWith('https://'), hub.url);
  assert.equal(resourceOf(hub.url), `https://127.0.0.1:${hub.port}/.well-known/mercure`);
  const page = await browser.newPage();
  const errors = [];
  page.on('pageerror', (e) => errors.push(e.message));
  await page.goto(`${hub.url}/healthz`);
  const protocol = await page.evaluate(() => performance.getEntriesByType('navigation')[0].nextHopProtocol);
  assert.equal(protocol, 'h2');

  await openStreams(page, STREAMS);
  await waitFor(async () => (await opened(page)).every(Boolean), { what: `all ${STREAMS} EventSources to open` });
  // The hub sees every one of them (as streams of the page's one HTTP/2 connection).
  const presence = await httpsFetch(`${hub.url}/console/presence`, {
    ca: cert,
    headers: { Authorization: `Bearer ${tokenFor(hub, { subscribe: ['*'] })}` },
  });
  assert.equal(presence.status, 200, presence.text);
  assert.equal(JSON.parse(presence.text).subscribers, STREAMS);

  const token = tokenFor(hub, { publish: ['*'] });
  const ids = [];
  for (let i = 0; i < STREAMS; i++) {
    const res = await httpsFetch(`${hub.url}/.well-known/mercure`, {
      ca: cert,
      method: 'POST',
      headers: { Authorization: `Bearer ${token}`, 'Content-Type': 'application/x-www-form-urlencoded' },
      body: new URLSearchParams({ topic: `t${i}`, data: `update ${i}` }).toString(),
    });
    assert.equal(res.status, 200, res.text);
    ids.push(res.text);
  }
  await waitFor(async () => (await received(page)).every((got) => got.length === 1), { what: `an event on each of the ${STREAMS} EventSources` });
  const got = await received(page);
  for (let i = 0; i < STREAMS; i++) {
    assert.deepEqual(got[i], [{ data: `update ${i}`, id: ids[i] }], `stream ${i}`);
  }
  assert.deepEqual(errors, []);
  await page.close();
});

test('over plain HTTP/1.1 the same page gets only 6 open EventSources; the rest wait for one to close', { timeout: 60000 }, async () => {
  const hub = await start('ssehub', { args: ['serve', '--memory', ...AUTH] });
  hubs.push(hub);
  const page = await browser.newPage();
  await page.goto(`${hub.url}/healthz`);
  const protocol = await page.evaluate(() => performance.getEntriesByType('navigation')[0].nextHopProtocol);
  assert.equal(protocol, 'http/1.1');

  await openStreams(page, STREAMS);
  const count = async () => (await opened(page)).filter(Boolean).length;
  await waitFor(async () => (await count()) === 6, { what: '6 EventSources to open' });
  // Chromium's per-origin cap: no 7th connection, however long we give it (the hub would
  // accept it: it counts 6 subscribers, far below its limits).
  await new Promise((r) => setTimeout(r, 500));
  assert.equal(await count(), 6);
  const presence = await fetch(`${hub.url}/console/presence`, {
    headers: { Authorization: `Bearer ${tokenFor(hub, { subscribe: ['*'] })}` },
  });
  assert.equal(presence.status, 200);
  assert.equal((await presence.json()).subscribers, 6);

  // Closing the open ones frees their connections for the next 6 waiting.
  await page.evaluate(() => window.es.filter((e) => e.open).forEach((e) => { e.source.close(); e.closed = true; }));
  await waitFor(async () => (await page.evaluate(() => window.es.filter((e) => e.open && !e.closed).length)) === 6, { what: 'the next 6 EventSources to open' });
  await page.close();
});
