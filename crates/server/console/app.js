// The ssehub console: subscribe, publish, presence. Plain JS, no build step.
//
// Subscriptions use fetch() and a small text/event-stream parser instead of EventSource, for two
// reasons: EventSource only hands a page the event types it registered listeners for by name
// (the console must show every type), and it cannot send an Authorization header (a token in
// the URL would end up in logs).
//
// The hub speaks Mercure 1.0: exact topics go as `match=`, URL Patterns as `match_urlpattern=`
// (a hub run with --legacy-protocol takes both too). Subscription events arrive as
// `event: mercure` with a JSON document; the log marks them and says what they mean.
'use strict';

const HUB = '/.well-known/mercure';
const MAX_ROWS = 500;
const $ = (id) => document.getElementById(id);

// ---------- text/event-stream parsing (WHATWG "Interpreting an event stream") ----------

class EventStreamParser {
  constructor(handlers) {
    this.handlers = handlers; // { event({type, data, id}), retry(ms), comment() }
    this.buffer = '';
    this.first = true;
    this.data = '';
    this.type = '';
    this.lastEventId = '';
    this.pendingId = null;
  }

  feed(text) {
    if (this.first && text.length > 0) {
      if (text.charCodeAt(0) === 0xfeff) text = text.slice(1);
      this.first = false;
    }
    this.buffer += text;
    for (;;) {
      const m = /\r\n|\r|\n/.exec(this.buffer);
      if (!m) return;
      // A CR at the very end may be the first half of a CRLF split across reads: wait.
      if (m[0] === '\r' && m.index === this.buffer.length - 1) return;
      const line = this.buffer.slice(0, m.index);
      this.buffer = this.buffer.slice(m.index + m[0].length);
      this.line(line);
    }
  }

  line(line) {
    if (line === '') return this.dispatch();
    if (line[0] === ':') return this.handlers.comment();
    const colon = line.indexOf(':');
    const field = colon < 0 ? line : line.slice(0, colon);
    let value = colon < 0 ? '' : line.slice(colon + 1);
    if (value[0] === ' ') value = value.slice(1);
    if (field === 'data') this.data += `${value}\n`;
    else if (field === 'event') this.type = value;
    else if (field === 'id' && !value.includes('\0')) this.lastEventId = value;
    else if (field === 'retry' && /^[0-9]+$/.test(value)) this.handlers.retry(Number(value));
  }

  dispatch() {
    const { data, type } = this;
    this.data = '';
    this.type = '';
    if (data === '') return;
    this.handlers.event({ type: type || 'message', data: data.slice(0, -1), id: this.lastEventId });
  }
}

// ---------- connection state ----------

function setState(kind, text) {
  const el = $('state');
  el.className = `state ${kind}`;
  el.textContent = text;
}

function message(el, kind, text) {
  el.className = `message ${kind}`;
  el.textContent = text;
}

// ---------- subscribing ----------

let subscription = null; // { controller, lastEventId, retry }

function lines(text) {
  return text.split('\n').map((s) => s.trim()).filter(Boolean);
}

/** The subscribe URL: one `match` per exact topic, one `match_urlpattern` per pattern. */
function subscribeUrl(matchers) {
  const url = new URL(HUB, location.origin);
  for (const { param, value } of matchers) url.searchParams.append(param, value);
  return url;
}

async function subscribeLoop(sub, matchers, token) {
  const url = subscribeUrl(matchers);
  const described = matchers.map((m) => (m.param === 'match' ? m.value : `${m.value} (URL Pattern)`)).join(', ');
  let attempt = 0;
  while (!sub.controller.signal.aborted) {
    setState('connecting', attempt === 0 ? 'Connecting' : 'Reconnecting');
    const headers = { Accept: 'text/event-stream' };
    if (token) headers.Authorization = `Bearer ${token}`;
    if (sub.lastEventId) headers['Last-Event-ID'] = sub.lastEventId;
    try {
      const res = await fetch(url, { headers, cache: 'no-store', signal: sub.controller.signal });
      if (!res.ok) {
        const reason = (await res.text()).trim();
        // 4xx will not get better by retrying the same request: stop and say why.
        if (res.status < 500) {
          setState('disconnected', 'Disconnected');
          message($('sub-message'), 'error', `Refused: ${res.status} ${reason}`);
          return stopSubscription(false);
        }
        throw new Error(`${res.status} ${reason}`);
      }
      attempt = 0;
      setState('connected', 'Connected');
      message($('sub-message'), 'ok', `Subscribed to ${described}`);
      const parser = new EventStreamParser({
        event: (ev) => {
          if (ev.id) sub.lastEventId = ev.id;
          addEvent(ev);
        },
        retry: (ms) => { sub.retry = ms; },
        comment: () => { $('heartbeat').textContent = clock(new Date()); },
      });
      const reader = res.body.pipeThrough(new TextDecoderStream()).getReader();
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        parser.feed(value);
      }
      // The hub ended the stream (e.g. it is restarting): reconnect like EventSource would.
    } catch (err) {
      if (sub.controller.signal.aborted) return;
      message($('sub-message'), 'error', `Connection lost: ${err.message}`);
    }
    attempt += 1;
    setState('connecting', 'Reconnecting');
    await sleep(sub.retry, sub.controller.signal);
  }
}

function sleep(ms, signal) {
  return new Promise((resolve) => {
    const timer = setTimeout(resolve, ms);
    signal.addEventListener('abort', () => { clearTimeout(timer); resolve(); }, { once: true });
  });
}

function startSubscription() {
  const matchers = [
    ...lines($('sub-topics').value).map((value) => ({ param: 'match', value })),
    ...lines($('sub-patterns').value).map((value) => ({ param: 'match_urlpattern', value })),
  ];
  if (matchers.length === 0) {
    message($('sub-message'), 'error', 'Give at least one topic or URL Pattern.');
    return;
  }
  stopSubscription(false);
  const sub = {
    controller: new AbortController(),
    lastEventId: $('sub-last-id').value.trim(),
    retry: 3000,
  };
  subscription = sub;
  $('subscribe').disabled = true;
  $('unsubscribe').disabled = false;
  subscribeLoop(sub, matchers, $('sub-token').value.trim());
}

function stopSubscription(userAction) {
  if (subscription) subscription.controller.abort();
  subscription = null;
  $('subscribe').disabled = false;
  $('unsubscribe').disabled = true;
  if (userAction) {
    setState('idle', 'Not subscribed');
    message($('sub-message'), '', '');
  }
}

// ---------- the event log ----------

let eventCount = 0;

function clock(d) {
  return d.toLocaleTimeString([], { hour12: false }) + `.${String(d.getMilliseconds()).padStart(3, '0')}`;
}

/**
 * What a subscription event (`event: mercure`, Mercure 1.0 "Subscription Events") says, in one
 * line: who, subscribed or gone, with which matcher. Null when the data is not such a document.
 */
function subscriptionSummary(data) {
  let doc;
  try {
    doc = JSON.parse(data);
  } catch {
    return null;
  }
  if (!doc || typeof doc !== 'object') return null;
  if (doc.type === 'subscriptions' && Array.isArray(doc.subscriptions)) {
    return `${doc.subscriptions.length} active subscription${doc.subscriptions.length === 1 ? '' : 's'}`;
  }
  if (doc.type !== 'subscription') return null;
  const what = doc.active === false ? 'unsubscribed from' : 'subscribed to';
  const payload = doc.payload === undefined ? '' : ` · payload ${JSON.stringify(doc.payload)}`;
  return `${doc.subscriber} ${what} ${doc.match_type} ${doc.match}${payload}`;
}

function addEvent(ev) {
  const tr = document.createElement('tr');
  if (ev.type.startsWith('ssehub.')) tr.className = 'notice';
  // Only the hub can send `mercure` events (publishers cannot use that type).
  const summary = ev.type === 'mercure' ? subscriptionSummary(ev.data) : null;
  if (ev.type === 'mercure') tr.className = 'subscription';
  for (const [cls, text] of [['time', clock(new Date())], ['type', ev.type], ['id', ev.id], ['data', ev.data]]) {
    const td = document.createElement('td');
    td.className = cls;
    td.textContent = text; // never innerHTML: event data is untrusted
    if (cls === 'data' && summary) {
      const line = document.createElement('span');
      line.className = 'summary';
      line.textContent = summary;
      const raw = document.createElement('span');
      raw.className = 'raw';
      raw.textContent = text;
      td.replaceChildren(line, raw);
    }
    tr.append(td);
  }
  const tbody = $('events').tBodies[0];
  tbody.prepend(tr);
  while (tbody.rows.length > MAX_ROWS) tbody.deleteRow(-1);
  eventCount += 1;
  $('event-count').textContent = String(eventCount);
  $('events-empty').hidden = true;
}

// ---------- publishing ----------

async function publish() {
  const topics = lines($('pub-topics').value);
  const out = $('pub-message');
  if (topics.length === 0) return message(out, 'error', 'Give at least one topic.');
  const body = new URLSearchParams();
  for (const t of topics) body.append('topic', t);
  body.append('data', $('pub-data').value);
  const type = $('pub-type').value.trim();
  const id = $('pub-id').value.trim();
  if (type) body.append('type', type);
  if (id) body.append('id', id);
  if ($('pub-private').checked) body.append('private', 'on');
  const headers = { 'Content-Type': 'application/x-www-form-urlencoded' };
  const token = $('pub-token').value.trim();
  if (token) headers.Authorization = `Bearer ${token}`;
  try {
    const res = await fetch(HUB, { method: 'POST', headers, body });
    const text = (await res.text()).trim();
    if (res.ok) message(out, 'ok', `Published with id ${text}`);
    else if (res.status === 401 && !token) message(out, 'error', `401: publishing needs a publisher token (${text})`);
    else if (res.status === 401 && /error="invalid_token"/.test(res.headers.get('WWW-Authenticate') || '')) {
      // The hub does not say which check failed (on purpose): say what a token must hold.
      message(out, 'error', `401: ${text} (the hub wants a Mercure 1.0 access token: typ at+jwt, `
        + `a trusted iss, aud ${resource}, exp, and a publish grant on every topic)`);
    } else message(out, 'error', `${res.status}: ${text}`);
  } catch (err) {
    message(out, 'error', `Could not reach the hub: ${err.message}`);
  }
}

// ---------- presence ----------

// The counts are the hub's presence, which asks for a subscriber token (topic names can be
// private): the one in the Subscribe form, whose grants choose the matchers shown.
function presenceRefused(text) {
  $('total-subscribers').textContent = '–';
  $('presence').tBodies[0].replaceChildren();
  $('presence-empty').textContent = text;
  $('presence-empty').hidden = false;
}

async function refreshPresence() {
  const token = $('sub-token').value.trim();
  // Without a token the hub can only refuse: do not ask it every 2 s (and fill the browser's
  // log with 401s).
  if (!token) return presenceRefused('The counts need a subscriber token: enter one in Subscribe › Options.');
  try {
    const res = await fetch('/console/presence', { cache: 'no-store', headers: { Authorization: `Bearer ${token}` } });
    if (res.status === 401 || res.status === 403) {
      return presenceRefused(`The hub refused the subscriber token (${res.status}): it must be a Mercure 1.0 `
        + `access token for aud ${resource} with subscribe grants.`);
    }
    if (!res.ok) throw new Error(String(res.status));
    const p = await res.json();
    $('presence-empty').textContent = 'Nobody your token may see is subscribed.';
    $('total-subscribers').textContent = String(p.subscribers);
    $('subscribers-noun').textContent = p.subscribers === 1 ? 'subscriber' : 'subscribers';
    const tbody = $('presence').tBodies[0];
    tbody.replaceChildren(...p.topics.map((t) => {
      const tr = document.createElement('tr');
      const sel = document.createElement('td');
      sel.textContent = t.selector;
      const n = document.createElement('td');
      n.className = 'num';
      n.textContent = String(t.subscribers);
      tr.append(sel, n);
      return tr;
    }));
    $('presence-empty').hidden = p.topics.length > 0;
  } catch {
    $('total-subscribers').textContent = '–';
  }
}

// ---------- the hub's identity ----------

// The `aud` tokens must hold: the hub's resource identifier, from its RFC 9728 metadata (the
// derived default, this origin's, until that answers), and the cookie a browser's EventSource
// presents its token in.
let resource = `${location.origin}${HUB}`;

function showIdentity(cookieName) {
  document.querySelectorAll('.resource').forEach((el) => { el.textContent = resource; });
  if (cookieName) document.querySelectorAll('.cookie-name').forEach((el) => { el.textContent = cookieName; });
}

async function loadMetadata() {
  try {
    const res = await fetch(`/.well-known/oauth-protected-resource${HUB}`);
    if (!res.ok) return;
    const doc = await res.json();
    if (typeof doc.resource === 'string') resource = doc.resource;
    showIdentity(typeof doc.mercure_cookie === 'string' ? doc.mercure_cookie : null);
  } catch {
    // Not served (an older or legacy hub): the derived default stays.
  }
}

// ---------- wiring ----------

document.querySelectorAll('.origin').forEach((el) => { el.textContent = location.origin; });
showIdentity(null);
loadMetadata();
$('subscribe-form').addEventListener('submit', (e) => { e.preventDefault(); startSubscription(); });
$('unsubscribe').addEventListener('click', () => stopSubscription(true));
$('publish-form').addEventListener('submit', (e) => { e.preventDefault(); publish(); });
$('clear').addEventListener('click', () => {
  $('events').tBodies[0].replaceChildren();
  eventCount = 0;
  $('event-count').textContent = '0';
  $('events-empty').hidden = false;
});
$('sub-token').addEventListener('change', refreshPresence);
refreshPresence();
setInterval(refreshPresence, 2000);
