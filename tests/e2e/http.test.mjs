// HTTP/1.1 over raw sockets: limits, malformed requests, keep-alive,
// pipelining, chunked bodies, Expect: 100-continue and slowloris.
import { describe, test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import {
  startServer,
  rawConnect,
  rawExchange,
  rawRequest,
  rawJsonError,
  parseResponses,
  storedEvents,
  assertHealthy,
  request,
  metrics,
  serveSupports,
  sleep,
  T,
} from './lib/server.mjs';

const TO = { timeout: T(30000) };
const MAX_BODY = 1024;
const HEADER_TIMEOUT = 2; // seconds

let srv;
let port;
let url;
before(async () => {
  srv = await startServer({ threads: 1, maxBody: MAX_BODY, headerTimeout: HEADER_TIMEOUT });
  port = srv.port;
  url = srv.url;
});
after(async () => {
  await srv?.stop();
});

const post = (ch, body, extra = '') =>
  `POST /api/v1/channels/${ch}/events HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n` +
  `Content-Length: ${Buffer.byteLength(body)}\r\n${extra}\r\n${body}`;
const get = (path, extra = '') => `GET ${path} HTTP/1.1\r\nHost: x\r\n${extra}\r\n`;

describe('connection handling', () => {
  test('keep-alive: several requests on one socket', TO, async (t) => {
    const c = await rawConnect(port);
    t.after(() => c.destroy());
    await c.write(get('/healthz'));
    let rs = await c.waitResponses(1);
    assert.equal(rs[0]?.status, 200, c.text());
    assert.deepEqual(JSON.parse(rs[0].body), { status: 'ok' });
    await c.write(post('ka.one', '{"n":1}'));
    rs = await c.waitResponses(2);
    assert.equal(rs[1]?.status, 201, c.text());
    await c.write(get('/api/v1/channels/ka.one/events'));
    rs = await c.waitResponses(3);
    assert.equal(rs[2]?.status, 200, c.text());
    assert.deepEqual(
      JSON.parse(rs[2].body).map((e) => e.data),
      [{ n: 1 }],
    );
    assert.ok(!c.closed, 'the server closed a keep-alive connection');
  });

  test('pipelining: requests in one write get responses in order', TO, async () => {
    const bytes =
      post('pipe.one', '{"n":1}') + get('/healthz') + post('pipe.one', '{"n":2}') + get('/api/v1/channels/pipe.one/events');
    const { responses } = await rawExchange(port, bytes, { responses: 4 });
    assert.deepEqual(
      responses.map((r) => r.status),
      [201, 200, 201, 200],
    );
    const a = JSON.parse(responses[0].body);
    const b = JSON.parse(responses[2].body);
    assert.ok(BigInt(b.id) > BigInt(a.id));
    assert.deepEqual(JSON.parse(responses[1].body), { status: 'ok' });
    assert.deepEqual(
      JSON.parse(responses[3].body).map((e) => e.data),
      [{ n: 1 }, { n: 2 }],
    );
  });

  test('pipelining split at awkward places still works', TO, async () => {
    const bytes = post('pipe.split', '{"n":1}') + post('pipe.split', '{"n":2}') + get('/healthz');
    // one byte, then the rest cut in the middle of the second request's headers
    const cut = bytes.indexOf('Content-Type', bytes.indexOf('POST', 5)) + 4;
    const { responses } = await rawExchange(port, [bytes.slice(0, 1), bytes.slice(1, cut), bytes.slice(cut)], {
      responses: 3,
    });
    assert.deepEqual(
      responses.map((r) => r.status),
      [201, 201, 200],
    );
  });

  test('pipelined publishes overlap but are answered in order, errors in place', TO, async () => {
    // 180 publishes in one write (more than the 64 answers a connection may
    // owe), over two channels, with a malformed one, a 404 and a history read
    // mixed in; the last asks to close.
    const parts = [];
    const want = [];
    for (let i = 0; i < 180; i++) {
      if (i === 60) {
        parts.push(post('pipe.many.a', '{"broken":'));
        want.push(400);
      }
      if (i === 120) {
        parts.push(get('/no/such/thing'));
        want.push(404);
      }
      parts.push(post(i % 2 ? 'pipe.many.b' : 'pipe.many.a', `{"i":${i}}`));
      want.push(201);
    }
    parts.push(get('/api/v1/channels/pipe.many.b/events?limit=1000', 'Connection: close\r\n'));
    want.push(200);
    const m0 = await metrics(url);
    const c = await rawConnect(port);
    try {
      await c.write(parts.join(''));
      assert.ok(await c.waitClose(T(10000)), 'the server did not close after Connection: close');
      // overlapping: publishes waiting together share commits (one at a time,
      // each would have a commit of its own)
      const m1 = await metrics(url);
      const commits = m1.get('flowcast_store_commits_total') - m0.get('flowcast_store_commits_total');
      assert.ok(commits < 179, `179 pipelined publishes took ${commits} commits`);
      const rs = parseResponses(c.buffer(), true).filter((r) => r.status >= 200);
      assert.deepEqual(
        rs.map((r) => r.status),
        want,
      );
      // ids rise in request order: the writer commits in submission order
      const ids = rs.filter((r) => r.status === 201).map((r) => BigInt(JSON.parse(r.body).id));
      for (let k = 1; k < ids.length; k++) assert.ok(ids[k] > ids[k - 1], `id ${ids[k]} after ${ids[k - 1]}`);
      rawJsonError(rs[60], 400, 'bad_json');
      // the history read waited for every publish before it
      const hist = JSON.parse(rs.at(-1).body).map((e) => e.data.i);
      assert.deepEqual(
        hist,
        Array.from({ length: 90 }, (_, k) => 2 * k + 1),
      );
    } finally {
      c.destroy();
    }
  });

  test('a stream requested behind pipelined publishes starts after their answers', TO, async () => {
    const bytes =
      post('pipe.stream', '{"n":1}') +
      post('pipe.stream', '{"n":2}') +
      get('/api/v1/channels/pipe.stream/sse?replay=10', 'Accept: text/event-stream\r\n');
    const c = await rawConnect(port);
    try {
      await c.write(bytes);
      assert.ok(
        await c.waitFor((x) => /data: \{"n":2\}/.test(x.text()), T(5000)),
        `no stream after the answers:\n${c.text()}`,
      );
      const text = c.text();
      const heads = [...text.matchAll(/HTTP\/1\.1 (\d+)/g)].map((m) => Number(m[1]));
      assert.deepEqual(heads, [201, 201, 200]);
      assert.ok(text.indexOf('data: {"n":1}') > text.lastIndexOf('HTTP/1.1 200'), 'events came before the stream head');
    } finally {
      c.destroy();
    }
  });

  test('a client that half-closes after pipelining still gets every answer', TO, async () => {
    const c = await rawConnect(port);
    try {
      let bytes = '';
      for (let i = 0; i < 50; i++) bytes += post('pipe.half', `{"i":${i}}`);
      await c.write(bytes);
      c.sock.end();
      assert.ok(await c.waitFor((x) => x.closed || x.ended, T(5000)), 'the server did not close');
      const rs = parseResponses(c.buffer(), true).filter((r) => r.status >= 200);
      assert.equal(rs.length, 50);
      assert.ok(rs.every((r) => r.status === 201));
    } finally {
      c.destroy();
    }
    assert.equal((await storedEvents(url, 'pipe.half')).length, 50);
  });

  test('HTTP/1.0 and Connection: close get one response, then the server closes', TO, async () => {
    for (const req of ['GET /healthz HTTP/1.0\r\n\r\n', get('/healthz', 'Connection: close\r\n')]) {
      const c = await rawConnect(port);
      try {
        await c.write(req);
        const closed = await c.waitClose(T(3000));
        assert.ok(closed, `no close after ${JSON.stringify(req)}`);
        const rs = parseResponses(c.buffer(), true);
        assert.equal(rs.length, 1);
        assert.equal(rs[0].status, 200);
      } finally {
        c.destroy();
      }
    }
  });

  test('chunked request body', TO, async () => {
    const head =
      'POST /api/v1/channels/chunk.one/events HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n' +
      'Transfer-Encoding: chunked\r\n\r\n';
    const parts = ['{"chunked":', ' true, "s":', ' "ok"}'];
    const body = parts.map((p) => `${Buffer.byteLength(p).toString(16)}\r\n${p}\r\n`).join('') + '0\r\n\r\n';
    const { responses } = await rawExchange(port, head + body);
    assert.equal(responses[0]?.status, 201, responses[0]?.body);
    // again, written in pieces with pauses, with a chunk extension and a trailer
    const c = await rawConnect(port);
    try {
      await c.write(head);
      await sleep(50);
      await c.write('5;ext=1\r\n{"a":\r\n');
      await sleep(50);
      await c.write('3\r\n"b"\r\n');
      await sleep(50);
      await c.write('1\r\n}\r\n0\r\nX-Trailer: y\r\n\r\n');
      const rs = await c.waitResponses(1);
      assert.equal(rs[0]?.status, 201, c.text());
    } finally {
      c.destroy();
    }
    const h = await storedEvents(url, 'chunk.one');
    assert.deepEqual(
      h.map((e) => e.data),
      [{ chunked: true, s: 'ok' }, { a: 'b' }],
    );
  });

  test('Expect: 100-continue', TO, async () => {
    const body = '{"expect":true}';
    const c = await rawConnect(port);
    try {
      await c.write(
        'POST /api/v1/channels/expect.one/events HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n' +
          `Content-Length: ${body.length}\r\nExpect: 100-continue\r\n\r\n`,
      );
      // curl waits up to 1 s for "100 Continue", then sends anyway
      await c.waitFor((x) => x.length > 0, 1000);
      if (c.length > 0) assert.match(c.text(), /^HTTP\/1\.1 100/);
      await c.write(body);
      const rs = await c.waitResponses(1);
      assert.equal(rs[0]?.status, 201, c.text());
    } finally {
      c.destroy();
    }
    const h = await storedEvents(url, 'expect.one');
    assert.deepEqual(
      h.map((e) => e.data),
      [{ expect: true }],
    );
  });
});

describe('Expect: 100-continue', () => {
  test('the body is invited at once; a refused one is not; another expectation is 417', TO, async () => {
    const body = '{"n":100}';
    const head =
      `POST /api/v1/channels/cont.a/events HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n` +
      `Content-Length: ${body.length}\r\nExpect: 100-continue\r\n\r\n`;
    const c = await rawConnect(port);
    await c.write(head);
    assert.ok(await c.waitFor((x) => x.text().includes('\r\n\r\n'), T(3000)), 'an interim answer before the body');
    assert.equal(c.text(), 'HTTP/1.1 100 Continue\r\n\r\n');
    await c.write(body);
    const [r] = await c.waitResponses(1);
    assert.equal(r.status, 201, r.body);
    c.destroy();
    assert.equal((await storedEvents(url, 'cont.a')).length, 1);

    // Over --max-body: the final 413 comes without inviting the body.
    const big = await rawConnect(port);
    await big.write(head.replace(`Content-Length: ${body.length}`, `Content-Length: ${MAX_BODY + 1}`));
    const [tooBig] = await big.waitResponses(1);
    rawJsonError(tooBig, 413);
    assert.ok(!big.text().includes('100 Continue'), big.text());
    big.destroy();

    const { responses } = await rawExchange(port, post('cont.b', body, 'Expect: something-else\r\n'));
    rawJsonError(responses[0], 417);
    assert.equal((await storedEvents(url, 'cont.b').catch(() => [])).length, 0);
  });

  test('curl does not wait its second for a large body', TO, async () => {
    const { spawnSync } = await import('node:child_process');
    const big = await startServer({ maxBody: '4M' });
    try {
      const data = JSON.stringify({ pad: 'z'.repeat(1536 * 1024) });
      const r = spawnSync('curl', ['-sv', '-o', '/dev/null', '-w', '%{http_code}', '-H', 'content-type: application/json',
        '--data-binary', '@-', `${big.url}/api/v1/channels/cont.curl/events`], { input: data, encoding: 'utf8' });
      assert.equal(r.stdout, '201', r.stderr);
      assert.match(r.stderr, /> Expect: 100-continue/, 'curl asked');
      // Without the interim answer curl says "Done waiting for 100-continue" after 1 s.
      assert.match(r.stderr, /< HTTP\/1\.1 100 Continue/, r.stderr);
      assert.doesNotMatch(r.stderr, /Done waiting for 100-continue/);
    } finally {
      await big.stop();
    }
  });
});

describe('limits', () => {
  test('body at --max-body is accepted; one byte more is 413, nothing stored', TO, async () => {
    const exact = `"${'x'.repeat(MAX_BODY - 2)}"`;
    assert.equal(exact.length, MAX_BODY);
    let { responses } = await rawExchange(port, post('lim.body', exact));
    assert.equal(responses[0]?.status, 201, responses[0]?.body);
    const over = `"${'x'.repeat(MAX_BODY - 1)}"`;
    ({ responses } = await rawExchange(port, post('lim.body', over)));
    rawJsonError(responses[0], 413);
    const h = await storedEvents(url, 'lim.body');
    assert.equal(h.length, 1);
    await assertHealthy(url);
  });

  test('a much larger body is 413 even before it is all sent', TO, async () => {
    const big = `"${'y'.repeat(200000)}"`;
    const { responses } = await rawExchange(port, post('lim.big', big));
    rawJsonError(responses[0], 413);
    assert.deepEqual(await storedEvents(url, 'lim.big'), []);
  });

  test('a chunked body over --max-body is 413', TO, async () => {
    const chunk = 'z'.repeat(600);
    const body = `${(chunk.length + 1).toString(16)}\r\n"${chunk}\r\n${(chunk.length + 1).toString(16)}\r\n${chunk}"\r\n0\r\n\r\n`;
    const req =
      'POST /api/v1/channels/lim.chunk/events HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n' +
      `Transfer-Encoding: chunked\r\n\r\n${body}`;
    const { responses } = await rawExchange(port, req);
    rawJsonError(responses[0], 413);
    assert.deepEqual(await storedEvents(url, 'lim.chunk'), []);
  });

  test('headers over 16 KiB are 431; 8 KiB of headers is fine', TO, async () => {
    let { responses } = await rawExchange(port, get('/healthz', `X-Pad: ${'p'.repeat(8 * 1024)}\r\n`));
    assert.equal(responses[0]?.status, 200);
    ({ responses } = await rawExchange(port, get('/healthz', `X-Pad: ${'p'.repeat(17 * 1024)}\r\n`)));
    rawJsonError(responses[0], 431);
    // many small headers add up too
    const many = Array.from({ length: 400 }, (_, i) => `X-H${i}: ${'v'.repeat(40)}\r\n`).join('');
    ({ responses } = await rawExchange(port, get('/healthz', many)));
    rawJsonError(responses[0], 431);
    await assertHealthy(url);
  });

  test('a URL over 8 KiB is 414; 7 KiB is fine', TO, async () => {
    let { responses } = await rawExchange(port, get(`/healthz?pad=${'u'.repeat(7 * 1024)}`));
    assert.equal(responses[0]?.status, 200, responses[0]?.body);
    ({ responses } = await rawExchange(port, get(`/api/v1/channels/lim.url/events?pad=${'u'.repeat(8 * 1024 + 10)}`)));
    rawJsonError(responses[0], 414);
    await assertHealthy(url);
  });
});

describe('malformed requests', () => {
  for (const [name, bytes] of [
    ['garbage request line', 'BLAH\r\n\r\n'],
    ['three words but no HTTP version', 'GET /healthz FOO/1.1\r\n\r\n'],
    ['bad HTTP version', 'GET /healthz HTTP/x.y\r\n\r\n'],
    ['header without colon', 'GET /healthz HTTP/1.1\r\nHost x\r\n\r\n'],
    ['space before colon', 'GET /healthz HTTP/1.1\r\nHost : x\r\n\r\n'],
    ['bad Content-Length', 'POST /api/v1/channels/mal.cl/events HTTP/1.1\r\nContent-Length: abc\r\n\r\n{}'],
    [
      'both Content-Length and Transfer-Encoding',
      'POST /api/v1/channels/mal.cl/events HTTP/1.1\r\nContent-Length: 2\r\nTransfer-Encoding: chunked\r\n\r\n2\r\n{}\r\n0\r\n\r\n',
    ],
    ['bad chunk size', 'POST /api/v1/channels/mal.cl/events HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n{}\r\n0\r\n\r\n'],
    ['NUL in the request line', 'GET /heal\0thz HTTP/1.1\r\n\r\n'],
  ]) {
    test(`${name} -> 400 JSON, server still healthy`, TO, async () => {
      const { responses } = await rawExchange(port, bytes);
      rawJsonError(responses[0], 400);
      await assertHealthy(url);
    });
  }

  test('nothing was stored by the malformed publishes', TO, async () => {
    assert.deepEqual(await storedEvents(url, 'mal.cl'), []);
  });

  test('binary noise does not crash the server', TO, async () => {
    const noise = Buffer.alloc(4096);
    for (let i = 0; i < noise.length; i++) noise[i] = (i * 7919 + 13) & 0xff;
    const text = await rawRequest(port, noise, { timeout: T(2000) });
    if (text) assert.match(text, /^HTTP\/1\.1 4\d\d/);
    await assertHealthy(url);
  });

  test('a client that disconnects mid-request does not disturb the server', TO, async () => {
    for (const partial of ['GET /heal', post('mid.cut', '{"n":1}').slice(0, -3), 'POST /api/v1/channels/mid.cut/events HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n5\r\n{"a"']) {
      const c = await rawConnect(port);
      await c.write(partial);
      await sleep(20);
      c.destroy();
    }
    await assertHealthy(url);
    assert.deepEqual(await storedEvents(url, 'mid.cut'), []);
  });
});

describe('routing', () => {
  test('unknown paths are 404 JSON', TO, async () => {
    for (const p of ['/nope', '/api/v1/nope', '/api/v2/channels', '/api/v1/channels/a/nope', '/api/v1/channels/a/events/extra']) {
      const r = await request(`${url}${p}`);
      assert.equal(r.status, 404, `${p}: ${r.status}`);
      assert.equal(typeof r.json?.error?.code, 'string', `${p}: ${r.text}`);
    }
  });

  test('wrong method on a known path is 405 JSON', TO, async () => {
    for (const [m, p] of [
      ['PUT', '/api/v1/channels/meth/events'],
      ['PATCH', '/api/v1/channels/meth/events'],
      ['POST', '/api/v1/channels/meth/sse'],
      ['POST', '/api/v1/channels'],
      ['POST', '/healthz'],
      ['DELETE', '/metrics'],
      ['PUT', '/api/v1/sse?channel=meth'],
    ]) {
      const r = await request(`${url}${p}`, { method: m, body: m === 'GET' ? undefined : '{}' });
      assert.equal(r.status, 405, `${m} ${p}: ${r.status} ${r.text}`);
      assert.equal(typeof r.json?.error?.code, 'string', `${m} ${p}: ${r.text}`);
    }
    assert.deepEqual(await storedEvents(url, 'meth'), []);
  });
});

describe('slowloris', () => {
  test('a partial request line that stalls is closed after --header-timeout', TO, async () => {
    const c = await rawConnect(port);
    try {
      await c.write('GET /heal');
      const closed = await c.waitClose(T(HEADER_TIMEOUT * 1000 + 4000));
      const took = Date.now() - c.openedAt;
      assert.ok(closed, `still open after ${took} ms`);
      assert.ok(took >= HEADER_TIMEOUT * 1000 - 300, `closed after ${took} ms: before the ${HEADER_TIMEOUT} s timeout`);
      const text = c.text();
      if (text) assert.match(text, /^HTTP\/1\.1 408/, `answered ${JSON.stringify(text.slice(0, 80))}`);
    } finally {
      c.destroy();
    }
  });

  test('headers trickled one byte at a time are still cut off', TO, async () => {
    const c = await rawConnect(port);
    try {
      const req = `GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow: ${'s'.repeat(200)}\r\n\r\n`;
      let i = 0;
      const limit = HEADER_TIMEOUT * 1000 + T(3000);
      while (!c.closed && !c.ended && Date.now() - c.openedAt < limit && i < req.length - 2) {
        await c.write(req[i++]);
        await sleep(200);
      }
      const took = Date.now() - c.openedAt;
      assert.ok(c.closed || c.ended, `still open after ${took} ms of trickling`);
      assert.ok(!/^HTTP\/1\.1 200/.test(c.text()), 'the trickled request was served');
    } finally {
      c.destroy();
    }
  });

  test('stalled clients do not block others', TO, async (t) => {
    const stalled = [];
    for (let i = 0; i < 10; i++) {
      const c = await rawConnect(port);
      await c.write('GET /healthz HTTP/1.1\r\nHost');
      stalled.push(c);
    }
    t.after(() => stalled.forEach((c) => c.destroy()));
    const t0 = Date.now();
    await assertHealthy(url);
    assert.ok(Date.now() - t0 < T(1000), 'healthz was slow while clients stalled');
  });

  test('an idle keep-alive connection between requests is not cut before the header timeout', TO, async () => {
    const c = await rawConnect(port);
    try {
      await c.write(get('/healthz'));
      await c.waitResponses(1);
      await sleep((HEADER_TIMEOUT * 1000) / 2);
      await c.write(get('/healthz'));
      const rs = await c.waitResponses(2);
      assert.equal(rs.length, 2, c.text());
      assert.equal(rs[1].status, 200);
    } finally {
      c.destroy();
    }
  });
});

describe('idle timeout', { skip: !serveSupports('--idle-timeout') && 'the binary has no --idle-timeout' }, () => {
  const IDLE = 2; // seconds
  let idleSrv;
  before(async () => {
    idleSrv = await startServer({ threads: 1, headerTimeout: 10, extraArgs: ['--idle-timeout', String(IDLE)] });
  });
  after(async () => {
    await idleSrv?.stop();
  });

  test('an idle keep-alive connection is closed after --idle-timeout', TO, async () => {
    const c = await rawConnect(idleSrv.port);
    try {
      await c.write(get('/healthz'));
      await c.waitResponses(1);
      const t0 = Date.now();
      assert.ok(await c.waitClose(T(IDLE * 1000 + 4000)), 'idle connection still open');
      assert.ok(Date.now() - t0 >= IDLE * 1000 - 300, `closed after ${Date.now() - t0} ms`);
    } finally {
      c.destroy();
    }
  });

  test('a request body that stalls is not held forever (slow POST)', TO, async () => {
    const c = await rawConnect(idleSrv.port);
    try {
      await c.write(
        'POST /api/v1/channels/idle.body/events HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n' +
          'Content-Length: 100\r\n\r\n{"a"',
      );
      const closed = await c.waitClose(T(IDLE * 1000 + 4000));
      assert.ok(closed, `a stalled body kept the connection open for ${IDLE * 1000 + 4000} ms`);
      const text = c.text();
      if (text) assert.match(text, /^HTTP\/1\.1 (408|400)/, text.slice(0, 80));
    } finally {
      c.destroy();
    }
    assert.deepEqual(await storedEvents(idleSrv.url, 'idle.body'), []);
  });
});
