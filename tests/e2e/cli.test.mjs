// The command line: help, unknown flags and commands, bad values, a port in
// use, and FLOWCAST_* environment with flags winning.
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { BIN, startServer, freePort, request, baseServeArgs, sanitizerReport, sleep, T } from './lib/server.mjs';

const TO = { timeout: T(30000) };

/** Runs the binary to completion (killed after `ms`); returns {code, signal, stdout, stderr, timedOut}. */
function run(args, { env = {}, ms = T(5000) } = {}) {
  return new Promise((resolve, reject) => {
    const p = spawn(BIN, args, { env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    let timedOut = false;
    p.stdout.on('data', (d) => (stdout += d));
    p.stderr.on('data', (d) => (stderr += d));
    p.on('error', reject);
    const timer = setTimeout(() => {
      timedOut = true;
      p.kill('SIGKILL');
    }, ms);
    p.on('close', (code, signal) => {
      clearTimeout(timer);
      resolve({ code, signal, stdout, stderr, timedOut });
    });
  });
}

function noSanitizer(r) {
  assert.equal(sanitizerReport(r.stderr), null, r.stderr);
}

const tmp = () => fs.mkdtempSync(path.join(os.tmpdir(), 'flowcast-cli-'));

describe('help', () => {
  test('flowcast --help prints usage on stdout and exits 0', TO, async () => {
    const r = await run(['--help']);
    noSanitizer(r);
    assert.equal(r.timedOut, false);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /usage/i);
    assert.match(r.stdout, /\bserve\b/);
  });

  test('flowcast alone prints help', TO, async () => {
    const r = await run([]);
    noSanitizer(r);
    assert.equal(r.timedOut, false, 'flowcast alone must not start anything');
    assert.match(r.stdout + r.stderr, /usage/i);
    assert.match(r.stdout + r.stderr, /\bserve\b/);
  });

  test('flowcast serve --help documents its flags and starts nothing', TO, async () => {
    const r = await run(['serve', '--help']);
    noSanitizer(r);
    assert.equal(r.timedOut, false, 'serve --help started a server');
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /usage/i);
    for (const flag of ['--listen', '--data', '--threads', '--keepalive', '--retention', '--max-body', '--queue-bytes', '--cors-origins', '--header-timeout', '--log-level']) {
      assert.ok(r.stdout.includes(flag), `serve --help does not mention ${flag}`);
    }
  });
});

describe('bad command lines', () => {
  const cases = [
    ['an unknown flag to serve', ['serve', '--bogus-flag'], /bogus-flag/],
    ['an unknown top-level flag', ['--bogus-flag'], /bogus-flag/],
    ['an unknown command', ['frobnicate'], /frobnicate/],
    ['a flag without its value', ['serve', '--listen'], /listen/],
    ['a non-numeric --threads', ['serve', '--threads', 'abc'], /threads/],
    ['a negative --keepalive', ['serve', '--keepalive', '-1'], /keepalive/],
    ['a non-numeric --max-body', ['serve', '--max-body', '1x'], /max-body/],
    ['an unknown --log-level', ['serve', '--log-level', 'loud'], /log-level/],
    ['a bad --listen address', ['serve', '--listen', 'not-an-address'], /listen|address/i],
    ['a --listen port out of range', ['serve', '--listen', '127.0.0.1:70000'], /listen|port/i],
  ];
  for (const [what, args, msg] of cases) {
    test(`${what}: non-zero exit with a message`, TO, async () => {
      const dir = tmp();
      try {
        const full = args[0] === 'serve' ? ['serve', '--data', dir, ...args.slice(1)] : args;
        const r = await run(full, { ms: T(5000) });
        noSanitizer(r);
        assert.equal(r.timedOut, false, `flowcast ${full.join(' ')} kept running`);
        assert.equal(r.signal, null, `killed by ${r.signal}: ${r.stderr}`);
        assert.notEqual(r.code, 0, `flowcast ${full.join(' ')} exited 0`);
        assert.match(r.stderr, msg, `stderr: ${r.stderr}`);
      } finally {
        fs.rmSync(dir, { recursive: true, force: true });
      }
    });
  }

  test('a port already in use: non-zero exit with a message', TO, async (t) => {
    const srv = await startServer({});
    t.after(() => srv.stop());
    const dir = tmp();
    try {
      const r = await run(['serve', '--listen', `127.0.0.1:${srv.port}`, '--data', dir, ...baseServeArgs()], {
        ms: T(5000),
      });
      noSanitizer(r);
      assert.equal(r.timedOut, false, 'kept running on a port in use');
      assert.notEqual(r.code, 0);
      assert.match(r.stderr, /in use|EADDRINUSE|bind/i, r.stderr);
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
    // the first server is unharmed
    const h = await request(`${srv.url}/healthz`);
    assert.equal(h.status, 200);
  });
});

describe('environment', () => {
  async function waitHealthy(port, proc) {
    const deadline = Date.now() + T(10000);
    while (Date.now() < deadline) {
      if (proc.exitCode !== null) return false;
      try {
        const r = await fetch(`http://127.0.0.1:${port}/healthz`, { signal: AbortSignal.timeout(500) });
        if (r.status === 200) return true;
      } catch {
        // not yet
      }
      await sleep(50);
    }
    return false;
  }

  async function withProc(t, args, env) {
    const p = spawn(BIN, [...args, ...baseServeArgs()], { env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
    let stderr = '';
    p.stderr.on('data', (d) => (stderr += d));
    p.stdout.resume();
    const exited = new Promise((r) => p.once('exit', (code, signal) => r({ code, signal })));
    t.after(async () => {
      if (p.exitCode === null && p.signalCode === null) {
        p.kill('SIGTERM');
        const r = await Promise.race([exited, sleep(T(5000)).then(() => null)]);
        if (!r) p.kill('SIGKILL');
      }
    });
    return { p, stderr: () => stderr, exited };
  }

  test('FLOWCAST_LISTEN sets the address', TO, async (t) => {
    const port = await freePort();
    const dir = tmp();
    t.after(() => fs.rmSync(dir, { recursive: true, force: true }));
    const { p, stderr, exited } = await withProc(t, ['serve', '--data', dir], { FLOWCAST_LISTEN: `127.0.0.1:${port}` });
    assert.ok(await waitHealthy(port, p), `not listening on ${port}: ${stderr()}`);
    p.kill('SIGTERM');
    const r = await exited;
    assert.equal(r.code, 0, stderr());
  });

  test('a flag wins over the environment', TO, async (t) => {
    const envPort = await freePort();
    const flagPort = await freePort();
    const dir = tmp();
    t.after(() => fs.rmSync(dir, { recursive: true, force: true }));
    const { p, stderr } = await withProc(t, ['serve', '--data', dir, '--listen', `127.0.0.1:${flagPort}`], {
      FLOWCAST_LISTEN: `127.0.0.1:${envPort}`,
    });
    assert.ok(await waitHealthy(flagPort, p), `not listening on the --listen port: ${stderr()}`);
    await assert.rejects(fetch(`http://127.0.0.1:${envPort}/healthz`, { signal: AbortSignal.timeout(1000) }));
  });

  test('FLOWCAST_RETENTION is honoured', TO, async (t) => {
    const port = await freePort();
    const dir = tmp();
    t.after(() => fs.rmSync(dir, { recursive: true, force: true }));
    const { p, stderr } = await withProc(t, ['serve', '--data', dir, '--listen', `127.0.0.1:${port}`], {
      FLOWCAST_RETENTION: '2',
    });
    assert.ok(await waitHealthy(port, p), stderr());
    const base = `http://127.0.0.1:${port}`;
    for (let i = 0; i < 4; i++) {
      const r = await request(`${base}/api/v1/channels/env.ret/events`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: String(i),
      });
      assert.equal(r.status, 201);
    }
    const h = await request(`${base}/api/v1/channels/env.ret/events`);
    assert.deepEqual(
      h.json.map((e) => e.data),
      [2, 3],
    );
  });
});
