// CORS headers for an origin list, for '*', with and without credentials, and preflights.
import { describe, test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { startServer, publishOk, request, freePort, baseServeArgs, BIN, sleep, T } from './lib/server.mjs';
import { openSSE } from './lib/sse.mjs';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';

const TO = { timeout: T(30000) };
const X = 'http://x.test';
const Y = 'http://y.test:8080';
const EVIL = 'http://evil.test';

const vary = (h) => (h.get('vary') || '').toLowerCase().split(/\s*,\s*/);

describe('origin list, no credentials', () => {
  let srv;
  let url;
  before(async () => {
    srv = await startServer({ corsOrigins: `${X},${Y}` });
    url = srv.url;
  });
  after(async () => {
    await srv?.stop();
  });

  test('an allowed origin is echoed with Vary: Origin', TO, async () => {
    for (const o of [X, Y]) {
      const r = await request(`${url}/healthz`, { headers: { origin: o } });
      assert.equal(r.status, 200);
      assert.equal(r.headers.get('access-control-allow-origin'), o);
      assert.ok(vary(r.headers).includes('origin'), `vary: ${r.headers.get('vary')}`);
      assert.equal(r.headers.get('access-control-allow-credentials'), null);
    }
  });

  test('a publish and its JSON answer carry the CORS headers', TO, async () => {
    const r = await request(`${url}/api/v1/channels/cors.pub/events`, {
      method: 'POST',
      headers: { origin: X, 'content-type': 'application/json' },
      body: '{"a":1}',
    });
    assert.equal(r.status, 201);
    assert.equal(r.headers.get('access-control-allow-origin'), X);
  });

  test('an SSE stream carries the CORS headers', TO, async () => {
    const s = await openSSE(`${url}/api/v1/channels/cors.sse/sse`, { headers: { origin: X } });
    try {
      assert.equal(s.status, 200);
      assert.equal(s.headers.get('access-control-allow-origin'), X);
      assert.ok(vary(s.headers).includes('origin'));
    } finally {
      s.close();
    }
  });

  test('an error answer carries the CORS headers, so a page can read it', TO, async () => {
    const r = await request(`${url}/api/v1/channels/bad%20name/events`, { headers: { origin: X } });
    assert.equal(r.status, 400);
    assert.equal(r.headers.get('access-control-allow-origin'), X);
  });

  test('other origins get no Access-Control-Allow-Origin', TO, async () => {
    for (const o of [EVIL, 'http://x.test.evil.test', 'https://x.test', 'http://x.tes', 'null', `${X}/`]) {
      const r = await request(`${url}/healthz`, { headers: { origin: o } });
      assert.equal(r.status, 200);
      assert.equal(r.headers.get('access-control-allow-origin'), null, `origin ${o}`);
      assert.equal(r.headers.get('access-control-allow-credentials'), null);
    }
  });

  test('no Origin, no Access-Control-Allow-Origin', TO, async () => {
    const r = await request(`${url}/healthz`);
    assert.equal(r.headers.get('access-control-allow-origin'), null);
  });

  test('preflight: 204 with the allowed methods and headers', TO, async () => {
    const r = await request(`${url}/api/v1/channels/cors.pre/events`, {
      method: 'OPTIONS',
      headers: {
        origin: X,
        'access-control-request-method': 'POST',
        'access-control-request-headers': 'content-type, last-event-id',
      },
    });
    assert.equal(r.status, 204, r.text);
    assert.equal(r.text, '');
    assert.equal(r.headers.get('access-control-allow-origin'), X);
    const methods = (r.headers.get('access-control-allow-methods') || '').toUpperCase();
    for (const m of ['GET', 'POST']) assert.ok(methods.includes(m), `allow-methods: ${methods}`);
    const hdrs = (r.headers.get('access-control-allow-headers') || '').toLowerCase();
    assert.ok(hdrs === '*' || (hdrs.includes('content-type') && hdrs.includes('last-event-id')), `allow-headers: ${hdrs}`);
  });

  test('preflight for DELETE on a channel', TO, async () => {
    const r = await request(`${url}/api/v1/channels/cors.pre`, {
      method: 'OPTIONS',
      headers: { origin: Y, 'access-control-request-method': 'DELETE' },
    });
    assert.equal(r.status, 204);
    assert.equal(r.headers.get('access-control-allow-origin'), Y);
    assert.ok((r.headers.get('access-control-allow-methods') || '').toUpperCase().includes('DELETE'));
  });

  test('preflight from another origin is not allowed', TO, async () => {
    const r = await request(`${url}/api/v1/channels/cors.pre/events`, {
      method: 'OPTIONS',
      headers: { origin: EVIL, 'access-control-request-method': 'POST' },
    });
    assert.equal(r.headers.get('access-control-allow-origin'), null);
    // a preflight is never a publish
    const h = await request(`${url}/api/v1/channels/cors.pre/events`);
    assert.ok(h.status === 404 || (h.status === 200 && h.json.length === 0));
  });
});

describe("origins '*'", () => {
  let srv;
  before(async () => {
    srv = await startServer({ corsOrigins: '*' });
  });
  after(async () => {
    await srv?.stop();
  });

  test('any origin gets "*" and never credentials', TO, async () => {
    for (const o of [X, EVIL, 'null']) {
      const r = await request(`${srv.url}/healthz`, { headers: { origin: o } });
      assert.equal(r.headers.get('access-control-allow-origin'), '*', `origin ${o}`);
      assert.equal(r.headers.get('access-control-allow-credentials'), null);
    }
    const p = await request(`${srv.url}/api/v1/channels/star/events`, {
      method: 'OPTIONS',
      headers: { origin: EVIL, 'access-control-request-method': 'POST', 'access-control-request-headers': 'content-type' },
    });
    assert.equal(p.status, 204);
    assert.equal(p.headers.get('access-control-allow-origin'), '*');
    assert.equal(p.headers.get('access-control-allow-credentials'), null);
  });

  test("'*' with --cors-credentials: refused at start-up, or still no credentials", TO, async () => {
    const port = await freePort();
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'flowcast-e2e-'));
    const proc = spawn(
      BIN,
      ['serve', '--listen', `127.0.0.1:${port}`, '--data', dir, '--cors-origins', '*', '--cors-credentials', ...baseServeArgs()],
      { stdio: ['ignore', 'pipe', 'pipe'] },
    );
    let stderr = '';
    proc.stderr.on('data', (d) => (stderr += d));
    proc.stdout.resume();
    const exited = new Promise((r) => proc.once('exit', (code, signal) => r({ code, signal })));
    try {
      let answered = null;
      const deadline = Date.now() + T(10000);
      while (Date.now() < deadline && proc.exitCode === null) {
        try {
          answered = await fetch(`http://127.0.0.1:${port}/healthz`, {
            headers: { origin: X },
            signal: AbortSignal.timeout(1000),
          });
          break;
        } catch {
          await sleep(50);
        }
      }
      if (answered) {
        assert.equal(answered.headers.get('access-control-allow-credentials'), null, 'credentials with *');
        const o = answered.headers.get('access-control-allow-origin');
        assert.ok(o === '*' || o === null, `ACAO ${o}`);
        proc.kill('SIGTERM');
        const r = await exited;
        assert.equal(r.code, 0, stderr);
      } else {
        const r = await exited;
        assert.notEqual(r.code, 0, 'refused but exited 0');
        assert.ok(stderr.trim().length > 0, 'refused without a message');
      }
    } finally {
      if (proc.exitCode === null && proc.signalCode === null) proc.kill('SIGKILL');
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe('origin list with --cors-credentials', () => {
  let srv;
  before(async () => {
    srv = await startServer({ corsOrigins: X, corsCredentials: true });
  });
  after(async () => {
    await srv?.stop();
  });

  test('an allowed origin gets credentials: true', TO, async () => {
    const r = await request(`${srv.url}/healthz`, { headers: { origin: X } });
    assert.equal(r.headers.get('access-control-allow-origin'), X);
    assert.equal(r.headers.get('access-control-allow-credentials'), 'true');
    const s = await openSSE(`${srv.url}/api/v1/channels/cred/sse`, { headers: { origin: X } });
    s.close();
    assert.equal(s.headers.get('access-control-allow-origin'), X);
    assert.equal(s.headers.get('access-control-allow-credentials'), 'true');
    const p = await request(`${srv.url}/api/v1/channels/cred/events`, {
      method: 'OPTIONS',
      headers: { origin: X, 'access-control-request-method': 'POST', 'access-control-request-headers': 'content-type' },
    });
    assert.equal(p.status, 204);
    assert.equal(p.headers.get('access-control-allow-credentials'), 'true');
    assert.notEqual(p.headers.get('access-control-allow-headers'), '*', "'*' means no header at all with credentials");
  });

  test('another origin gets neither header', TO, async () => {
    const r = await request(`${srv.url}/healthz`, { headers: { origin: EVIL } });
    assert.equal(r.headers.get('access-control-allow-origin'), null);
    assert.equal(r.headers.get('access-control-allow-credentials'), null);
  });

  test('events still flow', TO, async () => {
    const r = await publishOk(srv.url, 'cred.flow', { ok: 1 });
    assert.match(r.id, /^\d+$/);
  });
});
