// The client commands against a real server: publish, subscribe (reconnecting
// and resuming by itself), token, start (exit status from the job), users.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { BIN, T, sleep, startServer, request } from './lib/server.mjs';

const PASSWORD = 'cli password 123';

function run(args, env = {}, input) {
  return spawnSync(BIN, args, { encoding: 'utf8', timeout: T(30000), env: { ...process.env, ...env }, input });
}

async function adminToken(url) {
  const r = await request(`${url}/api/v1/login`, {
    method: 'POST', headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ username: 'admin', password: PASSWORD }),
  });
  return r.json.access_token;
}

test('publish, token and subscribe: scoped rights, resume across a restart', { timeout: T(60000) }, async (t) => {
  const h = await startServer({ open: false, env: { FLOWCAST_ADMIN_PASSWORD: PASSWORD } });
  t.after(() => h.stop());
  const env = { FLOWCAST_URL: h.url, FLOWCAST_TOKEN: await adminToken(h.url) };
  const tok = run(['token', '--sub', 'svc', '--publish', 'orders.*', '--subscribe', 'orders.*', '--ttl', '600'], env);
  assert.equal(tok.status, 0, tok.stderr);
  const svc = { FLOWCAST_URL: h.url, FLOWCAST_TOKEN: tok.stdout.trim() };

  const p1 = run(['publish', 'orders.eu', '{"n":1}'], svc);
  assert.equal(p1.status, 0, p1.stderr);
  assert.match(p1.stdout, /^\d+\n$/);
  const p2 = run(['publish', 'orders.eu', '-', '--type', 'text/plain'], svc, 'from stdin');
  assert.equal(p2.status, 0, p2.stderr);
  const denied = run(['publish', 'billing', '{}'], svc);
  assert.equal(denied.status, 3, 'exit 3: auth');
  assert.match(denied.stderr, /403: the token may not publish/);

  // subscribe follows live events, survives a server restart and resumes.
  const sub = spawn(BIN, ['subscribe', 'orders.eu', '--json', '--count', '3'], { env: { ...process.env, ...svc } });
  let out = '';
  sub.stdout.on('data', (d) => { out += d; });
  const exited = new Promise((r) => sub.on('exit', r));
  await sleep(T(500));
  run(['publish', 'orders.eu', '{"n":2}'], svc);
  await h.restart();
  run(['publish', 'orders.eu', '{"n":3}'], svc); // published while the client is away
  run(['publish', 'orders.eu', '{"n":4}'], svc);
  const code = await Promise.race([exited, sleep(T(15000)).then(() => 'timeout')]);
  if (code === 'timeout') sub.kill();
  assert.equal(code, 0, `subscribe did not end: ${out}`);
  const evs = out.trim().split('\n').map((l) => JSON.parse(l));
  assert.deepEqual(evs.map((e) => e.data), ['{"n":2}', '{"n":3}', '{"n":4}']);
  const ids = evs.map((e) => BigInt(e.id));
  assert.ok(ids[0] < ids[1] && ids[1] < ids[2]);
});

test('start follows a job and exits 0 only for Done', { timeout: T(60000) }, async (t) => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'flowcast-cli-wf-'));
  t.after(() => fs.rmSync(dir, { recursive: true, force: true }));
  fs.writeFileSync(path.join(dir, 'ok.json'), JSON.stringify({
    id: 1, name: 'Ok', description: 'ok', tasks: [{ type: 'exec', command: ['sh', '-c', 'echo hello from the task'] }],
  }));
  fs.writeFileSync(path.join(dir, 'fail.json'), JSON.stringify({
    id: 2, name: 'Fail', description: 'fails', tasks: [{ type: 'exec', command: ['sh', '-c', 'exit 3'] }],
  }));
  const h = await startServer({ extraArgs: ['--workflows', dir] });
  t.after(() => h.stop());
  const env = { FLOWCAST_URL: h.url };
  const ok = run(['start', '1'], env);
  assert.equal(ok.status, 0, ok.stdout + ok.stderr);
  assert.match(ok.stdout, /^job [0-9a-f-]{36}$/m);
  assert.match(ok.stdout, /status: Running/);
  assert.match(ok.stdout, /hello from the task/);
  assert.match(ok.stdout, /final: Done/);
  const bad = run(['start', '2'], env);
  assert.equal(bad.status, 6, 'exit 6: the job ended other than Done');
  assert.match(bad.stdout, /final: Failed/);
  // /metrics counts jobs by status (refreshed every second).
  let text = '';
  for (let i = 0; i < 40 && !/flowcast_jobs\{status="Failed"\} 1\b/.test(text); i++) {
    await sleep(100);
    text = (await request(`${h.url}/metrics`)).text;
  }
  assert.match(text, /flowcast_jobs\{status="Done"\} 1\b/);
  assert.match(text, /flowcast_jobs\{status="Failed"\} 1\b/);
  const none = run(['start', '99'], env);
  assert.equal(none.status, 4, 'exit 4: no such workflow');
  assert.match(none.stderr, /404/);
});

test('users add, list, passwd, del work on the data directory', async () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'flowcast-users-'));
  try {
    const add = run(['users', 'add', 'alice', '--admin', '--data', dir], { FLOWCAST_PASSWORD: 'alice password' });
    assert.equal(add.status, 0, add.stderr);
    assert.equal(run(['users', 'add', 'alice', '--data', dir], { FLOWCAST_PASSWORD: 'x'.repeat(10) }).status, 1);
    assert.equal(run(['users', 'add', 'bob', '--data', dir], {}, 'short\n').status, 2, 'an 8-character minimum');
    assert.equal(run(['users', 'add', 'bob', '--data', dir], {}, 'bob password\n').status, 0);
    const list = run(['users', 'list', '--data', dir]);
    assert.match(list.stdout, /^alice\s+admin/m);
    assert.match(list.stdout, /^bob\s+user/m);
    assert.equal(run(['users', 'passwd', 'bob', '--data', dir], { FLOWCAST_PASSWORD: 'new bob password' }).status, 0);
    assert.equal(run(['users', 'del', 'bob', '--data', dir]).status, 0);
    assert.equal(run(['users', 'del', 'bob', '--data', dir]).status, 4, 'exit 4: no such user');
    assert.equal(run(['users', 'add', 'bad name', '--data', dir], { FLOWCAST_PASSWORD: 'x'.repeat(10) }).status, 2);
    // alice can log in to a server on that directory.
    const h = await startServer({ open: false, dataDir: dir });
    try {
      const r = await request(`${h.url}/api/v1/login`, {
        method: 'POST', headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ username: 'alice', password: 'alice password' }),
      });
      assert.equal(r.status, 200, r.text);
    } finally {
      await h.stop();
    }
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});
