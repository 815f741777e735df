// The console served by `ssehub serve` at `/`: subscribe, publish from the form, see the event
// in the log, the subscriber counts and the connection state. The hub speaks Mercure 1.0: it
// trusts ISSUER's tokens signed with KEY, and the page's tokens are 1.0 access tokens whose
// `aud` is the identifier the hub derives from the page's host (127.0.0.1:PORT).
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { after, before, test } from 'node:test';
import {
  ISSUER, accessToken, freePort, launchBrowser, legacyToken, resourceOf, screenshot, start, waitFor, waitText,
} from './lib.mjs';

const KEY = randomBytes(32).toString('hex');
const SERVE = ['serve', '--memory', '--issuer', ISSUER, '--jwt-key', KEY, '--drain-timeout', '1s'];
let browser;
let hub;
// The port is chosen first so the tokens' `aud` holds across the restart below.
let port;
/** A 1.0 token for this hub, as the page and node's fetch reach it (http://127.0.0.1:PORT). */
const token = (grants) => accessToken(KEY, { audience: resourceOf(`http://127.0.0.1:${port}`), ...grants });
// A subscriber token for every selector: the presence API shows the rows a token's grants match.
const everything = () => token({ subscribe: ['*'] });
const presenceOf = async (t = everything()) => (await fetch(`${hub.url}/console/presence`, {
  headers: t ? { Authorization: `Bearer ${t}` } : {},
}));

before(async () => {
  browser = await launchBrowser();
  port = await freePort();
  hub = await start('ssehub', { port, args: SERVE });
  assert.equal(resourceOf(hub.url), `http://127.0.0.1:${port}/.well-known/mercure`);
});

after(async () => {
  await browser?.close();
  await hub?.stop();
});

const rows = (page) => page.$$eval('#events tbody tr', (trs) => trs.map((tr) => Object.fromEntries(
  [...tr.cells].map((td) => [td.className, td.textContent]),
)));

test('the console is served with its assets', async () => {
  for (const [path, type] of [['/', 'text/html'], ['/console/app.js', 'text/javascript'], ['/console/style.css', 'text/css']]) {
    const res = await fetch(hub.url + path);
    assert.equal(res.status, 200, path);
    assert.ok(res.headers.get('content-type').startsWith(type), `${path}: ${res.headers.get('content-type')}`);
  }
  // Topic names can be private: no counts without a subscriber token.
  const refused = await presenceOf(null);
  assert.equal(refused.status, 401);
  assert.match(await refused.text(), /subscriber token/);
  assert.deepEqual(await (await presenceOf()).json(), { subscribers: 0, topics: [] });
});

test('subscribe, publish from the form, the event appears in the log', { timeout: 60000 }, async () => {
  const page = await browser.newPage();
  const errors = [];
  page.on('pageerror', (e) => errors.push(e.message));
  // The 401 of the deliberate publish without a token is expected; nothing else may fail.
  page.on('response', (r) => { if (r.status() >= 400 && r.status() !== 401) errors.push(`${r.status()} ${r.url()}`); });
  page.on('console', (m) => { if (m.type() === 'error' && !m.text().includes('401')) errors.push(m.text()); });
  await page.goto(`${hub.url}/`);
  await waitText(page, '#state', 'Not subscribed');
  // Before a token is entered, the counts say what they need.
  await waitText(page, '#presence-empty', /need a subscriber token/);

  // The page subscribes with a URL Pattern (match_urlpattern=). The subscriber token (for the
  // books pattern only: an exact grant on the pattern's text, which is what the presence filter
  // compares) also unlocks the counts for its matchers.
  const books = 'https://example.com/books/:id';
  await page.click('#subscribe-form summary');
  await page.fill('#sub-token', token({ subscribe: [books] }));
  await page.fill('#sub-topics', '');
  await page.fill('#sub-patterns', books);
  const subscribed = page.waitForRequest((r) => r.url().includes('/.well-known/mercure?'));
  await page.click('#subscribe');
  await waitText(page, '#state', 'Connected');
  assert.equal(new URL((await subscribed).url()).search, `?match_urlpattern=${encodeURIComponent(books)}`);
  await waitText(page, '#sub-message', `Subscribed to ${books} (URL Pattern)`);

  // Counts per matcher come from the hub's presence.
  await waitFor(async () => (await page.$$eval('#presence tbody tr', (trs) => trs.map((tr) => tr.textContent))).some((t) => t.includes(books) && t.endsWith('1')), { what: 'the presence row' });

  // Without a token the hub refuses, and the page says why.
  await page.fill('#pub-topics', 'https://example.com/books/1');
  await page.fill('#pub-data', '{"title": "Dune"}');
  await page.click('#publish');
  await waitText(page, '#pub-message', /^401/);

  // With a publisher token it goes through, and the event shows up in the log.
  await page.fill('#pub-token', token({ publish: ['*'] }));
  await page.fill('#pub-type', 'book');
  await page.click('#publish');
  const published = (await waitText(page, '#pub-message', /^Published with id /)).replace('Published with id ', '');
  await waitFor(async () => (await rows(page)).length === 1, { what: 'the event row' });
  let [row] = await rows(page);
  assert.equal(row.type, 'book');
  assert.equal(row.id, published);
  assert.equal(row.data, '{"title": "Dune"}');
  assert.match(row.time, /^\d\d:\d\d:\d\d\.\d\d\d$/);

  // A topic the pattern does not match is not shown; a multi-line one is, intact.
  await page.fill('#pub-topics', 'https://example.com/authors/1');
  await page.fill('#pub-type', '');
  await page.click('#publish');
  await waitText(page, '#pub-message', /^Published with id /);
  await page.fill('#pub-topics', 'https://example.com/books/2');
  await page.fill('#pub-data', 'line one\nline two');
  await page.click('#publish');
  await waitFor(async () => (await rows(page)).length === 2, { what: 'the second event row' });
  [row] = await rows(page);
  assert.equal(row.type, 'message');
  assert.equal(row.data, 'line one\nline two');

  // Another subscriber (curl-like) shows up in the total.
  const controller = new AbortController();
  const extra = await fetch(`${hub.url}/.well-known/mercure?match=*`, { signal: controller.signal });
  assert.equal(extra.status, 200);
  await waitText(page, '#total-subscribers', '2', 5000);
  // It counts in the total, but its matcher `*` is not one the page's token may see.
  const shown = await page.$$eval('#presence tbody tr', (trs) => trs.map((tr) => tr.cells[0].textContent));
  assert.deepEqual(shown, [books]);
  assert.ok((await (await presenceOf()).json()).topics.some((t) => t.selector === '*'), 'the * row, for a * token');
  controller.abort();
  await waitText(page, '#total-subscribers', '1', 5000);

  await page.fill('#pub-data', '{"title": "Dune Messiah", "status": "in stock"}');
  await page.fill('#pub-type', 'book');
  await page.fill('#pub-topics', 'https://example.com/books/3');
  await page.click('#publish');
  await waitFor(async () => (await rows(page)).length === 3, { what: 'the third event row' });
  await screenshot(page, 'console', { fullPage: true });

  // Unsubscribing closes the stream.
  await page.click('#unsubscribe');
  await waitText(page, '#state', 'Not subscribed');
  await waitFor(async () => (await (await presenceOf()).json()).subscribers === 0, { what: 'presence to drop to 0' });
  assert.deepEqual(errors, []);
});

test('the publish form: a 1.0 token goes through, a 0.x token is refused with the reason shown', { timeout: 60000 }, async () => {
  const page = await browser.newPage();
  const errors = [];
  page.on('pageerror', (e) => errors.push(e.message));
  // The refusals below are deliberate; nothing else may fail.
  page.on('response', (r) => { if (r.status() >= 400 && ![401, 403].includes(r.status())) errors.push(`${r.status()} ${r.url()}`); });
  await page.goto(`${hub.url}/`);
  // The help names the `aud` tokens need: the identifier the hub derives for this host.
  await waitText(page, 'p code.resource', `http://127.0.0.1:${port}/.well-known/mercure`);
  await waitText(page, 'code.cookie-name', '__Secure-mercure_access_token');
  const topic = 'https://example.com/books/42';
  await page.fill('#sub-topics', topic);
  const subscribed = page.waitForRequest((r) => r.url().includes('/.well-known/mercure?'));
  await page.click('#subscribe');
  await waitText(page, '#state', 'Connected');
  // An exact topic goes as match= (byte for byte).
  assert.equal(new URL((await subscribed).url()).search, `?match=${encodeURIComponent(topic)}`);
  await page.fill('#pub-topics', topic);
  await page.fill('#pub-data', 'first edition');

  // A 0.x token (the `mercure` claim, no typ at+jwt / iss / aud / exp): 401 invalid_token, and
  // the page shows the hub's reason and what a token must hold.
  await page.fill('#pub-token', legacyToken(KEY, { publish: ['*'] }));
  await page.click('#publish');
  const refused = await waitText(page, '#pub-message', /^401: /);
  assert.match(refused, /^401: invalid token \(the hub wants a Mercure 1\.0 access token: typ at\+jwt, .*aud http:\/\/127\.0\.0\.1:\d+\/\.well-known\/mercure/);
  // The same, straight from the hub: an RFC 6750 challenge.
  const direct = await fetch(`${hub.url}/.well-known/mercure`, {
    method: 'POST',
    headers: { Authorization: `Bearer ${legacyToken(KEY, { publish: ['*'] })}` },
    body: new URLSearchParams({ topic, data: 'x' }),
  });
  assert.equal(direct.status, 401);
  assert.match(direct.headers.get('www-authenticate'), /^Bearer error="invalid_token"/);

  // A 1.0 token minted for another name of this hub (localhost): its aud is not this one's.
  await page.fill('#pub-token', accessToken(KEY, { audience: resourceOf(`http://localhost:${port}`), publish: [topic] }));
  await page.click('#publish');
  await waitText(page, '#pub-message', /^401: invalid token/);

  // A valid 1.0 token whose grant does not cover the topic: 403.
  await page.fill('#pub-token', token({ publish: ['https://example.com/authors/1'] }));
  await page.click('#publish');
  await waitText(page, '#pub-message', /^403: /);
  assert.equal((await rows(page)).length, 0, 'nothing was published');

  // A 1.0 token with an exact grant on the topic: published, and the event arrives.
  await page.fill('#pub-token', token({ publish: [topic] }));
  await page.click('#publish');
  const id = (await waitText(page, '#pub-message', /^Published with id /)).replace('Published with id ', '');
  await waitFor(async () => (await rows(page)).length === 1, { what: 'the event row' });
  const [row] = await rows(page);
  assert.equal(row.id, id);
  assert.equal(row.data, 'first edition');
  await page.click('#unsubscribe');
  await page.close();
  assert.deepEqual(errors, []);
});

test('exact topics and relative URL Patterns in one subscription; a bad pattern is refused with the reason', { timeout: 60000 }, async () => {
  const page = await browser.newPage();
  const errors = [];
  page.on('pageerror', (e) => errors.push(e.message));
  // The 400 for the bad pattern is deliberate; nothing else may fail.
  page.on('response', (r) => { if (r.status() >= 400 && r.status() !== 400) errors.push(`${r.status()} ${r.url()}`); });
  await page.goto(`${hub.url}/`);
  await page.fill('#sub-topics', 'urn:example:a\n');
  // Relative to the hub's URL: http://127.0.0.1:PORT/books/:id.
  await page.fill('#sub-patterns', '/books/:id');
  await page.click('#subscribe');
  await waitText(page, '#state', 'Connected');
  await waitText(page, '#sub-message', 'Subscribed to urn:example:a, /books/:id (URL Pattern)');

  const publish = async (topic, data) => {
    const res = await fetch(`${hub.url}/.well-known/mercure`, {
      method: 'POST',
      headers: { Authorization: `Bearer ${token({ publish: ['*'] })}` },
      body: new URLSearchParams({ topic, data }),
    });
    assert.equal(res.status, 200, await res.text());
  };
  await publish('urn:example:ab', 'no: exact means exact');
  await publish(`http://127.0.0.1:${port}/books/1/reviews`, 'no: one segment only');
  await publish('https://example.com/books/1', 'no: another origin');
  await publish(`http://127.0.0.1:${port}/books/7`, 'the book');
  await publish('urn:example:a', 'the urn');
  await waitFor(async () => (await rows(page)).length === 2, { what: 'two event rows' });
  // Newest first.
  assert.deepEqual((await rows(page)).map((r) => r.data), ['the urn', 'the book']);

  // A pattern that does not compile: the hub's 400 and its reason, and no retry.
  await page.click('#unsubscribe');
  await waitText(page, '#state', 'Not subscribed');
  await page.fill('#sub-topics', '');
  await page.fill('#sub-patterns', '/books/((');
  await page.click('#subscribe');
  await waitText(page, '#sub-message', /^Refused: 400 invalid match_urlpattern value: /);
  await waitText(page, '#state', 'Disconnected');
  // Nothing at all: the form says what it needs.
  await page.fill('#sub-patterns', ' \n ');
  await page.click('#subscribe');
  await waitText(page, '#sub-message', 'Give at least one topic or URL Pattern.');

  // A subscription event (`event: mercure`, only the hub can send one) is marked and explained;
  // what a publisher sends as data under another type is shown as is. Rendered by the page's
  // own function, as its stream parser would call it.
  const doc = {
    id: '/.well-known/mercure/subscriptions/urlpattern/%2Fbooks%2F%3Aid/urn%3Auuid%3A1',
    type: 'subscription',
    match_type: 'urlpattern',
    match: '/books/:id',
    subscriber: 'urn:uuid:1',
    active: false,
    payload: { user: 'ada' },
  };
  await page.evaluate((data) => {
    addEvent({ type: 'message', data, id: '#2' });
    addEvent({ type: 'mercure', data, id: '#3' });
  }, JSON.stringify(doc));
  const [mercure, message] = await page.$$eval('#events tbody tr', (trs) => trs.slice(0, 2).map((tr) => ({
    className: tr.className,
    summary: tr.querySelector('.summary')?.textContent ?? null,
    raw: tr.querySelector('.raw')?.textContent ?? null,
    data: tr.cells[3].textContent,
  })));
  assert.deepEqual(mercure, {
    className: 'subscription',
    summary: 'urn:uuid:1 unsubscribed from urlpattern /books/:id · payload {"user":"ada"}',
    raw: JSON.stringify(doc),
    data: `urn:uuid:1 unsubscribed from urlpattern /books/:id · payload {"user":"ada"}${JSON.stringify(doc)}`,
  });
  assert.deepEqual(message, { className: '', summary: null, raw: null, data: JSON.stringify(doc) });
  await page.close();
  assert.deepEqual(errors, []);
});

test('the connection state follows the hub', { timeout: 60000 }, async () => {
  const page = await browser.newPage();
  await page.goto(`${hub.url}/`);
  await page.click('#subscribe');
  await waitText(page, '#state', 'Connected');
  await hub.stop('SIGTERM');
  await waitText(page, '#state', 'Reconnecting');
  hub = await start('ssehub', { port, args: SERVE });
  await waitText(page, '#state', 'Connected', 15000);
});
