// Issue 17, limits: a publish rate per token subject (--publish-rate,
// --publish-burst) over HTTP and WebSocket, a cap on channels a subject
// creates per minute (--channel-create-limit), and a message rate per
// WebSocket connection (--ws-rate). Each refusal is a 429 with Retry-After
// (HTTP) or an error rate_limited (WebSocket), changes nothing, and is
// counted in /metrics (flowcast_rate_limited_total{limit=...}).
import { describe, test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { startServer, request, assertJsonError, metrics, sleep, T } from './lib/server.mjs';
import { openSSE } from './lib/sse.mjs';
import { connectWS } from './lib/ws.mjs';

const TO = { timeout: T(60000) };
const PASSWORD = 'sec limits password';

const b64 = (text) => Buffer.from(text).toString('base64url');
const secretOf = (h) => Buffer.from(fs.readFileSync(path.join(h.dataDir, 'jwt.secret'), 'utf8').trim(), 'hex');
/** An HS256 token for `sub` with the publish and subscribe rights on every channel. */
function tokenFor(h, sub) {
  const head = `${b64('{"alg":"HS256","typ":"JWT"}')}.${b64(JSON.stringify({
    sub, exp: Math.floor(Date.now() / 1000) + 3600, flowcast: { publish: ['*'], subscribe: ['*'] },
  }))}`;
  return `${head}.${crypto.createHmac('sha256', secretOf(h)).update(head).digest('base64url')}`;
}
const bearer = (tok) => ({ authorization: `Bearer ${tok}` });

async function adminToken(h) {
  const r = await request(`${h.url}/api/v1/login`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ username: 'admin', password: PASSWORD }),
  });
  assert.equal(r.status, 200, r.text);
  return r.json.access_token;
}

function pub(h, tok, channel, data) {
  return request(`${h.url}/api/v1/channels/${channel}/events`, {
    method: 'POST', headers: { ...bearer(tok), 'content-type': 'application/json' }, body: JSON.stringify(data),
  });
}
function pubBatch(h, tok, channel, n) {
  const body = Array.from({ length: n }, (_, i) => JSON.stringify({ data: { i } })).join('\n');
  return request(`${h.url}/api/v1/channels/${channel}/events`, {
    method: 'POST', headers: { ...bearer(tok), 'content-type': 'application/x-ndjson' }, body,
  });
}
const limited = async (h, limit) =>
  (await metrics(h.url)).series.find((s) => s.name === 'flowcast_rate_limited_total' && s.labels.includes(`"${limit}"`))
    ?.value;
/** Asserts a 429 rate_limited answer; returns its Retry-After in seconds. */
function assert429(r, what) {
  assertJsonError(r, 429, 'rate_limited');
  const ra = Number(r.headers.get('retry-after'));
  assert.ok(Number.isInteger(ra) && ra >= 1, `${what}: Retry-After ${r.headers.get('retry-after')}`);
  return ra;
}

describe('publish rate per token subject', () => {
  let h, admin;
  before(async () => {
    h = await startServer({
      open: false, env: { FLOWCAST_ADMIN_PASSWORD: PASSWORD }, extraArgs: ['--publish-rate', '1', '--publish-burst', '5'],
    });
    admin = await adminToken(h);
  });
  after(async () => {
    await h?.stop();
  });

  test('past the burst: 429 with Retry-After, nothing stored; the wait it names is enough', TO, async () => {
    const carol = tokenFor(h, 'carol');
    assert.equal((await pubBatch(h, carol, 'lim.c', 5)).status, 201);
    const ra = assert429(await pub(h, carol, 'lim.c', { over: true }), 'one past the burst');
    assert.equal(ra, 1, 'one event at 1/s');
    const hist = await request(`${h.url}/api/v1/channels/lim.c/events`, { headers: bearer(admin) });
    assert.equal(hist.json.length, 5, 'the refused event was not stored');
    await sleep(ra * 1000);
    assert.equal((await pub(h, carol, 'lim.c', { after: true })).status, 201, 'after Retry-After it passes');
    assert.ok((await limited(h, 'publish_rate')) >= 1);
  });

  test('a batch larger than the burst passes once and leaves a debt; HTTP and WebSocket share it', TO, async (t) => {
    const alice = tokenFor(h, 'alice');
    const before = await limited(h, 'publish_rate');
    assert.equal((await pubBatch(h, alice, 'lim.a', 12)).status, 201, 'a full bucket takes a bigger batch');
    const ra = assert429(await pub(h, alice, 'lim.a', 1), 'in debt');
    assert.ok(ra >= 6, `a debt of 7 events at 1/s: Retry-After ${ra}`);
    // A second token of the same subject shares the limit.
    assert429(await pub(h, tokenFor(h, 'alice'), 'lim.a', 1), 'another token of alice');
    const c = await connectWS(h, { headers: bearer(alice), t });
    const m = await c.call({ op: 'publish', channel: 'lim.a', data: 1 });
    assert.equal(m.type, 'error', JSON.stringify(m));
    assert.equal(m.code, 'rate_limited', JSON.stringify(m));
    assert.equal((await limited(h, 'publish_rate')) - before, 3);
    // Others are not affected: another subject, and admin (never limited).
    assert.equal((await pub(h, tokenFor(h, 'bob'), 'lim.a', 1)).status, 201);
    for (let i = 0; i < 8; i++) assert.equal((await pub(h, admin, 'lim.a', i)).status, 201);
    const hist = await request(`${h.url}/api/v1/channels/lim.a/events?limit=100`, { headers: bearer(admin) });
    assert.equal(hist.json.length, 12 + 1 + 8, 'nothing refused was stored');
  });
});

describe('channels created per token subject', () => {
  let h, admin;
  before(async () => {
    h = await startServer({
      open: false, env: { FLOWCAST_ADMIN_PASSWORD: PASSWORD }, extraArgs: ['--channel-create-limit', '3'],
    });
    admin = await adminToken(h);
  });
  after(async () => {
    await h?.stop();
  });

  test('past the limit a publish or subscribe that would create a channel is refused; existing ones work', TO, async (t) => {
    const dave = tokenFor(h, 'dave');
    assert.equal((await pub(h, dave, 'new.1', 1)).status, 201);
    assert.equal((await pub(h, dave, 'new.2', 1)).status, 201);
    const s = await openSSE(`${h.url}/api/v1/channels/new.3/sse`, { headers: bearer(dave) });
    assert.equal(s.status, 200, s.text);
    s.close();
    const ra = assert429(await pub(h, dave, 'new.4', 1), 'a fourth new channel');
    assert.ok(ra >= 1 && ra <= 20, `one channel per 20 s: Retry-After ${ra}`);
    const sse = await openSSE(`${h.url}/api/v1/sse?channel=new.1&channel=new.5`, { headers: bearer(dave) });
    assertJsonError(sse, 429, 'rate_limited');
    const c = await connectWS(h, { headers: bearer(dave), t });
    const m = await c.call({ op: 'subscribe', channel: 'new.6' });
    assert.equal(m.code, 'rate_limited', JSON.stringify(m));
    const p = await c.call({ op: 'publish', channel: 'new.7', data: 1 });
    assert.equal(p.code, 'rate_limited', JSON.stringify(p));
    // Channels that exist are not creations.
    assert.equal((await pub(h, dave, 'new.1', 2)).status, 201);
    const ok = await c.call({ op: 'subscribe', channel: 'new.2' });
    assert.equal(ok.type, 'subscribed', JSON.stringify(ok));
    // Nothing refused came to exist; another subject and admin are not limited.
    for (const ch of ['new.4', 'new.5', 'new.6', 'new.7']) {
      const r = await request(`${h.url}/api/v1/channels/${ch}/events`, { headers: bearer(admin) });
      assertJsonError(r, 404, 'no_channel');
    }
    assert.equal((await pub(h, tokenFor(h, 'erin'), 'new.8', 1)).status, 201);
    for (let i = 0; i < 5; i++) assert.equal((await pub(h, admin, `adm.${i}`, 1)).status, 201);
    assert.equal(await limited(h, 'channel_create'), 4);
  });
});

describe('WebSocket message rate per connection', () => {
  let h;
  before(async () => {
    h = await startServer({ extraArgs: ['--ws-rate', '5'] });
  });
  after(async () => {
    await h?.stop();
  });

  test('past twice the rate at once, messages are dropped with rate_limited; the connection stays', TO, async (t) => {
    const c = await connectWS(h, { t });
    for (let i = 0; i < 40; i++) c.send({ op: 'ping' });
    await c.waitUntil((x) => x.ofType('pong').length + x.ofType('error').length >= 40, T(10000));
    const errors = c.ofType('error');
    const pongs = c.ofType('pong').length;
    assert.ok(errors.length >= 40 - 10 - 5, `errors ${errors.length}, pongs ${pongs}`);
    assert.ok(pongs >= 10, `the burst passes: ${pongs} pongs`);
    for (const e of errors) assert.equal(e.code, 'rate_limited', JSON.stringify(e));
    assert.ok(c.isOpen);
    await sleep(1000);
    const from = c.msgs.length;
    c.send({ op: 'echo', data: 'later' });
    const p = await c.waitMsg((m) => m.type === 'echo' || m.type === 'error', { from, what: 'the echo' });
    assert.equal(p.type, 'echo', JSON.stringify(p));
    assert.equal(await limited(h, 'ws_rate'), errors.length);
  });
});
