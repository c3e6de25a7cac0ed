// Auth: login, tokens and rights on every endpoint, token forgery, rate limits,
// stream expiry, and tokens from a browser (cookie across origins, query token).
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import fs from 'node:fs';
import http from 'node:http';
import path from 'node:path';
import { launchChromium } from './lib/browser.mjs';
import { startServer, request, assertJsonError, freePort, T, sleep } from './lib/server.mjs';
import { openSSE, subscribe } from './lib/sse.mjs';

const PASSWORD = 'correct horse battery';

async function authServer(opts = {}) {
  return startServer({ open: false, env: { FLOWCAST_ADMIN_PASSWORD: PASSWORD }, ...opts });
}

async function login(url, username = 'admin', password = PASSWORD, stayConnected = false) {
  return request(`${url}/api/v1/login`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ username, password, stayConnected }),
  });
}

async function adminToken(url) {
  const r = await login(url);
  assert.equal(r.status, 200, r.text);
  return r.json.access_token;
}

async function mint(url, admin, body) {
  const r = await request(`${url}/api/v1/tokens`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', authorization: `Bearer ${admin}` },
    body: JSON.stringify(body),
  });
  assert.equal(r.status, 201, r.text);
  return r.json.access_token;
}

const bearer = (tok) => ({ authorization: `Bearer ${tok}` });
const post = (url, tok, body = '{}') =>
  request(url, { method: 'POST', headers: { 'content-type': 'application/json', ...(tok ? bearer(tok) : {}) }, body });

/** An HS256 token signed with `secret` (a Buffer or string); `header` may override alg. */
function sign(claims, secret, header = { alg: 'HS256', typ: 'JWT' }) {
  const b64 = (o) => Buffer.from(JSON.stringify(o)).toString('base64url');
  const head = `${b64(header)}.${b64(claims)}`;
  if (header.alg === 'none') return `${head}.`;
  return `${head}.${crypto.createHmac('sha256', secret).update(head).digest('base64url')}`;
}

/** The server's own secret, from its data directory. */
const serverSecret = (h) => Buffer.from(fs.readFileSync(path.join(h.dataDir, 'jwt.secret'), 'utf8').trim(), 'hex');

test('login answers a Bearer token and an HttpOnly cookie; wrong credentials are 401', async (t) => {
  const h = await authServer({ extraArgs: ['--login-limit', '20'] });
  t.after(() => h.stop());
  const r = await login(h.url);
  assert.equal(r.status, 200);
  assert.equal(r.json.token_type, 'Bearer');
  assert.equal(r.json.expires_in, 3600);
  assert.match(r.json.access_token, /^[\w-]+\.[\w-]+\.[\w-]+$/);
  const cookie = r.headers.get('set-cookie');
  assert.match(cookie, new RegExp(`^flowcast_token=${r.json.access_token};`));
  assert.match(cookie, /HttpOnly/);
  assert.match(cookie, /SameSite=Lax/);
  const long = await login(h.url, 'admin', PASSWORD, true);
  assert.equal(long.json.expires_in, 30 * 24 * 3600);

  // An unknown user costs a hash verification too (a dummy hash), not a fast path.
  // The fastest of a few interleaved tries of each, so one slow moment decides nothing.
  const wrong = [], unknown = [];
  for (let i = 0; i < 3; i++) {
    for (const [user, into] of [['admin', wrong], ['nobody', unknown]]) {
      const t0 = performance.now();
      assertJsonError(await login(h.url, user, `wrong${i}`), 401, 'invalid_credentials');
      into.push(performance.now() - t0);
    }
  }
  const fastest = (a) => Math.min(...a);
  assert.ok(fastest(unknown) > fastest(wrong) * 0.3, `unknown user ${unknown} ms vs wrong password ${wrong} ms`);
  assertJsonError(await post(`${h.url}/api/v1/login`, null, '{"user":1}'), 400, 'bad_login');
});

test('every endpoint answers 401 without a token and 403 without the right', async (t) => {
  const h = await authServer({ extraArgs: ['--public', 'news.*'] });
  t.after(() => h.stop());
  const admin = await adminToken(h.url);
  const svc = await mint(h.url, admin, { sub: 'svc', publish: ['orders.*'], subscribe: ['orders.*'], ttl: 600 });
  const u = h.url;

  // No token: 401, with WWW-Authenticate.
  const r401 = await post(`${u}/api/v1/channels/orders.1/events`, null);
  assertJsonError(r401, 401, 'unauthorized');
  assert.match(r401.headers.get('www-authenticate'), /^Bearer/);
  assertJsonError(await request(`${u}/api/v1/channels/orders.1/events`), 401);
  assertJsonError(await request(`${u}/api/v1/channels/orders.1/sse`), 401);
  assertJsonError(await request(`${u}/api/v1/sse?channel=orders.1`), 401);
  assertJsonError(await request(`${u}/api/v1/channels`), 401);
  assertJsonError(await request(`${u}/api/v1/channels/orders.1`, { method: 'DELETE' }), 401);
  assertJsonError(await post(`${u}/api/v1/tokens`, null, '{"sub":"x"}'), 401);

  // A scoped token: allowed inside its patterns, 403 outside them.
  assert.equal((await post(`${u}/api/v1/channels/orders.1/events`, svc)).status, 201);
  assertJsonError(await post(`${u}/api/v1/channels/billing/events`, svc), 403, 'forbidden');
  assert.equal((await request(`${u}/api/v1/channels/orders.1/events`, { headers: bearer(svc) })).status, 200);
  assertJsonError(await request(`${u}/api/v1/channels/billing/events`, { headers: bearer(svc) }), 403);
  assertJsonError(await request(`${u}/api/v1/sse?channel=orders.1&channel=billing`, { headers: bearer(svc) }), 403);
  assertJsonError(await request(`${u}/api/v1/channels`, { headers: bearer(svc) }), 403);
  assertJsonError(await request(`${u}/api/v1/channels/orders.1`, { method: 'DELETE', headers: bearer(svc) }), 403);
  assertJsonError(await post(`${u}/api/v1/tokens`, svc, '{"sub":"x"}'), 403);

  // Public channels: subscribe without a token; publishing still needs one.
  const s = await subscribe(`${u}/api/v1/channels/news.today/sse`);
  s.close();
  assertJsonError(await post(`${u}/api/v1/channels/news.today/events`, null), 401);
  assertJsonError(await post(`${u}/api/v1/channels/news.today/events`, svc), 403);

  // Admin may do all of it.
  assert.equal((await request(`${u}/api/v1/channels`, { headers: bearer(admin) })).status, 200);
  assert.equal((await request(`${u}/api/v1/channels/orders.1`, { method: 'DELETE', headers: bearer(admin) })).status, 204);
  // A bad token request is a 400.
  assertJsonError(await post(`${u}/api/v1/tokens`, admin, '{"sub":"x","publish":["bad name"]}'), 400);
  assertJsonError(await post(`${u}/api/v1/tokens`, admin, '{"sub":"x","ttl":0}'), 400);
});

test('forged, expired, not-yet-valid, alg:none and other-algorithm tokens are refused', async (t) => {
  const h = await authServer();
  t.after(() => h.stop());
  const secret = serverSecret(h);
  const now = Math.floor(Date.now() / 1000);
  const rights = { flowcast: { publish: ['*'], subscribe: ['*'], admin: true } };
  const url = `${h.url}/api/v1/channels/x/events`;
  // The control: a token signed with the real secret works.
  assert.equal((await post(url, sign({ sub: 'a', exp: now + 60, ...rights }, secret))).status, 201);
  const bad = {
    forged: sign({ sub: 'a', exp: now + 60, ...rights }, 'not-the-secret-not-the-secret-xx'),
    expired: sign({ sub: 'a', exp: now - 5, ...rights }, secret),
    notYetValid: sign({ sub: 'a', exp: now + 60, nbf: now + 30, ...rights }, secret),
    algNone: sign({ sub: 'a', exp: now + 60, ...rights }, secret, { alg: 'none', typ: 'JWT' }),
    hs512Header: sign({ sub: 'a', exp: now + 60, ...rights }, secret, { alg: 'HS512', typ: 'JWT' }),
    noExp: sign({ sub: 'a', ...rights }, secret),
    malformed: 'not.a.token',
  };
  for (const [name, tok] of Object.entries(bad)) {
    const r = await post(url, tok);
    assert.equal(r.status, 401, `${name}: ${r.status} ${r.text}`);
    assertJsonError(r, 401, 'invalid_token');
    const q = await request(`${h.url}/api/v1/channels/x/sse?access_token=${encodeURIComponent(tok)}`);
    assert.equal(q.status, 401, `${name} in the query: ${q.status}`);
  }
  assert.ok(!h.stderrText().includes(bad.forged), 'a token never appears in the log');
});

test('failed logins are limited per address and user: 429 with Retry-After', async (t) => {
  const h = await authServer({ extraArgs: ['--login-limit', '3'] });
  t.after(() => h.stop());
  for (let i = 0; i < 3; i++) assert.equal((await login(h.url, 'admin', 'wrong')).status, 401);
  const r = await login(h.url, 'admin', 'wrong');
  assertJsonError(r, 429, 'too_many_attempts');
  const wait = Number(r.headers.get('retry-after'));
  assert.ok(wait > 0 && wait <= 60, `Retry-After: ${wait}`);
  // Even the right password waits, so guessing gains nothing.
  assert.equal((await login(h.url)).status, 429);
});

test('a stream ends when its token expires', async (t) => {
  const h = await authServer();
  t.after(() => h.stop());
  const admin = await adminToken(h.url);
  const short = await mint(h.url, admin, { sub: 'page', subscribe: ['x'], ttl: 2 });
  const s = await subscribe(`${h.url}/api/v1/channels/x/sse?access_token=${short}`);
  t.after(() => s.close());
  const exp = JSON.parse(Buffer.from(short.split('.')[1], 'base64url').toString()).exp * 1000;
  assert.ok(await s.waitEnd(T(5000)), 'the stream was not closed at expiry');
  // Within a second of the expiry (the server checks once a second), plus scheduling slack.
  const late = s.doneAt - exp;
  assert.ok(late >= 0 && late < T(1500), `closed ${late} ms after the token's exp`);
  assert.ok(s.events.some((e) => e.event === 'flowcast.expired'));
  // Reconnecting with the expired token is refused.
  assertJsonError(await request(`${h.url}/api/v1/channels/x/sse?access_token=${short}`), 401, 'invalid_token');
});

test('the secret persists across a restart, so tokens stay valid', async (t) => {
  const h = await authServer();
  t.after(() => h.stop());
  const tok = await adminToken(h.url);
  const mode = fs.statSync(path.join(h.dataDir, 'jwt.secret')).mode & 0o777;
  assert.equal(mode, 0o600);
  await h.restart();
  assert.equal((await post(`${h.url}/api/v1/channels/x/events`, tok)).status, 201);
});

// ---- browsers ---------------------------------------------------------------

/** Opens an EventSource in the page; resolves 'open' or 'error'. Messages go to window.__msgs. */
function openInPage(page, src, withCredentials) {
  return page.evaluate(({ src, withCredentials }) => new Promise((resolve) => {
    window.__msgs = [];
    const es = new EventSource(src, { withCredentials });
    es.onmessage = (e) => window.__msgs.push(e.data);
    es.onopen = () => resolve('open');
    es.onerror = () => { es.close(); resolve('error'); };
  }), { src, withCredentials });
}

/** Waits until the page's EventSource received `n` messages; returns them. */
async function pageMessages(page, n) {
  for (let i = 0; i < 200; i++) {
    const msgs = await page.evaluate(() => window.__msgs);
    if (msgs.length >= n) return msgs;
    await sleep(25);
  }
  return page.evaluate(() => window.__msgs);
}

let browser;
before(async () => {
  browser = await launchChromium();
});
after(() => browser?.close());

test('Chromium: cookie auth across origins with an allowlist, and a query token', { timeout: T(60000) }, async (t) => {
  const pagePort = await freePort();
  const origin = `http://127.0.0.1:${pagePort}`;
  const h = await authServer({ corsOrigins: origin, corsCredentials: true });
  t.after(() => h.stop());
  const site = http.createServer((req, res) => {
    res.writeHead(200, { 'content-type': 'text/html' });
    res.end('<!doctype html><title>other origin</title>');
  });
  await new Promise((r) => site.listen(pagePort, '127.0.0.1', r));
  t.after(() => site.close());
  const context = await browser.newContext();
  t.after(() => context.close());
  const page = await context.newPage();
  await page.goto(origin);

  const admin = await adminToken(h.url);
  const api = h.url;
  const status = await page.evaluate(async ({ api, password }) => {
    const r = await fetch(`${api}/api/v1/login`, {
      method: 'POST', credentials: 'include', headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ username: 'admin', password }),
    });
    return r.status;
  }, { api, password: PASSWORD });
  assert.equal(status, 200);
  assert.equal(await openInPage(page, `${api}/api/v1/channels/secret/sse`, true), 'open');
  await post(`${api}/api/v1/channels/secret/events`, admin, '{"for":"cookie"}');
  assert.deepEqual(await pageMessages(page, 1), ['{"for":"cookie"}']);

  // Without the cookie (a fresh context), the same stream is refused.
  const ctx2 = await browser.newContext();
  t.after(() => ctx2.close());
  const p2 = await ctx2.newPage();
  await p2.goto(origin);
  const refused = await openInPage(p2, `${api}/api/v1/channels/secret/sse`, true);
  assert.equal(refused, 'error');

  // A query token from a same-origin page (the dashboard).
  const sub = await mint(api, admin, { sub: 'page', subscribe: ['q'], ttl: 60 });
  await p2.goto(`${api}/`);
  assert.equal(await openInPage(p2, `/api/v1/channels/q/sse?access_token=${sub}`, false), 'open');
  await post(`${api}/api/v1/channels/q/events`, admin, '"via query"');
  assert.deepEqual(await pageMessages(p2, 1), ['"via query"']);
});

test('RS256 and ES256 tokens from the user\'s own backend, and no algorithm confusion', async (t) => {
  for (const [type, alg, opts] of [['rsa', 'RS256', { modulusLength: 2048 }], ['ec', 'ES256', { namedCurve: 'P-256' }]]) {
    const { publicKey, privateKey } = crypto.generateKeyPairSync(type, opts);
    const pem = publicKey.export({ type: 'spki', format: 'pem' });
    const dir = fs.mkdtempSync(path.join((await import('node:os')).tmpdir(), 'flowcast-key-'));
    t.after(() => fs.rmSync(dir, { recursive: true, force: true }));
    const keyFile = path.join(dir, 'backend.pem');
    fs.writeFileSync(keyFile, pem);
    const h = await authServer({ extraArgs: ['--jwt-public-key', keyFile] });
    t.after(() => h.stop());
    const now = Math.floor(Date.now() / 1000);
    const claims = { sub: 'backend', exp: now + 60, flowcast: { publish: ['x'], subscribe: ['x'] } };
    const b64 = (o) => Buffer.from(JSON.stringify(o)).toString('base64url');
    const head = `${b64({ alg, typ: 'JWT' })}.${b64(claims)}`;
    const sig = crypto.sign('sha256', Buffer.from(head), alg === 'ES256' ? { key: privateKey, dsaEncoding: 'ieee-p1363' } : privateKey);
    const good = `${head}.${sig.toString('base64url')}`;
    assert.equal((await post(`${h.url}/api/v1/channels/x/events`, good)).status, 201, `${alg} token from the backend`);
    // The same claims signed as HS256 with the public key as the secret must not pass.
    const confused = sign(claims, pem);
    assertJsonError(await post(`${h.url}/api/v1/channels/x/events`, confused), 401, 'invalid_token');
    // A token signed by another key of the same kind is refused.
    const other = crypto.generateKeyPairSync(type, opts).privateKey;
    const bad = crypto.sign('sha256', Buffer.from(head), alg === 'ES256' ? { key: other, dsaEncoding: 'ieee-p1363' } : other);
    assertJsonError(await post(`${h.url}/api/v1/channels/x/events`, `${head}.${bad.toString('base64url')}`), 401, 'invalid_token');
    await h.stop();
  }
});
