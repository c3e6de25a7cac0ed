// Presence (issue 21): who is subscribed to a channel with `presence:P = on`,
// the counts, the right that reads them, the cap, and join/leave notices in
// order with the channel's events, never in history nor in resume.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { EventSource } from 'eventsource';
import { startServer, request, assertJsonError, T, eventually, BIN } from './lib/server.mjs';
import { subscribe, openSSE } from './lib/sse.mjs';
import { connectWS } from './lib/ws.mjs';

const PASSWORD = 'correct horse battery';

function configFile(t, lines) {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'flowcast-presence-'));
  t.after(() => fs.rmSync(dir, { recursive: true, force: true }));
  const file = path.join(dir, 'flowcast.conf');
  fs.writeFileSync(file, lines.join('\n') + '\n');
  return file;
}

async function mint(url, admin, body) {
  const r = await request(`${url}/api/v1/tokens`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', authorization: `Bearer ${admin}` },
    body: JSON.stringify(body),
  });
  assert.equal(r.status, 201, r.text);
  return r.json.access_token;
}

const bearer = (tok) => ({ authorization: `Bearer ${tok}` });
const get = (url, tok) => request(url, { headers: tok ? bearer(tok) : {} });

/** Publishes `data` as text with `tok`; returns the new event's id. */
async function publishAs(url, tok, channel, data) {
  const r = await request(`${url}/api/v1/channels/${channel}/events`, {
    method: 'POST',
    headers: { 'content-type': 'text/plain', ...bearer(tok) },
    body: data,
  });
  assert.equal(r.status, 201, r.text);
  return r.json.id;
}

/** An npm EventSource with a bearer token; resolves once it is open. */
function eventSource(url, tok) {
  const es = new EventSource(url, {
    fetch: (input, init) => fetch(input, { ...init, headers: { ...init.headers, ...bearer(tok) } }),
  });
  return new Promise((resolve, reject) => {
    es.onopen = () => resolve(es);
    es.onerror = (e) => reject(new Error(`EventSource ${url}: ${e.message}`));
  });
}

/** The presence notices and events of a stream, as [kind, who-or-data]. */
const timeline = (s) =>
  s.events
    .filter((e) => e.event !== undefined || e.data !== '')
    .map((e) => (e.event?.startsWith('flowcast.') ? [e.event, JSON.parse(e.data).sub] : ['event', e.data]));

test('presence: list and stats exact over SSE and WebSocket, rights, join/leave in order, history and resume unaffected', async (t) => {
  const conf = configFile(t, ['presence:room.* = on', 'presence:room.quiet = off']);
  const h = await startServer({ open: false, env: { FLOWCAST_ADMIN_PASSWORD: PASSWORD }, extraArgs: ['--config', conf] });
  t.after(() => h.stop());
  const login = await request(`${h.url}/api/v1/login`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ username: 'admin', password: PASSWORD }),
  });
  const admin = login.json.access_token;
  const alice = await mint(h.url, admin, { sub: 'alice', subscribe: ['room.*'] });
  const bob = await mint(h.url, admin, { sub: 'bob', subscribe: ['room.*'] });
  const carol = await mint(h.url, admin, { sub: 'carol', subscribe: ['room.*'] });
  const watcher = await mint(h.url, admin, { sub: 'watcher', subscribe: ['room.*'], presence: ['room.*'] });
  const base = `${h.url}/api/v1/channels/room.a`;

  // Rights: no token 401, a token without the right 403, the right or admin 200.
  assertJsonError(await get(`${base}/presence`), 401, 'unauthorized');
  assertJsonError(await get(`${base}/presence/stats`, alice), 403, 'forbidden');
  assert.equal((await get(`${base}/presence`, admin)).status, 200);
  // `flowcast token --presence` mints the right; it covers only its patterns.
  const cliTok = execFileSync(BIN, ['token', '--sub', 'bot', '--presence', 'room.a', '--url', h.url, '--token', admin], {
    encoding: 'utf8',
  }).trim();
  assert.equal((await get(`${base}/presence/stats`, cliTok)).status, 200);
  assertJsonError(await get(`${h.url}/api/v1/channels/room.b/presence`, cliTok), 403, 'forbidden');
  // Channels without presence: 404 presence_off (no rule, and an `off` rule before the glob's... after it).
  assertJsonError(await get(`${h.url}/api/v1/channels/other/presence`, admin), 404, 'presence_off');
  // Bad client info changes nothing.
  const bad = await openSSE(`${base}/sse?info=${encodeURIComponent('{nope')}`, { headers: bearer(alice) });
  assert.equal(bad.status, 400);
  assert.equal(bad.json.error.code, 'bad_info');
  const big = await openSSE(`${base}/sse?info=${encodeURIComponent(JSON.stringify('x'.repeat(1100)))}`, {
    headers: bearer(alice),
  });
  assert.equal(big.status, 400);
  assert.deepEqual((await get(`${base}/presence/stats`, watcher)).json, { connections: 0, users: 0 });

  const w = await subscribe(`${base}/sse?joinLeave=1`, { headers: bearer(watcher) });
  t.after(() => w.close());
  const first = await publishAs(h.url, admin, 'room.a', 'e1');
  const a1 = await subscribe(`${base}/sse?info=${encodeURIComponent('{"name":"Alice"}')}`, { headers: bearer(alice) });
  t.after(() => a1.close());
  const a2 = await eventSource(`${base}/sse`, alice);
  t.after(() => a2.close());
  const b = await subscribe(`${base}/sse`, { headers: bearer(bob) });
  const c = await connectWS(h, { headers: bearer(carol), t });
  const bigWs = await c.call({ op: 'subscribe', channel: 'room.a', info: { pad: 'x'.repeat(1100) } });
  assert.equal(bigWs.type, 'error');
  assert.equal(bigWs.code, 'bad_info');
  await c.subscribe('room.a', { info: { name: 'Carol', role: 'ops' }, joinLeave: false });

  const stats = (await get(`${base}/presence/stats`, watcher)).json;
  assert.deepEqual(stats, { connections: 5, users: 4 });
  const list = (await get(`${base}/presence`, watcher)).json;
  assert.equal(list.truncated, false);
  assert.deepEqual(
    list.entries.map((e) => [e.sub, e.transport]),
    [['watcher', 'sse'], ['alice', 'sse'], ['alice', 'sse'], ['bob', 'sse'], ['carol', 'ws']],
  );
  assert.deepEqual(list.entries[1].info, { name: 'Alice' });
  assert.deepEqual(list.entries[4].info, { name: 'Carol', role: 'ops' });
  assert.equal(list.entries[4].conn, c.conn);
  for (const e of list.entries) {
    assert.match(e.conn, /^[0-9a-f]{32}$/);
    assert.equal(typeof e.node, 'string');
    assert.ok(e.node.length > 0);
    assert.ok(!Number.isNaN(Date.parse(e.since)), e.since);
  }
  assert.equal(new Set(list.entries.map((e) => e.conn)).size, 5);

  b.close();
  await eventually(async () => (await get(`${base}/presence/stats`, watcher)).json.connections === 4, T(5000), 'bob left');
  const second = await publishAs(h.url, admin, 'room.a', 'e2');
  await c.close();
  await w.waitFor((s) => timeline(s).length >= 9, T(5000), 'every join, leave and event');
  assert.deepEqual(timeline(w), [
    ['flowcast.join', 'watcher'],
    ['event', 'e1'],
    ['flowcast.join', 'alice'],
    ['flowcast.join', 'alice'],
    ['flowcast.join', 'bob'],
    ['flowcast.join', 'carol'],
    ['flowcast.leave', 'bob'],
    ['event', 'e2'],
    ['flowcast.leave', 'carol'],
  ]);
  // Notices carry no id: the stream's position is the last event's.
  for (const e of w.events.filter((x) => x.event?.startsWith('flowcast.'))) assert.equal(e.id, undefined);
  assert.equal(w.parser.lastEventId, String(second));
  // Subscribers that did not ask see no notice.
  assert.ok(!a1.raw.includes('flowcast.join'));
  assert.ok(!c.msgs.some((m) => m.event?.startsWith?.('flowcast.')));

  // History holds the events only; a resume after e1 gets e2 only.
  const hist = await get(`${base}/events`, admin);
  assert.deepEqual(hist.json.map((e) => e.data), ['e1', 'e2']);
  const r = await subscribe(`${base}/sse`, { headers: { ...bearer(alice), 'last-event-id': String(first) } });
  t.after(() => r.close());
  await r.waitFor((s) => s.events.some((e) => e.data === 'e2'), T(5000), 'e2 replayed');
  assert.deepEqual(r.events.filter((e) => e.data !== '').map((e) => e.data), ['e2']);
});

test('presence: past --presence-max-entries the listing is cut and says so; counts stay exact', async (t) => {
  const h = await startServer({ extraArgs: ['--presence', 'cap.*', '--presence-max-entries', '2'] });
  t.after(() => h.stop());
  const streams = [];
  t.after(() => streams.forEach((s) => s.close()));
  for (let i = 0; i < 3; i++) streams.push(await subscribe(`${h.url}/api/v1/channels/cap.x/sse`));
  const list = (await request(`${h.url}/api/v1/channels/cap.x/presence`)).json;
  assert.equal(list.truncated, true);
  assert.equal(list.entries.length, 2);
  assert.equal(list.entries[0].sub, 'anonymous');
  assert.deepEqual((await request(`${h.url}/api/v1/channels/cap.x/presence/stats`)).json, { connections: 3, users: 1 });
  streams.pop().close();
  await eventually(
    async () => (await request(`${h.url}/api/v1/channels/cap.x/presence`)).json.truncated === false,
    T(5000),
    'the listing whole again',
  );
});
