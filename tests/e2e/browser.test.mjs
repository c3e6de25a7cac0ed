// A real browser (Chromium through playwright-core): the dashboard page, the
// browser's own EventSource same-origin and cross-origin (CORS), and fetch publishes.
import { describe, test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import http from 'node:http';
import fs from 'node:fs';
import { launchChromium } from './lib/browser.mjs';
import { startServer, publishOk, freePort, sleep, T } from './lib/server.mjs';

const TO = { timeout: T(60000) };

let browser;
before(async () => {
  browser = await launchChromium();
});
after(async () => {
  await browser?.close();
});

/** A fresh page whose uncaught errors are recorded. */
async function newPage(t) {
  const context = await browser.newContext();
  t.after(() => context.close());
  const page = await context.newPage();
  page.errors = [];
  page.on('pageerror', (e) => page.errors.push(String(e)));
  return page;
}

/**
 * Opens `new EventSource(src)` in the page under `key`; resolves 'open' or
 * 'error:<readyState>' (whichever comes first). Messages collect in window.__es[key].
 */
function pageOpenES(page, key, src, { withCredentials = false, types = [] } = {}) {
  return page.evaluate(
    ({ key, src, withCredentials, types }) =>
      new Promise((resolve) => {
        window.__es = window.__es || {};
        const st = { msgs: [], errors: [], opens: 0 };
        window.__es[key] = st;
        const es = new EventSource(src, { withCredentials });
        st.es = es;
        const rec = (type) => (e) => st.msgs.push({ type, data: e.data, id: e.lastEventId, origin: e.origin });
        es.onmessage = rec('message');
        for (const ty of types) es.addEventListener(ty, rec(ty));
        es.onopen = () => {
          st.opens++;
          resolve('open');
        };
        es.onerror = () => {
          st.errors.push(es.readyState);
          resolve(`error:${es.readyState}`);
        };
      }),
    { key, src, withCredentials, types },
  );
}

const pageMsgs = (page, key) =>
  page.evaluate((key) => window.__es[key].msgs.map(({ type, data, id }) => ({ type, data, id })), key);

async function waitPageMsgs(page, key, n) {
  await page.waitForFunction(({ key, n }) => window.__es[key].msgs.length >= n, { key, n }, { timeout: T(10000) });
  return pageMsgs(page, key);
}

/** A tiny page server on another port: another origin. */
async function pageServer(t) {
  const port = await freePort();
  const srv = http.createServer((req, res) => {
    res.writeHead(200, { 'content-type': 'text/html; charset=utf-8' });
    res.end('<!doctype html><html><head><title>other origin</title></head><body>other</body></html>');
  });
  await new Promise((r) => srv.listen(port, '127.0.0.1', r));
  t.after(() => new Promise((r) => srv.close(r)));
  return { port, origin: `http://127.0.0.1:${port}` };
}

describe('same origin', () => {
  let fc;
  before(async () => {
    fc = await startServer({});
  });
  after(async () => {
    await fc?.stop();
  });

  test('the dashboard page loads without script errors', TO, async (t) => {
    const page = await newPage(t);
    const resp = await page.goto(`${fc.url}/`, { waitUntil: 'load', timeout: T(15000) });
    assert.equal(resp.status(), 200);
    assert.match(resp.headers()['content-type'] || '', /^text\/html/);
    await sleep(T(500));
    assert.deepEqual(page.errors, []);
  });

  test("the page's EventSource gets live events, named ones and ids", TO, async (t) => {
    const page = await newPage(t);
    await page.goto(`${fc.url}/`, { timeout: T(15000) });
    assert.equal(await pageOpenES(page, 'a', '/api/v1/channels/br.same/sse', { types: ['ping'] }), 'open');
    const p1 = await publishOk(fc.url, 'br.same', { hello: 'browser' });
    const p2 = await publishOk(fc.url, 'br.same', 'multi\nline ✓', { contentType: 'text/plain', event: 'ping' });
    const msgs = await waitPageMsgs(page, 'a', 2);
    assert.deepEqual(msgs, [
      { type: 'message', data: '{"hello":"browser"}', id: p1.id },
      { type: 'ping', data: 'multi\nline ✓', id: p2.id },
    ]);
  });

  test('replay, then ?lastEventId= resume in the browser', TO, async (t) => {
    const ids = [];
    for (let i = 0; i < 4; i++) ids.push((await publishOk(fc.url, 'br.resume', { i })).id);
    const page = await newPage(t);
    await page.goto(`${fc.url}/`, { timeout: T(15000) });
    await pageOpenES(page, 'all', '/api/v1/channels/br.resume/sse');
    const all = await waitPageMsgs(page, 'all', 4);
    assert.deepEqual(
      all.map((m) => m.id),
      ids,
    );
    await pageOpenES(page, 'res', `/api/v1/channels/br.resume/sse?lastEventId=${ids[1]}`);
    await waitPageMsgs(page, 'res', 2);
    await sleep(T(200));
    assert.deepEqual(
      (await pageMsgs(page, 'res')).map((m) => m.id),
      ids.slice(2),
    );
  });

  test('the browser reconnects with Last-Event-ID after the server restarts', TO, async (t) => {
    const srv = await startServer({});
    t.after(() => srv.stop());
    const page = await newPage(t);
    await page.goto(`${srv.url}/`, { timeout: T(15000) });
    assert.equal(await pageOpenES(page, 'r', '/api/v1/channels/br.restart/sse'), 'open');
    for (let i = 0; i < 3; i++) await publishOk(srv.url, 'br.restart', { phase: 'before', i });
    await waitPageMsgs(page, 'r', 3);
    await srv.restart();
    // wait for the browser to reconnect by itself (retry: 3000)
    await page.waitForFunction(() => window.__es.r.opens >= 2, null, { timeout: T(15000) });
    for (let i = 0; i < 3; i++) await publishOk(srv.url, 'br.restart', { phase: 'after', i });
    await page.waitForFunction(() => window.__es.r.msgs.length >= 6, null, { timeout: T(10000) }).catch(() => {});
    const msgs = (await pageMsgs(page, 'r')).map((m) => JSON.parse(m.data));
    assert.deepEqual(msgs, [
      { phase: 'before', i: 0 },
      { phase: 'before', i: 1 },
      { phase: 'before', i: 2 },
      { phase: 'after', i: 0 },
      { phase: 'after', i: 1 },
      { phase: 'after', i: 2 },
    ]);
  });
});

describe('cross origin', () => {
  test('an allowed origin: EventSource and fetch publish work', TO, async (t) => {
    const other = await pageServer(t);
    const fc = await startServer({ corsOrigins: other.origin });
    t.after(() => fc.stop());
    const page = await newPage(t);
    await page.goto(`${other.origin}/`, { timeout: T(15000) });
    assert.equal(
      await pageOpenES(page, 'x', `${fc.url}/api/v1/channels/br.cross/sse`, { types: ['fromPage'] }),
      'open',
    );
    const p = await publishOk(fc.url, 'br.cross', { cross: true });
    const msgs = await waitPageMsgs(page, 'x', 1);
    assert.deepEqual(msgs, [{ type: 'message', data: '{"cross":true}', id: p.id }]);

    // a JSON publish from the page needs a preflight
    const r = await page.evaluate(async (u) => {
      const res = await fetch(`${u}/api/v1/channels/br.cross/events?event=fromPage`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ from: 'page' }),
      });
      return { status: res.status, body: await res.json() };
    }, fc.url);
    assert.equal(r.status, 201);
    assert.equal(r.body.channel, 'br.cross');
    // the page's own stream gets it as a named event
    const got = await waitPageMsgs(page, 'x', 2);
    assert.deepEqual(got[1], { type: 'fromPage', data: '{"from":"page"}', id: r.body.id });
    // a cross-origin error answer is readable too
    const e = await page.evaluate(async (u) => {
      const res = await fetch(`${u}/api/v1/channels/bad%20name/events`);
      return { status: res.status, body: await res.json() };
    }, fc.url);
    assert.equal(e.status, 400);
    assert.equal(e.body.error.code, 'bad_channel');
    assert.deepEqual(page.errors, []);
  });

  test('a disallowed origin: EventSource fails and stays closed; fetch is blocked', TO, async (t) => {
    const allowed = await pageServer(t);
    const denied = await pageServer(t);
    const fc = await startServer({ corsOrigins: allowed.origin });
    t.after(() => fc.stop());
    const page = await newPage(t);
    await page.goto(`${denied.origin}/`, { timeout: T(15000) });
    const res = await pageOpenES(page, 'd', `${fc.url}/api/v1/channels/br.denied/sse`);
    assert.equal(res, 'error:2', 'EventSource from a disallowed origin must fail (CLOSED)');
    await publishOk(fc.url, 'br.denied', { secret: 1 });
    await sleep(T(500));
    assert.deepEqual(await pageMsgs(page, 'd'), []);
    const f = await page.evaluate(async (u) => {
      try {
        const r = await fetch(`${u}/api/v1/channels/br.denied/events`, {
          method: 'POST',
          headers: { 'content-type': 'application/json' },
          body: '{"evil":1}',
        });
        return `status ${r.status}`;
      } catch (e) {
        return `blocked: ${e.name}`;
      }
    }, fc.url);
    assert.equal(f, 'blocked: TypeError');
    // the preflight failed, so the publish never happened
    const h = await fetch(`${fc.url}/api/v1/channels/br.denied/events`).then((r) => r.json());
    assert.deepEqual(
      h.map((e) => e.data),
      [{ secret: 1 }],
    );
  });

  test('withCredentials works only with --cors-credentials', TO, async (t) => {
    const other = await pageServer(t);
    const withCred = await startServer({ corsOrigins: other.origin, corsCredentials: true });
    t.after(() => withCred.stop());
    const noCred = await startServer({ corsOrigins: other.origin });
    t.after(() => noCred.stop());
    const page = await newPage(t);
    await page.goto(`${other.origin}/`, { timeout: T(15000) });
    assert.equal(
      await pageOpenES(page, 'c', `${withCred.url}/api/v1/channels/br.cred/sse`, { withCredentials: true }),
      'open',
    );
    const p = await publishOk(withCred.url, 'br.cred', { c: 1 });
    const msgs = await waitPageMsgs(page, 'c', 1);
    assert.equal(msgs[0].id, p.id);
    assert.equal(
      await pageOpenES(page, 'n', `${noCred.url}/api/v1/channels/br.cred/sse`, { withCredentials: true }),
      'error:2',
      'withCredentials must fail without Access-Control-Allow-Credentials',
    );
  });
});
