// voting (tutorial 000): two result tabs and one vote tab stay in sync; the connection state
// follows the server going away and coming back; the totals survive a full process restart
// (durable log in a data directory of this run's own), and --memory opts out of that.
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { firstBytes, launchBrowser, screenshot, start, waitText } from './lib.mjs';

let browser;
let app;
// A fresh directory per run: nothing from an earlier run (or another test) is counted.
const dataDir = mkdtempSync(join(tmpdir(), 'ssehub-voting-'));
const durable = ['--data-dir', join(dataDir, 'voting')];

before(async () => {
  browser = await launchBrowser();
  app = await start('voting', { args: durable });
});

after(async () => {
  await browser?.close();
  await app?.stop();
  rmSync(dataDir, { recursive: true, force: true });
});

function vote(url, choice) {
  return fetch(`${url}/vote`, {
    method: 'POST',
    headers: { 'Content-Type': 'application/x-www-form-urlencoded' },
    body: `choice=${choice}`,
  });
}

test('votes show live in two result tabs, the state follows the server, the totals survive a restart', { timeout: 90000 }, async () => {
  const results1 = await browser.newPage();
  const results2 = await browser.newPage();
  await results1.goto(`${app.url}/result`);
  await results2.goto(`${app.url}/result`);
  await waitText(results1, '#state', 'Connected');
  await waitText(results2, '#state', 'Connected');
  await waitText(results1, '#votes', 'Yes: 0, No: 0');

  const voter = await browser.newPage();
  await voter.goto(`${app.url}/`);
  for (const choice of ['#yes', '#yes', '#no', '#yes']) {
    await voter.click(choice);
  }
  await waitText(voter, '#message', /Thank you for your vote! \(4 sent/);

  await waitText(results1, '#votes', 'Yes: 3, No: 1');
  await waitText(results2, '#votes', 'Yes: 3, No: 1');
  await screenshot(voter, 'voting-vote');
  await screenshot(results1, 'voting-results');

  // A tab opened later starts from the current totals, not from zero.
  const late = await browser.newPage();
  await late.goto(`${app.url}/result`);
  await waitText(late, '#votes', 'Yes: 3, No: 1');
  await late.close();

  // Concurrent votes: each counted once (every answer is a different total).
  const burst = await Promise.all(
    Array.from({ length: 20 }, (_, i) => vote(app.url, i % 5 < 3 ? 'yes' : 'no')),
  );
  const answered = await Promise.all(burst.map(async (res) => {
    assert.equal(res.status, 200);
    const { yes, no } = await res.json();
    return yes + no;
  }));
  assert.equal(new Set(answered).size, 20);
  await waitText(results1, '#votes', 'Yes: 15, No: 9');
  await waitText(results2, '#votes', 'Yes: 15, No: 9');

  // Stop the server: the browser keeps retrying, the page says Connecting.
  const { port } = app;
  await app.stop('SIGTERM');
  await waitText(results1, '#state', 'Connecting');
  await waitText(results2, '#state', 'Connecting');

  // Start a new process on the same port and data directory: the browser reconnects by itself
  // (retry: 3000) and the totals are the ones acknowledged before the stop. The numbers on
  // screen are blanked first, so what shows afterwards comes from the new process.
  for (const page of [results1, results2]) {
    await page.$eval('#votes', (el) => { el.textContent = 'stale'; });
  }
  app = await start('voting', { port, args: durable });
  assert.match(app.output(), /Yes: 15, No: 9 so far/);
  await waitText(results1, '#state', 'Connected', 15000);
  await waitText(results2, '#state', 'Connected', 15000);
  await waitText(results1, '#votes', 'Yes: 15, No: 9');
  await waitText(results2, '#votes', 'Yes: 15, No: 9');

  // Counting goes on from there, from the same vote tab.
  await voter.click('#no');
  await waitText(voter, '#message', /Thank you for your vote! \(5 sent/);
  await waitText(results1, '#votes', 'Yes: 15, No: 10');
  await waitText(results2, '#votes', 'Yes: 15, No: 10');

  // A bad vote is refused with a reason, not a crash.
  const res = await vote(app.url, 'maybe');
  assert.equal(res.status, 400);
  assert.match(await res.text(), /choice must be yes or no/);
});

test('--memory keeps the totals in the process only: a restart starts from zero', { timeout: 30000 }, async () => {
  let mem = await start('voting', { args: ['--memory'] });
  try {
    assert.equal((await vote(mem.url, 'yes')).status, 200);
    let { text } = await firstBytes(`${mem.url}/stream`, 36);
    assert.match(text, /^retry: 3000\ndata: \{"yes":1,"no":0\}\n\n/);

    const { port } = mem;
    await mem.stop('SIGTERM');
    mem = await start('voting', { port, args: ['--memory'] });
    ({ text } = await firstBytes(`${mem.url}/stream`, 36));
    assert.match(text, /^retry: 3000\ndata: \{"yes":0,"no":0\}\n\n/);
  } finally {
    await mem.stop();
  }
});
