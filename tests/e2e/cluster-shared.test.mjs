// Cluster mode, what the nodes share besides events (API.md "Cluster mode"):
// users (made with the CLI's --redis, or the first node's admin), the login
// limit counted across nodes, --redis-wait-replicas against a real replica,
// and age limits (max-age rules) that hold in Redis.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { BIN, startServer, request, publish, publishOk, storedEvents, assertJsonError, eventually, sleep, T } from './lib/server.mjs';
import { subscribe } from './lib/sse.mjs';
import { startRedis } from './lib/redis.mjs';
import { teardown, workflows, runsFile, lines } from './lib/cluster.mjs';

const TO = { timeout: T(45000) };

async function node(later, r, opts = {}) {
  const { extraArgs = [], ...rest } = opts;
  const h = await startServer({ ...rest, extraArgs: ['--redis', r.url, ...extraArgs] });
  later(() => h.stop());
  return h;
}

const login = (h, username, password) =>
  request(`${h.url}/api/v1/login`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ username, password }),
  });

test('users live in Redis: the first node makes admin once, the CLI adds users with --redis, every node logs them in', TO, async (t) => {
  const later = teardown(t);
  const r = await startRedis();
  later(() => r.stop());
  const a = await node(later, r, { open: false, env: { FLOWCAST_ADMIN_PASSWORD: 'password-of-a' } });
  // B starts with another admin password: the cluster's admin is A's.
  const b = await node(later, r, { open: false, env: { FLOWCAST_ADMIN_PASSWORD: 'password-of-b' } });
  assert.equal((await login(b, 'admin', 'password-of-a')).status, 200);
  assert.equal((await login(b, 'admin', 'password-of-b')).status, 401, 'B did not make an admin of its own');

  const cli = (...args) =>
    spawnSync(BIN, ['users', ...args, '--redis', r.url], {
      env: { ...process.env, FLOWCAST_PASSWORD: 'alice-password' },
      encoding: 'utf8',
      timeout: T(20000),
    });
  const add = cli('add', 'alice');
  assert.equal(add.status, 0, add.stderr);
  assert.equal(cli('add', 'alice').status, 1, 'a taken name is refused');
  const list = cli('list');
  assert.match(list.stdout, /^admin\s+admin/m);
  assert.match(list.stdout, /^alice\s+user/m);

  for (const h of [a, b]) {
    const ok = await login(h, 'alice', 'alice-password');
    assert.equal(ok.status, 200, ok.text);
    // The token is good on the other node too (one signing secret).
    const other = h === a ? b : a;
    const me = await request(`${other.url}/api/v1/channels`, { headers: { authorization: `Bearer ${ok.json.access_token}` } });
    assert.notEqual(me.status, 401, me.text);
  }
  assert.equal(cli('del', 'alice').status, 0);
  assert.equal((await login(a, 'alice', 'alice-password')).status, 401, 'a deleted user is gone on every node');

  const down = spawnSync(BIN, ['users', 'list', '--redis', 'redis://127.0.0.1:1'], { encoding: 'utf8', timeout: T(20000) });
  assert.equal(down.status, 5, 'Redis unreachable is exit 5');
  assert.match(down.stderr, /cannot connect to Redis/);
});

test('the login limit counts failures from every node', TO, async (t) => {
  const later = teardown(t);
  const r = await startRedis();
  later(() => r.stop());
  const opts = { open: false, env: { FLOWCAST_ADMIN_PASSWORD: 'right-password' }, extraArgs: ['--login-limit', '3'] };
  const nodes = [];
  for (let i = 0; i < 3; i++) nodes.push(await node(later, r, opts));
  // One failure on each node: three for the user in the cluster.
  for (const h of nodes) assert.equal((await login(h, 'admin', 'wrong')).status, 401);
  // The right password is now refused everywhere until the window ends.
  for (const h of nodes) {
    const res = await login(h, 'admin', 'right-password');
    assertJsonError(res, 429, 'too_many_attempts');
    const wait = Number(res.headers.get('retry-after'));
    assert.ok(wait >= 1 && wait <= 60, `Retry-After ${res.headers.get('retry-after')}`);
  }
});

test('--redis-wait-replicas: 201 once a replica has the event, 503 replicas_unavailable without one', TO, async (t) => {
  const later = teardown(t);
  const primary = await startRedis();
  later(() => primary.stop());
  const h = await node(later, primary, { open: true, extraArgs: ['--redis-wait-replicas', '1'] });
  const lonely = await publish(h.url, 'orders', { n: 1 });
  assertJsonError(lonely, 503, 'replicas_unavailable');

  // No AOF on the replica: its rewrite after the first sync forks a child that
  // outlives a SIGKILL of redis-server and holds the harness's pipes open.
  const replica = await startRedis({ extraArgs: ['--replicaof', '127.0.0.1', String(primary.port), '--appendonly', 'no'] });
  later(() => replica.stop());
  // Once the replica has synced, a publish is answered 201 and the replica has it.
  let res;
  for (let i = 0; i < 40; i++) {
    res = await publish(h.url, 'orders', { n: 2 });
    if (res.status === 201) break;
    await sleep(250);
  }
  assert.equal(res.status, 201, res.text);
  const onReplica = await replica.command('XLEN', 'fc:s:orders');
  assert.ok(onReplica >= 1, `the replica holds ${onReplica} events of orders`);
});

test('max-age rules hold in Redis: aged events leave every node and Redis', TO, async (t) => {
  const later = teardown(t);
  const r = await startRedis();
  later(() => r.stop());
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'flowcast-conf-'));
  later(() => fs.rmSync(dir, { recursive: true, force: true }));
  const conf = path.join(dir, 'flowcast.conf');
  fs.writeFileSync(conf, 'max-age:tmp.* = 1\n');
  const a = await node(later, r, { open: true, extraArgs: ['--config', conf] });
  const b = await node(later, r, { open: true, extraArgs: ['--config', conf] });
  await publishOk(a.url, 'tmp.x', { n: 1 });
  await publishOk(a.url, 'keep.x', { n: 1 });
  assert.equal((await storedEvents(b.url, 'tmp.x')).length, 1);
  await sleep(T(2500));
  assert.deepEqual(await storedEvents(a.url, 'tmp.x'), [], 'aged out on A');
  assert.deepEqual(await storedEvents(b.url, 'tmp.x'), [], 'aged out on B');
  assert.equal((await storedEvents(b.url, 'keep.x')).length, 1, 'a channel without the rule keeps its event');
  // The next commit deletes the aged entries from Redis itself.
  const fresh = await publishOk(b.url, 'tmp.x', { n: 2 });
  assert.equal(await r.command('XLEN', 'fc:s:tmp.x'), 1);
  assert.deepEqual((await storedEvents(a.url, 'tmp.x')).map((e) => e.id), [fresh.id]);
});

test('one Redis subscription per channel a node holds, not per client; let go when the channel is idle', TO, async (t) => {
  const later = teardown(t);
  const r = await startRedis();
  later(() => r.stop());
  const opts = { open: true, extraArgs: ['--channel-idle', '1'] };
  const a = await node(later, r, opts);
  const b = await node(later, r, opts);
  const numsub = async (ch) => (await r.command('PUBSUB', 'NUMSUB', `fc:bus:0:${ch}`))[1];

  const clients = [];
  for (let i = 0; i < 20; i++) clients.push(await subscribe(`${b.url}/api/v1/channels/room/sse`));
  later(() => clients.forEach((c) => c.close()));
  await eventually(async () => (await numsub('room')) === 1, T(5000), 'B subscribed once for 20 clients');
  const first = await publishOk(a.url, 'room', { n: 1 });
  for (const c of clients) await c.waitFor((s) => s.events.some((e) => e.id === first.id), T(5000), 'first event');
  // A published: it holds the channel too, for a while.
  assert.equal(await numsub('room'), 2);

  // Everyone leaves: both nodes let the channel go and unsubscribe.
  clients.forEach((c) => c.close());
  await eventually(async () => (await numsub('room')) === 0, T(15000), 'both nodes let go of room');
  // Meanwhile events go on; B reads them back when it next needs the channel.
  const more = [];
  for (let i = 2; i <= 5; i++) more.push((await publishOk(a.url, 'room', { n: i })).id);
  const history = await storedEvents(b.url, 'room');
  assert.deepEqual(history.map((e) => e.id), [first.id, ...more]);
});

test('a channel trigger starts one job per event in the cluster, not one per node', TO, async (t) => {
  const later = teardown(t);
  const r = await startRedis();
  later(() => r.stop());
  const out = runsFile(later, 'flowcast-runs-');
  const dir = workflows(later, {
    'trig.json': {
      id: 9, name: 'trig', triggers: [{ type: 'channel', channel: 'orders' }],
      tasks: [{ type: 'exec', command: ['sh', '-c', `echo "$FLOWCAST_JOB_ID" >> ${out}`] }],
    },
  });
  const nodes = [];
  for (let i = 0; i < 3; i++) nodes.push(await node(later, r, { open: true, extraArgs: ['--workflows', dir] }));
  for (let i = 0; i < 6; i++) await publishOk(nodes[i % 3].url, 'orders', { order: i });
  await eventually(async () => lines(out).length >= 6, T(15000), 'six jobs ran');
  await sleep(T(1000)); // a duplicate would have run by now
  const runs = lines(out);
  assert.equal(runs.length, 6, runs.join(' '));
  assert.equal(new Set(runs).size, 6, 'six different jobs');
});

test('a cron workflow fires once per minute in the cluster, over two minute boundaries', { timeout: T(60000) + 130000 }, async (t) => {
  const later = teardown(t);
  const r = await startRedis();
  later(() => r.stop());
  const out = runsFile(later, 'flowcast-runs-');
  const dir = workflows(later, {
    'cron.json': {
      id: 10, name: 'every minute', triggers: [{ type: 'cron', cron: '* * * * *' }],
      tasks: [{ type: 'exec', command: ['sh', '-c', `echo "$FLOWCAST_JOB_ID" >> ${out}`] }],
    },
  });
  for (let i = 0; i < 3; i++) await node(later, r, { open: true, extraArgs: ['--workflows', dir] });
  // Each of the next two minute boundaries, and a few seconds past it for
  // every node's 1 s tick and the job's run on whichever node claimed it.
  const next = Math.ceil((Date.now() + 1) / 60000) * 60000;
  for (const [n, at] of [[1, next], [2, next + 60000]]) {
    await sleep(at - Date.now() + T(4000));
    assert.equal(lines(out).length, n, `runs after boundary ${n}: ${lines(out).join(' ')}`);
  }
  assert.equal(new Set(lines(out)).size, 2, 'two different jobs');
});

test('Redis away: reads that need it answer 503 storage_unavailable at once; what is in memory still streams', TO, async (t) => {
  const later = teardown(t);
  const r = await startRedis();
  later(() => r.stop());
  const h = await node(later, r, { open: true });
  const first = await publishOk(h.url, 'kept', { n: 1 });
  const s = await subscribe(`${h.url}/api/v1/channels/kept/sse`);
  later(() => s.close());
  await r.kill();
  const t0 = Date.now();
  for (const url of [`${h.url}/api/v1/channels/never/events`, `${h.url}/api/v1/channels`]) {
    let res;
    // The node notices within a moment; from then on it answers at once.
    for (let i = 0; i < 50; i++) {
      res = await request(url);
      if (res.status === 503) break;
      await sleep(100);
    }
    assertJsonError(res, 503, 'storage_unavailable');
  }
  assert.ok(Date.now() - t0 < T(8000), 'no read waited for a connect timeout');
  assertJsonError(await publish(h.url, 'kept', { n: 2 }), 503, 'storage_unavailable');
  // The channel in memory still answers from memory.
  assert.deepEqual((await storedEvents(h.url, 'kept')).map((e) => e.id), [first.id]);
  assert.ok(s.events.some((e) => e.id === first.id));
});

test('Redis comes back without its data: ids go on increasing and new events reach every node', TO, async (t) => {
  const later = teardown(t);
  const r = await startRedis();
  later(() => r.stop());
  const a = await node(later, r, { open: true });
  const b = await node(later, r, { open: true });
  const before = [];
  for (let i = 0; i < 3; i++) before.push((await publishOk(a.url, 'feed', { i })).id);
  const s = await subscribe(`${b.url}/api/v1/channels/feed/sse`);
  later(() => s.close());
  await s.waitFor((x) => x.events.some((e) => e.id === before[2]), T(5000), 'the first events on B');
  await r.command('FLUSHALL'); // as a Redis restarted without persistence
  // The first commit after it is refused inside the node, which seeds the counters again and
  // commits it in the new epoch: the publisher sees a 201.
  const res = { json: await publishOk(a.url, 'feed', { after: true }) };
  assert.ok(BigInt(res.json.id) > BigInt(before[2]), `id ${res.json.id} after ${before[2]}`);
  await s.waitFor((x) => x.events.some((e) => e.id === res.json.id), T(5000), 'the new event on B');
  const fromB = await publishOk(b.url, 'feed', { fromB: true });
  assert.ok(BigInt(fromB.id) > BigInt(res.json.id));
  await s.waitFor((x) => x.events.some((e) => e.id === fromB.id), T(5000), 'B\'s own event');
  assert.match(a.stderrText(), /redis lost flowcast's data/);
});
