// The command line's contract (issue 20): one exit status per kind of failure
// (0 ok, 1 other, 2 usage, 3 auth, 4 not found, 5 unreachable or 503, 6 a job
// not Done), errors that name the problem and the fix, --version, subscribe's
// --replay/--json and its resume across a server restart, start's progress,
// and users/backup refusing a missing data directory.
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { BIN, T, sleep, startServer, freePort, publishOk, request, sanitizerReport } from './lib/server.mjs';

const PASSWORD = 'exit codes password';
const TO = { timeout: T(60000) };

/** Runs the CLI to completion; returns {code, stdout, stderr, ms}. */
function cli(args, { env = {}, input, cwd, ms = T(20000) } = {}) {
  return new Promise((resolve, reject) => {
    const t0 = Date.now();
    const p = spawn(BIN, args, { env: { ...process.env, ...env }, cwd, stdio: ['pipe', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    p.stdout.on('data', (d) => (stdout += d));
    p.stderr.on('data', (d) => (stderr += d));
    p.on('error', reject);
    const timer = setTimeout(() => p.kill('SIGKILL'), ms);
    p.on('close', (code, signal) => {
      clearTimeout(timer);
      assert.equal(sanitizerReport(stderr), null, stderr);
      resolve({ code, signal, stdout, stderr, ms: Date.now() - t0 });
    });
    if (input !== undefined) p.stdin.end(input);
    else p.stdin.end();
  });
}

const tmpdir = (p = 'flowcast-exit-') => fs.mkdtempSync(path.join(os.tmpdir(), p));

async function login(url) {
  const r = await request(`${url}/api/v1/login`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ username: 'admin', password: PASSWORD }),
  });
  assert.equal(r.status, 200, r.text);
  return r.json.access_token;
}

describe('usage errors exit 2 and say what is wrong before sending anything', () => {
  test("publish 'bad channel!' names the channel rule, not a parser error", TO, async () => {
    const r = await cli(['publish', 'bad channel!', '{}'], { env: { FLOWCAST_URL: 'http://127.0.0.1:1' } });
    assert.equal(r.code, 2, r.stderr);
    assert.doesNotMatch(r.stderr, /HPE_|malformed request/);
    assert.match(r.stderr, /'bad channel!' is not a channel name/);
    assert.match(r.stderr, /A-Z a-z 0-9 \. _ : -/);
  });

  test('publish a/b is a bad channel name, not "no such resource"', TO, async () => {
    const r = await cli(['publish', 'a/b', '{}'], { env: { FLOWCAST_URL: 'http://127.0.0.1:1' } });
    assert.equal(r.code, 2, r.stderr);
    assert.doesNotMatch(r.stderr, /no such resource/);
    assert.match(r.stderr, /'a\/b' is not a channel name/);
  });

  test("subscribe 'bad$chan' says why instead of '400: '", TO, async () => {
    const r = await cli(['subscribe', 'bad$chan'], { env: { FLOWCAST_URL: 'http://127.0.0.1:1' } });
    assert.equal(r.code, 2, r.stderr);
    assert.match(r.stderr, /'bad\$chan' is not a channel name/);
  });

  test('unknown options, bad numbers and a bad URL exit 2', TO, async () => {
    for (const args of [
      ['publish', 'c', '--bogus'],
      ['subscribe', 'c', '--replay', 'many'],
      ['subscribe', 'c', '--count', '-1'],
      ['start', 'abc'],
      ['token', '--sub', 'x', '--ttl', '1h'],
      ['publish', 'c', '1', '--url', 'ftp://x'],
      ['version', '--bogus'],
    ]) {
      const r = await cli(args);
      assert.equal(r.code, 2, `${args.join(' ')}: ${r.stderr}`);
      assert.ok(r.stderr.trim().length > 0, `${args.join(' ')} said nothing`);
    }
  });

  test('users add with an empty standard input says the password is missing', TO, async () => {
    const dir = tmpdir();
    try {
      const r = await cli(['users', 'add', 'alice', '--data', dir], { input: '', env: { FLOWCAST_PASSWORD: '' } });
      assert.equal(r.code, 2);
      assert.match(r.stderr, /no password given/);
      assert.match(r.stderr, /FLOWCAST_PASSWORD/);
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });

  test('--help lists the exit statuses', TO, async () => {
    for (const args of [['--help'], ['subscribe', '--help'], ['start', '--help']]) {
      const r = await cli(args);
      assert.equal(r.code, 0);
      for (const line of [/0\s+success/, /2\s+usage/, /3\s+auth/, /4\s+not found/, /5\s+the server is unreachable/, /6\s+a followed job/]) {
        assert.match(r.stdout, line, `${args.join(' ')}: ${r.stdout}`);
      }
    }
  });
});

describe('version', () => {
  test('--version and version print the version, commit, build and libraries', TO, async () => {
    for (const args of [['--version'], ['version']]) {
      const r = await cli(args);
      assert.equal(r.code, 0, r.stderr);
      assert.match(r.stdout, /^flowcast \d+\.\d+\.\d+ \(/);
      assert.match(r.stdout, /^commit:\s+([0-9a-f]{40}|unknown)$/m);
      assert.match(r.stdout, /^build:\s+\S+/m);
      for (const lib of ['libuv', 'sqlite', 'jansson', 'openssl', 'libjwt', 'libsodium', 'llhttp', 'wslay']) {
        assert.match(r.stdout, new RegExp(`^  ${lib}\\s+\\S*\\d`, 'm'), `${lib} missing: ${r.stdout}`);
      }
    }
  });
});

describe('server answers map to exit statuses, with the server message and a hint', () => {
  test('3 for 401/403 (an expired token too), 4 for 404, 1 for a 400, 0 for success', TO, async (t) => {
    const h = await startServer({ open: false, env: { FLOWCAST_ADMIN_PASSWORD: PASSWORD } });
    t.after(() => h.stop());
    const admin = { FLOWCAST_URL: h.url, FLOWCAST_TOKEN: await login(h.url) };
    const ok = await cli(['publish', 'exit.ok', '{"n":1}'], { env: admin });
    assert.equal(ok.code, 0, ok.stderr);

    const none = await cli(['publish', 'exit.ok', '{}'], { env: { FLOWCAST_URL: h.url, FLOWCAST_TOKEN: '' } });
    assert.equal(none.code, 3, none.stderr);
    assert.match(none.stderr, /401: a token is needed/);
    assert.match(none.stderr, /hint: .*--token or FLOWCAST_TOKEN/);

    const tok = await cli(['token', '--sub', 'svc', '--publish', 'mine.*', '--subscribe', 'mine.*'], { env: admin });
    assert.equal(tok.code, 0, tok.stderr);
    const svc = { FLOWCAST_URL: h.url, FLOWCAST_TOKEN: tok.stdout.trim() };
    const denied = await cli(['publish', 'theirs', '{}'], { env: svc });
    assert.equal(denied.code, 3);
    assert.match(denied.stderr, /403: the token may not publish/);
    // subscribe stops for good on 403 instead of retrying.
    const sub403 = await cli(['subscribe', 'theirs'], { env: svc, ms: T(10000) });
    assert.equal(sub403.code, 3, sub403.stderr);
    assert.match(sub403.stderr, /403: the token may not subscribe/);

    // An expired token: the message is the server's, not "401: ".
    const short = await cli(['token', '--sub', 'brief', '--subscribe', '*', '--ttl', '1'], { env: admin });
    assert.equal(short.code, 0, short.stderr);
    await sleep(2100);
    const expired = await cli(['subscribe', 'exit.ok'], { env: { FLOWCAST_URL: h.url, FLOWCAST_TOKEN: short.stdout.trim() } });
    assert.equal(expired.code, 3, expired.stderr);
    assert.match(expired.stderr, /401: \S.*\(invalid_token\)/);
    assert.match(expired.stderr, /hint: the token is expired or not valid/);

    const bad = await cli(['subscribe', 'exit.ok', '--last-event-id', 'zz'], { env: admin });
    assert.equal(bad.code, 1, bad.stderr);
    assert.match(bad.stderr, /400: Last-Event-ID must be an event id/);

    const badJson = await cli(['publish', 'exit.ok', 'not json'], { env: admin });
    assert.equal(badJson.code, 1);
    assert.match(badJson.stderr, /400: invalid JSON/);

    const noWf = await cli(['start', '99'], { env: admin });
    assert.equal(noWf.code, 4, noWf.stderr);
    assert.match(noWf.stderr, /404: no workflow 99/);
  });

  test('5 when the server is unreachable, and for a 503 (storage full)', TO, async (t) => {
    const port = await freePort();
    const down = await cli(['publish', 'c', '1'], { env: { FLOWCAST_URL: `http://127.0.0.1:${port}` } });
    assert.equal(down.code, 5, down.stderr);
    assert.match(down.stderr, /cannot connect to 127\.0\.0\.1:\d+/);
    assert.match(down.stderr, /hint: is the server running/);
    const sub = await cli(['subscribe', 'c', '--retries', '2'], { env: { FLOWCAST_URL: `http://127.0.0.1:${port}` } });
    assert.equal(sub.code, 5, sub.stderr);
    assert.match(sub.stderr, /retrying in/);

    const h = await startServer({ extraArgs: ['--max-db-size', '120k'] });
    t.after(() => h.stop());
    const big = JSON.stringify('x'.repeat(100000));
    let last;
    for (let i = 0; i < 5; i++) {
      last = await cli(['publish', 'full', big], { env: { FLOWCAST_URL: h.url } });
      if (last.code !== 0) break;
    }
    assert.equal(last.code, 5, last.stderr);
    assert.match(last.stderr, /503: .*storage/);
  });
});

describe('users and backup never create a data directory', () => {
  test('a missing directory is named, exit 4, and nothing appears', TO, async () => {
    const cwd = tmpdir();
    try {
      const users = await cli(['users', 'list'], { cwd, env: { FLOWCAST_DATA: '' } });
      assert.equal(users.code, 4, users.stderr);
      assert.match(users.stderr, /no data directory at \.\/data/);
      const named = path.join(cwd, 'nowhere');
      const add = await cli(['users', 'add', 'bob', '--data', named], { cwd, env: { FLOWCAST_PASSWORD: 'long enough pw' } });
      assert.equal(add.code, 4);
      assert.ok(add.stderr.includes(`no data directory at ${named}`), add.stderr);
      const backup = await cli(['backup', path.join(cwd, 'copy.db')], { cwd, env: { FLOWCAST_DATA: '' } });
      assert.equal(backup.code, 4, backup.stderr);
      assert.match(backup.stderr, /no data directory at \.\/data/);
      assert.deepEqual(fs.readdirSync(cwd), [], 'a directory or file was created');
      // A user that does not exist: 4 too.
      const dir = path.join(cwd, 'data');
      fs.mkdirSync(dir);
      const del = await cli(['users', 'del', 'nobody', '--data', dir]);
      assert.equal(del.code, 4);
      assert.match(del.stderr, /no user nobody/);
    } finally {
      fs.rmSync(cwd, { recursive: true, force: true });
    }
  });
});

describe('subscribe', () => {
  test('--json --replay N prints the last N retained events as NDJSON, then live ones', TO, async (t) => {
    const h = await startServer({});
    t.after(() => h.stop());
    const ids = [];
    for (let i = 1; i <= 4; i++) ids.push((await publishOk(h.url, 'nd.one', { n: i })).id);
    await publishOk(h.url, 'nd.one', 'named', { event: 'tick', contentType: 'text/plain' });
    const env = { FLOWCAST_URL: h.url };
    const r = await cli(['subscribe', 'nd.one', '--json', '--replay', '3', '--count', '3'], { env });
    assert.equal(r.code, 0, r.stderr);
    const evs = r.stdout.trim().split('\n').map((l) => JSON.parse(l));
    for (const e of evs) assert.match(e.time, /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z$/, r.stdout);
    assert.deepEqual(evs.slice(0, 2).map(({ time, ...e }) => e), [
      { channel: 'nd.one', id: ids[2], event: null, data: '{"n":3}' },
      { channel: 'nd.one', id: ids[3], event: null, data: '{"n":4}' },
    ]);
    assert.equal(evs[2].event, 'tick');
    assert.equal(evs[2].data, 'named');
    // Two channels: each event says which (the stream's ?envelope=1).
    await publishOk(h.url, 'nd.two', { two: true });
    const two = await cli(['subscribe', 'nd.one', 'nd.two', '--json', '--replay', '1', '--count', '2'], { env });
    assert.equal(two.code, 0, two.stderr);
    const both = two.stdout.trim().split('\n').map((l) => JSON.parse(l));
    assert.deepEqual(both.map((e) => [e.channel, e.data]), [['nd.one', 'named'], ['nd.two', '{"two":true}']]);
  });

  test('resumes across a server restart with nothing lost and nothing twice', { timeout: T(90000) }, async (t) => {
    const h = await startServer({});
    t.after(() => h.stop());
    const env = { ...process.env, FLOWCAST_URL: h.url };
    await publishOk(h.url, 'resume.x', { n: 0 }); // before: not replayed (live start)
    const sub = spawn(BIN, ['subscribe', 'resume.x', '--json', '--count', '30'], { env });
    let out = '';
    let err = '';
    sub.stdout.on('data', (d) => (out += d));
    sub.stderr.on('data', (d) => (err += d));
    const exited = new Promise((r) => sub.on('exit', (code) => r(code)));
    await sleep(T(700));
    for (let i = 1; i <= 10; i++) await publishOk(h.url, 'resume.x', { n: i });
    await h.restart();
    for (let i = 11; i <= 20; i++) await publishOk(h.url, 'resume.x', { n: i }); // while the client is away
    const deadline = Date.now() + T(20000);
    while (!/resuming after id/.test(err) && Date.now() < deadline) await sleep(50);
    for (let i = 21; i <= 30; i++) await publishOk(h.url, 'resume.x', { n: i });
    const code = await Promise.race([exited, sleep(T(30000)).then(() => 'timeout')]);
    if (code === 'timeout') sub.kill('SIGKILL');
    assert.equal(code, 0, `subscribe did not finish: ${err}\n${out}`);
    const evs = out.trim().split('\n').map((l) => JSON.parse(l));
    assert.deepEqual(
      evs.map((e) => JSON.parse(e.data).n),
      Array.from({ length: 30 }, (_, i) => i + 1),
    );
    assert.equal(new Set(evs.map((e) => e.id)).size, 30);
    assert.match(err, /the stream ended; reconnecting in [\d.]+ s, resuming after id \d+/);
  });
});

describe('start', () => {
  test('shows progress as it comes, and exits 6 for a final status other than Done', TO, async (t) => {
    const dir = tmpdir('flowcast-exit-wf-');
    t.after(() => fs.rmSync(dir, { recursive: true, force: true }));
    const script = path.join(dir, 'progress.sh');
    fs.writeFileSync(
      script,
      '#!/bin/sh\necho "working"\nfor p in 25 50 75 100; do sleep 0.2; echo "::sse {\\"event\\":\\"progress\\",\\"data\\":{\\"pct\\":$p}}"; done\n',
    );
    fs.writeFileSync(path.join(dir, 'p.json'), JSON.stringify({ id: 7, name: 'P', description: 'p', tasks: [{ type: 'exec', command: ['sh', script] }] }));
    fs.writeFileSync(path.join(dir, 'f.json'), JSON.stringify({ id: 8, name: 'F', description: 'f', tasks: [{ type: 'exec', command: ['sh', '-c', 'exit 3'] }] }));
    const h = await startServer({ extraArgs: ['--workflows', dir] });
    t.after(() => h.stop());
    const env = { FLOWCAST_URL: h.url };
    // Another job of the same workflow runs alongside: its progress is not this job's.
    const other = await request(`${h.url}/api/v1/start?w=7`, { method: 'POST' });
    assert.equal(other.status, 200);
    const ok = await cli(['start', '7'], { env });
    assert.equal(ok.code, 0, ok.stdout + ok.stderr);
    const lines = ok.stdout.trim().split('\n');
    assert.equal(lines.filter((l) => /^progress: /.test(l)).length, 4, ok.stdout);
    const at = (re) => lines.findIndex((l) => re.test(l));
    for (const p of [25, 50, 75, 100]) assert.ok(at(new RegExp(`^progress: ${p}%$`)) > 0, ok.stdout);
    assert.ok(at(/^status: Running$/) < at(/^progress: 25%$/), ok.stdout);
    assert.ok(at(/^progress: 100%$/) < at(/^final: Done$/), ok.stdout); // all progress, then the end
    assert.ok(at(/^ {2}working$/) > 0, ok.stdout);
    const bad = await cli(['start', '8'], { env });
    assert.equal(bad.code, 6, bad.stdout + bad.stderr);
    assert.match(bad.stdout, /final: Failed/);
  });
});
