// Operations: /healthz, /metrics, request logs, the dashboard page, fan-out
// across loop threads, and SIGTERM with open streams.
import { describe, test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import {
  startServer,
  publishOk,
  request,
  metrics,
  rawConnect,
  assertHealthy,
  eventually,
  sanitizerReport,
  sleep,
  T,
} from './lib/server.mjs';
import { subscribe } from './lib/sse.mjs';

const TO = { timeout: T(40000) };

describe('healthz, metrics, logs', () => {
  let srv;
  let url;
  before(async () => {
    srv = await startServer({ logLevel: 'info' });
    url = srv.url;
  });
  after(async () => {
    await srv?.stop();
  });

  test('GET /healthz is 200 {"status":"ok"} as JSON', TO, async () => {
    const r = await request(`${url}/healthz`);
    assert.equal(r.status, 200);
    assert.match(r.headers.get('content-type') || '', /^application\/json/);
    assert.deepEqual(r.json, { status: 'ok' });
  });

  test('prints "listening" with the address when ready', TO, async () => {
    const out = srv.stderrText() + srv.stdoutText();
    const line = out.split('\n').find((l) => l.includes('listening'));
    assert.ok(line, `no "listening" line in:\n${out.slice(0, 2000)}`);
    assert.ok(line.includes(`127.0.0.1:${srv.port}`), `listening line without the address: ${line}`);
  });

  test('one logfmt line per request on stderr', TO, async () => {
    const before = srv.stderrText().length;
    const marker = `logcheck${Date.now()}`;
    await publishOk(url, marker, { a: 1 });
    await request(`${url}/api/v1/channels/${marker}/events`);
    await request(`${url}/api/v1/nope-${marker}`);
    const lines = await eventually(
      () => {
        const ls = srv
          .stderrText()
          .slice(before)
          .split('\n')
          .filter((l) => l.includes(marker));
        return ls.length >= 3 ? ls : null;
      },
      T(3000),
      'three request log lines',
    );
    assert.equal(lines.length, 3, lines.join('\n'));
    for (const l of lines) {
      // logfmt: key=value pairs, values quoted when they hold spaces
      assert.match(l, /^(\s*[A-Za-z_][\w.-]*=("([^"\\]|\\.)*"|\S*))+\s*$/, `not logfmt: ${l}`);
    }
    assert.match(lines[0], /\b201\b/);
    assert.match(lines[0], /POST/);
    assert.match(lines[1], /\b200\b/);
    assert.match(lines[1], /GET/);
    assert.match(lines[2], /\b404\b/);
  });

  test('/metrics is Prometheus text with the core series', TO, async () => {
    const m = await metrics(url);
    assert.match(m.headers.get('content-type') || '', /^text\/plain/);
    for (const name of [
      'flowcast_connections',
      'flowcast_subscribers',
      'flowcast_events_published_total',
      'flowcast_events_delivered_total',
      'flowcast_subscriber_drops_total',
    ]) {
      assert.ok(m.has(name), `${name} missing:\n${m.text}`);
      assert.ok(Number.isFinite(m.get(name)), `${name} is not a number`);
    }
    assert.match(m.text, /# TYPE flowcast_events_published_total counter/);
    assert.match(m.text, /# TYPE flowcast_subscribers gauge/);
  });

  test('metrics follow publishes, deliveries, subscribers and connections', TO, async (t) => {
    const m0 = await metrics(url);
    const s1 = await subscribe(`${url}/api/v1/channels/met.a/sse`);
    const s2 = await subscribe(`${url}/api/v1/sse?channel=met.a&channel=met.b`);
    t.after(() => {
      s1.close();
      s2.close();
    });
    // two more raw connections (fetch reuses pooled ones, so count those separately)
    const c1 = await rawConnect(srv.port);
    const c2 = await rawConnect(srv.port);
    t.after(() => {
      c1.destroy();
      c2.destroy();
    });
    await c1.write('GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n');
    await c2.write('GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n');
    await c1.waitResponses(1);
    await c2.waitResponses(1);
    const m1 = await metrics(url);
    const dSubs = m1.get('flowcast_subscribers') - m0.get('flowcast_subscribers');
    // two streams, three channel subscriptions: either way of counting is fine
    assert.ok(dSubs === 2 || dSubs === 3, `flowcast_subscribers went up by ${dSubs}`);
    assert.ok(
      m1.get('flowcast_connections') >= m0.get('flowcast_connections') + 2,
      `connections ${m0.get('flowcast_connections')} -> ${m1.get('flowcast_connections')}`,
    );
    c1.destroy();
    c2.destroy();
    await eventually(
      async () => (await metrics(url)).get('flowcast_connections') <= m1.get('flowcast_connections') - 2,
      T(5000),
      'flowcast_connections to go down when clients leave',
    );
    for (let i = 0; i < 3; i++) await publishOk(url, 'met.a', { i });
    await publishOk(url, 'met.b', { b: 1 });
    await s1.waitEvents(3);
    await s2.waitEvents(4);
    const m2 = await metrics(url);
    assert.equal(m2.get('flowcast_events_published_total') - m1.get('flowcast_events_published_total'), 4);
    assert.equal(m2.get('flowcast_events_delivered_total') - m1.get('flowcast_events_delivered_total'), 7);
    s1.close();
    s2.close();
    await eventually(
      async () => (await metrics(url)).get('flowcast_subscribers') === m0.get('flowcast_subscribers'),
      T(5000),
      'subscribers back to where they were',
    );
  });

  test('an ndjson batch counts each event as published', TO, async () => {
    const m0 = await metrics(url);
    await publishOk(url, 'met.nd', '{"data":1}\n{"data":2}\n{"data":3}\n', { contentType: 'application/x-ndjson' });
    const m1 = await metrics(url);
    assert.equal(m1.get('flowcast_events_published_total') - m0.get('flowcast_events_published_total'), 3);
  });

  test('GET / serves the dashboard HTML page', TO, async () => {
    const r = await request(`${url}/`);
    assert.equal(r.status, 200);
    assert.match(r.headers.get('content-type') || '', /^text\/html/);
    assert.match(r.text, /<html|<!doctype html/i);
  });
});

describe('log level', () => {
  test('--log-level warn logs no request lines', TO, async (t) => {
    const srv = await startServer({ logLevel: 'warn' });
    t.after(() => srv.stop());
    const marker = `quiet${Date.now()}`;
    await publishOk(srv.url, marker, { a: 1 });
    await request(`${srv.url}/api/v1/channels/${marker}/events`);
    await sleep(200);
    assert.ok(!srv.stderrText().includes(marker), srv.stderrText());
  });
});

describe('threads', () => {
  test('with --threads 2, events reach subscribers on every connection', TO, async (t) => {
    const srv = await startServer({ threads: 2 });
    t.after(() => srv.stop());
    const subs = [];
    t.after(() => subs.forEach((s) => s.close()));
    for (let i = 0; i < 20; i++) {
      subs.push(await subscribe(`${srv.url}/api/v1/channels/thr.fan/sse?replay=0`));
    }
    // and a few on a multi-channel stream
    for (let i = 0; i < 4; i++) {
      subs.push(await subscribe(`${srv.url}/api/v1/sse?channel=thr.other&channel=thr.fan&replay=0`));
    }
    // publish from one keep-alive connection
    const c = await rawConnect(srv.port);
    t.after(() => c.destroy());
    const ids = [];
    for (let i = 0; i < 10; i++) {
      const body = JSON.stringify({ i });
      await c.write(
        `POST /api/v1/channels/thr.fan/events HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n` +
          `Content-Length: ${body.length}\r\n\r\n${body}`,
      );
      const rs = await c.waitResponses(i + 1);
      assert.equal(rs[i]?.status, 201, c.text());
      const j = JSON.parse(rs[i].body);
      assert.equal(j.subscribers, 24);
      ids.push(j.id);
    }
    for (const [k, s] of subs.entries()) {
      await s.waitEvents(10, T(5000));
      assert.deepEqual(
        s.events.map((e) => e.id),
        ids,
        `subscriber ${k}`,
      );
    }
    // concurrent publishers on many connections: every subscriber sees ids increasing
    const more = await Promise.all(Array.from({ length: 30 }, (_, i) => publishOk(srv.url, 'thr.fan', { c: i })));
    for (const [k, s] of subs.entries()) {
      await s.waitEvents(40, T(5000));
      const got = s.events.map((e) => BigInt(e.id));
      for (let i = 1; i < got.length; i++) assert.ok(got[i] > got[i - 1], `subscriber ${k}: ids out of order`);
      assert.equal(new Set(got).size, 40);
    }
    assert.equal(more.length, 30);
  });
});

describe('SIGTERM', () => {
  test('ends open streams and exits 0 promptly', TO, async () => {
    const srv = await startServer({ threads: 2, keepalive: 1 });
    let stopped = false;
    try {
      const streams = [];
      for (let i = 0; i < 6; i++) streams.push(await subscribe(`${srv.url}/api/v1/channels/term.${i % 2}/sse`));
      // an idle keep-alive connection and a half-sent request must not hold the exit up
      const idle = await rawConnect(srv.port);
      await idle.write('GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n');
      await idle.waitResponses(1);
      await publishOk(srv.url, 'term.0', { last: true });
      await streams[0].waitEvents(1);

      const t0 = Date.now();
      srv.sigterm();
      const ended = await Promise.all(streams.map((s) => s.waitEnd(T(5000))));
      assert.deepEqual(
        ended,
        streams.map(() => true),
        'every SSE stream ended',
      );
      assert.ok(await idle.waitClose(T(5000)), 'idle keep-alive connection closed');
      idle.destroy();
      await srv.stop(); // asserts exit code 0 and no sanitizer report
      stopped = true;
      assert.ok(Date.now() - t0 < T(5000), `exit took ${Date.now() - t0} ms`);
      // a stream that ended must have ended at an event boundary
      for (const s of streams) assert.ok(s.raw.endsWith('\n\n'), `stream cut mid-event: ${JSON.stringify(s.raw.slice(-50))}`);
    } finally {
      if (!stopped) await srv.stop().catch(() => {});
    }
    assert.equal(sanitizerReport(srv.stderrText()), null);
  });

  test('a half-received request body does not hold up the exit', TO, async () => {
    const srv = await startServer({});
    let stopped = false;
    try {
      const partial = await rawConnect(srv.port);
      await partial.write('POST /api/v1/channels/term.p/events HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n{"a"');
      const partialHead = await rawConnect(srv.port);
      await partialHead.write('GET /healthz HTTP/1.1\r\nHost: x\r\n');
      await sleep(100);
      srv.sigterm();
      const closed = await Promise.all([partial.waitClose(T(5000)), partialHead.waitClose(T(5000))]);
      partial.destroy();
      partialHead.destroy();
      assert.deepEqual(closed, [true, true], `still open ${T(5000)} ms after SIGTERM: [partial body, partial head]`);
      await srv.stop();
      stopped = true;
    } finally {
      if (!stopped) await srv.stop().catch(() => {});
    }
  });

  test('exits 0 right after start, with no client ever connected', TO, async () => {
    const srv = await startServer({});
    await srv.stop();
  });

  test('stops accepting connections after SIGTERM', TO, async () => {
    const srv = await startServer({});
    const port = srv.port;
    await srv.stop();
    await assert.rejects(fetch(`http://127.0.0.1:${port}/healthz`, { signal: AbortSignal.timeout(2000) }));
  });
});

describe('restart', () => {
  test('restarts on the same port and data dir', TO, async (t) => {
    const srv = await startServer({});
    t.after(() => srv.stop());
    const port = srv.port;
    await publishOk(srv.url, 'rs.a', 1);
    await srv.restart();
    assert.equal(srv.port, port);
    await assertHealthy(srv.url);
    const r = await publishOk(srv.url, 'rs.a', 2);
    assert.match(r.id, /^\d+$/);
  });
});
