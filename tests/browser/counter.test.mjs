// counter (tutorial 001): `retry: 10000` first, then the count each second; after the server
// drops the stream the browser waits the advised 10 s before reconnecting.
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { firstBytes, launchBrowser, screenshot, start, waitFor, waitHealthy, waitText } from './lib.mjs';

let browser;
let app;

before(async () => {
  browser = await launchBrowser();
  app = await start('counter');
});

after(async () => {
  await browser?.close();
  await app?.stop();
});

test('the stream starts with retry: 10000', async () => {
  const { res, text } = await firstBytes(`${app.url}/events`, 14);
  assert.equal(res.headers.get('content-type'), 'text/event-stream');
  // The advice as a line with no blank line after it (a frame of its own would be an empty
  // message in some clients): the 14th byte already starts the first count's frame.
  assert.match(text, /^retry: 10000\n[^\n]$/);
});

test('the count increases, and the retry advice is honoured after a drop', { timeout: 60000 }, async () => {
  const page = await browser.newPage();
  await page.goto(`${app.url}/`);
  await waitText(page, '#state', 'Connected');
  const count = async () => Number((await page.textContent('#content')).trim());
  const first = await waitFor(async () => { const n = await count(); return Number.isInteger(n) && n > 0 ? n : false; }, { what: 'a count' });
  await waitFor(async () => (await count()) >= first + 2, { timeout: 5000, what: 'the count to increase by 2' });

  // SIGHUP makes the example cut every connection (the listener is back within a second).
  const opensBefore = await page.evaluate(() => window.timeline.filter((t) => t.kind === 'open').length);
  app.proc.kill('SIGHUP');
  await waitText(page, '#state', 'Connecting');
  await waitHealthy(app.url);
  const dropped = await page.evaluate(() => window.timeline.findLast((t) => t.kind === 'error').at);

  // Not back within the default ~3 s: the browser is waiting the advised 10 s.
  await new Promise((r) => setTimeout(r, 5000));
  assert.equal(await page.textContent('#state'), 'Connecting', 'reconnected before the retry advice allowed');

  await waitText(page, '#state', 'Connected', 15000);
  const timeline = await page.evaluate(() => window.timeline);
  const reopened = timeline.filter((t) => t.kind === 'open')[opensBefore];
  assert.ok(reopened, `no reconnect in ${JSON.stringify(timeline)}`);
  const waited = reopened.at - dropped;
  assert.ok(waited >= 9500 && waited < 15000, `reconnected after ${waited} ms, expected about 10000`);

  const resumed = await count();
  await waitFor(async () => (await count()) > resumed, { timeout: 5000, what: 'the count to go on' });
  await screenshot(page, 'counter');
});
