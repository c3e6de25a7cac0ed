// HTTP/2: h2c with prior knowledge behind --h2c (the port keeps HTTP/1.1),
// h2 over TLS by ALPN, the API's answers over both (curl), SSE streams over
// HTTP/2 (200 on one connection with nghttp, node's http2 client), RST_STREAM
// freeing a subscriber at once, and GOAWAY on shutdown with the request in
// flight answered.
import { describe, test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import http2 from 'node:http2';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { T, startServer, request, metrics, eventually, publishOk, sleep } from './lib/server.mjs';
import { makeCerts } from './lib/certs.mjs';

const TO = { timeout: T(90000) };

function curl(args) {
  return spawnSync('curl', ['-sS', '--max-time', String(Math.ceil(T(10000) / 1000)), ...args], {
    encoding: 'utf8',
    timeout: T(15000),
  });
}

/** Opens an SSE stream over an http2 session; collects its text; resolves on a match. */
function h2Sse(session, p) {
  const req = session.request({ ':path': p });
  const h = { text: '', status: 0, req, waiters: new Set() };
  req.on('response', (hd) => {
    h.status = hd[':status'];
  });
  req.setEncoding('utf8');
  req.on('data', (d) => {
    h.text += d;
    for (const w of [...h.waiters]) w();
  });
  req.on('error', () => {});
  h.waitFor = (re, ms = T(10000)) =>
    new Promise((resolve, reject) => {
      const check = () => {
        if (re.test(h.text)) {
          clearTimeout(timer);
          h.waiters.delete(check);
          resolve();
        }
      };
      const timer = setTimeout(() => {
        h.waiters.delete(check);
        reject(new Error(`no ${re} within ${ms} ms; got ${h.text.slice(-500)}`));
      }, ms);
      h.waiters.add(check);
      check();
    });
  return h;
}

const subscribers = async (url) => (await metrics(url)).get('flowcast_subscribers');

describe('h2c (--h2c, prior knowledge) on the plain port', () => {
  let srv;
  before(async () => {
    srv = await startServer({ extraArgs: ['--h2c'] });
  }, TO);
  after(async () => {
    if (srv) await srv.stop();
  });

  test('curl --http2-prior-knowledge: healthz, publish, history; HTTP/1.1 still served', TO, async () => {
    const hz = curl(['-v', '--http2-prior-knowledge', `${srv.url}/healthz`]);
    assert.equal(hz.status, 0, hz.stderr);
    assert.match(hz.stderr, /< HTTP\/2 200/);
    assert.deepEqual(JSON.parse(hz.stdout), { status: 'ok' });
    const pub = curl(['-v', '--http2-prior-knowledge', '-H', 'content-type: application/json', '--data', '{"n":1}',
      `${srv.url}/api/v1/channels/h2c-a/events`]);
    assert.match(pub.stderr, /< HTTP\/2 201/);
    assert.equal(JSON.parse(pub.stdout).id, '1');
    const hist = curl(['--http2-prior-knowledge', `${srv.url}/api/v1/channels/h2c-a/events`]);
    assert.deepEqual(JSON.parse(hist.stdout).map((e) => e.data), [{ n: 1 }]);
    // The same answers as HTTP/1.1: a 404 with the JSON error, a 405.
    const nf = curl(['-v', '--http2-prior-knowledge', `${srv.url}/nope`]);
    assert.match(nf.stderr, /< HTTP\/2 404/);
    assert.equal(JSON.parse(nf.stdout).error.code, 'not_found');
    const h1 = await request(`${srv.url}/api/v1/channels/h2c-a/events`);
    assert.equal(h1.status, 200);
    assert.equal(JSON.parse(h1.text).length, 1);
  });

  test('the first bytes split across reads: HTTP/1.1 and the preface both recognised', TO, async () => {
    const talk = (parts) =>
      new Promise((resolve, reject) => {
        const sock = net.connect(srv.port, '127.0.0.1');
        let got = Buffer.alloc(0);
        sock.on('data', (d) => {
          got = Buffer.concat([got, d]);
          if (got.length >= 9) {
            sock.destroy();
            resolve(got);
          }
        });
        sock.on('error', reject);
        sock.on('connect', async () => {
          for (const p of parts) {
            sock.write(p);
            await sleep(50);
          }
        });
      });
    const h1 = await talk(['GE', 'T /healthz HTTP/1.1\r\nHost: x\r\n\r\n']);
    assert.match(h1.toString(), /^HTTP\/1\.1 200/);
    const pri = await talk(['PRI * HT', 'TP/2.0\r\n\r\nSM\r\n\r\n', Buffer.from([0, 0, 0, 4, 0, 0, 0, 0, 0])]);
    assert.equal(pri[3], 4, 'the server speaks first with SETTINGS');
    const notPri = await talk(['PRI * HTTP/1.1\r\nHost: x\r\n\r\n']);
    assert.match(notPri.toString(), /^HTTP\/1\.1 [45]\d\d/);
  });

  test('limits hold over HTTP/2: 413 for a body past --max-body, 414 for a long target, 431 for a large head', TO, async () => {
    const file = path.join(srv.dataDir, 'big.txt');
    fs.writeFileSync(file, 'x'.repeat(2 * 1024 * 1024));
    const r = curl(['-v', '--http2-prior-knowledge', '-H', 'content-type: text/plain', '--data-binary', `@${file}`,
      `${srv.url}/api/v1/channels/h2c-big/events`]);
    assert.match(r.stderr, /< HTTP\/2 413/);
    assert.equal(JSON.parse(r.stdout).error.code, 'body_too_large');
    const long = curl(['-v', '--http2-prior-knowledge', `${srv.url}/api/v1/channels/${'a'.repeat(9000)}/events`]);
    assert.match(long.stderr, /< HTTP\/2 414/);
    assert.equal(JSON.parse(long.stdout).error.code, 'uri_too_long');
    const heavy = curl(['-v', '--http2-prior-knowledge', '-H', `x-big: ${'h'.repeat(15000)}`, '-H',
      `x-big2: ${'h'.repeat(3000)}`, `${srv.url}/healthz`]);
    assert.match(heavy.stderr, /< HTTP\/2 431/);
    assert.equal(JSON.parse(heavy.stdout).error.code, 'headers_too_large');
  });

  test('200 SSE streams on one connection (nghttp) all get the event', TO, async () => {
    const urls = [];
    for (let i = 0; i < 200; i++) urls.push(`${srv.url}/api/v1/channels/h2c-many/sse?replay=0&i=${i}`);
    const ng = spawn('nghttp', ['-v', ...urls], { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    ng.stdout.setEncoding('utf8').on('data', (d) => {
      out += d;
    });
    try {
      await eventually(async () => (await subscribers(srv.url)) === 200, T(20000), '200 subscribers');
      const opened = new Set([...out.matchAll(/send HEADERS frame <[^>]*stream_id=(\d+)>/g)].map((m) => m[1]));
      assert.equal(opened.size, 200, 'one connection, 200 streams');
      await publishOk(srv.url, 'h2c-many', { marker: 'all-200' });
      await eventually(() => (out.match(/"marker":"all-200"/g) || []).length === 200, T(20000), 'the event on 200 streams');
    } finally {
      ng.kill('SIGKILL');
    }
    await eventually(async () => (await subscribers(srv.url)) === 0, T(10000), 'subscribers freed');
  });

  test('RST_STREAM frees its subscriber at once; the connection goes on', TO, async () => {
    const session = http2.connect(srv.url);
    try {
      const a = h2Sse(session, '/api/v1/channels/h2c-rst/sse?replay=0');
      const b = h2Sse(session, '/api/v1/channels/h2c-rst/sse?replay=0');
      await a.waitFor(/retry: 3000/);
      await b.waitFor(/retry: 3000/);
      assert.equal(await subscribers(srv.url), 2);
      a.req.close(http2.constants.NGHTTP2_CANCEL);
      await eventually(async () => (await subscribers(srv.url)) === 1, T(5000), 'one subscriber left');
      await publishOk(srv.url, 'h2c-rst', { after: 'reset' });
      await b.waitFor(/"after":"reset"/);
      assert.equal(b.status, 200);
    } finally {
      session.destroy();
    }
  });
});

describe('without --h2c', () => {
  let srv;
  before(async () => {
    srv = await startServer();
  }, TO);
  after(async () => {
    if (srv) await srv.stop();
  });

  test('the HTTP/2 preface is not HTTP/2: curl prior knowledge fails, HTTP/1.1 works', TO, async () => {
    const r = curl(['--http2-prior-knowledge', `${srv.url}/healthz`]);
    assert.notEqual(r.status, 0);
    assert.equal((await request(`${srv.url}/healthz`)).status, 200);
  });
});

describe('h2 over TLS (ALPN)', () => {
  let dir, certs, srv;
  before(async () => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'flowcast-h2tls-'));
    certs = makeCerts(dir);
    srv = await startServer({ tls: certs });
  }, TO);
  after(async () => {
    if (srv) await srv.stop();
    if (dir) fs.rmSync(dir, { recursive: true, force: true });
  });

  test('curl --http2: ALPN h2, healthz, publish, history and an SSE stream', TO, async () => {
    const hz = curl(['-v', '--http2', '--cacert', certs.ca, `${srv.url}/healthz`]);
    assert.equal(hz.status, 0, hz.stderr);
    assert.match(hz.stderr, /ALPN: server accepted h2/);
    assert.match(hz.stderr, /< HTTP\/2 200/);
    const sub = spawn('curl', ['-sSN', '--http2', '--cacert', certs.ca, `${srv.url}/api/v1/channels/tls-h2/sse?replay=0`]);
    let got = '';
    sub.stdout.setEncoding('utf8').on('data', (d) => {
      got += d;
    });
    try {
      await eventually(() => /retry: 3000/.test(got), T(10000), 'stream open');
      const pub = curl(['-v', '--http2', '--cacert', certs.ca, '-H', 'content-type: application/json', '--data',
        '{"tls":"h2"}', `${srv.url}/api/v1/channels/tls-h2/events`]);
      assert.match(pub.stderr, /< HTTP\/2 201/);
      assert.equal(JSON.parse(pub.stdout).subscribers, 1);
      await eventually(() => /data: \{"tls":"h2"\}/.test(got), T(10000), 'the event over h2');
      const hist = curl(['--http2', '--cacert', certs.ca, `${srv.url}/api/v1/channels/tls-h2/events`]);
      assert.deepEqual(JSON.parse(hist.stdout).map((e) => e.data), [{ tls: 'h2' }]);
    } finally {
      sub.kill('SIGKILL');
    }
    const h1 = curl(['-v', '--http1.1', '--cacert', certs.ca, `${srv.url}/healthz`]);
    assert.match(h1.stderr, /ALPN: server accepted http\/1\.1/);
  });

  test('shutdown: GOAWAY, the request in flight is answered', TO, async () => {
    const session = http2.connect(srv.url, { ca: fs.readFileSync(certs.ca) });
    try {
      const s = h2Sse(session, '/api/v1/channels/tls-bye/sse?replay=0');
      await s.waitFor(/retry: 3000/);
      const goaway = new Promise((resolve) => session.on('goaway', (code) => resolve(code)));
      const ended = new Promise((resolve) => s.req.on('end', resolve));
      srv.sigterm();
      assert.equal(await goaway, 0);
      await ended;
    } finally {
      session.destroy();
    }
  });
});
