// Hostile HTTP/2 clients, frames built by hand: rapid reset (CVE-2023-44487),
// CONTINUATION flood, SETTINGS flood, PING flood, HPACK bomb, a zero-window
// stream, stream-id exhaustion and the stream cap. Each checks that the
// offender is reset or sent GOAWAY and closed, and that the server still
// answers others.
import { describe, test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import net from 'node:net';
import { T, startServer, request, metrics, eventually, publishOk } from './lib/server.mjs';

const TO = { timeout: T(60000) };
const PREFACE = Buffer.from('PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n');
const [DATA, HEADERS, RST, SETTINGS, PING, GOAWAY, WINDOW_UPDATE, CONTINUATION] = [0, 1, 3, 4, 6, 7, 8, 9];
const END_STREAM = 1;
const END_HEADERS = 4;
const ENHANCE_YOUR_CALM = 11;

function frame(type, flags, id, payload = Buffer.alloc(0)) {
  const h = Buffer.alloc(9);
  h.writeUIntBE(payload.length, 0, 3);
  h[3] = type;
  h[4] = flags;
  h.writeUInt32BE(id, 5);
  return Buffer.concat([h, payload]);
}

/** An HPACK integer with an n-bit prefix, first byte's high bits `mask`. */
function hint(v, n, mask) {
  const max = (1 << n) - 1;
  if (v < max) return Buffer.from([mask | v]);
  const out = [mask | max];
  v -= max;
  while (v >= 128) {
    out.push((v % 128) + 128);
    v = Math.floor(v / 128);
  }
  out.push(v);
  return Buffer.from(out);
}

/** A literal field without indexing (or with incremental indexing), no Huffman. */
function lit(name, value, index = false) {
  const n = Buffer.from(name);
  const v = Buffer.from(value);
  return Buffer.concat([Buffer.from([index ? 0x40 : 0x00]), hint(n.length, 7, 0), n, hint(v.length, 7, 0), v]);
}

const head = (p, method = 'GET') =>
  Buffer.concat([lit(':method', method), lit(':scheme', 'http'), lit(':path', p), lit(':authority', 'localhost')]);

const settings = (pairs = []) => {
  const b = Buffer.alloc(6 * pairs.length);
  pairs.forEach(([id, v], i) => {
    b.writeUInt16BE(id, 6 * i);
    b.writeUInt32BE(v, 6 * i + 2);
  });
  return frame(SETTINGS, 0, 0, b);
};

const u32 = (v) => {
  const b = Buffer.alloc(4);
  b.writeUInt32BE(v);
  return b;
};

/** A raw HTTP/2 client: frames received are parsed into `frames`. */
function h2raw(port, initial = settings()) {
  const sock = net.connect(port, '127.0.0.1');
  const c = { sock, frames: [], closed: false, waiters: new Set(), buf: Buffer.alloc(0) };
  const wake = () => {
    for (const w of [...c.waiters]) w();
  };
  sock.on('data', (d) => {
    c.buf = Buffer.concat([c.buf, d]);
    while (c.buf.length >= 9) {
      const len = c.buf.readUIntBE(0, 3);
      if (c.buf.length < 9 + len) break;
      c.frames.push({ type: c.buf[3], flags: c.buf[4], id: c.buf.readUInt32BE(5) & 0x7fffffff,
        payload: c.buf.subarray(9, 9 + len) });
      c.buf = c.buf.subarray(9 + len);
    }
    wake();
  });
  sock.on('error', () => {});
  sock.on('close', () => {
    c.closed = true;
    wake();
  });
  c.send = (...bufs) => {
    if (!sock.destroyed) sock.write(Buffer.concat(bufs));
  };
  c.until = (pred, what, ms = T(10000)) =>
    new Promise((resolve, reject) => {
      const check = () => {
        const v = pred(c);
        if (v) {
          clearTimeout(timer);
          c.waiters.delete(check);
          resolve(v);
        }
      };
      const timer = setTimeout(() => {
        c.waiters.delete(check);
        reject(new Error(`timed out waiting for ${what}; frames: ${c.frames.map((f) => f.type).join(',')}`));
      }, ms);
      c.waiters.add(check);
      check();
    });
  c.goaway = () => c.frames.find((f) => f.type === GOAWAY);
  c.send(PREFACE, initial);
  return c;
}

const goawayCode = (f) => f.payload.readUInt32BE(4);

describe('hostile HTTP/2 clients', () => {
  let srv;
  before(async () => {
    srv = await startServer({ extraArgs: ['--h2c', '--h2-max-streams', '50', '--body-timeout', '1'], headerTimeout: 1,
      queueBytes: '64k' });
  }, TO);
  after(async () => {
    if (srv) await srv.stop();
  });

  /** The offender got GOAWAY (with `code` when given) and was closed; others are served. */
  async function offenderGone(c, code) {
    const g = await c.until((x) => x.goaway(), 'GOAWAY');
    if (code !== undefined) assert.equal(goawayCode(g), code);
    await c.until((x) => x.closed, 'the close');
    const r = await request(`${srv.url}/healthz`);
    assert.equal(r.status, 200);
    const ok = h2raw(srv.port);
    ok.send(frame(HEADERS, END_STREAM | END_HEADERS, 1, head('/healthz')));
    await ok.until((x) => x.frames.some((f) => f.type === DATA && f.id === 1), 'an h2 answer to a good client');
    ok.sock.destroy();
  }

  test('rapid reset: streams opened and reset at once get GOAWAY ENHANCE_YOUR_CALM', TO, async () => {
    const c = h2raw(srv.port);
    const bufs = [];
    for (let i = 0, id = 1; i < 500; i++, id += 2)
      bufs.push(frame(HEADERS, END_STREAM | END_HEADERS, id, head('/api/v1/channels/rr/sse')), frame(RST, 0, id, u32(8)));
    c.send(...bufs);
    await offenderGone(c, ENHANCE_YOUR_CALM);
    await eventually(async () => (await metrics(srv.url)).get('flowcast_subscribers') === 0, T(5000), 'no subscriber left');
    assert.ok((await metrics(srv.url)).get('flowcast_http2_abuse_goaways_total') >= 1);
  });

  test('CONTINUATION flood: endless header block is cut off with GOAWAY', TO, async () => {
    const c = h2raw(srv.port);
    const bufs = [frame(HEADERS, 0, 1, head('/healthz'))];
    for (let i = 0; i < 2000; i++) bufs.push(frame(CONTINUATION, 0, 1, lit(`x-flood-${i}`, 'y'.repeat(100))));
    c.send(...bufs);
    await offenderGone(c);
  });

  test('SETTINGS flood: GOAWAY ENHANCE_YOUR_CALM', TO, async () => {
    const c = h2raw(srv.port);
    const bufs = [];
    for (let i = 0; i < 2000; i++) bufs.push(settings([[4, 65535 + i]]));
    c.send(...bufs);
    await offenderGone(c, ENHANCE_YOUR_CALM);
  });

  test('PING flood: GOAWAY ENHANCE_YOUR_CALM', TO, async () => {
    const c = h2raw(srv.port);
    const bufs = [];
    for (let i = 0; i < 2000; i++) bufs.push(frame(PING, 0, 0, Buffer.alloc(8, i & 0xff)));
    c.send(...bufs);
    await offenderGone(c, ENHANCE_YOUR_CALM);
  });

  test('HPACK bomb: one table entry referenced thousands of times ends the connection', TO, async () => {
    const c = h2raw(srv.port);
    // A 4000-byte entry goes into the dynamic table (index 62), then each
    // 1-byte reference to it decodes to 4 kB: 12000 of them, 48 MB.
    const block = Buffer.concat([head('/healthz'), lit('x-bomb', 'b'.repeat(4000), true), Buffer.alloc(12000, 0x80 | 62)]);
    c.send(settings(), frame(HEADERS, END_STREAM | END_HEADERS, 1, block));
    await offenderGone(c, ENHANCE_YOUR_CALM);
  });

  test('zero window: the stalled stream is dropped at --queue-bytes, its sibling keeps receiving', TO, async () => {
    // Every stream starts with a zero window; only stream 3 is given room.
    const c = h2raw(srv.port, settings([[4, 0]]));
    c.send(frame(HEADERS, END_STREAM | END_HEADERS, 1, head('/api/v1/channels/zw/sse?replay=0')),
      frame(HEADERS, END_STREAM | END_HEADERS, 3, head('/api/v1/channels/zw/sse?replay=0')),
      frame(WINDOW_UPDATE, 0, 0, u32(64 << 20)), frame(WINDOW_UPDATE, 0, 3, u32(64 << 20)));
    await eventually(async () => (await metrics(srv.url)).get('flowcast_subscribers') === 2, T(5000), 'two subscribers');
    const drops = (await metrics(srv.url)).get('flowcast_subscriber_drops_total') ?? 0;
    const payload = 'z'.repeat(4000);
    for (let i = 0; i < 40; i++) await publishOk(srv.url, 'zw', { i, payload });
    await c.until((x) => x.frames.some((f) => f.type === RST && f.id === 1), 'RST_STREAM on the stalled stream');
    await eventually(async () => (await metrics(srv.url)).get('flowcast_subscribers') === 1, T(5000), 'one subscriber');
    assert.ok((await metrics(srv.url)).get('flowcast_subscriber_drops_total') > drops);
    const bytes = () => c.frames.filter((f) => f.type === DATA && f.id === 3).reduce((a, f) => a + f.payload.length, 0);
    await c.until(() => bytes() > 40 * 4000, 'every event on the open stream');
    await publishOk(srv.url, 'zw', { last: true });
    await c.until(() => c.frames.some((f) => f.id === 3 && /"last":true/.test(f.payload.toString())), 'a later event');
    assert.ok(!c.goaway(), 'the connection itself stays');
    c.sock.destroy();
  });

  test('stream ids: the last id is served, then GOAWAY and the close; nothing after it is', TO, async () => {
    const c = h2raw(srv.port);
    const last = 0x7fffffff;
    c.send(frame(HEADERS, END_STREAM | END_HEADERS, last, head('/healthz')),
      frame(HEADERS, END_STREAM | END_HEADERS, 5, head('/healthz')));
    await c.until((x) => x.frames.some((f) => f.type === DATA && f.id === last), 'the answer on the last id');
    await offenderGone(c, 0);
    assert.ok(!c.frames.some((f) => f.id === 5), 'a lower id after the last is not served');
  });

  test('a request that never ends is reset after the head and body timeouts', TO, async () => {
    const c = h2raw(srv.port);
    c.send(frame(HEADERS, END_HEADERS, 1, head('/api/v1/channels/slow/events', 'POST')), frame(DATA, 0, 1, Buffer.from('{')));
    await c.until((x) => x.frames.some((f) => f.type === RST && f.id === 1), 'RST_STREAM of the unfinished request');
    c.send(frame(HEADERS, END_STREAM | END_HEADERS, 3, head('/healthz')));
    await c.until((x) => x.frames.some((f) => f.type === DATA && f.id === 3), 'the connection still serves');
    c.sock.destroy();
  });

  test('--h2-max-streams: a stream past the cap is refused, the others are served', TO, async () => {
    const c = h2raw(srv.port);
    const bufs = [];
    for (let i = 0, id = 1; i < 51; i++, id += 2)
      bufs.push(frame(HEADERS, END_STREAM | END_HEADERS, id, head(`/api/v1/channels/cap/sse?replay=0&i=${i}`)));
    c.send(...bufs);
    await c.until((x) => x.frames.some((f) => f.type === RST && f.id === 101), 'the 51st refused');
    await eventually(async () => (await metrics(srv.url)).get('flowcast_subscribers') === 50, T(5000), '50 subscribers');
    c.sock.destroy();
    await eventually(async () => (await metrics(srv.url)).get('flowcast_subscribers') === 0, T(5000), 'all freed');
  });
});
