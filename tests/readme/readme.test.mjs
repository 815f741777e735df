// The README's command sessions, run as written: "A curl session" (the hub) and the curl
// sessions of the examples (voting, join), so a newcomer who pastes them sees what the README
// says they will see.
//
// How a section is read: every ```sh block holds commands (`$ ` lines, with `\` continuations),
// each followed by the output it prints. A server command (`ssehub serve ...`,
// `cargo run -p ssehub-examples --bin NAME`) starts a session; `curl -N ...` is a stream that
// keeps printing; any other command runs in one bash shell per session (so `TOKEN=$(...)` is
// seen by the next command), and its output must match. A plain ``` block after prose saying
// the stream "now shows" is what the last stream prints next.
//
// What the test changes, and why: each server gets a free port instead of the README's fixed
// one (its address is replaced in every later command and output, and `--addr` is added), runs
// in a fresh temporary directory (the data directories start empty, as on a first run), and
// `cargo run ... --bin NAME` is the binary cargo would run, target/debug/NAME (tests/readme/run
// builds it), as `ssehub` is target/debug/ssehub on the PATH the README asks for. Hub ids
// (`#<epoch>-<seq>`, the epoch being the start time) and join's random client ids are compared
// by their shape: `#1763721234567-2` matches any `#<digits>-2`.
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..');
const TARGET = process.env.CARGO_TARGET_DIR ? resolve(ROOT, process.env.CARGO_TARGET_DIR) : join(ROOT, 'target');
const BIN_DIR = join(TARGET, 'debug');
const README = readFileSync(join(ROOT, 'README.md'), 'utf8');
// The README's default addresses (its "Default addresses" line, and the hub's --addr default).
const DEFAULT_PORT = { ssehub: 3000, voting: 3001, counter: 3002, nests: 3003, join: 3004 };

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

/** The text of `## title` up to the next `## ` heading; fails when the README has none. */
function section(title) {
  const start = README.indexOf(`\n## ${title}\n`);
  assert.ok(start >= 0, `README.md has no "## ${title}" section`);
  const end = README.indexOf('\n## ', start + 1);
  return README.slice(start, end < 0 ? undefined : end);
}

/**
 * The steps a section's code blocks describe, in order:
 * { kind: 'server', name, command } | { kind: 'stream', command, output }
 * | { kind: 'shell', command, output } | { kind: 'more', output } (the stream's next lines).
 */
function steps(text) {
  const out = [];
  const fence = /```(\w*)\n([\s\S]*?)```/g;
  let prose = 0;
  for (let m; (m = fence.exec(text));) {
    const [, lang, body] = m;
    const before = text.slice(prose, m.index);
    prose = fence.lastIndex;
    const lines = body.split('\n');
    lines.pop(); // the block's last line end
    if (lang === '' && /now shows/.test(before)) {
      out.push({ kind: 'more', output: lines.map((l) => `${l}\n`).join('') });
      continue;
    }
    if (lang !== 'sh' || !lines.some((l) => l.startsWith('$ '))) continue;
    let current = null;
    for (const line of lines) {
      if (line.startsWith('$ ')) {
        current = { command: line.slice(2), output: '' };
        out.push(current);
      } else if (current && current.command.endsWith('\\') && current.output === '') {
        current.command += `\n${line}`;
      } else if (current) {
        current.output += `${line}\n`;
      }
    }
  }
  for (const step of out) {
    if (step.kind) continue;
    const example = /^cargo run -p ssehub-examples --bin (\w+)$/.exec(step.command);
    if (example) Object.assign(step, { kind: 'server', name: example[1] });
    else if (/^ssehub serve\b/.test(step.command)) Object.assign(step, { kind: 'server', name: 'ssehub' });
    else if (/^curl -N\b/.test(step.command)) step.kind = 'stream';
    else step.kind = 'shell';
  }
  return out;
}

/** Ids compared by shape: hub ids keep their sequence number, join's client ids are any. */
function normalize(text) {
  return text.replace(/#\d+-(\d+)/g, '#<epoch>-$1').replace(/"(client|you)":"[0-9a-z]{8}"/g, '"$1":"<client id>"');
}

function freePort() {
  return new Promise((ok, fail) => {
    const srv = createServer();
    srv.on('error', fail);
    srv.listen(0, '127.0.0.1', () => {
      const { port } = srv.address();
      srv.close(() => ok(port));
    });
  });
}

/** A process started with `bash -c 'exec COMMAND'`, its output kept. */
function launch(command, { cwd, env }) {
  const proc = spawn('bash', ['--noprofile', '--norc', '-c', `exec ${command}`], { cwd, env, stdio: ['ignore', 'pipe', 'pipe'] });
  const p = { proc, stdout: '', stderr: '' };
  proc.stdout.setEncoding('utf8');
  proc.stderr.setEncoding('utf8');
  proc.stdout.on('data', (d) => { p.stdout += d; });
  proc.stderr.on('data', (d) => { p.stderr += d; });
  p.exited = new Promise((ok) => proc.once('exit', ok));
  p.stop = async () => {
    if (proc.exitCode === null && proc.signalCode === null) proc.kill('SIGTERM');
    const timer = setTimeout(() => proc.kill('SIGKILL'), 5000);
    await p.exited;
    clearTimeout(timer);
  };
  return p;
}

/** One bash process; `run(command)` types a command into it and resolves with its output. */
function shell({ cwd, env }) {
  const proc = spawn('bash', ['--noprofile', '--norc'], { cwd, env, stdio: ['pipe', 'pipe', 'pipe'] });
  let out = '';
  let err = '';
  proc.stdout.setEncoding('utf8');
  proc.stderr.setEncoding('utf8');
  proc.stdout.on('data', (d) => { out += d; });
  proc.stderr.on('data', (d) => { err += d; });
  return {
    async run(command, timeout = 20000) {
      out = '';
      err = '';
      proc.stdin.write(`${command}\nprintf '\\n@@status %s\\n' "$?"\n`);
      const deadline = Date.now() + timeout;
      for (;;) {
        const m = /\n@@status (\d+)\n$/.exec(out);
        if (m) return { output: out.slice(0, m.index), status: Number(m[1]), stderr: err };
        if (Date.now() > deadline) throw new Error(`no answer within ${timeout} ms from: ${command}\nstderr: ${err}`);
        await sleep(20);
      }
    },
    close() { proc.stdin.end(); proc.kill('SIGKILL'); },
  };
}

async function waitHealthy(url, server) {
  const deadline = Date.now() + 15000;
  for (;;) {
    if (server.proc.exitCode !== null) throw new Error(`the server exited with ${server.proc.exitCode}:\n${server.stderr}`);
    try {
      const res = await fetch(`${url}/healthz`, { signal: AbortSignal.timeout(1000) });
      if (res.ok) return;
    } catch { /* not up yet */ }
    if (Date.now() > deadline) throw new Error(`${url}/healthz did not answer within 15 s:\n${server.stderr}`);
    await sleep(50);
  }
}

/** Waits until the stream printed exactly `want` (ids by shape), then a moment more: no more. */
async function expectStream(stream, want, what) {
  const deadline = Date.now() + 10000;
  while (normalize(stream.stdout) !== normalize(want)) {
    if (Date.now() > deadline || normalize(stream.stdout).length > normalize(want).length) {
      assert.equal(normalize(stream.stdout), normalize(want), `${what}: the stream printed other bytes than the README shows`);
    }
    await sleep(25);
  }
  await sleep(300);
  assert.equal(normalize(stream.stdout), normalize(want), `${what}: the stream printed more than the README shows`);
}

/** Runs the steps of one section; each server command starts a session of its own. */
async function runSection(title, { servers }) {
  const all = steps(section(title));
  const started = all.filter((s) => s.kind === 'server').map((s) => s.name);
  assert.deepEqual(started, servers, `the servers the "${title}" section starts`);
  let session = null;
  const end = async () => {
    if (!session) return;
    session.shell.close();
    for (const p of session.procs.reverse()) await p.stop();
    rmSync(session.dir, { recursive: true, force: true });
    session = null;
  };
  try {
    for (const step of all) {
      if (step.kind === 'server') {
        await end();
        const dir = mkdtempSync(join(tmpdir(), 'ssehub-readme-'));
        const env = { ...process.env, PATH: `${BIN_DIR}:${process.env.PATH}`, RUST_LOG: 'warn' };
        const port = await freePort();
        const address = `127.0.0.1:${DEFAULT_PORT[step.name]}`;
        session = { dir, env, procs: [], shell: shell({ cwd: dir, env }), address, replacement: `127.0.0.1:${port}`, stream: null, streamed: '' };
        const binary = join(BIN_DIR, step.name);
        assert.ok(existsSync(binary), `${binary} is missing: tests/readme/run builds it`);
        const command = step.name === 'ssehub'
          ? `${step.command} --addr ${session.replacement}`
          : `${binary} --addr ${session.replacement}`;
        const server = launch(command, { cwd: dir, env });
        session.procs.push(server);
        await waitHealthy(`http://${session.replacement}`, server);
        continue;
      }
      assert.ok(session, `"${title}": a command before any server: ${step.command ?? step.output}`);
      const local = (text) => text.replaceAll(session.address, session.replacement);
      if (step.kind === 'stream') {
        session.stream = launch(local(step.command), { cwd: session.dir, env: session.env });
        session.procs.push(session.stream);
        session.streamed = local(step.output);
        await expectStream(session.stream, session.streamed, `"${title}": ${step.command}`);
      } else if (step.kind === 'more') {
        assert.ok(session.stream, `"${title}": a "now shows" block with no stream before it`);
        session.streamed += local(step.output);
        await expectStream(session.stream, session.streamed, `"${title}": what the stream shows next`);
      } else {
        const { output, status, stderr } = await session.shell.run(local(step.command));
        assert.equal(status, 0, `"${title}": ${step.command} exited with ${status}: ${stderr}`);
        assert.equal(normalize(output).trimEnd(), normalize(local(step.output)).trimEnd(), `"${title}": what ${step.command} printed`);
      }
    }
  } finally {
    await end();
  }
}

test('README: the curl session, against ssehub serve', { timeout: 60000 }, async () => {
  await runSection('A curl session', { servers: ['ssehub'] });
});

test("README: the examples' curl sessions (voting, join)", { timeout: 60000 }, async () => {
  await runSection('Examples and console', { servers: ['voting', 'join'] });
});
