// nests (tutorial 002): a POST from outside the browser appears as a new table row; /status
// counts the open tab; the first event is the current list; CORS is on; the list survives a
// full process restart (durable log in a data directory of this run's own).
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { firstBytes, launchBrowser, screenshot, start, waitFor, waitText } from './lib.mjs';

let browser;
let app;
// A fresh directory per run: no nest from an earlier run (or another test) shows up.
const dataDir = mkdtempSync(join(tmpdir(), 'ssehub-nests-'));
const durable = ['--data-dir', join(dataDir, 'nests')];

before(async () => {
  browser = await launchBrowser();
  app = await start('nests', { args: durable });
});

after(async () => {
  await browser?.close();
  await app?.stop();
  rmSync(dataDir, { recursive: true, force: true });
});

const rows = (page) => page.$$eval('#nests tr', (trs) => trs.map((tr) => [...tr.cells].map((td) => td.textContent)));

test('nests posted from outside appear live; /status counts the tab; the list survives a restart', { timeout: 90000 }, async () => {
  // Before any subscriber: the list is empty and so is the count.
  assert.deepEqual(await (await fetch(`${app.url}/status`)).json(), { clients: 0 });

  const page = await browser.newPage();
  await page.goto(`${app.url}/`);
  await waitText(page, '#state', 'Connected');
  assert.deepEqual(await rows(page), []);
  await waitFor(async () => (await (await fetch(`${app.url}/status`)).json()).clients === 1, { what: '/status to count the tab' });

  // JSON, as the tutorial's curl.
  let res = await fetch(`${app.url}/nest`, {
    method: 'POST',
    headers: { 'Content-Type': 'application/json' },
    body: JSON.stringify({ momma: 'swamp_princess', eggs: 40, temperature: 31 }),
  });
  assert.equal(res.status, 201);
  assert.deepEqual(await res.json(), { momma: 'swamp_princess', eggs: 40, temperature: 31 });
  await waitFor(async () => (await rows(page)).length === 1, { what: 'the first row' });

  // Form-urlencoded.
  res = await fetch(`${app.url}/nest`, {
    method: 'POST',
    body: new URLSearchParams({ momma: 'lady.sharp.tooth', eggs: '42', temperature: '34' }),
  });
  assert.equal(res.status, 201);
  await waitFor(async () => (await rows(page)).length === 2, { what: 'the second row' });
  assert.deepEqual(await rows(page), [
    ['swamp_princess', '40', '31 ℃'],
    ['lady.sharp.tooth', '42', '34 ℃'],
  ]);

  // Untrusted text is shown as text, never as markup.
  res = await fetch(`${app.url}/nest`, {
    method: 'POST',
    headers: { 'Content-Type': 'application/json' },
    body: JSON.stringify({ momma: '<img src=x onerror=alert(1)>', eggs: 7, temperature: 29.5 }),
  });
  assert.equal(res.status, 201);
  await waitFor(async () => (await rows(page)).length === 3, { what: 'the third row' });
  assert.equal(await page.$$eval('#nests img', (imgs) => imgs.length), 0);

  await waitText(page, '#clients', '1', 5000);
  await screenshot(page, 'nests');

  // A new subscriber gets the whole list first, as one JSON array.
  const { text } = await firstBytes(`${app.url}/events`, 60);
  assert.match(text, /^retry: 3000\ndata: \[\{"momma":"swamp_princess"/);

  // Bad input: a clear 4xx with a reason.
  res = await fetch(`${app.url}/nest`, { method: 'POST', headers: { 'Content-Type': 'application/json' }, body: '{"momma": "x"}' });
  assert.equal(res.status, 400);
  assert.match(await res.text(), /invalid JSON nest: missing field `eggs`/);
  res = await fetch(`${app.url}/nest`, { method: 'POST', headers: { 'Content-Type': 'text/plain' }, body: 'hi' });
  assert.equal(res.status, 415);

  // CORS: a front end on another origin may read the API.
  res = await fetch(`${app.url}/status`, { headers: { Origin: 'http://localhost:5173' } });
  assert.equal(res.headers.get('access-control-allow-origin'), '*');

  // Stop the server and start a new process on the same port and data directory: the tab
  // reconnects by itself and gets the same list, in the same order, replayed from the log.
  const before = await rows(page);
  const { port } = app;
  await app.stop('SIGTERM');
  await waitText(page, '#state', 'Connecting');
  // Mark the rows on screen, to tell them from the ones the new process sends.
  await page.$$eval('#nests tr', (trs) => trs.forEach((tr) => { tr.dataset.old = 'yes'; }));
  app = await start('nests', { port, args: durable });
  assert.match(app.output(), /\(3 nests so far\)/);
  await waitText(page, '#state', 'Connected', 15000);
  await waitFor(async () => (await page.$$('#nests tr[data-old]')).length === 0, { what: 'the list from the new process' });
  assert.deepEqual(await rows(page), before);
  res = await fetch(`${app.url}/nest`, {
    method: 'POST',
    headers: { 'Content-Type': 'application/json' },
    body: JSON.stringify({ momma: 'after.the.restart', eggs: 12, temperature: 30 }),
  });
  assert.equal(res.status, 201);
  await waitFor(async () => (await rows(page)).length === 4, { what: 'the row added after the restart' });
  assert.deepEqual((await rows(page))[3], ['after.the.restart', '12', '30 ℃']);

  await page.close();
  await waitFor(async () => (await (await fetch(`${app.url}/status`)).json()).clients === 0, { what: '/status to drop to 0' });
});
