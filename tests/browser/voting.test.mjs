// voting (tutorial 000): two result tabs and one vote tab stay in sync; the connection state
// follows the server going away and coming back.
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { launchBrowser, screenshot, start, waitText } from './lib.mjs';

let browser;
let app;

before(async () => {
  browser = await launchBrowser();
  app = await start('voting');
});

after(async () => {
  await browser?.close();
  await app?.stop();
});

test('votes from one tab show live in two result tabs, and the state follows the server', { timeout: 60000 }, async () => {
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

  // Stop the server: the browser keeps retrying, the page says Connecting.
  const { port } = app;
  await app.stop('SIGTERM');
  await waitText(results1, '#state', 'Connecting');
  await waitText(results2, '#state', 'Connecting');

  // Start it again on the same port: the browser reconnects by itself (retry: 3000).
  app = await start('voting', { port });
  await waitText(results1, '#state', 'Connected', 15000);
  await waitText(results2, '#state', 'Connected', 15000);
  // The totals lived in the old process's memory: the new one starts from zero.
  await waitText(results1, '#votes', 'Yes: 0, No: 0');

  // A bad vote is refused with a reason, not a crash.
  const res = await fetch(`${app.url}/vote`, {
    method: 'POST',
    headers: { 'Content-Type': 'application/x-www-form-urlencoded' },
    body: 'choice=maybe',
  });
  assert.equal(res.status, 400);
  assert.match(await res.text(), /choice must be yes or no/);
});
