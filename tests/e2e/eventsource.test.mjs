// The npm `eventsource` v4 client (a WHATWG EventSource) against flowcast:
// live delivery, replay, resume, and reconnecting by itself after a restart.
import { describe, test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { EventSource } from 'eventsource';
import { startServer, publishOk, sleep, T } from './lib/server.mjs';

const TO = { timeout: T(40000) };

/** Wraps an EventSource: records messages (any type), opens and errors. */
function track(es, types = []) {
  const rec = { es, messages: [], opens: 0, errors: [], waiters: new Set() };
  const notify = () => {
    for (const w of [...rec.waiters]) w();
  };
  const onMsg = (type) => (ev) => {
    rec.messages.push({ type, data: ev.data, lastEventId: ev.lastEventId, at: Date.now() });
    notify();
  };
  es.addEventListener('message', onMsg('message'));
  for (const ty of types) es.addEventListener(ty, onMsg(ty));
  es.addEventListener('open', () => {
    rec.opens++;
    notify();
  });
  es.addEventListener('error', (e) => {
    rec.errors.push({ message: e.message, code: e.code, readyState: es.readyState });
    notify();
  });
  rec.waitFor = (pred, ms = T(5000), what = 'condition') =>
    new Promise((resolve, reject) => {
      let timer;
      const check = () => {
        if (pred(rec)) {
          clearTimeout(timer);
          rec.waiters.delete(check);
          resolve(rec);
        }
      };
      timer = setTimeout(() => {
        rec.waiters.delete(check);
        reject(
          new Error(
            `timed out after ${ms} ms waiting for ${what}; readyState=${es.readyState} opens=${rec.opens} ` +
              `messages=${JSON.stringify(rec.messages.map((m) => [m.type, m.lastEventId, m.data]))} ` +
              `errors=${JSON.stringify(rec.errors)}`,
          ),
        );
      }, ms);
      rec.waiters.add(check);
      check();
    });
  rec.waitMessages = (n, ms) => rec.waitFor((r) => r.messages.length >= n, ms, `${n} messages`);
  rec.waitOpen = (n = 1, ms) => rec.waitFor((r) => r.opens >= n, ms, `${n} opens`);
  return rec;
}

function open(t, u, init, types) {
  const es = new EventSource(u, init);
  t.after(() => es.close());
  return track(es, types);
}

describe('eventsource client', () => {
  let srv;
  let url;
  before(async () => {
    srv = await startServer({ keepalive: 1 });
    url = srv.url;
  });
  after(async () => {
    await srv?.stop();
  });

  test('live delivery to onmessage, with lastEventId', TO, async (t) => {
    const r = open(t, `${url}/api/v1/channels/es.live/sse`);
    await r.waitOpen();
    assert.equal(r.es.readyState, EventSource.OPEN);
    const p1 = await publishOk(url, 'es.live', { hello: 1 });
    const p2 = await publishOk(url, 'es.live', 'two\nlines', { contentType: 'text/plain' });
    await r.waitMessages(2);
    assert.deepEqual(
      r.messages.map((m) => [m.type, m.lastEventId, m.data]),
      [
        ['message', p1.id, '{"hello":1}'],
        ['message', p2.id, 'two\nlines'],
      ],
    );
  });

  test('named events go to their listener, not onmessage', TO, async (t) => {
    const r = open(t, `${url}/api/v1/channels/es.named/sse`, undefined, ['update']);
    await r.waitOpen();
    const p = await publishOk(url, 'es.named', { v: 2 }, { event: 'update' });
    await publishOk(url, 'es.named', { v: 3 });
    await r.waitMessages(2);
    assert.deepEqual(
      r.messages.map((m) => [m.type, m.lastEventId]).sort(),
      [
        ['message', r.messages.find((m) => m.type === 'message').lastEventId],
        ['update', p.id],
      ].sort(),
    );
  });

  test('replay of retained events on connect', TO, async (t) => {
    const ids = [];
    for (let i = 0; i < 4; i++) ids.push((await publishOk(url, 'es.replay', { i })).id);
    const r = open(t, `${url}/api/v1/channels/es.replay/sse`);
    await r.waitMessages(4);
    await sleep(T(200));
    assert.deepEqual(
      r.messages.map((m) => m.lastEventId),
      ids,
    );
  });

  test('Last-Event-ID header (set through the fetch option) resumes', TO, async (t) => {
    const ids = [];
    for (let i = 0; i < 4; i++) ids.push((await publishOk(url, 'es.resume', { i })).id);
    const r = open(t, `${url}/api/v1/channels/es.resume/sse`, {
      fetch: (input, init) => fetch(input, { ...init, headers: { ...init.headers, 'Last-Event-ID': ids[1] } }),
    });
    await r.waitMessages(2);
    await sleep(T(200));
    assert.deepEqual(
      r.messages.map((m) => m.lastEventId),
      ids.slice(2),
    );
  });

  test('?lastEventId= resumes', TO, async (t) => {
    const ids = [];
    for (let i = 0; i < 4; i++) ids.push((await publishOk(url, 'es.resumeq', { i })).id);
    const r = open(t, `${url}/api/v1/channels/es.resumeq/sse?lastEventId=${ids[2]}`);
    await r.waitMessages(1);
    await sleep(T(200));
    assert.deepEqual(
      r.messages.map((m) => m.lastEventId),
      [ids[3]],
    );
  });

  test('multi-channel stream through EventSource', TO, async (t) => {
    const r = open(t, `${url}/api/v1/sse?channel=es.m1&channel=es.m2&replay=0`);
    await r.waitOpen();
    const a = await publishOk(url, 'es.m1', 'a', { contentType: 'text/plain' });
    const b = await publishOk(url, 'es.m2', 'b', { contentType: 'text/plain' });
    await r.waitMessages(2);
    assert.deepEqual(
      r.messages.map((m) => [m.lastEventId, m.data]),
      [
        [a.id, 'a'],
        [b.id, 'b'],
      ],
    );
  });

  test('?envelope=1 names each event\'s channel and time; names, ids and resume are unchanged', TO, async (t) => {
    const q = 'channel=es.e1&channel=es.e2&replay=0&envelope=1';
    const r = open(t, `${url}/api/v1/sse?${q}`, undefined, ['tick']);
    await r.waitOpen();
    const a = await publishOk(url, 'es.e1', { n: 1 });
    const b = await publishOk(url, 'es.e2', 'plain <b>text</b>', { contentType: 'text/plain', event: 'tick' });
    await r.waitMessages(2);
    const [ma, mb] = r.messages;
    assert.deepEqual([ma.type, ma.lastEventId, mb.type, mb.lastEventId], ['message', a.id, 'tick', b.id]);
    const da = JSON.parse(ma.data), db = JSON.parse(mb.data);
    assert.deepEqual({ ...da, time: undefined }, { channel: 'es.e1', data: { n: 1 }, time: undefined });
    assert.deepEqual({ ...db, time: undefined }, { channel: 'es.e2', data: 'plain <b>text</b>', time: undefined });
    for (const d of [da, db]) assert.ok(Math.abs(Date.parse(d.time) - Date.now()) < 60000, d.time);
    // Resuming an enveloped stream replays enveloped events after the id.
    const again = open(t, `${url}/api/v1/sse?${q}`, {
      fetch: (input, init) => fetch(input, { ...init, headers: { ...init.headers, 'last-event-id': a.id } }),
    }, ['tick']);
    await again.waitMessages(1);
    assert.equal(again.messages[0].lastEventId, b.id);
    assert.equal(JSON.parse(again.messages[0].data).channel, 'es.e2');
    // A single-channel stream without it is unchanged; a bad value is refused.
    const plain = open(t, `${url}/api/v1/channels/es.e1/sse?replay=1`);
    await plain.waitMessages(1);
    assert.deepEqual(JSON.parse(plain.messages[0].data), { n: 1 });
    const bad = open(t, `${url}/api/v1/channels/es.e1/sse?envelope=yes`);
    await bad.waitFor((x) => x.errors.length >= 1, T(5000), 'an error');
    assert.equal(bad.errors[0].code, 400);
  });

  test('a malformed Last-Event-ID fails the connection (400), no retry loop', TO, async (t) => {
    const r = open(t, `${url}/api/v1/channels/es.bad/sse?lastEventId=nope`);
    await r.waitFor((x) => x.errors.length >= 1, T(5000), 'an error');
    assert.equal(r.errors[0].code, 400);
    assert.equal(r.es.readyState, EventSource.CLOSED);
  });
});

describe('reconnect', () => {
  test('reconnects by itself after the server restarts, and gets new events', { timeout: T(60000) }, async (t) => {
    const srv = await startServer({ keepalive: 1 });
    t.after(() => srv.stop());
    const url = srv.url;
    const r = open(t, `${url}/api/v1/channels/es.restart/sse`);
    await r.waitOpen();
    const before = [];
    for (let i = 0; i < 5; i++) before.push(await publishOk(url, 'es.restart', { phase: 'before', i }));
    await r.waitMessages(5);

    const opensBefore = r.opens;
    await srv.restart(); // SIGTERM (asserts exit 0), then the same port and data dir
    // The stream ended: the client reports an error and stays CONNECTING.
    await r.waitFor((x) => x.errors.length >= 1, T(10000), 'an error after the restart');
    assert.notEqual(r.es.readyState, EventSource.CLOSED, 'the client gave up instead of reconnecting');
    // It reconnects by itself after the server's retry: 3000.
    await r.waitOpen(opensBefore + 1, T(15000));

    const after = [];
    for (let i = 0; i < 5; i++) after.push(await publishOk(url, 'es.restart', { phase: 'after', i }));
    await r.waitFor(
      (x) => x.messages.filter((m) => JSON.parse(m.data).phase === 'after').length >= 5,
      T(8000),
      'the 5 events published after the restart',
    );
    await sleep(T(300));
    const got = r.messages.map((m) => JSON.parse(m.data));
    assert.deepEqual(
      got.filter((d) => d.phase === 'after').map((d) => d.i),
      [0, 1, 2, 3, 4],
      'events after the restart: each exactly once, in order',
    );
    assert.deepEqual(
      got.filter((d) => d.phase === 'before').map((d) => d.i),
      [0, 1, 2, 3, 4],
      'events before the restart: each exactly once (no duplicates on reconnect)',
    );
    const afterIds = r.messages.slice(5).map((m) => m.lastEventId);
    assert.deepEqual(
      afterIds,
      after.map((p) => p.id),
    );
  });

  test('reconnects when the stream is dropped and resumes without loss or duplicates', { timeout: T(60000) }, async (t) => {
    // The client sends Last-Event-ID on reconnect; events published while it
    // was away (here: right after the restart, before its retry delay ends)
    // must arrive exactly once, through resume.
    const srv = await startServer({ keepalive: 1 });
    t.after(() => srv.stop());
    const url = srv.url;
    const r = open(t, `${url}/api/v1/channels/es.gapless/sse`);
    await r.waitOpen();
    const p0 = await publishOk(url, 'es.gapless', { n: 0 });
    await r.waitMessages(1);
    assert.equal(r.messages[0].lastEventId, p0.id);
    await srv.restart();
    // Publish right away, before the client's retry delay is over: it must get
    // these through resume, not live.
    const missed = [];
    for (let n = 1; n <= 3; n++) missed.push(await publishOk(url, 'es.gapless', { n }));
    await r.waitFor((x) => x.messages.length >= 4, T(15000), 'the events published while reconnecting');
    await sleep(T(300));
    assert.deepEqual(
      r.messages.map((m) => JSON.parse(m.data).n),
      [0, 1, 2, 3],
    );
  });
});
