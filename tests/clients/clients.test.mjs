// The client matrix: popular SSE clients against a real `ssehub serve` (RAM-only, on a free
// port of 127.0.0.1), each required to deliver exactly the updates that were published (no
// message the hub made up, none missed, none twice, in order) and to wait the reconnection
// time the hub advised.
//
// Why: the hub's own first bytes and heartbeats are not events, and WHATWG parsers dispatch
// nothing for them, but several popular clients dispatch a message at every blank line (see
// docs/DESIGN.md, "Wire format"). Each scenario covers every kind of bytes the hub sends on
// its own: the first bytes, heartbeats (every 250 ms to an idle stream), the end of a stream
// at --max-connection-lifetime with a reconnect and a Last-Event-ID replay, and the drain's
// last `retry:` at SIGTERM.
//
// Clients: `eventsource` (npm), `@microsoft/fetch-event-source`, `extended-eventsource`,
// Chromium's own EventSource (headless, through playwright-core) and `httpx-sse` (Python, in
// .venv beside this file; httpx_sse_client.py). `reqwest-eventsource` (Rust) runs the same
// scenario in crates/cli/tests/clients.rs. tests/clients/run installs all of it; nothing here
// skips: a missing piece is a failure that says what to run.
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { createInterface } from 'node:readline';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';

import { fetchEventSource } from '@microsoft/fetch-event-source';
import { EventSource as NpmEventSource } from 'eventsource';
import { EventSource as ExtendedEventSource } from 'extended-eventsource';
import { chromium } from 'playwright-core';

const HERE = dirname(fileURLToPath(import.meta.url));
const ROOT = resolve(HERE, '..', '..');
const TARGET = process.env.CARGO_TARGET_DIR ? resolve(ROOT, process.env.CARGO_TARGET_DIR) : join(ROOT, 'target');
const BIN = process.env.SSEHUB_BIN || join(TARGET, 'debug', 'ssehub');
const PYTHON = join(HERE, '.venv', 'bin', 'python');
const CHROMIUM = process.env.CHROMIUM || '/usr/bin/chromium';

const ISSUER = 'https://issuer.ssehub.test';
const KEY = 'client-matrix-key-client-matrix-key';
// Not any client's default (eventsource and browsers 3 s, fetch-event-source 1 s,
// extended-eventsource 5 s, reqwest-eventsource 300 ms, doubling), so the reconnect delay shows
// whether the hub's advice was applied.
const RETRY_MS = 1700;
// A reconnect may come this much later than advised (timers on a busy 2-core machine), never
// earlier than RETRY_MS - EARLY_MS (the test's clock reads the close a little after the
// client's).
const LATE_MS = 1000;
const EARLY_MS = 150;
const LIFETIME = '4s';

// What is published, and when. Before the first stream ends: a plain update, multi-line data,
// a named event, an empty data (a published empty message, unlike a phantom one), a value
// starting with a space, non-ASCII text and a publisher-chosen id. While the client waits to
// reconnect: two updates it must get by Last-Event-ID replay. After the reconnect: one live.
const FIRST = [
  { data: 'hello' },
  { data: 'two\nlines', type: 'note' },
  { data: '' },
  { data: ' leading space' },
  { data: 'héllo ✓ 🎉' },
  { data: 'chosen id', id: 'matrix-1' },
];
const AWAY = [{ data: 'while away 1' }, { data: 'while away 2', type: 'note' }];
const LIVE = [{ data: 'after the reconnect' }];
// Every event type published above: clients that deliver by type listen to each.
const TYPES = ['message', 'note'];

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

async function waitFor(fn, { timeout = 10000, what }) {
  const deadline = Date.now() + timeout;
  for (;;) {
    const v = await fn();
    if (v) return v;
    if (Date.now() > deadline) throw new Error(`timed out after ${timeout} ms waiting for ${what}`);
    await sleep(25);
  }
}

/**
 * `ssehub serve` on a free port, RAM-only, with a short heartbeat and connection lifetime so a
 * scenario sees each of them in seconds. Resolves once it logs its URL.
 */
async function startHub() {
  if (!existsSync(BIN)) throw new Error(`${BIN} is missing: run "cargo build -p ssehub-cli" (tests/clients/run does)`);
  const proc = spawn(BIN, [
    'serve', '--addr', '127.0.0.1:0', '--memory', '--no-console',
    '--issuer', ISSUER, '--jwt-key', KEY,
    '--retry', `${RETRY_MS}ms`, '--heartbeat', '250ms',
    '--max-connection-lifetime', LIFETIME, '--drain-timeout', '300ms',
  ], { stdio: ['ignore', 'ignore', 'pipe'], env: { ...process.env, RUST_LOG: 'info' } });
  let log = '';
  const exited = new Promise((ok) => proc.once('exit', ok));
  const hubUrl = await new Promise((ok, fail) => {
    const timer = setTimeout(() => fail(new Error(`ssehub serve did not log its URL within 15 s:\n${log}`)), 15000);
    proc.stderr.setEncoding('utf8');
    proc.stderr.on('data', (d) => {
      log += d;
      const m = /hub at (http:\/\/\S+)/.exec(log);
      if (m) { clearTimeout(timer); ok(m[1]); }
    });
    proc.once('exit', (code) => { clearTimeout(timer); fail(new Error(`ssehub serve exited with ${code}:\n${log}`)); });
  });
  const origin = new URL(hubUrl).origin;
  const minted = spawnSync(BIN, ['token', '--issuer', ISSUER, '--jwt-key', KEY, '--hub', origin, '--publish', '*'], { encoding: 'utf8', timeout: 10000 });
  if (minted.status !== 0) throw new Error(`ssehub token failed: ${minted.stderr}`);
  const token = minted.stdout.trim();
  return {
    hubUrl,
    origin,
    log: () => log,
    /** Publishes one update; resolves with what a client must report for it. */
    async publish(topic, { data, type, id }) {
      const form = new URLSearchParams({ topic, data });
      if (type) form.set('type', type);
      if (id) form.set('id', id);
      const res = await fetch(hubUrl, {
        method: 'POST',
        headers: { authorization: `Bearer ${token}` },
        body: form,
        signal: AbortSignal.timeout(5000),
      });
      const body = await res.text();
      assert.equal(res.status, 200, `publish answered ${res.status}: ${body}`);
      return { type: type ?? 'message', data, id: body };
    },
    /** SIGTERM (the hub drains: each stream ends with a last `retry:`), SIGKILL after 5 s. */
    async stop() {
      if (proc.exitCode !== null || proc.signalCode !== null) return;
      proc.kill('SIGTERM');
      const timer = setTimeout(() => proc.kill('SIGKILL'), 5000);
      await exited;
      clearTimeout(timer);
    },
  };
}

/** What a client saw: wall-clock times of opens and of ends/errors, events, retry values. */
function record() {
  return { opens: [], closes: [], events: [], retries: [] };
}

// Each adapter connects one client to `url` and returns { seen, close() }; `seen` is filled as
// the client reports things, in the client's own terms, translated to one shape.
const clients = {
  // eventsource (npm): WHATWG EventSource for Node on fetch; the retry is private, so only its
  // reconnect delay shows it.
  async eventsource(url) {
    const seen = record();
    const es = new NpmEventSource(url);
    es.addEventListener('open', () => seen.opens.push(Date.now()));
    es.addEventListener('error', () => seen.closes.push(Date.now()));
    for (const type of TYPES) {
      es.addEventListener(type, (e) => seen.events.push({ type: e.type, data: e.data, id: e.lastEventId }));
    }
    return { seen, close: () => es.close() };
  },

  // @microsoft/fetch-event-source: a browser library (window.setTimeout, document visibility),
  // run here on Node's fetch with the two globals it reads. A stream that ends resolves unless
  // onclose throws; throwing, as its README shows, makes it wait its retry interval (the
  // server's `retry`) and reconnect with Last-Event-ID.
  async 'fetch-event-source'(url) {
    globalThis.window ??= globalThis;
    globalThis.document ??= Object.assign(new EventTarget(), { hidden: false });
    const seen = record();
    const ctrl = new AbortController();
    fetchEventSource(url, {
      signal: ctrl.signal,
      openWhenHidden: true,
      async onopen(res) {
        assert.equal(res.headers.get('content-type'), 'text/event-stream');
        seen.opens.push(Date.now());
      },
      onmessage(msg) {
        if (msg.retry !== undefined) seen.retries.push(msg.retry);
        seen.events.push({ type: msg.event || 'message', data: msg.data, id: msg.id });
      },
      onclose() {
        seen.closes.push(Date.now());
        throw new Error('stream ended: reconnect');
      },
      onerror(err) {
        if (!/stream ended/.test(err?.message)) seen.closes.push(Date.now());
        // undefined: retry after the interval the server advised
      },
    }).catch(() => {});
    return { seen, close: () => ctrl.abort() };
  },

  // extended-eventsource: an EventSource on fetch for browsers and Node; it reports the retry
  // it applies (onRetryDelayReceived).
  async 'extended-eventsource'(url) {
    const seen = record();
    const es = new ExtendedEventSource(url, { disableLogger: true });
    es.onRetryDelayReceived = (ms) => seen.retries.push(ms);
    es.addEventListener('open', () => seen.opens.push(Date.now()));
    es.addEventListener('error', () => seen.closes.push(Date.now()));
    for (const type of TYPES) {
      es.addEventListener(type, (e) => seen.events.push({ type: e.type, data: e.data, id: e.lastEventId }));
    }
    return { seen, close: () => es.close() };
  },

  // Chromium's own EventSource, in a page of the hub's origin. The page keeps the record; the
  // test reads it back.
  async chromium(url) {
    if (!existsSync(CHROMIUM)) throw new Error(`${CHROMIUM} is missing: apt-get install -y chromium (tests/clients/run does)`);
    const profile = mkdtempSync(join(tmpdir(), 'ssehub-clients-'));
    const context = await chromium.launchPersistentContext(profile, {
      executablePath: CHROMIUM,
      headless: true,
      args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking', '--no-first-run'],
    });
    const page = await context.newPage();
    await page.goto(new URL('/healthz', url).href);
    await page.evaluate(({ url, types }) => {
      const seen = { opens: [], closes: [], events: [], retries: [] };
      window.seen = seen;
      const es = new EventSource(url);
      window.es = es;
      es.addEventListener('open', () => seen.opens.push(Date.now()));
      es.addEventListener('error', () => seen.closes.push(Date.now()));
      for (const type of types) {
        es.addEventListener(type, (e) => seen.events.push({ type: e.type, data: e.data, id: e.lastEventId }));
      }
    }, { url, types: TYPES });
    // A live view of the page's record, refreshed by the polling below.
    const seen = record();
    let closed = false;
    const poll = (async () => {
      while (!closed) {
        const s = await page.evaluate(() => window.seen).catch(() => null);
        if (s) Object.assign(seen, s);
        await sleep(25);
      }
    })();
    return {
      seen,
      async close() {
        closed = true;
        await poll;
        await context.close().catch(() => {});
        rmSync(profile, { recursive: true, force: true });
      },
    };
  },

  // httpx-sse (Python): httpx_sse_client.py prints what it sees as JSON lines.
  async 'httpx-sse'(url) {
    if (!existsSync(PYTHON)) throw new Error(`${PYTHON} is missing: tests/clients/run makes the venv`);
    const seen = record();
    const proc = spawn(PYTHON, [join(HERE, 'httpx_sse_client.py'), url], { stdio: ['ignore', 'pipe', 'pipe'] });
    let stderr = '';
    proc.stderr.on('data', (d) => { stderr += d; });
    proc.once('exit', (code, signal) => {
      if (signal !== 'SIGTERM') seen.crashed = `httpx_sse_client.py exited (${code ?? signal}):\n${stderr}`;
    });
    createInterface({ input: proc.stdout }).on('line', (line) => {
      const m = JSON.parse(line);
      if (m.kind === 'open') seen.opens.push(m.t);
      else if (m.kind === 'close' || m.kind === 'error') seen.closes.push(m.t);
      else if (m.kind === 'retry') seen.retries.push(m.value);
      else if (m.kind === 'event') seen.events.push({ type: m.type, data: m.data, id: m.id });
    });
    return {
      seen,
      async close() {
        proc.kill('SIGTERM');
        await new Promise((ok) => (proc.exitCode !== null || proc.signalCode !== null ? ok() : proc.once('exit', ok)));
      },
    };
  },
};

// The clients that tell the application the retry value they got (the others show it only
// in their reconnect delay).
const REPORTS_RETRY = new Set(['fetch-event-source', 'extended-eventsource', 'httpx-sse']);

/** The delivered messages, one a line, each marked `+` when it was not published. */
function listing(events, expected) {
  const published = new Set(expected.map((e) => JSON.stringify(e)));
  const lines = events.map((e) => `${published.has(JSON.stringify(e)) ? ' ' : '+'} ${JSON.stringify(e)}`);
  return `${events.length} delivered, ${expected.length} published:\n${lines.join('\n')}`;
}

/** Fails with what the client saw, so a failure says which bytes went wrong. */
function describe(seen) {
  return JSON.stringify({ ...seen, opens: seen.opens.length, closes: seen.closes.length }, null, 1);
}

for (const [name, connect] of Object.entries(clients)) {
  test(`${name}: exactly the published updates, and the hub's retry`, { timeout: 60000 }, async (t) => {
    const hub = await startHub();
    const topic = `https://example.com/matrix/${name}`;
    const url = `${hub.hubUrl}?match=${encodeURIComponent(topic)}`;
    let client;
    try {
      client = await connect(url);
      const { seen } = client;
      const check = () => { if (seen.crashed) throw new Error(seen.crashed); };
      await waitFor(() => (check(), seen.opens.length >= 1), { what: `${name} to open` });

      const expected = [];
      for (const u of FIRST) expected.push(await hub.publish(topic, u));
      await waitFor(() => (check(), seen.events.length >= expected.length), { what: `the first ${FIRST.length} updates (saw ${describe(seen)})` });

      // Idle until the hub ends the stream at its lifetime: heartbeats meanwhile.
      await waitFor(() => (check(), seen.closes.length >= 1), { timeout: 15000, what: 'the hub to end the stream (--max-connection-lifetime)' });
      for (const u of AWAY) expected.push(await hub.publish(topic, u));
      await waitFor(() => (check(), seen.opens.length >= 2), { timeout: 15000, what: `${name} to reconnect (saw ${describe(seen)})` });
      for (const u of LIVE) expected.push(await hub.publish(topic, u));
      await waitFor(() => (check(), seen.events.length >= expected.length), { what: `every update (saw ${describe(seen)})` });

      // More heartbeats, then the drain's last `retry:` (jittered above RETRY_MS) and the end
      // of the stream.
      await sleep(1000);
      const retries = [...seen.retries];
      const closesBefore = seen.closes.length;
      await hub.stop();
      await waitFor(() => (check(), seen.closes.length > closesBefore), { what: `${name} to see the drained stream end` });
      await sleep(500);

      assert.deepEqual(seen.events, expected, `${name} delivered other messages than were published:\n${listing(seen.events, expected)}`);
      const delay = seen.opens[1] - seen.closes[0];
      assert.ok(
        delay >= RETRY_MS - EARLY_MS && delay <= RETRY_MS + LATE_MS,
        `${name} reconnected ${delay} ms after the stream ended; the hub advised retry: ${RETRY_MS}`,
      );
      t.diagnostic(`${name}: ${seen.events.length} messages for ${expected.length} published; reconnected ${delay} ms after the stream ended; retry values reported: [${retries}]`);
      if (REPORTS_RETRY.has(name)) {
        assert.ok(retries.length > 0 && retries.every((ms) => ms === RETRY_MS), `${name} reported the retry values [${retries}]; the hub advised ${RETRY_MS}`);
      }
    } finally {
      await client?.close();
      await hub.stop();
    }
  });
}
