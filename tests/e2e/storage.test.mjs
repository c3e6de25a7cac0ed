// Durable storage (SQLite): restart and resume, kill -9 under concurrent
// publishers, a full database, and start-up faults.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import {
  BIN, T, sleep, startServer, publish, publishOk, storedEvents, assertHealthy, assertJsonError, request,
  rawConnect, parseResponses,
} from './lib/server.mjs';
import { subscribe } from './lib/sse.mjs';

const tmpDir = () => fs.mkdtempSync(path.join(os.tmpdir(), 'flowcast-store-'));

/** Runs `flowcast serve` expecting it to refuse to start; returns {status, stderr}. */
function serveFails(dataDir, extra = []) {
  const r = spawnSync(BIN, ['serve', '--listen', '127.0.0.1:0', '--data', dataDir, ...extra], {
    encoding: 'utf8',
    timeout: T(10000),
  });
  return { status: r.status, stderr: r.stderr };
}

test('ids continue after a restart and Last-Event-ID resumes across it', async (t) => {
  const h = await startServer();
  t.after(() => h.stop());
  const before = [];
  for (let i = 0; i < 5; i++) before.push((await publishOk(h.url, 'orders', { i })).id);
  await h.restart();
  const after = [];
  for (let i = 5; i < 8; i++) after.push((await publishOk(h.url, 'orders', { i })).id);
  assert.ok(BigInt(after[0]) > BigInt(before[4]), `ids went back: ${before} then ${after}`);

  const s = await subscribe(`${h.url}/api/v1/channels/orders/sse`, { headers: { 'last-event-id': before[2] } });
  t.after(() => s.close());
  const evs = await s.waitEvents(5);
  assert.deepEqual(evs.map((e) => e.id), [...before.slice(3), ...after]);
  assert.deepEqual(evs.map((e) => JSON.parse(e.data).i), [3, 4, 5, 6, 7]);
  await sleep(T(200));
  assert.equal(s.events.length, 5, 'no duplicates after the resume');
  assert.ok(!s.events.some((e) => e.event === 'flowcast.gap'));
});

test('the gap rule holds across a restart', async (t) => {
  const h = await startServer({ retention: 3 });
  t.after(() => h.stop());
  const ids = [];
  for (let i = 0; i < 8; i++) ids.push((await publishOk(h.url, 'g', { i })).id);
  await h.restart();
  // Retained: the last 3. Resuming after ids[2] misses ids[3], ids[4].
  const s = await subscribe(`${h.url}/api/v1/channels/g/sse?lastEventId=${ids[2]}`);
  t.after(() => s.close());
  const evs = await s.waitEvents(4);
  assert.equal(evs[0].event, 'flowcast.gap');
  const gap = JSON.parse(evs[0].data);
  assert.equal(gap.channel, 'g');
  assert.equal(gap.lost, 2);
  assert.equal(gap.exact, true);
  assert.equal(gap.next, ids[5]);
  assert.deepEqual(evs.slice(1).map((e) => e.id), ids.slice(5));
  // History shows only what is retained.
  assert.deepEqual((await storedEvents(h.url, 'g')).map((e) => e.id), ids.slice(5));
});

/** Publishes in a loop until `stop()`; records every acknowledged id. */
function publisher(url, channel, acked) {
  let running = true;
  const done = (async () => {
    for (let i = 0; running; i++) {
      try {
        const r = await fetch(`${url}/api/v1/channels/${channel}/events`, {
          method: 'POST',
          headers: { 'content-type': 'application/json' },
          body: JSON.stringify({ channel, i }),
        });
        const text = await r.text();
        if (r.status === 201) acked.push({ channel, id: JSON.parse(text).id, i });
      } catch {
        return; // the server died mid-request: that one was never acknowledged
      }
    }
  })();
  return { stop: () => { running = false; return done; }, done };
}

test('kill -9 under 8 concurrent publishers loses no acknowledged event', async (t) => {
  const dataDir = tmpDir();
  t.after(() => fs.rmSync(dataDir, { recursive: true, force: true }));
  const channels = Array.from({ length: 8 }, (_, k) => `k${k}`);
  let lastMax = 0n;
  for (let round = 0; round < 3; round++) {
    const h = await startServer({ dataDir, retention: 1000000, logLevel: 'warn' });
    const acked = [];
    const pubs = channels.map((c) => publisher(h.url, c, acked));
    await sleep(T(400) + round * 100);
    h.proc.kill('SIGKILL');
    await Promise.all(pubs.map((p) => p.done));
    assert.ok(acked.length > 20, `round ${round}: only ${acked.length} publishes were acknowledged`);

    const h2 = await startServer({ dataDir, retention: 1000000, logLevel: 'warn' });
    try {
      for (const c of channels) {
        const stored = [];
        for (let after = ''; ;) {
          const page = await storedEvents(h2.url, c, `?limit=1000${after}`);
          stored.push(...page);
          if (page.length < 1000) break;
          after = `&after=${page[page.length - 1].id}`;
        }
        const have = new Set(stored.map((e) => e.id));
        const want = acked.filter((a) => a.channel === c);
        const missing = want.filter((a) => !have.has(a.id));
        assert.deepEqual(missing, [], `round ${round}: acknowledged events of ${c} lost after kill -9`);
        // Ids strictly increase within the channel, and payloads match their ids.
        for (let k = 1; k < stored.length; k++) assert.ok(BigInt(stored[k].id) > BigInt(stored[k - 1].id));
        const byId = new Map(stored.map((e) => [e.id, e.data]));
        for (const a of want) assert.deepEqual(byId.get(a.id), { channel: c, i: a.i });
      }
      const next = BigInt((await publishOk(h2.url, 'k0', { after: 'restart' })).id);
      const maxAcked = acked.reduce((m, a) => (BigInt(a.id) > m ? BigInt(a.id) : m), 0n);
      assert.ok(next > maxAcked && next > lastMax, 'ids continue after the crash');
      lastMax = next;
    } finally {
      await h2.stop();
    }
  }
});

test('a full database answers 503, keeps what it acknowledged, serves subscribers, and recovers', async (t) => {
  const h = await startServer({ retention: 100000, extraArgs: ['--max-db-size', '256k'], logLevel: 'warn' });
  t.after(() => h.stop());
  const s = await subscribe(`${h.url}/api/v1/channels/big/sse`);
  t.after(() => s.close());
  const payload = { pad: 'x'.repeat(3000) };
  const acked = [];
  let full = null;
  for (let i = 0; i < 400 && !full; i++) {
    const r = await publish(h.url, 'big', { ...payload, i });
    if (r.status === 201) acked.push(r.json.id);
    else full = r;
  }
  assert.ok(full, 'the size cap was never reached');
  assertJsonError(full, 503, 'storage_full');
  assert.ok(acked.length > 10, `only ${acked.length} events fit`);
  await assertHealthy(h.url);
  // Every acknowledged event is stored and was delivered; the refused one was not.
  assert.deepEqual((await storedEvents(h.url, 'big', '?limit=1000')).map((e) => e.id), acked);
  await s.waitEvents(acked.length);
  assert.deepEqual(s.events.map((e) => e.id), acked);
  // Other channels are refused too while full, with the same clear error.
  assertJsonError(await publish(h.url, 'other', { pad: 'y'.repeat(3000) }), 503, 'storage_full');
  // Making room (a purge) lets publishing work again.
  const del = await request(`${h.url}/api/v1/channels/big`, { method: 'DELETE' });
  assert.equal(del.status, 204, del.text);
  const again = await publishOk(h.url, 'big', { after: 'purge' });
  await s.waitFor((x) => x.events.some((e) => e.id === again.id), T(5000), 'the event after recovery');
  // The refused publish made no channel: 'other' and a newer channel each
  // keep their own events, after a restart too.
  const other = await publishOk(h.url, 'other', { to: 'other' });
  const third = await publishOk(h.url, 'third', { to: 'third' });
  await h.restart();
  assert.deepEqual((await storedEvents(h.url, 'other')).map((e) => e.id), [other.id]);
  assert.deepEqual((await storedEvents(h.url, 'third')).map((e) => e.id), [third.id]);
});

test('--durability power stores and restores too', async (t) => {
  const h = await startServer({ extraArgs: ['--durability', 'power'] });
  t.after(() => h.stop());
  const a = await publishOk(h.url, 'p', 'one', { contentType: 'text/plain' });
  await h.restart();
  assert.deepEqual((await storedEvents(h.url, 'p')).map((e) => [e.id, e.data]), [[a.id, 'one']]);
});

test('a corrupt database stops the start with a clear message', () => {
  const dir = tmpDir();
  try {
    fs.writeFileSync(path.join(dir, 'flowcast.db'), Buffer.alloc(8192, 0x5a));
    const r = serveFails(dir);
    assert.notEqual(r.status, 0);
    assert.match(r.stderr, /flowcast: .*(not a database|corrupt)/i, r.stderr);
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

test('a database from a newer flowcast is refused', () => {
  const dir = tmpDir();
  try {
    const db = path.join(dir, 'flowcast.db');
    const r0 = spawnSync('sqlite3', [db, 'PRAGMA user_version=99; CREATE TABLE t(x);'], { encoding: 'utf8' });
    assert.equal(r0.status, 0, r0.stderr);
    const r = serveFails(dir);
    assert.notEqual(r.status, 0);
    assert.match(r.stderr, /schema version 99, newer/, r.stderr);
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

test('a data directory in use, or not a directory, is refused', async (t) => {
  const h = await startServer();
  t.after(() => h.stop());
  const r = serveFails(h.dataDir);
  assert.notEqual(r.status, 0);
  assert.match(r.stderr, /in use by another flowcast/, r.stderr);
  await assertHealthy(h.url);

  const file = path.join(tmpDir(), 'plainfile');
  fs.writeFileSync(file, 'x');
  const r2 = serveFails(file);
  assert.notEqual(r2.status, 0);
  assert.match(r2.stderr, /flowcast: .*(not a directory|cannot create)/, r2.stderr);
});

test('an unwritable data directory is refused', { skip: process.getuid() === 0 && 'root ignores file modes' }, () => {
  const dir = tmpDir();
  try {
    fs.chmodSync(dir, 0o500);
    const r = serveFails(dir);
    assert.notEqual(r.status, 0);
    assert.match(r.stderr, /not writable/, r.stderr);
  } finally {
    fs.chmodSync(dir, 0o700);
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

test('flowcast backup copies a consistent database while serving', async (t) => {
  const h = await startServer();
  t.after(() => h.stop());
  const ids = [];
  for (let i = 0; i < 20; i++) ids.push((await publishOk(h.url, 'b', { i })).id);
  const copyDir = tmpDir();
  t.after(() => fs.rmSync(copyDir, { recursive: true, force: true }));
  const r = spawnSync(BIN, ['backup', '--data', h.dataDir, path.join(copyDir, 'flowcast.db')], { encoding: 'utf8' });
  assert.equal(r.status, 0, r.stderr);
  const h2 = await startServer({ dataDir: copyDir });
  t.after(() => h2.stop());
  assert.deepEqual((await storedEvents(h2.url, 'b')).map((e) => e.id), ids);
});

test('retention by pattern and by age, from the config file, survives a restart', async (t) => {
  const dir = tmpDir();
  t.after(() => fs.rmSync(dir, { recursive: true, force: true }));
  const conf = path.join(dir, 'flowcast.conf');
  fs.writeFileSync(conf, '# per-pattern retention\nretention:short.* = 2\nmax-age:eph.* = 1\n');
  const h = await startServer({ extraArgs: ['--config', conf], retention: 5 });
  t.after(() => h.stop());
  const short = [], plain = [];
  for (let i = 0; i < 6; i++) {
    short.push((await publishOk(h.url, 'short.a', { i })).id);
    plain.push((await publishOk(h.url, 'plain', { i })).id);
  }
  await publishOk(h.url, 'eph.a', { gone: 'soon' });
  assert.deepEqual((await storedEvents(h.url, 'short.a')).map((e) => e.id), short.slice(4));
  assert.deepEqual((await storedEvents(h.url, 'plain')).map((e) => e.id), plain.slice(1));
  assert.equal((await storedEvents(h.url, 'eph.a')).length, 1);
  await sleep(2500);
  assert.equal((await storedEvents(h.url, 'eph.a')).length, 0, 'an event past its max-age is dropped');
  await h.restart();
  assert.deepEqual((await storedEvents(h.url, 'short.a')).map((e) => e.id), short.slice(4));
  assert.deepEqual((await storedEvents(h.url, 'plain')).map((e) => e.id), plain.slice(1));
  assert.equal((await storedEvents(h.url, 'eph.a')).length, 0, 'and it stays dropped after a restart');
});

test('a bad config file stops the start with the file and line', () => {
  const dir = tmpDir();
  try {
    const conf = path.join(dir, 'flowcast.conf');
    fs.writeFileSync(conf, 'retention = 10\nretention:x.* = lots\n');
    const r = serveFails(path.join(dir, 'data'), ['--config', conf]);
    assert.equal(r.status, 2);
    assert.match(r.stderr, /flowcast.conf:2: expected retention:PATTERN = COUNT/, r.stderr);
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

test('a schema 3 database upgrades: its id counter (then kept in meta) still holds', async (t) => {
  const dataDir = tmpDir();
  t.after(() => fs.rmSync(dataDir, { recursive: true, force: true }));
  const h1 = await startServer({ dataDir, logLevel: 'warn' });
  await publishOk(h1.url, 'up', { i: 1 });
  await h1.stop();
  // Back to schema 3, with the counter in meta set ahead of every channel's
  // last id: after the upgrade, ids go on from the larger of the two.
  const db = path.join(dataDir, 'flowcast.db');
  const r0 = spawnSync('sqlite3', [db, "UPDATE meta SET value=1000 WHERE key='last_seq'; PRAGMA user_version=3;"], {
    encoding: 'utf8',
  });
  assert.equal(r0.status, 0, r0.stderr);
  const h = await startServer({ dataDir, logLevel: 'warn' });
  t.after(() => h.stop());
  assert.equal((await publishOk(h.url, 'up', { i: 2 })).id, '1001');
  // from here the counter is the channels' last ids: it holds across a restart
  await h.restart();
  assert.equal((await publishOk(h.url, 'other', { i: 3 })).id, '1002');
});

test('--commit-delay-us: 0 turns the wait off, past 10000 is refused', async (t) => {
  const r = serveFails(tmpDir(), ['--commit-delay-us', '20000']);
  assert.equal(r.status, 2);
  assert.match(r.stderr, /commit-delay-us: at most 10000/, r.stderr);
  const h = await startServer({ extraArgs: ['--commit-delay-us', '0'], logLevel: 'warn' });
  t.after(() => h.stop());
  const ids = await Promise.all(Array.from({ length: 40 }, (_, i) => publishOk(h.url, 'nodelay', { i })));
  assert.equal(new Set(ids.map((x) => x.id)).size, 40);
  assert.equal((await storedEvents(h.url, 'nodelay')).length, 40);
});

test('a stop while pipelined publishes await their commits loses no acknowledged one', async (t) => {
  const h = await startServer({ logLevel: 'warn', retention: 1000 });
  t.after(() => h.stop());
  let bytes = '';
  for (let i = 0; i < 300; i++) {
    const body = `{"i":${i}}`;
    bytes +=
      'POST /api/v1/channels/stop.pipe/events HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n' +
      `Content-Length: ${body.length}\r\n\r\n${body}`;
  }
  const c = await rawConnect(h.port);
  t.after(() => c.destroy());
  await c.write(bytes);
  // SIGTERM at once: whatever was taken is committed and answered before the
  // connection closes (restart asserts a clean exit and no sanitizer report).
  await h.restart();
  await c.waitClose(T(5000));
  const acked = parseResponses(c.buffer(), true)
    .filter((r) => r.status === 201)
    .map((r) => JSON.parse(r.body).id);
  const stored = new Set((await storedEvents(h.url, 'stop.pipe', '?limit=1000')).map((e) => e.id));
  for (const id of acked) assert.ok(stored.has(id), `acknowledged id ${id} is not stored`);
  assert.ok(
    parseResponses(c.buffer(), true).every((r) => r.status === 201),
    'an answer other than 201 before the close',
  );
});

/** Runs one query with the sqlite3 shell; returns its output lines. */
function sqlite(db, sql) {
  const r = spawnSync('sqlite3', [db, sql], { encoding: 'utf8' });
  assert.equal(r.status, 0, r.stderr);
  return r.stdout.trim().split('\n').filter(Boolean);
}

test('channels come back whole after a restart though commits no longer write their rows', async (t) => {
  const dataDir = tmpDir();
  t.after(() => fs.rmSync(dataDir, { recursive: true, force: true }));
  const conf = path.join(dataDir, 'flowcast.conf');
  fs.writeFileSync(conf, 'max-age:eph.* = 1\n');
  const h = await startServer({ dataDir, extraArgs: ['--config', conf], logLevel: 'warn' });
  t.after(() => h.stop());
  const last = {};
  for (const [name, n] of [['kept', 5], ['purged', 4], ['eph.a', 3]]) {
    for (let i = 0; i < n; i++) last[name] = (await publishOk(h.url, name, { i })).id;
  }
  assert.equal((await request(`${h.url}/api/v1/channels/purged`, { method: 'DELETE' })).status, 204);
  const deadline = Date.now() + T(10000);
  while ((await storedEvents(h.url, 'eph.a')).length > 0 && Date.now() < deadline) await sleep(200);
  assert.equal((await storedEvents(h.url, 'eph.a')).length, 0, 'eph.a aged out');
  const listing = async () => (await request(`${h.url}/api/v1/channels`)).json.channels;
  const before = await listing();
  assert.deepEqual(
    before.map((c) => [c.name, c.lastId]),
    [['eph.a', last['eph.a']], ['kept', last.kept], ['purged', last.purged]],
  );

  await h.restart();
  assert.deepEqual(await listing(), before, 'names, last ids and counts as before the restart');
  // Every channel goes on from where it was: ids past all earlier ones, and
  // per-channel ordinals (what gap notices count) after the purged and aged-out events.
  const top = Math.max(...Object.values(last).map(Number));
  for (const name of ['kept', 'purged', 'eph.a']) {
    assert.ok(Number((await publishOk(h.url, name, { after: true })).id) > top, name);
  }
  await h.stop();
  const ordinals = sqlite(
    path.join(dataDir, 'flowcast.db'),
    "SELECT c.name || ' ' || max(e.n) FROM events e JOIN channels c ON c.id = e.channel_id GROUP BY c.name ORDER BY c.name",
  );
  assert.deepEqual(ordinals, ['eph.a 4', 'kept 6', 'purged 5']);
});
