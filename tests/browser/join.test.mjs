// join (tutorial 003): join events between tabs, ids on every event, and the browser's
// Last-Event-ID bringing the events published while it was reconnecting: in order, none twice.
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { launchBrowser, screenshot, start, waitFor, waitHealthy, waitText } from './lib.mjs';

let browser;
let app;

before(async () => {
  browser = await launchBrowser();
  app = await start('join');
});

after(async () => {
  await browser?.close();
  await app?.stop();
});

const received = (page) => page.evaluate(() => window.received);
const chats = async (page) => (await received(page)).filter((e) => e.type === 'chat').map((e) => e.data.text);

async function say(text) {
  const res = await fetch(`${app.url}/say`, { method: 'POST', body: new URLSearchParams({ from: 'test', text }) });
  assert.equal(res.status, 200, await res.text());
}

/** Ids are unique, and every event but the hub's gap notice has one. */
function assertIds(events) {
  const ids = events.filter((e) => e.type !== 'ssehub.history-gap').map((e) => e.id);
  assert.ok(ids.every((id) => id !== ''), `an event without id in ${JSON.stringify(events)}`);
  assert.equal(new Set(ids).size, ids.length, `an event received twice in ${JSON.stringify(events)}`);
}

test('a second tab\'s join reaches the first; replay after a reconnect', { timeout: 90000 }, async () => {
  const first = await browser.newPage();
  await first.goto(`${app.url}/`);
  await waitText(first, '#state', 'Connected');
  const me1 = await waitFor(async () => (await first.textContent('#me')).trim().replace('…', '') || null, { what: 'the first id' });
  assert.match(me1, /^[0-9a-z]{8}$/);

  const second = await browser.newPage();
  await second.goto(`${app.url}/`);
  await waitText(second, '#state', 'Connected');
  const me2 = await waitFor(async () => (await second.textContent('#me')).trim().replace('…', '') || null, { what: 'the second id' });
  assert.notEqual(me1, me2);

  // The second tab's join event reaches the first, through addEventListener('join').
  await waitFor(async () => (await received(first)).some((e) => e.type === 'join' && e.data.client === me2), { what: `join of ${me2} in the first tab` });
  await say('hello before the restart');
  await waitFor(async () => (await chats(first)).includes('hello before the restart'), { what: 'the first chat' });

  // 1. The HTTP listener restarts (SIGHUP) while the hub and its history live on in the
  // process. Events published while the browser waits to reconnect must all arrive after it
  // does, in order, none twice.
  app.proc.kill('SIGHUP');
  await waitText(first, '#state', 'Connecting');
  await waitHealthy(app.url);
  const during = ['m1', 'm2', 'm3', 'm4', 'm5'];
  for (const text of during) await say(text);
  assert.equal(await first.textContent('#state'), 'Connecting', 'published after the browser had already reconnected');
  assert.ok(!(await chats(first)).includes('m1'));
  await waitText(first, '#state', 'Connected', 15000);
  await waitFor(async () => (await chats(first)).includes('m5'), { what: 'the replayed chats' });
  assert.deepEqual(await chats(first), ['hello before the restart', ...during]);
  assertIds(await received(first));
  // The hub knew the id the browser resumed from: no gap notice.
  assert.ok(!(await received(first)).some((e) => e.type === 'ssehub.history-gap'));
  await screenshot(first, 'join');

  // 2. A full process restart: the in-memory history is gone with the old process. The
  // browser's Last-Event-ID is then unknown to the new hub, which says so in-band
  // (ssehub.history-gap) and sends everything it has: here, the events published while the
  // browser was reconnecting, in order, none twice.
  const { port } = app;
  await app.stop('SIGTERM');
  await waitText(first, '#state', 'Connecting');
  app = await start('join', { port });
  const afterRestart = ['r1', 'r2', 'r3'];
  for (const text of afterRestart) await say(text);
  assert.equal(await first.textContent('#state'), 'Connecting', 'published after the browser had already reconnected');
  await waitText(first, '#state', 'Connected', 15000);
  await waitFor(async () => (await chats(first)).includes('r3'), { what: 'the chats published during the restart' });
  assert.deepEqual(await chats(first), ['hello before the restart', ...during, ...afterRestart]);
  assert.ok((await received(first)).some((e) => e.type === 'ssehub.history-gap'));
  assertIds(await received(first));
});
