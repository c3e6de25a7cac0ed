// Issue 13, auth and WebSocket slice: time claims of any size or type, JSON
// error bodies whatever a token holds, POST /tokens with long pattern lists
// and the run/send rights, WebSocket rights (direct messages need `send`,
// connection ids are random, a refused op creates no channel), error answers
// that quote multi-byte text, and the per-connection subscription cap and
// lookup cost.
import { describe, test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { startServer, request, rawJsonError, sleep, T } from './lib/server.mjs';
import { openSSE } from './lib/sse.mjs';
import { connectWS, rawUpgrade } from './lib/ws.mjs';

const TO = { timeout: T(60000) };
const PASSWORD = 'sec authws password';

const b64 = (text) => Buffer.from(text).toString('base64url');
/** An HS256 token over the claims JSON text `claims` (kept as written, so numbers past 2^53 stay exact). */
function signRaw(claims, secret, header = '{"alg":"HS256","typ":"JWT"}') {
  const head = `${b64(header)}.${b64(claims)}`;
  return `${head}.${crypto.createHmac('sha256', secret).update(head).digest('base64url')}`;
}
const serverSecret = (h) => Buffer.from(fs.readFileSync(path.join(h.dataDir, 'jwt.secret'), 'utf8').trim(), 'hex');
const nowS = () => Math.floor(Date.now() / 1000);
const bearer = (tok) => ({ authorization: `Bearer ${tok}` });
const RIGHTS = '"flowcast":{"publish":["*"],"subscribe":["*"]}';
/** The claims of a token (no check). */
const payloadOf = (tok) => JSON.parse(Buffer.from(tok.split('.')[1], 'base64url').toString('utf8'));

/** Asserts `text` is exactly {"error":{"code","message"}}: valid JSON, no other key anywhere. */
function strictErrorBody(text, what) {
  let j;
  assert.doesNotThrow(() => {
    j = JSON.parse(text);
  }, `${what}: the body is not JSON: ${JSON.stringify(text)}`);
  assert.deepEqual(Object.keys(j), ['error'], `${what}: keys ${JSON.stringify(j)}`);
  assert.deepEqual(Object.keys(j.error).sort(), ['code', 'message'], `${what}: error keys ${JSON.stringify(j)}`);
  assert.equal(typeof j.error.code, 'string');
  assert.equal(typeof j.error.message, 'string');
  return j;
}

function assertWsError(m, ref, code, what) {
  assert.equal(m.type, 'error', `${what}: ${JSON.stringify(m)}`);
  assert.equal(m.ref, ref, `${what}: ${JSON.stringify(m)}`);
  assert.equal(m.code, code, `${what}: ${JSON.stringify(m)}`);
  assert.ok(typeof m.message === 'string' && m.message.length > 0, `${what}: ${JSON.stringify(m)}`);
}

async function login(url, username = 'admin', password = PASSWORD) {
  return request(`${url}/api/v1/login`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ username, password }),
  });
}

/** The channel names GET /api/v1/channels lists after `after` (one page is plenty here). */
async function channelNames(h, admin, after) {
  const r = await request(`${h.url}/api/v1/channels?after=${after}&limit=1000`, { headers: bearer(admin) });
  assert.equal(r.status, 200, r.text);
  const list = Array.isArray(r.json) ? r.json : r.json.channels;
  return list.map((c) => c.name);
}

describe('with authentication', () => {
  let h, admin, secret;
  before(async () => {
    h = await startServer({ open: false, env: { FLOWCAST_ADMIN_PASSWORD: PASSWORD } });
    const r = await login(h.url);
    assert.equal(r.status, 200, r.text);
    admin = r.json.access_token;
    secret = serverSecret(h);
  });
  after(async () => {
    await h?.stop();
  });

  const mintReq = (body) =>
    request(`${h.url}/api/v1/tokens`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', ...bearer(admin) },
      body: JSON.stringify(body),
    });
  async function mint(body) {
    const r = await mintReq(body);
    assert.equal(r.status, 201, r.text);
    return r.json.access_token;
  }
  const publishWith = (tok, ch = 'times', body = '{"n":1}') =>
    request(`${h.url}/api/v1/channels/${ch}/events`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', ...(tok ? bearer(tok) : {}) },
      body,
    });
  const ws = (t, tok) => connectWS(h, { t, headers: bearer(tok) });

  test('an exp of any size is checked without overflow: streams stay open, nothing aborts', TO, async (t) => {
    const huge = ['9007199254740992', '9300000000000000', '9007199254740993000', '4611686018427387904', '9223372036854775807', '1e300', '1.5e18'];
    const streams = [];
    const problems = [];
    for (const exp of huge) {
      const tok = signRaw(`{"sub":"big","exp":${exp},"iat":1e300,"nbf":-1e300,${RIGHTS}}`, secret);
      const s = await openSSE(`${h.url}/api/v1/channels/bigexp/sse?access_token=${tok}`);
      t.after(() => s.close());
      if (s.status !== 200) {
        problems.push(`exp ${exp}: SSE answered ${s.status} ${s.text}`);
        continue;
      }
      streams.push({ exp, s, c: await ws(t, tok) });
    }
    // Expiry is checked about once a second: an exp taken as past ends them at the first check.
    await sleep(T(2200));
    for (const { exp, s, c } of streams) {
      if (s.done || /flowcast\.expired/.test(s.raw)) problems.push(`exp ${exp}: the SSE stream was ended${s.describe()}`);
      if (!c.isOpen) problems.push(`exp ${exp}: the WebSocket was closed${c.describe()}`);
      else await c.roundTrip();
    }
    assert.deepEqual(problems, []);
    // Huge negative or past times are refused, never taken as far future.
    for (const exp of ['-9223372036854775807', '-1e300', String(nowS() - 1)]) {
      const r = await publishWith(signRaw(`{"sub":"neg","exp":${exp},${RIGHTS}}`, secret));
      assert.equal(r.status, 401, `exp ${exp}: ${r.status} ${r.text}`);
      strictErrorBody(r.text, `exp ${exp}`);
    }
    assert.ok(h.alive(), 'the server died');
  });

  test('exp, nbf and iat must be numbers; fractional NumericDates are honoured', TO, async () => {
    const now = nowS();
    const cases = [
      ['a string nbf (in the past)', `"exp":${now + 3600},"nbf":"0"`, 401],
      ['a string nbf (in the future)', `"exp":${now + 3600},"nbf":"${now + 3600}"`, 401],
      ['a fractional nbf in the future', `"exp":${now + 7200},"nbf":${now + 3600}.5`, 401],
      ['a fractional nbf just ahead', `"exp":${now + 7200},"nbf":${now + 30}.25`, 401],
      ['a string exp', `"exp":"${now + 3600}"`, 401],
      ['a boolean exp', `"exp":true`, 401],
      ['a string iat', `"exp":${now + 3600},"iat":"${now}"`, 401],
      ['a fractional exp just past', `"exp":${now - 1}.5`, 401],
      ['a fractional exp ahead', `"exp":${now + 3600}.5`, 201],
      ['a fractional nbf in the past', `"exp":${now + 3600},"nbf":${now - 10}.5,"iat":${now - 10}.5`, 201],
    ];
    for (const [what, times, want] of cases) {
      const r = await publishWith(signRaw(`{"sub":"t",${times},${RIGHTS}}`, secret));
      assert.equal(r.status, want, `${what}: ${r.status} ${r.text}`);
      if (want === 401) assert.equal(strictErrorBody(r.text, what).error.code, 'invalid_token', what);
    }
  });

  test('401 and 403 bodies are exact JSON whatever the token\'s alg holds', TO, async () => {
    const claims = `{"sub":"x","exp":${nowS() + 600},${RIGHTS}}`;
    const algs = ['a","x":"y', 'q"uo\\te', 'nl\nx', 'tab\t\u0001', '\\', '"}}'];
    for (const alg of algs) {
      const tok = signRaw(claims, secret, JSON.stringify({ alg, typ: 'JWT' }));
      const r = await publishWith(tok);
      assert.equal(r.status, 401, `alg ${JSON.stringify(alg)}: ${r.status}`);
      const j = strictErrorBody(r.text, `alg ${JSON.stringify(alg)}`);
      assert.equal(j.error.code, 'invalid_token');
      assert.ok(j.error.message.includes(alg), `the message quotes the alg as it is: ${JSON.stringify(j)}`);
      // The same on the WebSocket handshake.
      const { conn, response } = await rawUpgrade(h.port, { headers: bearer(tok), expect101: false });
      conn.destroy();
      assert.equal(response.status, 401);
      strictErrorBody(response.body, `WS alg ${JSON.stringify(alg)}`);
      rawJsonError(response, 401, 'invalid_token');
    }
    // No token, and a token without the right.
    const scoped = await mint({ sub: 'scoped', subscribe: ['a'], ttl: 600 });
    const none = await publishWith(null);
    assert.equal(none.status, 401);
    assert.match(none.headers.get('www-authenticate') || '', /^Bearer/);
    strictErrorBody(none.text, 'no token');
    const forbidden = await request(`${h.url}/api/v1/channels`, { headers: bearer(scoped) });
    assert.equal(forbidden.status, 403);
    strictErrorBody(forbidden.text, 'admin route, scoped token');
    const noPub = await publishWith(scoped, 'a');
    assert.equal(noPub.status, 403);
    strictErrorBody(noPub.text, 'publish, no right');
  });

  test('POST /tokens: long pattern lists return the token; run and send are minted and checked', TO, async () => {
    const pats = Array.from({ length: 40 }, (_, i) => `p${String(i).padStart(2, '0')}.${'x'.repeat(120)}`);
    assert.equal(pats[0].length, 124);
    const r = await mintReq({ sub: 'many', publish: pats, ttl: 600 });
    assert.equal(r.status, 201, `${r.status} ${r.text.slice(0, 300)}`);
    assert.match(r.json?.access_token || '', /^[\w-]+\.[\w-]+\.[\w-]+$/, `no token in ${JSON.stringify(r.text.slice(0, 200))}`);
    assert.equal(r.json.token_type, 'Bearer');
    assert.deepEqual(payloadOf(r.json.access_token).flowcast.publish, pats);
    // It works: the last pattern allows its channel.
    assert.equal((await publishWith(r.json.access_token, pats[39])).status, 201);

    // Twice as many: past the longest token accepted back, a clear 400.
    const big = await mintReq({ sub: 'many', publish: pats, subscribe: pats, ttl: 600 });
    assert.equal(big.status, 400, `${big.status} ${big.text.slice(0, 300)}`);
    assert.equal(strictErrorBody(big.text, 'too large').error.code, 'token_too_large');

    const rs = await mintReq({ sub: 'runner', run: ['4*', '12', '*'], send: true, ttl: 600 });
    assert.equal(rs.status, 201, rs.text);
    const fc = payloadOf(rs.json.access_token).flowcast;
    assert.deepEqual(fc.run, ['4*', '12', '*']);
    assert.equal(fc.send, true);
    const plain = payloadOf(await mint({ sub: 'plain', ttl: 600 })).flowcast;
    assert.deepEqual(plain.run, []);
    assert.equal(plain.send, false);
    for (const bad of [{ run: ['abc'] }, { run: [''] }, { run: ['4.1'] }, { run: '4' }, { run: [4] }, { send: 'yes' }, { admin: 1 }]) {
      const b = await mintReq({ sub: 'bad', ttl: 600, ...bad });
      assert.equal(b.status, 400, `${JSON.stringify(bad)}: ${b.status} ${b.text}`);
      assert.equal(strictErrorBody(b.text, JSON.stringify(bad)).error.code, 'bad_token_request');
    }
  });

  test('WebSocket: a direct message needs the send right; admin has it', TO, async (t) => {
    const noSend = await mint({ sub: 'chan-a', subscribe: ['a'], publish: ['a'], ttl: 600 });
    const withSend = await mint({ sub: 'sender', send: true, ttl: 600 });
    const [a, s, b] = await Promise.all([ws(t, noSend), ws(t, withSend), ws(t, admin)]);

    assertWsError(await a.call({ op: 'send', to: b.conn, data: 'leak', ref: 'n1' }), 'n1', 'forbidden', 'send without the right');
    const ack = await s.call({ op: 'send', to: b.conn, data: { hi: 1 }, ref: 'y1' });
    assert.equal(ack.type, 'ack', JSON.stringify(ack));
    const got = await b.waitMsg((m) => m.type === 'direct', { what: 'the permitted direct message' });
    assert.equal(got.from, s.conn);
    assert.deepEqual(got.data, { hi: 1 });
    const back = await b.call({ op: 'send', to: a.conn, data: 'from admin', ref: 'y2' });
    assert.equal(back.type, 'ack', JSON.stringify(back));
    await a.waitMsg((m) => m.type === 'direct' && m.data === 'from admin', { what: 'the admin message' });

    await Promise.all([a.roundTrip(), s.roundTrip(), b.roundTrip()]);
    assert.equal(b.ofType('direct').length, 1, `the refused message arrived: ${b.describe()}`);
    assert.ok(a.isOpen);
  });

  test('WebSocket: connection ids are 32 random hex digits, used as `from`', TO, async (t) => {
    const cs = await Promise.all([ws(t, admin), ws(t, admin), ws(t, admin)]);
    for (const c of cs) assert.match(c.conn, /^[0-9a-f]{32}$/, `id ${c.conn}`);
    assert.equal(new Set(cs.map((c) => c.conn)).size, 3);
    const ch = `ids.${crypto.randomBytes(4).toString('hex')}`;
    await cs[1].subscribe(ch);
    const ack = await cs[0].publish(ch, { n: 1 });
    const ev = await cs[1].waitMsg((m) => m.type === 'event' && m.id === ack.id);
    assert.equal(ev.from, cs[0].conn);
    const hist = await request(`${h.url}/api/v1/channels/${ch}/events`, { headers: bearer(admin) });
    assert.equal(hist.json[0].from, cs[0].conn);
  });

  test('WebSocket: a refused publish or subscribe creates no channel', TO, async (t) => {
    const tok = await mint({ sub: 'chan-a', subscribe: ['a'], publish: ['a'], ttl: 600 });
    const c = await ws(t, tok);
    const tag = crypto.randomBytes(4).toString('hex');
    const pubName = `ghost.pub${tag}`, subName = `ghost.sub${tag}`;
    assertWsError(await c.call({ op: 'publish', channel: pubName, data: 1, ref: 'g1' }), 'g1', 'forbidden', 'publish');
    assertWsError(await c.call({ op: 'subscribe', channel: subName, ref: 'g2' }), 'g2', 'forbidden', 'subscribe');
    const names = await channelNames(h, admin, 'ghost.');
    assert.ok(!names.includes(pubName), `a refused publish created ${pubName}: ${names}`);
    assert.ok(!names.includes(subName), `a refused subscribe created ${subName}: ${names}`);
    // The permitted ones still work.
    await c.subscribe('a');
    await c.publish('a', { ok: true });
  });

  test('WebSocket: an op or a `to` cut inside a multi-byte character is still answered', TO, async (t) => {
    const c = await ws(t, admin);
    const tails = ['é', '€', '😀'];
    for (const ch of tails) {
      for (let pad = 36; pad <= 40; pad++) {
        const text = `${'x'.repeat(pad)}${ch}${ch}tail`;
        const e = await c.call({ op: text, ref: `o${pad}` });
        assertWsError(e, `o${pad}`, 'unknown_op', `op ${JSON.stringify(text)}`);
        assert.ok(e.message.includes('x'.repeat(pad)), e.message);
        assert.ok(!e.message.includes('\ufffd'), `a character was split: ${e.message}`);
        const s = await c.call({ op: 'send', to: text, data: 1, ref: `s${pad}` });
        assertWsError(s, `s${pad}`, 'no_such_connection', `to ${JSON.stringify(text)}`);
        assert.ok(!s.message.includes('\ufffd'), `a character was split: ${s.message}`);
      }
    }
    assert.equal(c.bad.length, 0, `text that is not JSON: ${c.bad}`);
  });

  test('WebSocket: the default cap is 1000 subscriptions per connection', TO, async (t) => {
    const c = await ws(t, admin);
    const tag = crypto.randomBytes(3).toString('hex');
    for (let i = 0; i < 1000; i++) c.send({ op: 'subscribe', channel: `cap${tag}.${i}`, replay: 0, ref: `c${i}` });
    await c.waitMsg((m) => m.ref === 'c999', { ms: T(20000), what: 'the 1000th subscribe' });
    assert.equal(c.ofType('subscribed').length, 1000, c.describe());
    assertWsError(await c.call({ op: 'subscribe', channel: `cap${tag}.x`, ref: 'over' }), 'over', 'too_many_subscriptions', '1001st');
    const again = await c.call({ op: 'subscribe', channel: `cap${tag}.5`, ref: 'again' });
    assert.equal(again.type, 'subscribed', 'a channel already subscribed to is not refused');
  });
});

test('the 429 login body is exact JSON with Retry-After', TO, async (t) => {
  const h = await startServer({ open: false, env: { FLOWCAST_ADMIN_PASSWORD: PASSWORD }, extraArgs: ['--login-limit', '1'] });
  t.after(() => h.stop());
  const first = await login(h.url, 'nobody', 'wrong');
  assert.equal(first.status, 401);
  strictErrorBody(first.text, 'wrong credentials');
  const r = await login(h.url, 'nobody', 'wrong');
  assert.equal(r.status, 429, r.text);
  assert.equal(strictErrorBody(r.text, '429').error.code, 'too_many_attempts');
  assert.ok(Number(r.headers.get('retry-after')) > 0);
});

test('--ws-max-subscriptions: past it too_many_subscriptions, and nothing is created', TO, async (t) => {
  const h = await startServer({ extraArgs: ['--ws-max-subscriptions', '3'] });
  t.after(() => h.stop());
  const c = await connectWS(h, { t });
  for (const ch of ['lim.1', 'lim.2', 'lim.3']) await c.subscribe(ch);
  assertWsError(await c.call({ op: 'subscribe', channel: 'lim.4', ref: 'l4' }), 'l4', 'too_many_subscriptions', 'the 4th');
  assert.equal((await c.call({ op: 'subscribe', channel: 'lim.1', ref: 'l1' })).type, 'subscribed');
  const names = await channelNames(h, '', 'lim.');
  assert.ok(!names.includes('lim.4'), `a refused subscribe created lim.4: ${names}`);
  assert.equal((await c.call({ op: 'unsubscribe', channel: 'lim.2', ref: 'u2' })).type, 'unsubscribed');
  assert.equal((await c.call({ op: 'subscribe', channel: 'lim.4', ref: 'l4b' })).type, 'subscribed');
  // Another connection has its own count.
  const d = await connectWS(h, { t });
  for (const ch of ['lim.1', 'lim.2', 'lim.3']) await d.subscribe(ch);
  // Events still reach every subscription kept.
  const r = await request(`${h.url}/api/v1/channels/lim.4/events`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: '{"v":4}' });
  assert.equal(r.status, 201, r.text);
  await c.waitMsg((m) => m.type === 'event' && m.channel === 'lim.4');
});

test('20,000 subscriptions on one connection: the last 2,000 cost about what the first did', { timeout: T(120000) }, async (t) => {
  const h = await startServer({ extraArgs: ['--ws-max-subscriptions', '20000', '--storage', 'memory', '--ws-rate', '0'] });
  t.after(() => h.stop());
  const c = await connectWS(h, { t });
  const N = 20000, B = 2000;
  let k = 0;
  /** Subscribes to the next `n` new channels at once; resolves the ms until the last answer. */
  async function batch(n) {
    const t0 = performance.now();
    const from = c.msgs.length;
    let last;
    for (let i = 0; i < n; i++, k++) {
      last = `b${k}`;
      c.send({ op: 'subscribe', channel: `many.${k}`, replay: 0, ref: last });
    }
    await c.waitMsg((m) => m.ref === last, { ms: T(60000), from, what: `the answer to ${last}` });
    return performance.now() - t0;
  }
  const first = await batch(B);
  while (k < N - B) await batch(B);
  const last = await batch(B);
  assert.equal(c.ofType('subscribed').length, N, `not every subscribe succeeded: ${c.describe()}`);
  t.diagnostic(`first ${B}: ${first.toFixed(0)} ms, last ${B}: ${last.toFixed(0)} ms`);
  // A list walked per subscribe makes the last batch ~10x slower than the first (1.1 s vs 0.04 s).
  assert.ok(last < first * 4 + T(250), `the last ${B} subscribes took ${last.toFixed(0)} ms, the first ${first.toFixed(0)} ms`);
});
