// Publishing: single events (JSON, text, named), ndjson batches, ids, history,
// channel listing, retention and DELETE.
import { describe, test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import {
  startServer,
  publish,
  publishOk,
  request,
  storedEvents,
  assertJsonError,
  assertHealthy,
  T,
} from './lib/server.mjs';
import { subscribe } from './lib/sse.mjs';

const TO = { timeout: T(30000) };
let srv;
let url;

before(async () => {
  srv = await startServer({ retention: 5 });
  url = srv.url;
});
after(async () => {
  await srv?.stop();
});

const isId = (s) => typeof s === 'string' && /^[0-9]+$/.test(s);
const big = (s) => BigInt(s);

describe('single publish', () => {
  test('JSON body answers 201 with id, channel and subscribers', TO, async () => {
    const r = await publish(url, 'pub.json', { hello: 'world', n: [1, 2, 3] });
    assert.equal(r.status, 201, r.text);
    assert.match(r.headers.get('content-type') || '', /^application\/json/);
    assert.ok(isId(r.json.id), `id must be a decimal string: ${r.text}`);
    assert.equal(r.json.channel, 'pub.json');
    assert.equal(r.json.subscribers, 0);
    const h = await storedEvents(url, 'pub.json');
    assert.equal(h.length, 1);
    assert.equal(h[0].id, r.json.id);
    assert.equal(h[0].channel, 'pub.json');
    assert.deepEqual(h[0].data, { hello: 'world', n: [1, 2, 3] });
    assert.equal(h[0].event, null);
  });

  test('JSON with a charset parameter, and without any Content-Type, is JSON', TO, async () => {
    const a = await publish(url, 'pub.ct', { a: 1 }, { contentType: 'application/json; charset=utf-8' });
    assert.equal(a.status, 201, a.text);
    const b = await publish(url, 'pub.ct', '{"b":2}', { contentType: null });
    assert.equal(b.status, 201, b.text);
    const h = await storedEvents(url, 'pub.ct');
    assert.deepEqual(
      h.map((e) => e.data),
      [{ a: 1 }, { b: 2 }],
    );
    // Without Content-Type the body must be valid JSON.
    const bad = await publish(url, 'pub.ct', 'not json', { contentType: null });
    assertJsonError(bad, 400);
    assert.equal((await storedEvents(url, 'pub.ct')).length, 2);
  });

  test('JSON scalars keep their JSON value in history', TO, async () => {
    const values = [
      [42, 'a string', true, null, -1.5e3],
      [[1, { x: 'y' }], { nested: { deep: [null] } }, '', 'quote " and \\ and \n'],
    ];
    for (const [i, vs] of values.entries()) {
      for (const v of vs) await publishOk(url, `pub.scalars${i}`, JSON.stringify(v));
      const h = await storedEvents(url, `pub.scalars${i}`);
      assert.deepEqual(
        h.map((e) => e.data),
        vs,
      );
    }
  });

  test('text/plain body: any UTF-8 is stored as a string', TO, async () => {
    const text = 'héllo wörld ✓ 😀 — not JSON {';
    const r = await publish(url, 'pub.text', text, { contentType: 'text/plain; charset=utf-8' });
    assert.equal(r.status, 201, r.text);
    const h = await storedEvents(url, 'pub.text');
    assert.equal(h.length, 1);
    assert.equal(h[0].data, text);
    assert.equal(typeof h[0].data, 'string');
  });

  test('multi-line text keeps its lines in history', TO, async () => {
    const text = 'line one\nline two\n\nline four';
    await publishOk(url, 'pub.lines', text, { contentType: 'text/plain' });
    const h = await storedEvents(url, 'pub.lines');
    assert.equal(h[0].data, text);
  });

  test('?event=NAME sets the event name', TO, async () => {
    const r = await publish(url, 'pub.named', { k: 1 }, { event: 'order.created:v1-x_y' });
    assert.equal(r.status, 201, r.text);
    const h = await storedEvents(url, 'pub.named');
    assert.equal(h[0].event, 'order.created:v1-x_y');
    const bad = await publish(url, 'pub.named', { k: 2 }, { event: 'has space' });
    assertJsonError(bad, 400);
    const long = await publish(url, 'pub.named', { k: 3 }, { event: 'e'.repeat(129) });
    assertJsonError(long, 400);
    const ok128 = await publish(url, 'pub.named', { k: 4 }, { event: 'e'.repeat(128) });
    assert.equal(ok128.status, 201, ok128.text);
    const after = await storedEvents(url, 'pub.named');
    assert.deepEqual(
      after.map((e) => e.data.k),
      [1, 4],
    );
  });

  test('subscribers counts the open SSE subscribers of the channel', TO, async (t) => {
    const s1 = await subscribe(`${url}/api/v1/channels/pub.subs/sse`);
    const s2 = await subscribe(`${url}/api/v1/channels/pub.subs/sse`);
    const other = await subscribe(`${url}/api/v1/channels/pub.other/sse`);
    t.after(() => {
      s1.close();
      s2.close();
      other.close();
    });
    const r = await publishOk(url, 'pub.subs', { x: 1 });
    assert.equal(r.subscribers, 2);
  });
});

describe('ids', () => {
  test('decimal strings, strictly increasing within a channel, unique across channels', TO, async () => {
    const ids = [];
    const per = { 'ids.a': [], 'ids.b': [], 'ids.c': [] };
    for (let i = 0; i < 30; i++) {
      const ch = ['ids.a', 'ids.b', 'ids.c'][i % 3];
      const r = await publishOk(url, ch, { i });
      assert.ok(isId(r.id), `id ${r.id}`);
      assert.ok(!r.id.startsWith('0') || r.id === '0', `id with a leading zero: ${r.id}`);
      ids.push(r.id);
      per[ch].push(r.id);
    }
    assert.equal(new Set(ids).size, ids.length, 'ids must be unique across channels');
    // One server-wide counter: sequential publishes get increasing ids.
    for (let i = 1; i < ids.length; i++) assert.ok(big(ids[i]) > big(ids[i - 1]), `${ids[i - 1]} then ${ids[i]}`);
    for (const list of Object.values(per)) {
      for (let i = 1; i < list.length; i++) assert.ok(big(list[i]) > big(list[i - 1]));
    }
  });

  test('concurrent publishes get unique ids, each channel in increasing order', TO, async () => {
    const jobs = [];
    for (let i = 0; i < 60; i++) jobs.push(publishOk(url, `ids.conc${i % 2}`, { i }));
    const rs = await Promise.all(jobs);
    assert.equal(new Set(rs.map((r) => r.id)).size, 60);
    for (const ch of ['ids.conc0', 'ids.conc1']) {
      const h = await storedEvents(url, ch);
      assert.equal(h.length, 5); // retention 5
      for (let i = 1; i < h.length; i++) assert.ok(big(h[i].id) > big(h[i - 1].id));
    }
  });
});

describe('ndjson batches', () => {
  const ND = { contentType: 'application/x-ndjson' };

  test('one event per line, all committed together', TO, async () => {
    const body =
      '{"data":{"n":1}}\n' +
      '{"data":"two","event":"second"}\n' +
      '{"data":[3,3,3],"event":"third.x"}\n';
    const r = await publish(url, 'nd.ok', body, ND);
    assert.equal(r.status, 201, r.text);
    const j = r.json;
    assert.equal(j.channel, 'nd.ok');
    assert.equal(j.count, 3);
    assert.equal(j.subscribers, 0);
    assert.ok(Array.isArray(j.ids) && j.ids.length === 3, r.text);
    assert.ok(j.ids.every(isId));
    assert.equal(j.id, j.ids[2]);
    for (let i = 1; i < 3; i++) assert.ok(big(j.ids[i]) > big(j.ids[i - 1]));
    const h = await storedEvents(url, 'nd.ok');
    assert.deepEqual(
      h.map((e) => [e.id, e.event, e.data]),
      [
        [j.ids[0], null, { n: 1 }],
        [j.ids[1], 'second', 'two'],
        [j.ids[2], 'third.x', [3, 3, 3]],
      ],
    );
  });

  test('a batch reaches a live subscriber in order', TO, async (t) => {
    const s = await subscribe(`${url}/api/v1/channels/nd.live/sse`);
    t.after(() => s.close());
    const r = await publishOk(url, 'nd.live', '{"data":1}\n{"data":2,"event":"two"}\n{"data":3}', ND);
    assert.equal(r.subscribers, 1);
    const ev = await s.waitEvents(3);
    assert.deepEqual(
      ev.map((e) => [e.id, e.event, e.data]),
      [
        [r.ids[0], undefined, '1'],
        [r.ids[1], 'two', '2'],
        [r.ids[2], undefined, '3'],
      ],
    );
  });

  test('empty lines are ignored; a last line without a newline counts', TO, async () => {
    const r = await publish(url, 'nd.blank', '\n{"data":"a"}\n\n\n{"data":"b"}', ND);
    assert.equal(r.status, 201, r.text);
    assert.equal(r.json.count, 2);
    assert.deepEqual(
      (await storedEvents(url, 'nd.blank')).map((e) => e.data),
      ['a', 'b'],
    );
  });

  test('CRLF line ends are accepted', TO, async () => {
    const r = await publish(url, 'nd.crlf', '{"data":"a"}\r\n{"data":"b"}\r\n', ND);
    assert.equal(r.status, 201, r.text);
    assert.equal(r.json.count, 2);
    assert.deepEqual(
      (await storedEvents(url, 'nd.crlf')).map((e) => e.data),
      ['a', 'b'],
    );
  });

  for (const [i, [name, body]] of [
    ['a line that is not JSON', '{"data":1}\n{"data":2\n{"data":3}\n'],
    ['a line that is not an object', '{"data":1}\n[1,2]\n'],
    ['a bad event name', '{"data":1}\n{"data":2,"event":"bad name"}\n'],
    ['an event name that is not a string', '{"data":1}\n{"data":2,"event":7}\n'],
    ['invalid UTF-8 in a line', Buffer.concat([Buffer.from('{"data":1}\n{"data":"'), Buffer.from([0xff, 0xfe]), Buffer.from('"}\n')])],
  ].entries()) {
    test(`all or nothing: ${name} -> 400, nothing stored`, TO, async () => {
      const ch = `nd.bad${i}`;
      await publishOk(url, ch, { before: true });
      const r = await publish(url, ch, body, ND);
      assertJsonError(r, 400);
      const h = await storedEvents(url, ch);
      assert.deepEqual(
        h.map((e) => e.data),
        [{ before: true }],
      );
    });
  }

  test('an empty batch is 400', TO, async () => {
    assertJsonError(await publish(url, 'nd.empty', '', ND), 400);
    assertJsonError(await publish(url, 'nd.empty', '\n\n\r\n', ND), 400);
    assert.deepEqual(await storedEvents(url, 'nd.empty'), []);
  });
});

describe('history', () => {
  test('after and limit page through the retained events, oldest first', TO, async () => {
    const ids = [];
    for (let i = 0; i < 5; i++) ids.push((await publishOk(url, 'hist.page', { i })).id);
    const all = await storedEvents(url, 'hist.page');
    assert.deepEqual(
      all.map((e) => e.id),
      ids,
    );
    const after1 = await storedEvents(url, 'hist.page', `?after=${ids[1]}`);
    assert.deepEqual(
      after1.map((e) => e.id),
      ids.slice(2),
    );
    const lim = await storedEvents(url, 'hist.page', `?after=${ids[0]}&limit=2`);
    assert.deepEqual(
      lim.map((e) => e.id),
      ids.slice(1, 3),
    );
    const first = await storedEvents(url, 'hist.page', '?limit=1');
    assert.deepEqual(
      first.map((e) => e.id),
      [ids[0]],
    );
    const none = await storedEvents(url, 'hist.page', `?after=${ids[4]}`);
    assert.deepEqual(none, []);
    const zero = await storedEvents(url, 'hist.page', '?after=0');
    assert.equal(zero.length, 5);
  });

  test('each event has id, channel, event, data and an ISO-8601 time', TO, async () => {
    const t0 = Date.now();
    await publishOk(url, 'hist.shape', { a: 1 }, { event: 'named' });
    await publishOk(url, 'hist.shape', 'plain', { contentType: 'text/plain' });
    const t1 = Date.now();
    const h = await storedEvents(url, 'hist.shape');
    assert.equal(h.length, 2);
    for (const e of h) {
      assert.ok(isId(e.id));
      assert.equal(e.channel, 'hist.shape');
      assert.equal(typeof e.time, 'string');
      assert.match(e.time, /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?(Z|[+-]\d\d:\d\d)$/, e.time);
      const ms = Date.parse(e.time);
      assert.ok(ms >= t0 - 2000 && ms <= t1 + 2000, `time ${e.time} is not now`);
    }
    assert.equal(h[0].event, 'named');
    assert.deepEqual(h[0].data, { a: 1 });
    assert.equal(h[1].event, null);
    assert.equal(h[1].data, 'plain');
  });

  test('unknown channel is 404 JSON', TO, async () => {
    const r = await request(`${url}/api/v1/channels/never.used.here/events`);
    assertJsonError(r, 404);
  });

  test('retention keeps the newest N events', TO, async () => {
    const ids = [];
    for (let i = 0; i < 8; i++) ids.push((await publishOk(url, 'hist.ret', { i })).id);
    const h = await storedEvents(url, 'hist.ret');
    assert.deepEqual(
      h.map((e) => e.id),
      ids.slice(3),
    );
  });
});

describe('channel list and delete', () => {
  test('GET /api/v1/channels lists name, retained, lastId and subscribers', TO, async (t) => {
    const s = await subscribe(`${url}/api/v1/channels/list.b/sse`);
    t.after(() => s.close());
    await publishOk(url, 'list.a', 1);
    const last = await publishOk(url, 'list.a', 2);
    const r = await request(`${url}/api/v1/channels`);
    assert.equal(r.status, 200, r.text);
    assert.match(r.headers.get('content-type') || '', /^application\/json/);
    assert.ok(Array.isArray(r.json.channels), r.text);
    const a = r.json.channels.find((c) => c.name === 'list.a');
    assert.ok(a, `list.a missing: ${r.text}`);
    assert.equal(a.retained, 2);
    assert.equal(a.lastId, last.id);
    assert.equal(a.subscribers, 0);
    const b = r.json.channels.find((c) => c.name === 'list.b');
    assert.ok(b, `a subscribed channel exists: ${r.text}`);
    assert.equal(b.subscribers, 1);
    assert.equal(b.retained, 0);
  });

  test('DELETE purges history with 204; ids keep increasing', TO, async () => {
    const a = await publishOk(url, 'del.me', { x: 1 });
    await publishOk(url, 'del.me', { x: 2 });
    const r = await request(`${url}/api/v1/channels/del.me`, { method: 'DELETE' });
    assert.equal(r.status, 204, r.text);
    assert.equal(r.text, '');
    assert.deepEqual(await storedEvents(url, 'del.me'), []);
    const list = await request(`${url}/api/v1/channels`);
    const c = list.json.channels.find((x) => x.name === 'del.me');
    if (c) assert.equal(c.retained, 0);
    const b = await publishOk(url, 'del.me', { x: 3 });
    assert.ok(big(b.id) > big(a.id));
    const h = await storedEvents(url, 'del.me');
    assert.deepEqual(
      h.map((e) => e.data),
      [{ x: 3 }],
    );
    await assertHealthy(url);
  });

  test('a purge does not disturb a live subscriber', TO, async (t) => {
    const s = await subscribe(`${url}/api/v1/channels/del.live/sse?replay=0`);
    t.after(() => s.close());
    await publishOk(url, 'del.live', 1);
    const r = await request(`${url}/api/v1/channels/del.live`, { method: 'DELETE' });
    assert.equal(r.status, 204);
    await publishOk(url, 'del.live', 2);
    const ev = await s.waitEvents(2);
    assert.deepEqual(
      ev.map((e) => e.data),
      ['1', '2'],
    );
  });
});
