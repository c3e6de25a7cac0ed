// Presence across a cluster (issue 21): three nodes on one real redis-server.
// Entries live in Redis, so every node answers the same list and counts;
// joins and leaves on one node reach joinLeave subscribers on the others; a
// node killed with SIGKILL loses its entries within --presence-ttl, and the
// surviving nodes deliver a leave for each.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import { startServer, request, publishOk, eventually, T } from './lib/server.mjs';
import { subscribe } from './lib/sse.mjs';
import { connectWS } from './lib/ws.mjs';
import { startRedis } from './lib/redis.mjs';
import { teardown } from './lib/cluster.mjs';

const presence = async (h, ch, what = 'presence') =>
  (await request(`${h.url}/api/v1/channels/${ch}/${what}`)).json;
const notices = (s) =>
  s.events.filter((e) => e.event?.startsWith('flowcast.')).map((e) => [e.event, JSON.parse(e.data).conn]);

test('cluster presence: the same answer from every node, joins and leaves across nodes, a killed node\'s entries leave within the TTL', { timeout: T(90000) }, async (t) => {
  const later = teardown(t);
  const r = await startRedis();
  later(() => r.stop());
  const args = ['--redis', r.url, '--presence', 'room.*', '--presence-ttl', '3'];
  const nodes = await Promise.all([0, 1, 2].map(() => startServer({ extraArgs: args })));
  const [A, B, C] = nodes;
  later(() =>
    Promise.all(
      nodes.map((h) => (h.killed ? fs.rmSync(h.dataDir, { recursive: true, force: true }) : h.stop())),
    ),
  );
  const ch = 'room.x';
  const wA = await subscribe(`${A.url}/api/v1/channels/${ch}/sse?joinLeave=1`);
  later(() => wA.close());
  const sB = await subscribe(`${B.url}/api/v1/channels/${ch}/sse?info=${encodeURIComponent('{"on":"B"}')}`);
  later(() => sB.close());
  const cC = await connectWS(C);
  later(() => cC.close());
  await cC.subscribe(ch, { info: { on: 'C' } });
  const sC = await subscribe(`${C.url}/api/v1/channels/${ch}/sse`);
  later(() => sC.close());

  // Every node answers the same four entries and counts.
  await eventually(async () => (await presence(A, ch, 'presence/stats')).connections === 4, T(10000), '4 entries');
  const answers = await Promise.all(nodes.map((h) => presence(h, ch)));
  for (const a of answers) assert.deepEqual(a, answers[0]);
  assert.equal(answers[0].truncated, false);
  assert.deepEqual(answers[0].entries.map((e) => e.transport).sort(), ['sse', 'sse', 'sse', 'ws']);
  assert.equal(new Set(answers[0].entries.map((e) => e.node)).size, 3);
  assert.deepEqual(answers[0].entries.find((e) => e.transport === 'ws').info, { on: 'C' });
  for (const h of nodes) assert.deepEqual(await presence(h, ch, 'presence/stats'), { connections: 4, users: 1 });

  // A's joinLeave subscriber saw its own join and the three remote ones, each once.
  const conns = answers[0].entries.map((e) => e.conn);
  await wA.waitFor((s) => notices(s).length >= 4, T(10000), 'four joins on A');
  assert.deepEqual(notices(wA).map((n) => n[0]), Array(4).fill('flowcast.join'));
  assert.deepEqual(notices(wA).map((n) => n[1]).sort(), [...conns].sort());

  // A leave on B reaches A; then kill C: its two entries leave within the TTL.
  const bConn = answers[0].entries.find((e) => e.info?.on === 'B').conn;
  sB.close();
  await wA.waitFor((s) => notices(s).some((n) => n[0] === 'flowcast.leave' && n[1] === bConn), T(10000), 'B leaves');
  const onC = answers[0].entries.filter((e) => e.node === answers[0].entries.find((x) => x.info?.on === 'C').node);
  assert.equal(onC.length, 2);
  const marker = await publishOk(B.url, ch, { m: 'before-kill' });
  await wA.waitFor((s) => s.events.some((e) => e.id === marker.id), T(10000), 'the marker on A');
  C.killed = true;
  C.proc.kill('SIGKILL');
  const killedAt = Date.now();
  await wA.waitFor(
    (s) => onC.every((e) => notices(s).some((n) => n[0] === 'flowcast.leave' && n[1] === e.conn)),
    T(15000),
    "the killed node's leaves",
  );
  const took = Date.now() - killedAt;
  assert.ok(took < T(3000 + 3000), `leaves came ${took} ms after the kill (TTL 3 s, sweep every second)`);
  for (const h of [A, B]) assert.deepEqual(await presence(h, ch, 'presence/stats'), { connections: 1, users: 1 });
  // Each join and leave came once; history holds only the event.
  const all = notices(wA);
  assert.equal(new Set(all.map((n) => n.join(' '))).size, all.length);
  assert.equal(all.length, 4 + 3);
  const hist = await request(`${A.url}/api/v1/channels/${ch}/events`);
  assert.deepEqual(hist.json.map((e) => e.data), [{ m: 'before-kill' }]);
});
