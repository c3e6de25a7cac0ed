// The first read of a large channel (its stored tail coming into memory) runs
// off the loop: the loop's other clients are answered meanwhile, and the
// requests that wait for it (history, SSE, publish, WebSocket ops) go on in
// order once it is in memory.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { T, startServer, publishOk, storedEvents, request, sleep } from './lib/server.mjs';
import { subscribe } from './lib/sse.mjs';
import { connectWS } from './lib/ws.mjs';

const EVENTS = 150000; // read time grows with it: a few hundred ms on the release build
const BATCH = 10000;
let h;
let lastId;

before(async () => {
  // One loop: a read done on it would hold every other client.
  h = await startServer({ threads: 1, retention: EVENTS, maxBody: '4M' });
  const pad = 'x'.repeat(40);
  for (let b = 0; b < EVENTS / BATCH; b++) {
    const lines = [];
    for (let i = 0; i < BATCH; i++) lines.push(JSON.stringify({ data: { i: b * BATCH + i, pad } }));
    const r = await request(`${h.url}/api/v1/channels/big/events`, {
      method: 'POST',
      headers: { 'content-type': 'application/x-ndjson' },
      body: lines.join('\n'),
    });
    assert.equal(r.status, 201, r.text);
    lastId = r.json.id;
  }
  await publishOk(h.url, 'small', { s: 1 });
});

after(() => h?.stop());

/** Resolves with the time `url` answered and its body. */
async function timed(url) {
  const r = await request(url);
  return { at: performance.now(), status: r.status, body: r.text };
}

test('other clients are answered while a large channel is read from storage', async () => {
  const wanted = await storedEvents(h.url, 'big', `?after=${BigInt(lastId) - 3n}`);
  await h.restart(); // 'big' is no longer in memory
  const read = timed(`${h.url}/api/v1/channels/big/events?after=${BigInt(lastId) - 3n}`);
  await sleep(20);
  const health = await timed(`${h.url}/healthz`);
  const history = await read;
  assert.equal(health.status, 200);
  assert.equal(history.status, 200, history.body);
  assert.deepEqual(JSON.parse(history.body), wanted, 'the history read after the wait is the stored one');
  assert.ok(health.at < history.at, `/healthz (${health.at}) waited for the read (${history.at})`);
});

test('SSE streams and publishes that wait for the read go on with exact ids', async (t) => {
  await h.restart();
  const from = (BigInt(lastId) - 2n).toString();
  const one = subscribe(`${h.url}/api/v1/channels/big/sse`, { headers: { 'last-event-id': from } });
  const multi = subscribe(`${h.url}/api/v1/sse?channel=big&channel=small&lastEventId=${from}`);
  const pub = publishOk(h.url, 'big', { after: 'restart' });
  const [s1, s2, p] = await Promise.all([one, multi, pub]);
  t.after(() => s1.close());
  t.after(() => s2.close());
  assert.equal(BigInt(p.id), BigInt(lastId) + 2n, 'ids continue after the stored ones (small took one)');
  const e1 = await s1.waitEvents(3);
  assert.deepEqual(e1.map((e) => e.id), [(BigInt(from) + 1n).toString(), lastId, p.id]);
  const e2 = await s2.waitEvents(4);
  const small = (BigInt(lastId) + 1n).toString();
  assert.deepEqual(e2.map((e) => e.id), [(BigInt(from) + 1n).toString(), lastId, small, p.id]);
  lastId = p.id;
});

test('WebSocket ops behind a read wait for it and keep their order', async (t) => {
  await h.restart();
  const c = await connectWS(h, { t });
  const from = c.msgs.length;
  c.send({ op: 'subscribe', channel: 'big', ref: 's' });
  c.send({ op: 'publish', channel: 'big', data: { ws: 1 }, ref: 'p' });
  c.send({ op: 'echo', data: 'after', ref: 'e' });
  const echo = await c.waitMsg((m) => m.type === 'echo', { from, ms: T(20000), what: 'echo' });
  const sub = await c.waitMsg((m) => m.ref === 's', { from, what: 'subscribed' });
  assert.equal(sub.type, 'subscribed', JSON.stringify(sub));
  assert.equal(echo.data, 'after');
  assert.ok(c.msgs.indexOf(sub) < c.msgs.indexOf(echo), 'the echo was answered before the subscribe it followed');
  const ack = await c.waitMsg((m) => m.ref === 'p', { from, what: 'publish ack' });
  assert.equal(ack.type, 'ack', JSON.stringify(ack));
  assert.equal(BigInt(ack.id), BigInt(lastId) + 1n);
  const ev = await c.waitMsg((m) => m.type === 'event' && m.id === ack.id, { from, what: 'the published event' });
  assert.deepEqual(ev.data, { ws: 1 });
  lastId = ack.id;
});

test('a client that leaves while its channel is read costs nothing', async () => {
  await h.restart();
  const ac = new AbortController();
  const gone = fetch(`${h.url}/api/v1/channels/big/sse`, { signal: ac.signal }).catch((e) => e);
  await sleep(10);
  ac.abort();
  await gone;
  // The read ends with nobody waiting; the server stays up and answers.
  await sleep(T(1500));
  const r = await request(`${h.url}/api/v1/channels/big/events?after=${BigInt(lastId) - 1n}`);
  assert.equal(r.status, 200);
  assert.equal(r.json[0].id, lastId, r.text);
});
