// Security issue 13, HTTP slice: request parsing and the HTTP connection.
// Chunked trailers vs. the parsed head (use-after-free), unread pipelined
// answers (backpressure, --send-timeout), slow bodies (--body-timeout), HEAD on
// a stream, transfer codings, Host, the HTTP version, limits that say their
// limit, and JSON error bodies.
import { describe, test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import net from 'node:net';
import {
  startServer,
  rawConnect,
  rawExchange,
  rawJsonError,
  storedEvents,
  assertHealthy,
  metrics,
  eventually,
  serveSupports,
  sleep,
  T,
} from './lib/server.mjs';

const TO = { timeout: T(60000) };
const SEND_TIMEOUT = 2; // seconds
const BODY_TIMEOUT = 2; // seconds

/** Flags the test server gets when the binary knows them (so that the tests
 * also run, and fail on behaviour, against a binary from before the fix). */
function optionalFlags(pairs) {
  const out = [];
  for (const [flag, v] of pairs) if (serveSupports(flag)) out.push(flag, String(v));
  return out;
}

let srv;
let port;
let url;
before(async () => {
  srv = await startServer({
    threads: 1,
    headerTimeout: 2,
    extraArgs: optionalFlags([
      ['--send-timeout', SEND_TIMEOUT],
      ['--body-timeout', BODY_TIMEOUT],
      ['--idle-timeout', 30],
    ]),
  });
  port = srv.port;
  url = srv.url;
});
after(async () => {
  await srv?.stop();
});

/** The server's resident memory in MB (VmRSS). */
function rssMB(pid) {
  const m = /VmRSS:\s+(\d+) kB/.exec(fs.readFileSync(`/proc/${pid}/status`, 'utf8'));
  return Number(m[1]) / 1024;
}

const get = (path, extra = '') => `GET ${path} HTTP/1.1\r\nHost: x\r\n${extra}\r\n`;

describe('chunked trailers (use-after-free)', () => {
  test('a publish with a 3000-byte trailer field is stored, answered 201 and logged with its target', TO, async () => {
    const ch = 'sec.trailer';
    const bytes =
      `POST /api/v1/channels/${ch}/events HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n` +
      `7\r\n{"a":1}\r\n0\r\nX-T: ${'a'.repeat(3000)}\r\n\r\n`;
    const { responses } = await rawExchange(port, bytes);
    assert.equal(responses[0]?.status, 201, `answered ${responses[0]?.status}: ${responses[0]?.body}`);
    const evs = await storedEvents(url, ch);
    assert.equal(evs.length, 1, JSON.stringify(evs));
    assert.deepEqual(evs[0].data, { a: 1 });
    await eventually(
      () => srv.stderrText().includes(`method=POST target=/api/v1/channels/${ch}/events status=201`),
      T(3000),
      'the request log line with its real target',
    );
    for (const line of srv.stderrText().split('\n').filter((l) => l.includes('msg=request'))) {
      const target = /target=("(?:[^"\\]|\\.)*"|\S+)/.exec(line)?.[1] ?? '';
      assert.ok(!/\\x|[^\x20-\x7e]/.test(target), `garbage target in the log: ${line.slice(0, 200)}`);
    }
  });

  test('several trailers, pipelined behind and ahead of other requests, keep every head intact', TO, async () => {
    const ch = 'sec.trailer2';
    const pub = (n) =>
      `POST /api/v1/channels/${ch}/events?event=e${n} HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n` +
      `Content-Type: application/json\r\nX-Before: ${'b'.repeat(500)}\r\n\r\n` +
      `${Buffer.byteLength(`{"n":${n}}`).toString(16)}\r\n{"n":${n}}\r\n0\r\nX-T1: ${'a'.repeat(4000)}\r\nX-T2: ${'c'.repeat(4000)}\r\n\r\n`;
    const { responses } = await rawExchange(port, pub(1) + get('/healthz') + pub(2), { responses: 3 });
    assert.deepEqual(
      responses.map((r) => r.status),
      [201, 200, 201],
      responses.map((r) => r.body).join('\n'),
    );
    const evs = await storedEvents(url, ch);
    assert.deepEqual(
      evs.map((e) => [e.event, e.data.n]),
      [
        ['e1', 1],
        ['e2', 2],
      ],
    );
  });

  test('trailer fields over the head limit are 431 and say so; nothing stored', TO, async () => {
    const ch = 'sec.trailer3';
    const bytes =
      `POST /api/v1/channels/${ch}/events HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n` +
      `7\r\n{"a":1}\r\n0\r\n${Array.from({ length: 5 }, (_, i) => `X-T${i}: ${'a'.repeat(4000)}\r\n`).join('')}\r\n`;
    const { responses } = await rawExchange(port, bytes);
    const j = rawJsonError(responses[0], 431);
    assert.match(j.error.message, /trailer fields larger than 16384 bytes/);
    assert.deepEqual(await storedEvents(url, ch), []);
    await assertHealthy(url);
  });
});

describe('unread pipelined answers', () => {
  /** Writes ~14 MB of pipelined requests and never reads; returns the socket and its state. */
  function flood(reqText) {
    const sock = net.connect({ port, host: '127.0.0.1' });
    const st = { closedAt: 0, error: null, sock };
    sock.on('error', (e) => {
      st.error = e;
    });
    sock.on('close', () => {
      st.closedAt = Date.now();
    });
    sock.pause(); // never reads an answer
    const one = Buffer.from(reqText);
    const buf = Buffer.alloc(Math.floor((14 * 1024 * 1024) / one.length) * one.length);
    for (let o = 0; o < buf.length; o += one.length) one.copy(buf, o);
    sock.on('connect', () => sock.write(buf, () => {}));
    return st;
  }

  test('14 MB of pipelined GET / never read: RSS stays under 100 MB and the server closes within --send-timeout', TO, async () => {
    const pid = srv.proc.pid;
    const st = flood('GET / HTTP/1.1\r\nHost: x\r\n\r\n');
    const t0 = Date.now();
    let max = 0;
    // The server stops reading once its unsent answers pass a bound; after
    // SEND_TIMEOUT seconds without write progress it closes the connection.
    // Its writes progress until the kernel's socket buffers are full (they
    // grow for several seconds on loopback: about 7 s here in all).
    const limit = T((SEND_TIMEOUT + 15) * 1000);
    while (!st.closedAt && Date.now() - t0 < limit) {
      max = Math.max(max, rssMB(pid));
      if (max > 100) break;
      await sleep(100);
    }
    st.sock.destroy();
    assert.ok(max < 100, `server RSS reached ${max.toFixed(1)} MB`);
    assert.ok(st.closedAt, `the server kept the non-reading connection open for ${Date.now() - t0} ms`);
    // After the close nothing keeps growing.
    const atClose = rssMB(pid);
    await sleep(T(1500));
    const later = rssMB(pid);
    assert.ok(later < 100 && later <= atClose + 10, `RSS went from ${atClose.toFixed(1)} to ${later.toFixed(1)} MB after the close`);
    await assertHealthy(url);
  });

  test('a client that pipelines, never reads and then closes leaves nothing growing', TO, async () => {
    const pid = srv.proc.pid;
    const before = (await metrics(url)).get('flowcast_connections');
    const st = flood(get('/healthz'));
    await sleep(T(800));
    st.sock.destroy();
    let max = 0;
    for (let i = 0; i < 15; i++) {
      max = Math.max(max, rssMB(pid));
      await sleep(100);
    }
    assert.ok(max < 100, `server RSS reached ${max.toFixed(1)} MB after the client closed`);
    await eventually(
      async () => (await metrics(url)).get('flowcast_connections') <= before,
      T(SEND_TIMEOUT * 1000 + 4000),
      'the closed connection to be gone on the server',
    );
    await assertHealthy(url);
  });

  test('a client that reads gets every one of 20,000 pipelined answers, in order', TO, async () => {
    const n = 20000;
    const c = await rawConnect(port);
    try {
      let reqs = '';
      for (let i = 0; i < n; i++) reqs += get(i % 2 ? '/healthz' : `/nope${i}`);
      await c.write(reqs);
      const want = 'HTTP/1.1 ';
      const count = () => {
        const t = c.buffer().toString('latin1');
        let k = 0;
        for (let p = t.indexOf(want); p >= 0; p = t.indexOf(want, p + 1)) k++;
        return k;
      };
      assert.ok(await c.waitFor(() => count() >= n, T(30000)), `got ${count()} of ${n} answers`);
      const rs = c.responses();
      assert.equal(rs.length, n);
      rs.forEach((r, i) => assert.equal(r.status, i % 2 ? 200 : 404, `answer ${i}`));
    } finally {
      c.destroy();
    }
  });
});

describe('timeouts', () => {
  test('a body sent one byte at a time is cut at --body-timeout with 408 JSON; nothing stored', TO, async () => {
    const ch = 'sec.slowbody';
    const c = await rawConnect(port);
    try {
      await c.write(
        `POST /api/v1/channels/${ch}/events HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n` +
          'Content-Length: 200\r\n\r\n',
      );
      const body = `{"pad":"${'p'.repeat(188)}"}`;
      const t0 = Date.now();
      for (let i = 0; i < body.length - 1 && !c.closed && !c.ended && c.length === 0; i++) {
        await c.write(body[i]);
        await sleep(250);
        if (Date.now() - t0 > T(BODY_TIMEOUT * 1000 + 6000)) break;
      }
      const took = Date.now() - t0;
      const rs = c.responses();
      assert.ok(rs.length >= 1, `no answer after ${took} ms of a trickled body`);
      const j = rawJsonError(rs[0], 408, 'timeout');
      assert.match(j.error.message, /body/);
      assert.ok(took >= BODY_TIMEOUT * 1000 - 300, `cut after ${took} ms: before the ${BODY_TIMEOUT} s body timeout`);
      assert.ok(await c.waitClose(T(3000)), 'connection still open after the 408');
    } finally {
      c.destroy();
    }
    assert.deepEqual(await storedEvents(url, ch), []);
  });

  test('a silent body is answered 408 at --body-timeout, well before --idle-timeout', TO, async () => {
    const c = await rawConnect(port);
    try {
      await c.write(
        'POST /api/v1/channels/sec.silent/events HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 10\r\n\r\n{"a"',
      );
      const t0 = Date.now();
      const rs = await c.waitResponses(1, T(BODY_TIMEOUT * 1000 + 4000));
      const j = rawJsonError(rs[0], 408, 'timeout');
      assert.match(j.error.message, /body/);
      assert.ok(Date.now() - t0 >= BODY_TIMEOUT * 1000 - 300);
      assert.ok(await c.waitClose(T(3000)), 'connection still open after the 408');
    } finally {
      c.destroy();
    }
    assert.deepEqual(await storedEvents(url, 'sec.silent'), []);
  });

  test('a partial head is answered 408 JSON at --header-timeout, then closed', TO, async () => {
    for (const partial of ['GET /heal', 'GET /healthz HTTP/1.1\r\nHost: x\r\nX-A: b']) {
      const c = await rawConnect(port);
      try {
        await c.write(partial);
        const rs = await c.waitResponses(1, T(2000 + 4000));
        rawJsonError(rs[0], 408, 'timeout');
        assert.ok(await c.waitClose(T(3000)), 'connection still open after the 408');
      } finally {
        c.destroy();
      }
    }
  });
});

describe('protocol rules', () => {
  test('HEAD on an SSE route sends the head alone and ends the answer', TO, async () => {
    const c = await rawConnect(port);
    try {
      await c.write(`HEAD /api/v1/channels/sec.head/sse HTTP/1.1\r\nHost: x\r\n\r\n`);
      assert.ok(await c.waitFor((x) => x.text().includes('\r\n\r\n'), T(5000)), 'no head');
      await sleep(T(300));
      const text = c.text();
      const end = text.indexOf('\r\n\r\n') + 4;
      assert.match(text, /^HTTP\/1\.1 200 /);
      assert.match(text.slice(0, end), /content-type: text\/event-stream/i);
      assert.equal(text.slice(end), '', 'HEAD got a body');
      // The answer is over: the connection takes the next request.
      await c.write(get('/healthz'));
      assert.ok(
        await c.waitFor((x) => x.text().slice(end).startsWith('HTTP/1.1 200'), T(5000)),
        `no answer to the request after HEAD: ${JSON.stringify(c.text().slice(end, end + 80))}`,
      );
    } finally {
      c.destroy();
    }
    const m = await metrics(url);
    assert.equal(m.get('flowcast_subscribers'), 0, 'HEAD left a subscriber');
  });

  test('Transfer-Encoding: gzip, chunked is 501 JSON; nothing stored', TO, async () => {
    const ch = 'sec.gzip';
    const { responses, closed } = await rawExchange(
      port,
      `POST /api/v1/channels/${ch}/events HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip, chunked\r\n\r\n7\r\n{"a":1}\r\n0\r\n\r\n`,
    );
    rawJsonError(responses[0], 501);
    assert.ok(closed || responses[0].headers.connection === 'close', 'the connection stays open after a 501');
    assert.deepEqual(await storedEvents(url, ch), []);
  });

  test('an HTTP/1.1 request without Host, or with two, is 400 JSON; HTTP/1.0 needs none', TO, async () => {
    let { responses } = await rawExchange(port, 'GET /healthz HTTP/1.1\r\n\r\n');
    let j = rawJsonError(responses[0], 400);
    assert.match(j.error.message, /Host/);
    ({ responses } = await rawExchange(port, 'GET /healthz HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n'));
    j = rawJsonError(responses[0], 400);
    assert.match(j.error.message, /Host/);
    ({ responses } = await rawExchange(
      port,
      'POST /api/v1/channels/sec.nohost/events HTTP/1.1\r\nContent-Type: application/json\r\nContent-Length: 7\r\n\r\n{"a":1}',
    ));
    rawJsonError(responses[0], 400);
    assert.deepEqual(await storedEvents(url, 'sec.nohost'), []);
    ({ responses } = await rawExchange(port, 'GET /healthz HTTP/1.0\r\n\r\n'));
    assert.equal(responses[0]?.status, 200);
  });

  test('HTTP/2.0 and HTTP/0.9 request lines are 505 JSON', TO, async () => {
    for (const v of ['2.0', '0.9']) {
      const { responses } = await rawExchange(port, `GET /healthz HTTP/${v}\r\nHost: x\r\n\r\n`);
      rawJsonError(responses[0], 505, 'http_version_not_supported');
    }
  });
});

describe('limits say their limit', () => {
  test('17 path segments is 414 "more than 16 path segments"; 16 are routed', TO, async () => {
    const seg = (n) => `/${Array.from({ length: n }, () => 'a').join('/')}`;
    let { responses } = await rawExchange(port, get(seg(17)));
    const j = rawJsonError(responses[0], 414);
    assert.match(j.error.message, /more than 16 path segments/);
    ({ responses } = await rawExchange(port, get(seg(16))));
    rawJsonError(responses[0], 404, 'not_found');
  });

  test('101 header fields is 431 "more than 100 header fields"; 100 are fine', TO, async () => {
    const hdrs = (n) => Array.from({ length: n }, (_, i) => `X-H${i}: v\r\n`).join('');
    let { responses } = await rawExchange(port, get('/healthz', hdrs(100))); // with Host: 101
    const j = rawJsonError(responses[0], 431);
    assert.match(j.error.message, /more than 100 header fields/);
    ({ responses } = await rawExchange(port, get('/healthz', hdrs(99))));
    assert.equal(responses[0]?.status, 200);
  });

  test('405 comes from the JSON error writer, with Allow', TO, async () => {
    const { responses } = await rawExchange(port, 'DELETE /healthz HTTP/1.1\r\nHost: x\r\n\r\n');
    const j = rawJsonError(responses[0], 405, 'method_not_allowed');
    assert.match(j.error.message, /DELETE/);
    assert.match(responses[0].headers.allow || '', /GET/);
  });
});
