// Write coalescing under load (--coalesce-ms): a loop busy writing the same
// subscriber streams pass after pass holds the next pass a little so more
// events share a write. Whatever it does, every subscriber still gets every
// event once and in order; with --coalesce-ms 0 it never holds; bad values are
// refused at start-up.
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import net from 'node:net';
import { spawnSync } from 'node:child_process';
import { startServer, publishOk, metrics, BIN, T } from './lib/server.mjs';

const TO = { timeout: T(120000) };
const SUBS = 400;
/** Every subscriber comes from 127.0.0.1: no per-address cap. */
const PER_IP = ['--max-connections-per-ip', '0'];
const BATCHES = 40;
const PER_BATCH = 25;
const EVENTS = BATCHES * PER_BATCH;
const MARK = 'data: {"n":';

/** Opens `n` raw SSE subscribers of `channel`; resolves once all have their headers. */
async function rawSubscribers(port, channel, n) {
  const subs = [];
  for (let i = 0; i < n; i++) {
    subs.push(
      new Promise((resolve, reject) => {
        const s = net.connect(port, '127.0.0.1');
        const sub = { socket: s, text: '', done: null, count: 0, scanned: 0 };
        sub.done = new Promise((res) => {
          s.setEncoding('utf8');
          s.on('data', (d) => {
            sub.text += d;
            if (!sub.headersSeen && sub.text.includes('\r\n\r\n')) {
              sub.headersSeen = true;
              resolve(sub);
            }
            // Batches commit in any order, so the last n is no sign of the end: count.
            for (let i; (i = sub.text.indexOf(MARK, sub.scanned)) >= 0; sub.scanned = i + MARK.length) sub.count++;
            if (sub.count >= EVENTS) res();
          });
          s.on('close', () => {
            if (!sub.headersSeen) reject(new Error(`subscriber ${i} closed before its headers`));
            res();
          });
        });
        s.on('error', reject);
        s.write(`GET /api/v1/channels/${channel}/sse?replay=0 HTTP/1.1\r\nHost: t\r\n\r\n`);
      }),
    );
  }
  return Promise.all(subs);
}

/** The `n` of every `data: {"n":K}` line a subscriber received, in order. */
function received(sub) {
  return [...sub.text.matchAll(/^data: \{"n":(\d+)\}\r?$/gm)].map((m) => Number(m[1]));
}

/** Publishes EVENTS events to `channel` as NDJSON batches, 8 batches in flight. */
async function publishAll(url, channel) {
  let next = 0;
  const worker = async () => {
    for (;;) {
      const b = next++;
      if (b >= BATCHES) return;
      // Batches may commit in any order; order within the channel is the id order,
      // so each batch carries consecutive n only when sent one at a time.
      const lines = [];
      for (let i = 0; i < PER_BATCH; i++) lines.push(JSON.stringify({ data: { n: b * PER_BATCH + i } }));
      await publishOk(url, channel, lines.join('\n') + '\n', { contentType: 'application/x-ndjson' });
    }
  };
  await Promise.all(Array.from({ length: 8 }, worker));
}

async function fanOut(srv, channel) {
  const subs = await rawSubscribers(srv.port, channel, SUBS);
  try {
    await publishAll(srv.url, channel);
    let timer;
    await Promise.race([
      Promise.all(subs.map((s) => s.done)),
      new Promise((_, rej) => {
        timer = setTimeout(() => rej(new Error('subscribers did not get every event in time')), T(60000));
      }),
    ]).finally(() => clearTimeout(timer));
    let reference = null;
    for (const [i, sub] of subs.entries()) {
      const got = received(sub);
      assert.equal(got.length, EVENTS, `subscriber ${i} got ${got.length} of ${EVENTS} events`);
      assert.equal(new Set(got).size, EVENTS, `subscriber ${i} got duplicates`);
      // Every subscriber sees the one channel order (the ids' order).
      if (reference === null) reference = got.join(',');
      else assert.equal(got.join(','), reference, `subscriber ${i} saw another order than subscriber 0`);
    }
  } finally {
    for (const s of subs) s.socket.destroy();
  }
  return metrics(srv.url);
}

describe('write coalescing', () => {
  test('under load every subscriber gets every event once, in channel order', TO, async (t) => {
    const srv = await startServer({ threads: 2, logLevel: 'warn', extraArgs: PER_IP });
    t.after(() => srv.stop());
    const m = await fanOut(srv, 'co.on');
    const writes = m.get('flowcast_socket_writes_total');
    const passes = m.get('flowcast_stream_write_passes_total');
    assert.ok(passes > 0, 'no stream write pass was counted');
    // Coalescing at all (held passes or not): fewer writes than deliveries.
    assert.ok(writes < SUBS * EVENTS / 2, `${writes} writes for ${SUBS * EVENTS} deliveries`);
  });

  test('--coalesce-ms 0 never holds a pass, and still delivers everything', TO, async (t) => {
    const srv = await startServer({ threads: 2, logLevel: 'warn', extraArgs: [...PER_IP, '--coalesce-ms', '0'] });
    t.after(() => srv.stop());
    const m = await fanOut(srv, 'co.off');
    assert.ok(m.get('flowcast_stream_write_passes_total') > 0);
    assert.equal(m.get('flowcast_stream_write_holds_total'), 0);
  });

  test('io_uring batches unheld passes; --io-uring=false writes each socket itself, the same', TO, async (t) => {
    // Passes never held: with io_uring (the default) their sends are batched,
    // where the kernel allows it (this one does: see docs/performance.md).
    const on = await startServer({ threads: 2, logLevel: 'info', extraArgs: [...PER_IP, '--coalesce-ms', '0'] });
    t.after(() => on.stop());
    const mOn = await fanOut(on, 'co.uring');
    if (on.stderrText().includes('io_uring not available')) {
      // A kernel or sandbox without io_uring: the server said so and writes directly.
      assert.equal(mOn.get('flowcast_socket_writes_batched_total'), 0);
    } else {
      assert.ok(mOn.get('flowcast_socket_writes_batched_total') > 0, 'no send went through io_uring');
    }
    assert.ok(mOn.get('flowcast_socket_writes_batched_total') <= mOn.get('flowcast_socket_writes_total'));
    const off = await startServer({ threads: 2, logLevel: 'warn', extraArgs: [...PER_IP, '--coalesce-ms', '0', '--io-uring=false'] });
    t.after(() => off.stop());
    const mOff = await fanOut(off, 'co.plain');
    assert.equal(mOff.get('flowcast_socket_writes_batched_total'), 0);
    assert.ok(mOff.get('flowcast_socket_writes_total') > 0);
    const bad = spawnSync(BIN, ['serve', '--listen', '127.0.0.1:1', '--io-uring=maybe'], { encoding: 'utf8' });
    assert.notEqual(bad.status, 0);
    assert.match(bad.stderr, /io-uring wants true or false, got 'maybe'/);
  });

  test('a --coalesce-ms past 1000 is refused with a clear message', () => {
    const r = spawnSync(BIN, ['serve', '--listen', '127.0.0.1:1', '--coalesce-ms', '5000'], { encoding: 'utf8' });
    assert.notEqual(r.status, 0);
    assert.match(r.stderr, /coalesce-ms: at most 1000/);
  });
});
