// A subscriber that never reads is disconnected once its queue passes
// --queue-bytes, counted in /metrics, and never delays a normal subscriber.
import { describe, test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { startServer, publishOk, rawConnect, metrics, assertHealthy, eventually, sleep, T } from './lib/server.mjs';
import { SSEParser, subscribe } from './lib/sse.mjs';

const TO = { timeout: T(100000) };
const QUEUE_BYTES = 256 * 1024;
const PAYLOAD = 32 * 1024; // well under the queue bound: one event alone never trips it
const MAX_EVENTS = 700; // ~22 MB: more than the kernel's socket buffers can hide

let srv;
let url;
before(async () => {
  srv = await startServer({ queueBytes: QUEUE_BYTES, retention: 5, keepalive: 1, threads: 2 });
  url = srv.url;
});
after(async () => {
  await srv?.stop();
});

/** Parses the SSE events in what a raw socket received (after the HTTP headers). */
function rawEvents(buf) {
  const text = buf.toString('utf8');
  const start = text.indexOf('\r\n\r\n');
  if (start < 0) return [];
  let body = text.slice(start + 4);
  // The stream may be chunked; a chunk-size line is "hex\r\n". Strip the framing.
  if (/transfer-encoding:\s*chunked/i.test(text.slice(0, start))) {
    let out = '';
    let p = 0;
    for (;;) {
      const le = body.indexOf('\r\n', p);
      if (le < 0) break;
      const n = parseInt(body.slice(p, le), 16);
      if (!n) break;
      // sizes are in bytes; the payload here is ASCII so characters == bytes
      out += body.slice(le + 2, le + 2 + n);
      p = le + 2 + n + 2;
    }
    body = out;
  }
  const parser = new SSEParser();
  parser.feed(body);
  return parser.events;
}

describe('slow subscriber', () => {
  test('is dropped and counted; a normal subscriber gets everything promptly', TO, async (t) => {
    const m0 = await metrics(url);
    assert.ok(m0.has('flowcast_subscriber_drops_total'), 'flowcast_subscriber_drops_total missing');
    const drops0 = m0.get('flowcast_subscriber_drops_total');

    // The normal subscriber reads everything.
    const normal = await subscribe(`${url}/api/v1/channels/slow.ch/sse?replay=0`, { rawLimit: 4096 });
    t.after(() => normal.close());

    // The slow one: a raw socket that stops reading right after the headers.
    const slow = await rawConnect(srv.port);
    t.after(() => slow.destroy());
    await slow.write('GET /api/v1/channels/slow.ch/sse?replay=0 HTTP/1.1\r\nHost: x\r\n\r\n');
    assert.ok(await slow.waitFor((c) => c.text().includes('retry: 3000'), T(5000)), slow.text());
    slow.sock.pause();

    const pad = 'p'.repeat(PAYLOAD);
    const ids = [];
    let drops = drops0;
    let extra = -1; // events still to publish after the drop was seen
    const t0 = Date.now();
    for (let i = 0; i < MAX_EVENTS && extra !== 0; i++) {
      const r = await publishOk(url, 'slow.ch', { i, pad });
      ids.push(r.id);
      if (extra > 0) extra--;
      if (extra < 0 && i % 20 === 19) {
        drops = (await metrics(url)).get('flowcast_subscriber_drops_total');
        if (drops > drops0) extra = 10;
      }
    }
    const publishMs = Date.now() - t0;
    assert.ok(
      drops > drops0,
      `no drop counted after ${ids.length} events of ${PAYLOAD} bytes (queue bound ${QUEUE_BYTES}); ` +
        `slow socket received ${slow.length} bytes`,
    );

    // The normal subscriber has everything, in order, promptly.
    await normal.waitFor((s) => s.events.length >= ids.length, T(10000), `all ${ids.length} events`);
    const lag = Date.now() - t0 - publishMs;
    assert.deepEqual(
      normal.events.map((e) => e.id),
      ids,
    );
    assert.ok(normal.events.every((e, i) => JSON.parse(e.data).i === i));
    assert.ok(lag < T(5000), `normal subscriber lagged ${lag} ms behind the publisher`);
    assert.ok(!normal.done, 'the normal subscriber was disconnected too');

    // The slow socket was closed by the server: reading now reaches the end.
    slow.sock.resume();
    assert.ok(await slow.waitClose(T(10000)), 'the slow subscriber is still connected');
    const got = rawEvents(slow.buffer());
    assert.ok(got.length < ids.length, `the slow subscriber got all ${ids.length} events`);
    // what it did get is a prefix, in order, without holes
    assert.deepEqual(
      got.map((e) => e.id),
      ids.slice(0, got.length),
    );

    // Only the slow one was dropped.
    const m1 = await metrics(url);
    assert.equal(m1.get('flowcast_subscriber_drops_total') - drops0, 1, 'drops counted');
    await eventually(
      async () => (await metrics(url)).get('flowcast_subscribers') === 1,
      T(5000),
      'flowcast_subscribers back to 1',
    );
    await assertHealthy(url);

    // It resumes with Last-Event-ID: a gap for what was evicted, then the rest.
    const lastId = got.length ? got[got.length - 1].id : undefined;
    if (lastId) {
      const again = await subscribe(`${url}/api/v1/channels/slow.ch/sse`, {
        headers: { 'Last-Event-ID': lastId },
        rawLimit: 4096,
      });
      t.after(() => again.close());
      const missing = ids.slice(got.length);
      const expectReplayed = missing.slice(-5); // retention 5
      const expectLost = missing.length - expectReplayed.length;
      await again.waitEvents(expectReplayed.length + (expectLost ? 1 : 0), T(5000));
      await sleep(T(200));
      const evs = again.events;
      if (expectLost) {
        assert.equal(evs[0].event, 'flowcast.gap');
        const gap = JSON.parse(evs[0].data);
        assert.equal(gap.channel, 'slow.ch');
        // exact: lost is the count; not exact: a lower bound
        if (gap.exact === true) assert.equal(gap.lost, expectLost, evs[0].data);
        else {
          assert.equal(gap.exact, false, evs[0].data);
          assert.ok(gap.lost >= 1 && gap.lost <= expectLost, `lost ${gap.lost} of ${expectLost}`);
        }
        assert.equal(gap.next, expectReplayed[0]);
      }
      assert.deepEqual(
        evs.filter((e) => e.event !== 'flowcast.gap').map((e) => e.id),
        expectReplayed,
      );
    }
  });

  test('a subscriber that reads slowly but keeps up is not dropped', TO, async (t) => {
    const drops0 = (await metrics(url)).get('flowcast_subscriber_drops_total');
    const s = await subscribe(`${url}/api/v1/channels/slow.ok/sse?replay=0`, { rawLimit: 4096 });
    t.after(() => s.close());
    const pad = 'q'.repeat(4096);
    const ids = [];
    // 40 KB per burst, well under the 256 KiB bound, with pauses between bursts
    for (let b = 0; b < 5; b++) {
      for (let i = 0; i < 10; i++) ids.push((await publishOk(url, 'slow.ok', { b, i, pad })).id);
      await sleep(100);
    }
    await s.waitEvents(ids.length, T(10000));
    assert.deepEqual(
      s.events.map((e) => e.id),
      ids,
    );
    assert.equal((await metrics(url)).get('flowcast_subscriber_drops_total'), drops0);
    assert.ok(!s.done);
  });
});
