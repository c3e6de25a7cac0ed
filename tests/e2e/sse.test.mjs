// Server-Sent Events over fetch: headers, wire format, replay, keepalive,
// multi-channel streams, Last-Event-ID resume and gaps.
import { describe, test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { startServer, publishOk, assertJsonError, assertHealthy, sleep, T } from './lib/server.mjs';
import { openSSE, subscribe } from './lib/sse.mjs';

const TO = { timeout: T(30000) };
const big = (s) => BigInt(s);

let srv; // default retention (100), keepalive 1 s
let url;
let small; // retention 5, for gaps
before(async () => {
  [srv, small] = await Promise.all([startServer({ keepalive: 1 }), startServer({ keepalive: 1, retention: 5 })]);
  url = srv.url;
});
after(async () => {
  await Promise.all([srv?.stop(), small?.stop()]);
});

const chURL = (base, ch, q = '') => `${base}/api/v1/channels/${ch}/sse${q}`;

/** Opens a stream, registering its close with the test. */
async function sub(t, u, opts) {
  const s = await subscribe(u, opts);
  t.after(() => s.close());
  return s;
}

describe('stream basics', () => {
  test('status, headers and the retry line', TO, async (t) => {
    const s = await sub(t, chURL(url, 'sse.headers'));
    assert.equal(s.status, 200);
    assert.equal(s.headers.get('content-type'), 'text/event-stream; charset=utf-8');
    assert.equal(s.headers.get('cache-control'), 'no-cache');
    assert.equal(s.headers.get('x-accel-buffering'), 'no');
    await s.waitFor((x) => x.raw.length >= 13, T(3000), 'retry line');
    assert.ok(s.raw.startsWith('retry: 3000\n\n'), `stream starts with ${JSON.stringify(s.raw.slice(0, 40))}`);
    assert.equal(s.retry, 3000);
  });

  test('live event: exact frame, id equals the publish id', TO, async (t) => {
    const s = await sub(t, chURL(url, 'sse.live'));
    const r = await publishOk(url, 'sse.live', { n: 1 });
    const [e] = await s.waitEvents(1);
    assert.equal(e.id, r.id);
    assert.equal(e.event, undefined);
    assert.equal(e.data, '{"n":1}');
    assert.ok(s.raw.includes(`id: ${r.id}\ndata: {"n":1}\n\n`), `frame: ${JSON.stringify(s.raw)}`);
  });

  test('named event carries an event: line', TO, async (t) => {
    const s = await sub(t, chURL(url, 'sse.named'));
    const r = await publishOk(url, 'sse.named', { k: 'v' }, { event: 'thing.done' });
    const [e] = await s.waitEvents(1);
    assert.equal(e.event, 'thing.done');
    assert.ok(
      s.raw.includes(`id: ${r.id}\nevent: thing.done\ndata: {"k":"v"}\n\n`),
      `frame: ${JSON.stringify(s.raw)}`,
    );
  });

  test('multi-line data becomes one data: line per line', TO, async (t) => {
    const s = await sub(t, chURL(url, 'sse.lines'));
    await publishOk(url, 'sse.lines', 'first\nsecond\n\nfourth', { contentType: 'text/plain' });
    await publishOk(url, 'sse.lines', 'cr\rlf\r\nend', { contentType: 'text/plain' });
    const [a, b] = await s.waitEvents(2);
    assert.equal(a.data, 'first\nsecond\n\nfourth');
    assert.match(s.raw, /data: first\ndata: second\ndata: ?\ndata: fourth\n\n/);
    // No bare CR may reach the stream: it would end a line inside a data: field.
    assert.equal(b.data, 'cr\nlf\nend');
    assert.ok(!/data: [^\n]*\r/.test(s.raw), 'raw CR inside a data line');
  });

  test('pretty-printed JSON survives as data lines', TO, async (t) => {
    const s = await sub(t, chURL(url, 'sse.pretty'));
    const pretty = JSON.stringify({ a: [1, 2], b: { c: 'd' } }, null, 2);
    await publishOk(url, 'sse.pretty', pretty, { contentType: 'application/json' });
    const [e] = await s.waitEvents(1);
    assert.deepEqual(JSON.parse(e.data), { a: [1, 2], b: { c: 'd' } });
    assert.equal(e.data, pretty);
  });

  test('unicode text arrives intact', TO, async (t) => {
    const s = await sub(t, chURL(url, 'sse.utf8'));
    const text = 'Grüße — 日本語 — 🎉🚀';
    await publishOk(url, 'sse.utf8', text, { contentType: 'text/plain; charset=utf-8' });
    const [e] = await s.waitEvents(1);
    assert.equal(e.data, text);
  });

  test('keepalive comments arrive every --keepalive seconds', TO, async (t) => {
    const s = await sub(t, chURL(url, 'sse.keepalive'));
    const t0 = Date.now();
    await s.waitFor((x) => x.comments.filter((c) => c === 'keepalive').length >= 2, T(5000), '2 keepalives');
    const elapsed = Date.now() - t0;
    assert.ok(elapsed >= 900, `two keepalives after ${elapsed} ms: too fast for --keepalive 1`);
    assert.ok(s.raw.includes(':keepalive\n\n'), JSON.stringify(s.raw));
    assert.equal(s.events.length, 0);
  });

  test('events published during a stream arrive promptly and in order', TO, async (t) => {
    const s = await sub(t, chURL(url, 'sse.order'));
    const ids = [];
    for (let i = 0; i < 50; i++) ids.push((await publishOk(url, 'sse.order', { i })).id);
    const ev = await s.waitEvents(50);
    assert.deepEqual(
      ev.map((e) => e.id),
      ids,
    );
    assert.deepEqual(
      ev.map((e) => JSON.parse(e.data).i),
      [...Array(50).keys()],
    );
  });
});

describe('replay', () => {
  test('replays retained events oldest first, then live', TO, async (t) => {
    const ids = [];
    for (let i = 0; i < 5; i++) ids.push((await publishOk(url, 'rep.basic', { i })).id);
    const s = await sub(t, chURL(url, 'rep.basic'));
    await s.waitEvents(5);
    const live = await publishOk(url, 'rep.basic', { i: 5 });
    const ev = await s.waitEvents(6);
    assert.deepEqual(
      ev.map((e) => e.id),
      [...ids, live.id],
    );
    // the replay comes after the retry line
    assert.ok(s.raw.startsWith('retry: 3000\n\n'));
  });

  test('default replay is the newest 100', TO, async (t) => {
    const ids = [];
    for (let i = 0; i < 105; i++) ids.push((await publishOk(url, 'rep.hundred', { i })).id);
    const s = await sub(t, chURL(url, 'rep.hundred'));
    await s.waitEvents(100);
    await sleep(T(300));
    assert.equal(s.events.length, 100, 'replayed more than 100');
    assert.deepEqual(
      s.events.map((e) => e.id),
      ids.slice(5),
    );
  });

  test('?replay=N gives the newest N; ?replay=0 gives none', TO, async (t) => {
    const ids = [];
    for (let i = 0; i < 6; i++) ids.push((await publishOk(url, 'rep.n', { i })).id);
    const two = await sub(t, chURL(url, 'rep.n', '?replay=2'));
    const zero = await sub(t, chURL(url, 'rep.n', '?replay=0'));
    await two.waitEvents(2);
    await sleep(T(300));
    assert.deepEqual(
      two.events.map((e) => e.id),
      ids.slice(4),
    );
    assert.equal(zero.events.length, 0);
    const live = await publishOk(url, 'rep.n', { i: 6 });
    const [first] = await zero.waitEvents(1);
    assert.equal(first.id, live.id);
    await two.waitEvents(3);
    assert.equal(two.events[2].id, live.id);
  });

  test('?replay larger than what is retained gives everything retained', TO, async (t) => {
    const ids = [];
    for (let i = 0; i < 3; i++) ids.push((await publishOk(url, 'rep.more', { i })).id);
    const s = await sub(t, chURL(url, 'rep.more', '?replay=1000'));
    await s.waitEvents(3);
    await sleep(T(200));
    assert.deepEqual(
      s.events.map((e) => e.id),
      ids,
    );
  });

  test('a bad ?replay is 400', TO, async () => {
    for (const q of ['?replay=abc', '?replay=-1']) {
      const r = await openSSE(chURL(url, 'rep.bad', q));
      try {
        assertJsonError(r, 400);
      } finally {
        r.close();
      }
    }
  });
});

describe('multi-channel', () => {
  test('/api/v1/sse?channel=a&channel=b merges replay in id order, then live from both', TO, async (t) => {
    const ids = [];
    for (let i = 0; i < 6; i++) {
      const ch = i % 2 ? 'mc.b' : 'mc.a';
      ids.push((await publishOk(url, ch, { ch, i })).id);
    }
    await publishOk(url, 'mc.other', { not: 'subscribed' });
    const s = await sub(t, `${url}/api/v1/sse?channel=mc.a&channel=mc.b`);
    assert.equal(s.headers.get('content-type'), 'text/event-stream; charset=utf-8');
    await s.waitEvents(6);
    assert.deepEqual(
      s.events.map((e) => e.id),
      ids,
    );
    const lb = await publishOk(url, 'mc.b', { live: 'b' });
    await publishOk(url, 'mc.other', { not: 'subscribed' });
    const la = await publishOk(url, 'mc.a', { live: 'a' });
    await s.waitEvents(8);
    await sleep(T(200));
    assert.deepEqual(
      s.events.slice(6).map((e) => e.id),
      [lb.id, la.id],
    );
    assert.equal(s.events.length, 8);
  });

  test('the same channel twice is delivered once', TO, async (t) => {
    const s = await sub(t, `${url}/api/v1/sse?channel=mc.dup&channel=mc.dup`);
    await publishOk(url, 'mc.dup', 1);
    await s.waitEvents(1);
    await sleep(T(300));
    assert.equal(s.events.length, 1, JSON.stringify(s.events));
  });

  test('no channel, or a bad one, is 400', TO, async () => {
    for (const q of ['', '?channel=bad%20name', '?channel=ok&channel=' + 'x'.repeat(129)]) {
      const r = await openSSE(`${url}/api/v1/sse${q}`);
      try {
        assertJsonError(r, 400);
      } finally {
        r.close();
      }
    }
  });
});

describe('resume', () => {
  async function fiveEvents(ch, base = url) {
    const ids = [];
    for (let i = 0; i < 5; i++) ids.push((await publishOk(base, ch, { i })).id);
    return ids;
  }

  test('Last-Event-ID header resumes after that id, then live', TO, async (t) => {
    const ids = await fiveEvents('res.header');
    const s = await sub(t, chURL(url, 'res.header'), { headers: { 'Last-Event-ID': ids[1] } });
    await s.waitEvents(3);
    const live = await publishOk(url, 'res.header', { i: 5 });
    await s.waitEvents(4);
    await sleep(T(200));
    assert.deepEqual(
      s.events.map((e) => e.id),
      [...ids.slice(2), live.id],
    );
  });

  test('?lastEventId= resumes the same way', TO, async (t) => {
    const ids = await fiveEvents('res.query');
    const s = await sub(t, chURL(url, 'res.query', `?lastEventId=${ids[3]}`));
    await s.waitEvents(1);
    await sleep(T(300));
    assert.deepEqual(
      s.events.map((e) => e.id),
      [ids[4]],
    );
  });

  test('Last-Event-ID wins over ?replay (no older events)', TO, async (t) => {
    const ids = await fiveEvents('res.replay');
    const s = await sub(t, chURL(url, 'res.replay', '?replay=5'), { headers: { 'Last-Event-ID': ids[2] } });
    await s.waitEvents(2);
    await sleep(T(300));
    assert.deepEqual(
      s.events.map((e) => e.id),
      ids.slice(3),
    );
  });

  test('resuming at the newest id replays nothing; then live', TO, async (t) => {
    const ids = await fiveEvents('res.newest');
    const s = await sub(t, chURL(url, 'res.newest'), { headers: { 'Last-Event-ID': ids[4] } });
    await sleep(T(300));
    assert.equal(s.events.length, 0, JSON.stringify(s.events));
    const live = await publishOk(url, 'res.newest', { live: 1 });
    const [e] = await s.waitEvents(1);
    assert.equal(e.id, live.id);
  });

  test('Last-Event-ID: 0 on a fully retained channel gives everything, no gap', TO, async (t) => {
    const ids = await fiveEvents('res.zero');
    const s = await sub(t, chURL(url, 'res.zero'), { headers: { 'Last-Event-ID': '0' } });
    await s.waitEvents(5);
    await sleep(T(200));
    assert.deepEqual(
      s.events.map((e) => e.id),
      ids,
    );
    assert.ok(!s.events.some((e) => e.event === 'flowcast.gap'));
  });

  test('an id from another channel resumes by id order', TO, async (t) => {
    const a1 = await publishOk(url, 'res.x1', 'a1', { contentType: 'text/plain' });
    const b1 = await publishOk(url, 'res.x2', 'b1', { contentType: 'text/plain' });
    const a2 = await publishOk(url, 'res.x1', 'a2', { contentType: 'text/plain' });
    const s = await sub(t, chURL(url, 'res.x1'), { headers: { 'Last-Event-ID': b1.id } });
    await s.waitEvents(1);
    await sleep(T(200));
    assert.deepEqual(
      s.events.map((e) => e.id),
      [a2.id],
    );
    assert.ok(big(a1.id) < big(b1.id));
  });

  test('multi-channel resume: merged in id order, no duplicates, nothing older', TO, async (t) => {
    const seq = [];
    for (const [ch, i] of [
      ['mr.a', 0],
      ['mr.b', 1],
      ['mr.a', 2],
      ['mr.b', 3],
      ['mr.a', 4],
      ['mr.b', 5],
    ]) {
      seq.push((await publishOk(url, ch, { i })).id);
    }
    const s = await sub(t, `${url}/api/v1/sse?channel=mr.a&channel=mr.b`, { headers: { 'Last-Event-ID': seq[1] } });
    await s.waitEvents(4);
    const live = await publishOk(url, 'mr.a', { i: 6 });
    await s.waitEvents(5);
    await sleep(T(200));
    assert.deepEqual(
      s.events.map((e) => e.id),
      [...seq.slice(2), live.id],
    );
    const q = await sub(t, `${url}/api/v1/sse?channel=mr.b&channel=mr.a&lastEventId=${seq[3]}`);
    await q.waitEvents(3);
    await sleep(T(200));
    assert.deepEqual(
      q.events.map((e) => e.id),
      [seq[4], seq[5], live.id],
    );
  });

  for (const bad of ['abc', '-1', '1.5', '12abc', '0x10', '18446744073709551616', '99999999999999999999999']) {
    test(`malformed Last-Event-ID ${JSON.stringify(bad)} is 400`, TO, async () => {
      const r = await openSSE(chURL(url, 'res.bad'), { headers: { 'Last-Event-ID': bad } });
      try {
        assertJsonError(r, 400);
      } finally {
        r.close();
      }
      const q = await openSSE(chURL(url, 'res.bad', `?lastEventId=${encodeURIComponent(bad)}`));
      try {
        assertJsonError(q, 400);
      } finally {
        q.close();
      }
      await assertHealthy(url);
    });
  }

  test('the largest u64 is a valid Last-Event-ID', TO, async (t) => {
    const s = await sub(t, chURL(url, 'res.max'), { headers: { 'Last-Event-ID': '18446744073709551615' } });
    assert.equal(s.status, 200);
  });
});

describe('gaps (retention 5)', () => {
  async function ten(ch) {
    const ids = [];
    for (let i = 0; i < 10; i++) ids.push((await publishOk(small.url, ch, { i })).id);
    return ids;
  }

  test('resuming past evicted events starts with flowcast.gap', TO, async (t) => {
    const ids = await ten('gap.one');
    // retained: ids[5..9]; resuming after ids[1] lost ids[2..4]
    const s = await sub(t, chURL(small.url, 'gap.one'), { headers: { 'Last-Event-ID': ids[1] } });
    await s.waitEvents(6);
    await sleep(T(200));
    const [gap, ...rest] = s.events;
    assert.equal(gap.event, 'flowcast.gap', JSON.stringify(s.events));
    assert.deepEqual(JSON.parse(gap.data), { channel: 'gap.one', lost: 3, exact: true, next: ids[5] });
    assert.deepEqual(
      rest.map((e) => e.id),
      ids.slice(5),
    );
    // the gap is the first thing after the retry line
    const afterRetry = s.raw.slice('retry: 3000\n\n'.length);
    assert.match(afterRetry, /^(id: [^\n]*\n)?event: flowcast\.gap\n/);
  });

  test('resuming right at the eviction boundary has no gap', TO, async (t) => {
    const ids = await ten('gap.edge');
    const s = await sub(t, chURL(small.url, 'gap.edge'), { headers: { 'Last-Event-ID': ids[4] } });
    await s.waitEvents(5);
    await sleep(T(300));
    assert.deepEqual(
      s.events.map((e) => [e.event, e.id]),
      ids.slice(5).map((id) => [undefined, id]),
    );
  });

  test('?lastEventId= reports the gap too', TO, async (t) => {
    const ids = await ten('gap.query');
    const s = await sub(t, chURL(small.url, 'gap.query', `?lastEventId=${ids[0]}`));
    await s.waitEvents(6);
    assert.equal(s.events[0].event, 'flowcast.gap');
    assert.deepEqual(JSON.parse(s.events[0].data), { channel: 'gap.query', lost: 4, exact: true, next: ids[5] });
  });

  test('gap on one channel of a multi-channel stream', TO, async (t) => {
    const ids = await ten('gap.ma');
    const b = await publishOk(small.url, 'gap.mb', { b: 1 });
    const s = await sub(t, `${small.url}/api/v1/sse?channel=gap.ma&channel=gap.mb`, {
      headers: { 'Last-Event-ID': ids[2] },
    });
    await s.waitEvents(7);
    await sleep(T(200));
    const gaps = s.events.filter((e) => e.event === 'flowcast.gap');
    assert.equal(gaps.length, 1, JSON.stringify(s.events));
    assert.deepEqual(JSON.parse(gaps[0].data), { channel: 'gap.ma', lost: 2, exact: true, next: ids[5] });
    assert.equal(s.events[0].event, 'flowcast.gap', 'the gap comes first');
    assert.deepEqual(
      s.events.filter((e) => e.event !== 'flowcast.gap').map((e) => e.id),
      [...ids.slice(5), b.id],
    );
  });

  test('a gap larger than the retention: exact count, or an honest lower bound', TO, async (t) => {
    const ids = [];
    for (let i = 0; i < 30; i++) ids.push((await publishOk(small.url, 'gap.big', { i })).id);
    const s = await sub(t, chURL(small.url, 'gap.big'), { headers: { 'Last-Event-ID': ids[0] } });
    await s.waitEvents(6);
    await sleep(T(200));
    assert.equal(s.events[0].event, 'flowcast.gap');
    const gap = JSON.parse(s.events[0].data);
    assert.equal(gap.channel, 'gap.big');
    assert.equal(gap.next, ids[25]);
    assert.equal(typeof gap.exact, 'boolean');
    if (gap.exact) assert.equal(gap.lost, 24);
    else assert.ok(gap.lost >= 1 && gap.lost <= 24, `lost ${gap.lost}`);
    assert.deepEqual(
      s.events.slice(1).map((e) => e.id),
      ids.slice(25),
    );
  });

  test('a gap event does not break resume: its id (if any) is not past the next event', TO, async (t) => {
    const ids = await ten('gap.id');
    const s = await sub(t, chURL(small.url, 'gap.id'), { headers: { 'Last-Event-ID': ids[0] } });
    await s.waitEvents(6);
    const gap = s.events[0];
    assert.equal(gap.event, 'flowcast.gap');
    // A client that stored lastEventId right after the gap must still get ids[5..9] on reconnect.
    if (gap.lastEventId) assert.ok(big(gap.lastEventId) < big(ids[5]), `gap lastEventId ${gap.lastEventId}`);
  });
});

describe('lifecycle of a stream', () => {
  test('a client disconnect is noticed: subscriber count goes back down', TO, async () => {
    const s = await subscribe(chURL(url, 'life.count'));
    const r1 = await publishOk(url, 'life.count', 1);
    assert.equal(r1.subscribers, 1);
    s.close();
    let n = 1;
    const deadline = Date.now() + T(5000);
    while (Date.now() < deadline) {
      n = (await publishOk(url, 'life.count', 2)).subscribers;
      if (n === 0) break;
      await sleep(100);
    }
    assert.equal(n, 0, 'the closed subscriber is still counted');
  });

  test('many short-lived streams do not disturb the server', TO, async () => {
    for (let i = 0; i < 30; i++) {
      const s = await subscribe(chURL(url, `life.churn${i % 3}`));
      s.close();
    }
    await assertHealthy(url);
    const r = await publishOk(url, 'life.churn0', 1);
    assert.ok(r.subscribers <= 10);
  });
});

test('a stream writes its one log line when it ends, at info, with its bytes and duration', { timeout: T(20000) }, async (t) => {
  const h = await startServer({});
  t.after(() => h.stop());
  const s = await subscribe(`${h.url}/api/v1/channels/logged/sse?access_token=not-logged`);
  await publishOk(h.url, 'logged', { n: 1 });
  await s.waitFor((x) => x.events.some((e) => e.data === '{"n":1}'), T(5000), 'the event');
  await sleep(T(300));
  assert.doesNotMatch(h.stderrText(), /msg=stream /, 'nothing is logged while the stream is open');
  s.close();
  let line;
  for (let i = 0; i < 50 && !line; i++) {
    await sleep(100);
    line = h.stderrText().split('\n').find((l) => / msg=stream /.test(l));
  }
  assert.ok(line, h.stderrText());
  assert.match(line, /level=info msg=stream method=GET target="\/api\/v1\/channels\/logged\/sse\?access_token=REDACTED" status=200 in_bytes=0 bytes=(\d+) ms=(\d+) peer=127\.0\.0\.1:\d+$/);
  const [, bytes, ms] = line.match(/bytes=(\d+) ms=(\d+)/).map(Number);
  assert.ok(bytes > 20, `bytes ${bytes}`);
  assert.ok(ms >= 300, `ms ${ms}`);
});
