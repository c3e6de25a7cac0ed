// WebSocket transport (GET /api/v1/ws): the handshake and its refusals, every
// client op (subscribe with replay/resume/gap, unsubscribe, publish, send,
// echo, ping), fan-out mixed with SSE and HTTP, errors that keep the
// connection, RFC 6455 framing (fragments, limits, close codes) with a raw
// client, server pings, auth and token expiry, a slow consumer, and Chromium's
// own WebSocket chatting with a node client.
import { describe, test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import fs from 'node:fs';
import { launchChromium } from './lib/browser.mjs';
import {
  startServer,
  publishOk,
  publish,
  storedEvents,
  request,
  assertJsonError,
  rawJsonError,
  assertHealthy,
  metrics,
  rawConnect,
  sleep,
  T,
} from './lib/server.mjs';
import { subscribe } from './lib/sse.mjs';
import { buildFrame, connectWS, parseFrames, rawUpgrade, rawWS, upgradeRequest, OP, wsURL } from './lib/ws.mjs';

const TO = { timeout: T(30000) };
const PASSWORD = 'ws tests password';

let srv; // --open, default limits
before(async () => {
  srv = await startServer();
});
after(async () => {
  await srv?.stop();
});

/** A ws client on `h` (default: the shared server), closed after the test. */
const client = (t, opts = {}, h = srv) => connectWS(h, { t, ...opts });

/** A raw client past the handshake and welcome, destroyed after the test. */
const raw = (t, h = srv, opts = {}) => rawWS(h.port, { t, ...opts });

/** Asserts the raw client gets a close frame with `code`, then the TCP connection ends. */
async function expectClose(r, code, what) {
  const cf = await r.waitCloseFrame(T(3000));
  assert.ok(cf, `${what}: no close frame from the server${r.describe()}`);
  assert.equal(cf.code, code, `${what}: close code ${cf.code} (${cf.reason}), expected ${code}${r.describe()}`);
  await r.sendClose(code); // the client's half of the close handshake (may hit a closed socket)
  assert.ok(await r.waitTcpClose(T(3000)), `${what}: the server did not close the TCP connection${r.describe()}`);
}

/**
 * Sends `frames` on a fresh raw connection and describes how the server ended it:
 * null when it closed with `code` and ended the TCP connection, else what happened.
 */
async function closeProblem(t, h, frames, code) {
  const r = await raw(t, h);
  try {
    for (const f of frames) await r.sendFrame(f);
    const cf = await r.waitCloseFrame(T(3000));
    if (cf) await r.sendClose(cf.code ?? 1000);
    const tcp = await r.waitTcpClose(T(3000));
    if (!cf) return `no close frame (TCP ${tcp ? 'closed' : 'still open'})${r.describe()}`;
    if (cf.code !== code) return `close ${cf.code} "${cf.reason}" instead of ${code}${r.describe()}`;
    if (!tcp) return `close ${code} but the TCP connection stays open`;
    const answered = r.json().filter((m) => m.type !== 'welcome');
    if (answered.length) return `the bad message was processed: ${JSON.stringify(answered)}`;
    return null;
  } finally {
    r.destroy();
  }
}

/** Runs closeProblem for every case and asserts none had a problem. */
async function expectCloses(t, h, cases, code) {
  const problems = [];
  for (const [name, frames] of Object.entries(cases)) {
    const p = await closeProblem(t, h, frames, code);
    if (p) problems.push(`${name}: ${p}`);
  }
  assert.ok(problems.length === 0, `expected close ${code}:\n${problems.join('\n')}`);
}

/** Asserts `m` is a WebSocket error message (with `ref`/`code` when given). */
function assertWsError(m, { ref, code } = {}, what = '') {
  assert.equal(m.type, 'error', `${what}: not an error: ${JSON.stringify(m)}`);
  assert.equal(typeof m.code, 'string', `${what}: error.code: ${JSON.stringify(m)}`);
  assert.ok(m.code.length > 0, `${what}: empty code`);
  assert.equal(typeof m.message, 'string', `${what}: error.message: ${JSON.stringify(m)}`);
  assert.ok(m.message.length > 0, `${what}: empty message`);
  if (ref !== undefined) assert.equal(m.ref, ref, `${what}: ref not echoed: ${JSON.stringify(m)}`);
  if (code !== undefined) assert.equal(m.code, code, `${what}: ${JSON.stringify(m)}`);
}

/** Asserts an event message's fields. */
function assertEvent(m, { channel, id, event = null, data, from }) {
  assert.equal(m.type, 'event', JSON.stringify(m));
  assert.equal(m.channel, channel, JSON.stringify(m));
  if (id !== undefined) assert.equal(m.id, id, JSON.stringify(m));
  assert.equal(typeof m.id, 'string', JSON.stringify(m));
  assert.ok('event' in m, `an event message always has "event" (null when unnamed): ${JSON.stringify(m)}`);
  assert.equal(m.event, event, JSON.stringify(m));
  assert.deepEqual(m.data, data, JSON.stringify(m));
  if (from === undefined) assert.ok(!('from' in m) || m.from === null, `unexpected from: ${JSON.stringify(m)}`);
  else assert.equal(m.from, from, JSON.stringify(m));
}

// ---------------------------------------------------------------------------
describe('handshake', () => {
  test('a valid upgrade: 101 with the right Accept, then a welcome text frame', TO, async (t) => {
    const { raw: r } = await rawUpgrade(srv.port); // asserts 101, Upgrade, Connection, Accept
    t.after(() => r.destroy());
    assert.ok(await r.waitFor((x) => x.frames().length >= 1, T(3000)), `no frame after the 101${r.describe()}`);
    const [f] = r.frames();
    assert.equal(f.opcode, OP.TEXT, 'the welcome is a text frame');
    assert.equal(f.masked, false, 'server frames are never masked');
    assert.equal(f.fin, true);
    const w = JSON.parse(f.payload.toString('utf8'));
    assert.equal(w.type, 'welcome', JSON.stringify(w));
    assert.equal(typeof w.conn, 'string');
    assert.ok(w.conn.length > 0);
  });

  test('an upgrade pipelined behind publishes, with a frame in the same write, works', TO, async (t) => {
    // The upgrade waits for the publishes' answers; the frame that follows it in
    // the same write must reach the WebSocket session, not the HTTP parser.
    const key = crypto.randomBytes(16).toString('base64');
    const post = (body) =>
      'POST /api/v1/channels/ws.pipe/events HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n' +
      `Content-Length: ${Buffer.byteLength(body)}\r\n\r\n${body}`;
    const sub = buildFrame({ payload: Buffer.from(JSON.stringify({ op: 'subscribe', channel: 'ws.pipe', replay: 10, ref: 'p1' })) });
    const conn = await rawConnect(srv.port);
    t.after(() => conn.destroy());
    await conn.write(Buffer.concat([Buffer.from(post('{"n":1}') + post('{"n":2}') + upgradeRequest({ key })), sub]));
    const text = () => conn.buffer().toString('latin1');
    assert.ok(await conn.waitFor(() => /"n":2/.test(text().slice(text().indexOf('101 Switching'))), T(5000)), text());
    const heads = [...text().matchAll(/HTTP\/1\.1 (\d+)/g)].map((m) => Number(m[1]));
    assert.deepEqual(heads, [201, 201, 101]);
    assert.match(text(), /HTTP\/1\.1 101 Switching Protocols\r\n/);
    const end = conn.buffer().indexOf('\r\n\r\n', conn.buffer().indexOf('101 Switching'));
    const msgs = parseFrames(conn.buffer().subarray(end + 4)).frames.map((f) => JSON.parse(f.payload.toString('utf8')));
    assert.equal(msgs[0].type, 'welcome');
    assert.ok(msgs.some((m) => m.ref === 'p1'), JSON.stringify(msgs));
    assert.deepEqual(
      msgs.filter((m) => m.type === 'event').map((m) => m.data),
      [{ n: 1 }, { n: 2 }],
    );
  });

  test('a bad Sec-WebSocket-Key is a 400 JSON error, no upgrade', TO, async () => {
    const keys = {
      tooShort: 'abc',
      fifteenBytes: crypto.randomBytes(15).toString('base64'),
      seventeenBytes: crypto.randomBytes(17).toString('base64'),
      notBase64: '!!!!!!!!!!!!!!!!!!!!!!==',
      empty: '',
      missing: null,
    };
    for (const [name, key] of Object.entries(keys)) {
      const headers = key === null ? { 'Sec-WebSocket-Key': null } : {};
      const { conn, response } = await rawUpgrade(srv.port, { key: key ?? 'x', headers, expect101: false });
      conn.destroy();
      assert.notEqual(response.status, 101, `${name}: upgraded with key ${JSON.stringify(key)}`);
      rawJsonError(response, 400);
    }
  });

  test('without Upgrade: websocket it is a 400 JSON error', TO, async () => {
    for (const [name, headers] of Object.entries({
      noUpgrade: { Upgrade: null },
      otherProtocol: { Upgrade: 'h2c' },
      noConnectionUpgrade: { Connection: 'keep-alive', Upgrade: null },
    })) {
      const { conn, response } = await rawUpgrade(srv.port, { headers, expect101: false });
      conn.destroy();
      assert.notEqual(response.status, 101, `${name}: upgraded`);
      rawJsonError(response, 400);
    }
    // A plain GET (fetch) too.
    assertJsonError(await request(`${srv.url}/api/v1/ws`), 400);
  });

  test('a version other than 13 is 426 with Sec-WebSocket-Version: 13', TO, async () => {
    for (const version of ['8', '12', '14']) {
      const { conn, response } = await rawUpgrade(srv.port, { version, expect101: false });
      conn.destroy();
      assert.equal(response.status, 426, `version ${version}: ${response.rawHeaders}`);
      assert.equal(response.headers['sec-websocket-version'], '13', `version ${version}: ${response.rawHeaders}`);
      rawJsonError(response, 426);
    }
  });
});

// ---------------------------------------------------------------------------
describe('ops', () => {
  test('welcome is the first message, and every connection has its own id', TO, async (t) => {
    const cs = await Promise.all([client(t), client(t), client(t)]);
    for (const c of cs) {
      assert.equal(c.msgs[0].type, 'welcome', JSON.stringify(c.msgs[0]));
      assert.equal(typeof c.conn, 'string');
      assert.ok(c.conn.length > 0);
    }
    assert.equal(new Set(cs.map((c) => c.conn)).size, 3, `ids: ${cs.map((c) => c.conn)}`);
  });

  test('ping answers pong; echo answers its data unchanged', TO, async (t) => {
    const c = await client(t);
    const pong = await c.roundTrip();
    assert.deepEqual({ ...pong }, { type: 'pong' });
    const values = [
      { a: [1, 2, { b: null }], s: 'x' },
      'a string with "quotes" and \\ and \n newline',
      'héllo wörld ✓ 🚀',
      42,
      -1.5,
      0,
      true,
      false,
      null,
      [],
      {},
      '',
    ];
    for (const data of values) {
      const from = c.msgs.length;
      c.send({ op: 'echo', data });
      const m = await c.waitMsg((x) => x.type === 'echo', { from, what: `echo of ${JSON.stringify(data)}` });
      assert.ok('data' in m, `echo without data: ${JSON.stringify(m)}`);
      assert.deepEqual(m.data, data);
    }
  });

  test('subscribe answers subscribed (with the ref) and then only live events', TO, async (t) => {
    const ch = 'ws.live';
    await publishOk(srv.url, ch, { old: 1 });
    await publishOk(srv.url, ch, { old: 2 });
    const c = await client(t);
    const ack = await c.call({ op: 'subscribe', channel: ch, ref: 'sub-1' });
    assert.deepEqual({ type: ack.type, channel: ack.channel, ref: ack.ref }, { type: 'subscribed', channel: ch, ref: 'sub-1' });
    await c.roundTrip();
    assert.deepEqual(c.events(ch), [], 'history was replayed without lastEventId or replay');

    const a = await publishOk(srv.url, ch, { n: 1 });
    const b = await publishOk(srv.url, ch, { k: 'v' }, { event: 'thing.done' });
    const d = await publishOk(srv.url, ch, 'plain text, not JSON', { contentType: 'text/plain' });
    const e = await publishOk(srv.url, ch, '"a JSON string"');
    await c.waitUntil(() => c.events(ch).length >= 4);
    const evs = c.events(ch);
    assert.equal(evs.length, 4, c.describe());
    assertEvent(evs[0], { channel: ch, id: a.id, data: { n: 1 } });
    assertEvent(evs[1], { channel: ch, id: b.id, event: 'thing.done', data: { k: 'v' } });
    assertEvent(evs[2], { channel: ch, id: d.id, data: 'plain text, not JSON' });
    assertEvent(evs[3], { channel: ch, id: e.id, data: 'a JSON string' });
    // subscribed came before every event of the channel
    assert.ok(c.msgs.indexOf(ack) < c.msgs.indexOf(evs[0]));
  });

  test('replay: N replays the last N retained events, oldest first, then live', TO, async (t) => {
    const ch = 'ws.replay';
    const ids = [];
    for (let i = 0; i < 5; i++) ids.push((await publishOk(srv.url, ch, { i })).id);
    const c = await client(t);
    const ack = await c.subscribe(ch, { replay: 2 });
    await c.waitUntil(() => c.events(ch).length >= 2);
    await c.roundTrip();
    assert.deepEqual(
      c.events(ch).map((m) => m.id),
      ids.slice(3),
    );
    assert.deepEqual(
      c.events(ch).map((m) => m.data.i),
      [3, 4],
    );
    assert.ok(c.msgs.indexOf(ack) < c.msgs.indexOf(c.events(ch)[0]), 'an event came before subscribed');
    const live = await publishOk(srv.url, ch, { i: 5 });
    await c.waitMsg((m) => m.type === 'event' && m.id === live.id, { what: 'the live event' });
    assert.equal(c.events(ch).length, 3);

    const z = await client(t);
    await z.subscribe(ch, { replay: 0 });
    await z.roundTrip();
    assert.equal(z.events(ch).length, 0, 'replay: 0 replayed something');
  });

  test('lastEventId resumes right after that id, in order, without duplicates or a gap', TO, async (t) => {
    const ch = 'ws.resume';
    const ids = [];
    for (let i = 0; i < 5; i++) ids.push((await publishOk(srv.url, ch, { i })).id);
    const c = await client(t);
    const ack = await c.subscribe(ch, { lastEventId: ids[1] });
    await c.waitUntil(() => c.events(ch).length >= 3);
    const live = await publishOk(srv.url, ch, { i: 5 });
    await c.waitMsg((m) => m.type === 'event' && m.id === live.id, { what: 'the live event after the resume' });
    await c.roundTrip();
    assert.deepEqual(
      c.events(ch).map((m) => m.id),
      [...ids.slice(2), live.id],
    );
    assert.equal(c.ofType('gap').length, 0, 'a gap without evictions');
    assert.ok(c.msgs.indexOf(ack) < c.msgs.indexOf(c.events(ch)[0]));

    // Resuming at the last id gives nothing old.
    const d = await client(t);
    await d.subscribe(ch, { lastEventId: live.id });
    await d.roundTrip();
    assert.deepEqual(d.events(ch), []);
  });

  test('unsubscribe: unsubscribed, then no more events of that channel; others go on', TO, async (t) => {
    const c = await client(t);
    await c.subscribe('ws.unsub.a');
    await c.subscribe('ws.unsub.b');
    await publishOk(srv.url, 'ws.unsub.a', { before: true });
    await c.waitUntil(() => c.events('ws.unsub.a').length === 1);
    const r = await c.call({ op: 'unsubscribe', channel: 'ws.unsub.a' });
    assert.equal(r.type, 'unsubscribed', JSON.stringify(r));
    assert.equal(r.channel, 'ws.unsub.a');
    await publishOk(srv.url, 'ws.unsub.a', { after: true });
    const b = await publishOk(srv.url, 'ws.unsub.b', { still: true });
    await c.waitMsg((m) => m.type === 'event' && m.id === b.id, { what: 'the event of the channel still subscribed' });
    await sleep(T(200));
    await c.roundTrip();
    assert.equal(c.events('ws.unsub.a').length, 1, `events after unsubscribe: ${c.describe()}`);
  });

  test('publish: ack with ref and id; the event carries from, for WS, SSE and history', TO, async (t) => {
    const ch = 'ws.pub';
    const pubr = await client(t);
    const sub = await client(t);
    await sub.subscribe(ch);
    const sse = await subscribe(`${srv.url}/api/v1/channels/${ch}/sse?replay=0`);
    t.after(() => sse.close());

    const ack = await pubr.call({ op: 'publish', channel: ch, event: 'said', data: { text: 'hi', n: [1, 2] }, ref: 'r1' });
    assert.equal(ack.type, 'ack', JSON.stringify(ack));
    assert.equal(ack.ref, 'r1');
    assert.match(ack.id, /^\S+$/);
    // Stored before the ack: history has it already.
    let hist = await storedEvents(srv.url, ch);
    assert.equal(hist.length, 1, JSON.stringify(hist));
    assert.equal(hist[0].id, ack.id);
    assert.equal(hist[0].event, 'said');
    assert.deepEqual(hist[0].data, { text: 'hi', n: [1, 2] });
    assert.equal(hist[0].from, pubr.conn, `history lacks from: ${JSON.stringify(hist[0])}`);

    const ack2 = await pubr.publish(ch, 'just text');
    const ack3 = await pubr.publish(ch, 17);

    const evs = await Promise.all([ack, ack2, ack3].map((a) => sub.waitMsg((m) => m.type === 'event' && m.id === a.id)));
    assertEvent(evs[0], { channel: ch, id: ack.id, event: 'said', data: { text: 'hi', n: [1, 2] }, from: pubr.conn });
    assertEvent(evs[1], { channel: ch, id: ack2.id, data: 'just text', from: pubr.conn });
    assertEvent(evs[2], { channel: ch, id: ack3.id, data: 17, from: pubr.conn });

    const sevs = await sse.waitEvents(3);
    assert.deepEqual(
      sevs.map((e) => e.id),
      [ack.id, ack2.id, ack3.id],
    );
    assert.equal(sevs[0].event, 'said');
    assert.deepEqual(JSON.parse(sevs[0].data), { text: 'hi', n: [1, 2] });
    assert.equal(sevs[1].data, 'just text', 'a string is stored as text, not JSON-encoded');
    assert.equal(sevs[2].data, '17');

    hist = await storedEvents(srv.url, ch);
    assert.deepEqual(
      hist.map((e) => [e.id, e.data, e.from]),
      [
        [ack.id, { text: 'hi', n: [1, 2] }, pubr.conn],
        [ack2.id, 'just text', pubr.conn],
        [ack3.id, 17, pubr.conn],
      ],
    );
  });

  test('mixed fan-out: HTTP and WS publishes reach both SSE and WS subscribers, in one order', TO, async (t) => {
    const ch = 'ws.mix';
    const wsSub = await client(t);
    await wsSub.subscribe(ch);
    const sse = await subscribe(`${srv.url}/api/v1/channels/${ch}/sse?replay=0`);
    t.after(() => sse.close());
    const pubr = await client(t);
    const ids = [];
    for (let i = 0; i < 6; i++) {
      if (i % 2 === 0) ids.push((await publishOk(srv.url, ch, { i, via: 'http' })).id);
      else ids.push((await pubr.publish(ch, { i, via: 'ws' })).id);
    }
    await sse.waitEvents(6);
    await wsSub.waitUntil(() => wsSub.events(ch).length >= 6);
    assert.deepEqual(
      sse.events.map((e) => e.id),
      ids,
    );
    assert.deepEqual(
      wsSub.events(ch).map((e) => e.id),
      ids,
    );
    assert.ok(ids.every((id, i) => i === 0 || BigInt(id) > BigInt(ids[i - 1])), `ids not increasing: ${ids}`);
    for (const [i, m] of wsSub.events(ch).entries()) {
      assert.deepEqual(m.data, { i, via: i % 2 ? 'ws' : 'http' });
      if (i % 2) assert.equal(m.from, pubr.conn);
      else assert.ok(!('from' in m) || m.from === null, `an HTTP publish has a from: ${JSON.stringify(m)}`);
    }
    assert.deepEqual(
      sse.events.map((e) => JSON.parse(e.data).via),
      ['http', 'ws', 'http', 'ws', 'http', 'ws'],
    );
  });

  test('send: a direct message reaches only its target; the sender gets an ack', TO, async (t) => {
    const [a, b, c] = await Promise.all([client(t), client(t), client(t)]);
    const ack = await a.call({ op: 'send', to: b.conn, data: { q: 'are you there?' }, ref: 'd1' });
    assert.equal(ack.type, 'ack', JSON.stringify(ack));
    assert.equal(ack.ref, 'd1');
    const got = await b.waitMsg((m) => m.type === 'direct', { what: 'the direct message' });
    assert.equal(got.from, a.conn);
    assert.deepEqual(got.data, { q: 'are you there?' });

    // The answer goes back by `from`.
    await b.call({ op: 'send', to: got.from, data: 'yes' });
    const back = await a.waitMsg((m) => m.type === 'direct', { what: 'the answer' });
    assert.equal(back.from, b.conn);
    assert.equal(back.data, 'yes');

    // A send without ref still gets an ack.
    const from = a.msgs.length;
    a.send({ op: 'send', to: b.conn, data: [1, 2, 3] });
    await a.waitMsg((m) => m.type === 'ack', { from, what: 'the ack of a send without ref' });
    await b.waitUntil(() => b.ofType('direct').length >= 2);

    await sleep(T(100));
    await Promise.all([a.roundTrip(), b.roundTrip(), c.roundTrip()]);
    assert.equal(c.ofType('direct').length, 0, `a third client got a direct message: ${c.describe()}`);
    assert.equal(a.ofType('direct').length, 1, a.describe());
    assert.equal(b.ofType('direct').length, 2, b.describe());
    assert.deepEqual(b.ofType('direct')[1].data, [1, 2, 3]);
  });

  test('send to an unknown or closed connection is a no_such_connection error', TO, async (t) => {
    const a = await client(t);
    const e = await a.call({ op: 'send', to: 'no-such-conn-0000', data: 1, ref: 'x1' });
    assertWsError(e, { ref: 'x1', code: 'no_such_connection' }, 'unknown id');
    const gone = await client(t);
    const goneId = gone.conn;
    await gone.close();
    const e2 = await a.call({ op: 'send', to: goneId, data: 1, ref: 'x2' });
    assertWsError(e2, { ref: 'x2', code: 'no_such_connection' }, 'closed connection');
    await a.roundTrip();
    assert.ok(a.isOpen);
  });

  test('errors never close the connection', TO, async (t) => {
    const c = await client(t);
    const cases = [
      ['not JSON', 'this is not json', undefined],
      // An empty text frame read UTF-8 checks past a NULL pointer (UBSan, fuzz_ws).
      ['an empty message', '', undefined],
      ['truncated JSON', '{"op":"ping"', undefined],
      ['a JSON array', '[1,2]', undefined],
      ['a JSON number', '42', undefined],
      ['no op', { ref: 'e1' }, 'e1'],
      ['op not a string', { op: 5, ref: 'e2' }, 'e2'],
      ['unknown op', { op: 'dance', ref: 'e3' }, 'e3'],
      ['subscribe: bad channel', { op: 'subscribe', channel: 'bad name!', ref: 'e4' }, 'e4', 'bad_channel'],
      ['subscribe: channel too long', { op: 'subscribe', channel: 'x'.repeat(129), ref: 'e5' }, 'e5', 'bad_channel'],
      ['subscribe: no channel', { op: 'subscribe', ref: 'e6' }, 'e6'],
      ['subscribe: channel not a string', { op: 'subscribe', channel: 7, ref: 'e7' }, 'e7'],
      ['subscribe: malformed lastEventId', { op: 'subscribe', channel: 'ws.err', lastEventId: 'zz-not-an-id', ref: 'e8' }, 'e8'],
      ['publish: no channel', { op: 'publish', data: 1, ref: 'e9' }, 'e9'],
      ['publish: bad channel', { op: 'publish', channel: 'a/b', data: 1, ref: 'e10' }, 'e10', 'bad_channel'],
      ['unsubscribe: no channel', { op: 'unsubscribe', ref: 'e11' }, 'e11'],
      ['send: no target', { op: 'send', data: 1, ref: 'e12' }, 'e12'],
    ];
    for (const [name, msg, ref, code] of cases) {
      const from = c.msgs.length;
      c.send(msg);
      const m = await c.waitMsg((x) => x.type === 'error' || x.type === 'subscribed' || x.type === 'ack', {
        from,
        what: `the error for ${name}`,
      });
      assertWsError(m, { ref, code }, name);
      assert.ok(c.isOpen, `${name} closed the connection`);
    }
    assert.equal(c.bad.length, 0, `non-JSON text from the server: ${c.bad}`);
    // Still fully usable, and nothing was published by the bad publishes.
    await c.roundTrip();
    await c.subscribe('ws.err');
    const p = await c.publish('ws.err', { ok: true });
    await c.waitMsg((m) => m.type === 'event' && m.id === p.id);
    assert.equal((await storedEvents(srv.url, 'ws.err')).length, 1);
    assert.equal(c.closeInfo, null);
  });
});

// ---------------------------------------------------------------------------
describe('gap (retention 3)', () => {
  let small;
  before(async () => {
    small = await startServer({ retention: 3 });
  });
  after(async () => {
    await small?.stop();
  });

  test('resuming past evicted events: a gap message first, then the retained ones, then live', TO, async (t) => {
    const ch = 'ws.gap';
    const ids = [];
    for (let i = 0; i < 6; i++) ids.push((await publishOk(small.url, ch, { i })).id);
    // retained: ids[3..5]; resuming after ids[0] lost ids[1], ids[2]
    const c = await client(t, {}, small);
    const ack = await c.subscribe(ch, { lastEventId: ids[0] });
    await c.waitUntil(() => c.events(ch).length >= 3);
    const live = await publishOk(small.url, ch, { i: 6 });
    await c.waitMsg((m) => m.type === 'event' && m.id === live.id);
    const rest = c.msgs.slice(c.msgs.indexOf(ack) + 1).filter((m) => m.type !== 'pong');
    const gap = rest[0];
    assert.equal(gap.type, 'gap', `the first message after subscribed is not a gap: ${c.describe()}`);
    assert.deepEqual(
      { channel: gap.channel, lost: gap.lost, exact: gap.exact, next: gap.next },
      { channel: ch, lost: 2, exact: true, next: ids[3] },
    );
    assert.deepEqual(
      rest.slice(1).map((m) => [m.type, m.id]),
      [...ids.slice(3), live.id].map((id) => ['event', id]),
    );
    assert.equal(c.ofType('gap').length, 1);

    // At the eviction boundary: no gap.
    const d = await client(t, {}, small);
    await d.subscribe(ch, { lastEventId: ids[3] });
    await d.waitUntil(() => d.events(ch).length >= 3);
    await d.roundTrip();
    assert.equal(d.ofType('gap').length, 0, d.describe());
    assert.deepEqual(
      d.events(ch).map((m) => m.id),
      [ids[4], ids[5], live.id],
    );
  });
});

// ---------------------------------------------------------------------------
describe('frames', () => {
  test('a fragmented message (ws fin:false pieces) is reassembled', TO, async (t) => {
    const c = await client(t);
    const text = JSON.stringify({ op: 'echo', data: { pieces: 'reassembled ✓', n: 3 }, ref: 'frag' });
    const cut = [0, 5, 17, 30, text.length];
    for (let i = 0; i + 1 < cut.length; i++) c.ws.send(text.slice(cut[i], cut[i + 1]), { fin: i + 2 === cut.length });
    const m = await c.waitMsg((x) => x.type === 'echo', { what: 'the echo of the fragmented message' });
    assert.deepEqual(m.data, { pieces: 'reassembled ✓', n: 3 });
    // and a fragmented publish
    const parts = [JSON.stringify({ op: 'publish', channel: 'ws.frag', data: 'x'.repeat(3000), ref: 'fp' })];
    const s = parts[0];
    c.ws.send(s.slice(0, 1000), { fin: false });
    c.ws.send(s.slice(1000, 2000), { fin: false });
    c.ws.send(s.slice(2000), { fin: true });
    const ack = await c.waitMsg((x) => x.ref === 'fp');
    assert.equal(ack.type, 'ack', JSON.stringify(ack));
    const [h] = await storedEvents(srv.url, 'ws.frag');
    assert.equal(h.data, 'x'.repeat(3000));
  });

  test('raw: fragments with a ping in between; a UTF-8 character split over fragments', TO, async (t) => {
    const r = await raw(t);
    const msg = Buffer.from(JSON.stringify({ op: 'echo', data: 'é€😀' }), 'utf8');
    // split inside the multi-byte characters
    const i1 = msg.indexOf(Buffer.from('é')) + 1;
    const i2 = msg.indexOf(Buffer.from('😀')) + 2;
    await r.sendFrame({ fin: false, opcode: OP.TEXT, payload: msg.subarray(0, i1) });
    await r.sendFrame({ opcode: OP.PING, payload: 'mid-message' });
    await r.sendFrame({ fin: false, opcode: OP.CONT, payload: msg.subarray(i1, i2) });
    await r.sendFrame({ fin: true, opcode: OP.CONT, payload: msg.subarray(i2) });
    const echo = await r.waitJson((m) => m.type === 'echo');
    assert.ok(echo, `no echo${r.describe()}`);
    assert.equal(echo.data, 'é€😀');
    const pong = r.frames().find((f) => f.opcode === OP.PONG);
    assert.ok(pong, `no pong for the ping${r.describe()}`);
    assert.equal(pong.payload.toString(), 'mid-message', 'a pong carries the ping payload');
    assert.equal(r.closeFrame(), null, r.describe());
  });

  // Between messages the server frees the session's wslay context (8.8 KB) and makes
  // it again when bytes come: a frame split anywhere must still be read whole.
  test('raw: frames split at any byte, across pauses, and two in one write', TO, async (t) => {
    const r = await raw(t);
    const trickle = async (bytes, step) => {
      for (let i = 0; i < bytes.length; i += step) {
        await r.write(bytes.subarray(i, i + step));
        await sleep(2);
      }
    };
    const text = (data) => Buffer.from(JSON.stringify({ op: 'echo', data }));
    // One byte at a time: the header (2 + 4 mask bytes) and the payload in pieces.
    await trickle(buildFrame({ opcode: OP.TEXT, payload: text('bytewise') }), 1);
    // A 16-bit length (126) and a 64-bit length (127) header, split mid-header.
    await trickle(buildFrame({ opcode: OP.TEXT, payload: text('m'.repeat(300)) }), 3);
    await trickle(buildFrame({ opcode: OP.TEXT, payload: text('L'.repeat(70000)) }), 7001);
    // A fragmented message with a ping between fragments, each fragment split too.
    const msg = text('fragmented');
    await trickle(buildFrame({ fin: false, opcode: OP.TEXT, payload: msg.subarray(0, 10) }), 4);
    await trickle(buildFrame({ opcode: OP.PING, payload: 'between' }), 2);
    await trickle(buildFrame({ fin: true, opcode: OP.CONT, payload: msg.subarray(10) }), 5);
    // Two whole messages in one write.
    await r.write(
      Buffer.concat([
        buildFrame({ opcode: OP.TEXT, payload: text('first') }),
        buildFrame({ opcode: OP.TEXT, payload: text('second') }),
      ]),
    );
    await r.waitFor(() => r.json().filter((m) => m.type === 'echo').length >= 6, T(10000));
    const echoes = r.json().filter((m) => m.type === 'echo');
    assert.deepEqual(
      echoes.map((m) => [m.data.slice(0, 10), m.data.length]),
      [
        ['bytewise', 8],
        ['mmmmmmmmmm', 300],
        ['LLLLLLLLLL', 70000],
        ['fragmented', 10],
        ['first', 5],
        ['second', 6],
      ],
      r.describe(),
    );
    assert.ok(r.frames().some((f) => f.opcode === OP.PONG && f.payload.toString() === 'between'), 'no pong');
    assert.equal(r.closeFrame(), null, r.describe());
  });

  test('a large message (~512 KiB) goes both ways', TO, async (t) => {
    const c = await client(t);
    const big = 'L'.repeat(512 * 1024 - 64);
    c.send({ op: 'echo', data: big, ref: 'big' });
    const m = await c.waitMsg((x) => x.type === 'echo', { ms: T(10000) });
    assert.equal(m.data.length, big.length);
    assert.ok(m.data === big, 'echo changed the data');
    const sub = await client(t);
    await sub.subscribe('ws.big');
    const ack = await c.publish('ws.big', { big });
    const e = await sub.waitMsg((x) => x.type === 'event' && x.id === ack.id, { ms: T(10000) });
    assert.equal(e.data.big.length, big.length);
    assert.ok(c.isOpen && sub.isOpen);
  });

  test('a message over the default 1 MiB limit is closed with 1009', TO, async (t) => {
    // Just over the limit, and well over it: a client still sending must read the 1009 too
    // (the server drains what it refuses instead of resetting the connection).
    for (const size of [1024 * 1024 + 100, 4 * 1024 * 1024, 4 * 1024 * 1024, 4 * 1024 * 1024]) {
      const c = await client(t);
      c.send({ op: 'echo', data: 'O'.repeat(size) });
      const info = await c.waitClose(T(5000));
      assert.ok(info, `${size} bytes: not closed${c.describe()}`);
      assert.equal(
        info.code,
        1009,
        `a ${size}-byte message: close ${info.code} ${info.reason} (client error: ${c.error?.message})`,
      );
      assert.equal(c.ofType('echo').length, 0, 'the oversized message was answered');
    }
    await assertHealthy(srv.url);
  });

  test('an unmasked client frame is closed with 1002', TO, async (t) => {
    const r = await raw(t);
    await r.sendFrame({ opcode: OP.TEXT, payload: '{"op":"ping"}', mask: false });
    await expectClose(r, 1002, 'unmasked frame');
    assert.equal(r.json().filter((m) => m.type === 'pong').length, 0, 'the unmasked frame was processed');
  });

  test('a reserved opcode (0x3) is closed with 1002', TO, async (t) => {
    const r = await raw(t);
    await r.sendFrame({ opcode: 0x3, payload: 'hello' });
    await expectClose(r, 1002, 'opcode 0x3');
  });

  test('a continuation frame without a start is closed with 1002', TO, async (t) => {
    const r = await raw(t);
    await r.sendFrame({ opcode: OP.CONT, fin: true, payload: '{"op":"ping"}' });
    await expectClose(r, 1002, 'lone continuation');
  });

  test('a fragmented or oversized ping is closed with 1002', TO, async (t) => {
    const cases = {
      'a fragmented ping': [{ opcode: OP.PING, fin: false, payload: 'x' }],
      'a ping over 125 bytes': [{ opcode: OP.PING, payload: 'p'.repeat(126) }],
    };
    await expectCloses(t, srv, cases, 1002);
  });

  test('other RFC 6455 violations are closed with 1002', TO, async (t) => {
    const cases = {
      'RSV1 without an extension': [{ opcode: OP.TEXT, rsv: 0x40, payload: '{"op":"ping"}' }],
      'a new text frame inside a fragmented message': [
        { opcode: OP.TEXT, fin: false, payload: '{"op":' },
        { opcode: OP.TEXT, fin: true, payload: '{"op":"ping"}' },
      ],
      'a close frame with a 1-byte payload': [{ opcode: OP.CLOSE, payload: Buffer.from([0x03]) }],
      'a close frame with the reserved code 1005': [{ opcode: OP.CLOSE, payload: Buffer.from([0x03, 0xed]) }],
    };
    await expectCloses(t, srv, cases, 1002);
  });

  test('invalid UTF-8 in a text message is closed with 1007', TO, async (t) => {
    const bad = {
      'a lone 0xff': Buffer.concat([Buffer.from('{"op":"echo","data":"'), Buffer.from([0xff]), Buffer.from('"}')]),
      'an overlong encoding': Buffer.concat([Buffer.from('{"op":"echo","data":"'), Buffer.from([0xc0, 0xaf]), Buffer.from('"}')]),
      'a surrogate': Buffer.concat([Buffer.from('{"op":"echo","data":"'), Buffer.from([0xed, 0xa0, 0x80]), Buffer.from('"}')]),
    };
    const cases = Object.fromEntries(Object.entries(bad).map(([k, payload]) => [k, [{ opcode: OP.TEXT, payload }]]));
    // Invalid across fragments too (each fragment valid on its own is not enough).
    cases['a truncated character at a fragment boundary'] = [
      { opcode: OP.TEXT, fin: false, payload: Buffer.from('{"op":"echo","data":"\xe2', 'latin1') },
      { opcode: OP.CONT, fin: true, payload: Buffer.from('"}') },
    ];
    await expectCloses(t, srv, cases, 1007);
  });

  test('a binary frame is refused with 1003', TO, async (t) => {
    const r = await raw(t);
    await r.sendFrame({ opcode: OP.BINARY, payload: Buffer.from('{"op":"ping"}') });
    await expectClose(r, 1003, 'binary frame');
    // with the ws client too
    const c = await client(t);
    c.ws.send(Buffer.from([1, 2, 3]));
    const info = await c.waitClose(T(3000));
    assert.equal(info?.code, 1003, c.describe());
  });

  test('close handshake: the server answers a close 1000 with 1000 and ends the connection', TO, async (t) => {
    const r = await raw(t);
    await r.sendClose(1000, 'bye');
    const cf = await r.waitCloseFrame(T(3000));
    assert.ok(cf, `no close frame${r.describe()}`);
    assert.equal(cf.code, 1000);
    assert.ok(await r.waitTcpClose(T(3000)), `TCP still open${r.describe()}`);

    const c = await client(t);
    c.ws.close(1000, 'done');
    const info = await c.waitClose(T(3000));
    assert.ok(info, 'the ws client close did not complete');
    assert.equal(info.code, 1000);
    await assertHealthy(srv.url);
  });

  test('server frames carry unmasked, valid JSON text the ws client accepts', TO, async (t) => {
    // ws validates every server frame (masking, UTF-8, close codes): no error may occur.
    const c = await client(t);
    await c.subscribe('ws.valid');
    await publishOk(srv.url, 'ws.valid', 'naïve ✓ text', { contentType: 'text/plain; charset=utf-8' });
    const m = await c.waitMsg((x) => x.type === 'event');
    assert.equal(m.data, 'naïve ✓ text');
    assert.equal(c.error, null, `ws client error: ${c.error?.message}`);
    assert.equal(c.bad.length + c.binary.length, 0);
  });
});

// ---------------------------------------------------------------------------
describe('--ws-max-message and --ws-ping', () => {
  let lim;
  const LIMIT = 64 * 1024;
  before(async () => {
    lim = await startServer({ extraArgs: ['--ws-max-message', String(LIMIT), '--ws-ping', '1'] });
  });
  after(async () => {
    await lim?.stop();
  });

  test('under the limit is fine; over it (whole or in fragments) is 1009', TO, async (t) => {
    const c = await client(t, {}, lim);
    c.send({ op: 'echo', data: 'u'.repeat(LIMIT - 200) });
    const m = await c.waitMsg((x) => x.type === 'echo', { what: 'echo just under the limit' });
    assert.equal(m.data.length, LIMIT - 200);

    const big = await client(t, {}, lim);
    big.send({ op: 'echo', data: 'o'.repeat(LIMIT + 10) });
    const info = await big.waitClose(T(3000));
    assert.equal(info?.code, 1009, `over the limit: ${big.describe()}`);

    // In fragments, each small, adding up to more than the limit.
    const r = await raw(t, lim);
    const piece = Buffer.from('f'.repeat(20000));
    await r.sendFrame({ opcode: OP.TEXT, fin: false, payload: '{"op":"echo","data":"' });
    for (let i = 0; i < 4; i++) await r.sendFrame({ opcode: OP.CONT, fin: false, payload: piece });
    await r.sendFrame({ opcode: OP.CONT, fin: true, payload: '"}' });
    await expectClose(r, 1009, 'fragments adding up over the limit');
    assert.equal(r.json().filter((x) => x.type === 'echo').length, 0);
    assert.ok(c.isOpen);
  });

  test('the server pings; a peer that never answers is dropped, a ws client stays', { timeout: T(40000) }, async (t) => {
    const c = await client(t, {}, lim);
    const r = await raw(t, lim);
    const t0 = Date.now();
    const gotPing = await r.waitFor((x) => x.frames().some((f) => f.opcode === OP.PING), T(3000));
    const pingAt = Date.now();
    assert.ok(gotPing, `no ping frame within ${T(3000)} ms with --ws-ping 1${r.describe()}`);
    const dropped = await r.waitTcpClose(T(6000));
    const droppedAt = r.conn.closedAt || Date.now();
    if (!c.isOpen) await c.waitClose(T(1000));
    const state = () =>
      `raw peer dropped=${dropped} ${droppedAt - pingAt} ms after its first ping (${droppedAt - t0} ms after connecting); ` +
      `ws client: ${c.pings} pings, open=${c.isOpen}, close=${JSON.stringify(c.closeInfo)}`;
    assert.ok(dropped, `a peer that never answers pings was not dropped: ${state()}${r.describe()}`);
    // The ws client answered its pings (automatically) and must still be there.
    assert.ok(c.isOpen, `the ws client, which answers pings, was dropped too: ${state()}`);
    assert.ok(droppedAt - pingAt >= 500, `the silent peer had no time to answer: ${state()}`);
    assert.ok(droppedAt - t0 < T(6000), state());
    await c.roundTrip();
    await c.waitUntil((x) => x.pings >= 2 || !x.isOpen, T(3000));
    assert.ok(c.pings >= 2, `the ws client saw ${c.pings} pings: ${state()}`);
    await sleep(1500);
    assert.ok(c.isOpen, `the ws client was dropped later: ${state()}`);
    await c.roundTrip();
  });
});

// ---------------------------------------------------------------------------
describe('auth', () => {
  let h;
  let admin;
  before(async () => {
    h = await startServer({ open: false, env: { FLOWCAST_ADMIN_PASSWORD: PASSWORD } });
    const r = await request(`${h.url}/api/v1/login`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ username: 'admin', password: PASSWORD }),
    });
    assert.equal(r.status, 200, r.text);
    admin = r.json.access_token;
  });
  after(async () => {
    await h?.stop();
  });

  async function mint(body) {
    const r = await request(`${h.url}/api/v1/tokens`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', authorization: `Bearer ${admin}` },
      body: JSON.stringify(body),
    });
    assert.equal(r.status, 201, r.text);
    return r.json.access_token;
  }

  test('no token or a bad one: 401 JSON, no upgrade', TO, async () => {
    const cases = {
      'no token': {},
      'a malformed bearer token': { headers: { Authorization: 'Bearer not.a.token' } },
      'a forged token': {
        headers: {
          Authorization: `Bearer ${Buffer.from('{"alg":"HS256","typ":"JWT"}').toString('base64url')}.${Buffer.from(
            JSON.stringify({ sub: 'x', exp: Math.floor(Date.now() / 1000) + 60, flowcast: { subscribe: ['*'], publish: ['*'] } }),
          ).toString('base64url')}.${crypto.randomBytes(32).toString('base64url')}`,
        },
      },
      'a bad query token': { path: '/api/v1/ws?access_token=garbage' },
      'a bad cookie': { headers: { Cookie: 'flowcast_token=garbage' } },
    };
    for (const [name, opts] of Object.entries(cases)) {
      const { conn, response } = await rawUpgrade(h.port, { ...opts, expect101: false });
      conn.destroy();
      assert.notEqual(response.status, 101, `${name}: upgraded`);
      rawJsonError(response, 401);
    }
  });

  test('a token from Authorization, the cookie, or ?access_token= is accepted', TO, async (t) => {
    const tok = await mint({ sub: 'ws-page', subscribe: ['room.*'], publish: ['room.*'], ttl: 600 });
    const viaHeader = await connectWS(h, { t, headers: { authorization: `Bearer ${tok}` } });
    const viaCookie = await connectWS(h, { t, headers: { cookie: `flowcast_token=${tok}` } });
    const viaQuery = await connectWS(h, { t, query: `?access_token=${encodeURIComponent(tok)}` });
    for (const c of [viaHeader, viaCookie, viaQuery]) {
      await c.subscribe('room.1');
    }
    const ack = await viaHeader.publish('room.1', { hi: 1 });
    for (const c of [viaHeader, viaCookie, viaQuery]) {
      const e = await c.waitMsg((m) => m.type === 'event' && m.id === ack.id);
      assert.equal(e.from, viaHeader.conn);
    }
  });

  test('rights are checked per op: forbidden subscribe or publish is an error, the connection stays', TO, async (t) => {
    const tok = await mint({ sub: 'svc', subscribe: ['orders.*'], publish: ['orders.in'], ttl: 600 });
    const c = await connectWS(h, { t, headers: { authorization: `Bearer ${tok}` } });
    assertWsError(await c.call({ op: 'subscribe', channel: 'billing', ref: 'f1' }), { ref: 'f1', code: 'forbidden' }, 'subscribe billing');
    await c.subscribe('orders.out');
    assertWsError(
      await c.call({ op: 'publish', channel: 'billing', data: 1, ref: 'f2' }),
      { ref: 'f2', code: 'forbidden' },
      'publish billing',
    );
    assertWsError(
      await c.call({ op: 'publish', channel: 'orders.out', data: 1, ref: 'f3' }),
      { ref: 'f3', code: 'forbidden' },
      'publish orders.out (subscribe-only)',
    );
    const ok = await c.publish('orders.in', { n: 1 });
    assert.match(ok.id, /^\S+$/);
    // nothing was stored by the refused publishes
    const hist = (ch) => request(`${h.url}/api/v1/channels/${ch}/events`, { headers: { authorization: `Bearer ${admin}` } });
    for (const ch of ['billing', 'orders.out']) {
      const r = await hist(ch);
      assert.ok(r.status === 404 || (r.status === 200 && r.json.length === 0), `${ch}: ${r.status} ${r.text}`);
    }
    // an admin publish reaches the permitted subscription
    const p = await publish(h.url, 'orders.out', { x: 1 }, {});
    assert.equal(p.status, 401, 'publishing without a token must be refused');
    const r = await request(`${h.url}/api/v1/channels/orders.out/events`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', authorization: `Bearer ${admin}` },
      body: '{"x":1}',
    });
    assert.equal(r.status, 201, r.text);
    await c.waitMsg((m) => m.type === 'event' && m.id === r.json.id, { what: 'the permitted event' });
    assert.ok(c.isOpen);
  });

  test('a connection is closed with 1008 within a second of its token expiry', { timeout: T(20000) }, async (t) => {
    // Two tokens whose exp are a second apart, so the check's phase is sampled twice.
    const toks = [await mint({ sub: 'short', subscribe: ['x'], ttl: 2 }), await mint({ sub: 'short', subscribe: ['x'], ttl: 3 })];
    const conns = await Promise.all(toks.map((tok) => connectWS(h, { t, headers: { authorization: `Bearer ${tok}` } })));
    await Promise.all(conns.map((c) => c.subscribe('x')));
    const infos = await Promise.all(conns.map((c) => c.waitClose(T(7000))));
    for (const [i, c] of conns.entries()) {
      const exp = JSON.parse(Buffer.from(toks[i].split('.')[1], 'base64url').toString()).exp * 1000;
      const info = infos[i];
      assert.ok(info, `token ${i}: not closed at expiry${c.describe()}`);
      assert.equal(info.code, 1008, `token ${i}: close ${info.code} ${info.reason}`);
      const late = info.at - exp;
      assert.ok(late >= 0 && late < T(1500), `token ${i}: closed ${late} ms after the token's exp`);
    }
    // The expired token no longer opens a connection.
    const { conn, response } = await rawUpgrade(h.port, { headers: { Authorization: `Bearer ${toks[0]}` }, expect101: false });
    conn.destroy();
    rawJsonError(response, 401);
  });
});

// ---------------------------------------------------------------------------
describe('slow consumer', () => {
  let s;
  const QUEUE = 256 * 1024;
  before(async () => {
    s = await startServer({ queueBytes: QUEUE });
  });
  after(async () => {
    await s?.stop();
  });

  test('a WebSocket subscriber that never reads is dropped; a normal one gets everything', { timeout: T(60000) }, async (t) => {
    const ch = 'ws.slow';
    const normal = await client(t, {}, s);
    await normal.subscribe(ch);
    const r = await raw(t, s);
    await r.sendText({ op: 'subscribe', channel: ch, ref: 'slow' });
    assert.ok(await r.waitJson((m) => m.ref === 'slow'), `no subscribed${r.describe()}`);
    r.conn.sock.pause();

    // As the SSE slow-subscriber test: one 32 KiB event at a time (well under the bound,
    // so a subscriber that reads keeps up) until the drop is counted, then a few more.
    const drops0 = (await metrics(s.url)).get('flowcast_subscriber_drops_total') ?? 0;
    const pad = 'p'.repeat(32 * 1024);
    const ids = [];
    let drops = drops0;
    let extra = -1; // events still to publish after the drop was seen
    for (let i = 0; i < 700 && extra !== 0; i++) {
      ids.push((await publishOk(s.url, ch, { i, pad })).id);
      if (extra > 0) extra--;
      if (extra < 0 && i % 20 === 19) {
        drops = (await metrics(s.url)).get('flowcast_subscriber_drops_total') ?? 0;
        if (drops > drops0) extra = 10;
      }
    }
    await normal.waitUntil(() => normal.events(ch).length >= ids.length || !normal.isOpen, T(20000));
    const nids = normal.events(ch).map((m) => m.id);
    assert.ok(normal.isOpen, `the normal subscriber was dropped after ${nids.length} of ${ids.length} events: ${JSON.stringify(normal.closeInfo)}`);
    assert.equal(nids.length, ids.length, 'the normal subscriber missed events');
    assert.ok(nids.every((id, i) => id === ids[i]), 'the normal subscriber got events out of order');

    r.conn.sock.resume();
    assert.ok(await r.waitTcpClose(T(15000)), `the slow subscriber is still connected after ${ids.length} events`);
    const got = r.json().filter((m) => m.type === 'event');
    assert.ok(got.length < ids.length, `the slow subscriber got all ${ids.length} events`);
    assert.ok(
      got.every((m, i) => m.id === ids[i]),
      'what the slow subscriber got is not an in-order prefix',
    );
    // One drop counted: the slow one only.
    assert.equal((await metrics(s.url)).get('flowcast_subscriber_drops_total') - drops0, 1, 'drops counted');
    await assertHealthy(s.url);
  });
});

// ---------------------------------------------------------------------------
describe('Chromium', () => {
  let browser;
  before(async () => {
    browser = await launchChromium();
  });
  after(async () => {
    await browser?.close();
  });

  test('a page WebSocket chats with a node ws client: publish with from, direct message back', { timeout: T(60000) }, async (t) => {
    const context = await browser.newContext();
    t.after(() => context.close());
    const page = await context.newPage();
    const errors = [];
    page.on('pageerror', (e) => errors.push(String(e)));
    await page.goto(`${srv.url}/healthz`);

    const pageConn = await page.evaluate(
      (u) =>
        new Promise((resolve, reject) => {
          const st = { msgs: [], closed: null };
          window.__chat = st;
          const sock = new WebSocket(u);
          st.sock = sock;
          sock.onmessage = (e) => {
            const m = JSON.parse(e.data);
            st.msgs.push(m);
            if (m.type === 'welcome') resolve(m.conn);
          };
          sock.onclose = (e) => {
            st.closed = e.code;
            reject(new Error(`page socket closed ${e.code}`));
          };
          setTimeout(() => reject(new Error('no welcome in the page')), 10000);
        }),
      wsURL(srv),
    );
    assert.equal(typeof pageConn, 'string');

    const node = await client(t);
    await node.subscribe('chat');
    await page.evaluate(() =>
      window.__chat.sock.send(JSON.stringify({ op: 'publish', channel: 'chat', data: { text: 'hello from the page' }, ref: 'p1' })),
    );
    const pack = await page.waitForFunction(() => window.__chat.msgs.find((m) => m.ref === 'p1'), null, { timeout: T(5000) });
    const ackMsg = await pack.jsonValue();
    assert.equal(ackMsg.type, 'ack', JSON.stringify(ackMsg));
    const e = await node.waitMsg((m) => m.type === 'event' && m.channel === 'chat', { what: 'the page message' });
    assert.equal(e.from, pageConn);
    assert.equal(e.id, ackMsg.id);
    assert.deepEqual(e.data, { text: 'hello from the page' });

    const sent = await node.call({ op: 'send', to: e.from, data: { text: 'hello page, from node' } });
    assert.equal(sent.type, 'ack', JSON.stringify(sent));
    const direct = await page.waitForFunction(() => window.__chat.msgs.find((m) => m.type === 'direct'), null, { timeout: T(5000) });
    const d = await direct.jsonValue();
    assert.equal(d.from, node.conn);
    assert.deepEqual(d.data, { text: 'hello page, from node' });
    // the page got exactly one direct message, and its own ack
    assert.equal(await page.evaluate(() => window.__chat.msgs.filter((m) => m.type === 'direct').length), 1);
    assert.deepEqual(errors, []);
    assert.equal(await page.evaluate(() => window.__chat.closed), null);
    await page.evaluate(() => window.__chat.sock.close(1000));
  });
});
