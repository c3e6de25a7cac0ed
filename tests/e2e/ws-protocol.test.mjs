// Replays the example WebSocket session of docs/api.md against the real
// server (auth on, a token from login) and asserts the documented answers,
// so the doc cannot silently rot. Also checks the documented refusals and
// close codes.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import WebSocket from 'ws';
import { startServer, T } from './lib/server.mjs';

const PASSWORD = 'ws-protocol-pass-1';
const DOC = path.join(path.dirname(fileURLToPath(import.meta.url)), '..', '..', 'docs', 'api.md');

let srv;
let token;

before(async () => {
  srv = await startServer({ open: false, env: { FLOWCAST_ADMIN_PASSWORD: PASSWORD }, extraArgs: ['--ws-max-message', '1k'] });
  const r = await fetch(`${srv.url}/api/v1/login`, {
    method: 'POST',
    body: JSON.stringify({ username: 'admin', password: PASSWORD }),
  });
  assert.equal(r.status, 200);
  token = (await r.json()).access_token;
  assert.ok(token);
});

after(async () => {
  await srv?.stop();
});

/** The example session of docs/api.md: [{dir: '>'|'<', text}]. */
function docSession() {
  const doc = fs.readFileSync(DOC, 'utf8');
  const start = doc.indexOf('Example session');
  assert.ok(start > 0, 'docs/api.md has an example session');
  const block = doc.slice(doc.indexOf('```\n', start) + 4);
  const lines = block.slice(0, block.indexOf('```')).trim().split('\n');
  return lines.map((l) => ({ dir: l[0], text: l.slice(2) }));
}

/** A session that queues every message; next() waits for the next one. */
function open(query = '', headers = { Authorization: `Bearer ${token}` }) {
  const ws = new WebSocket(`${srv.url.replace('http', 'ws')}/api/v1/ws${query}`, { headers });
  const queue = [];
  let wake = null;
  const closed = new Promise((resolve) => ws.on('close', (code, reason) => resolve({ code, reason: `${reason}` })));
  ws.on('message', (d) => {
    queue.push(`${d}`);
    wake?.();
  });
  ws.on('error', () => {});
  const next = async (ms = T(5000)) => {
    const deadline = Date.now() + ms;
    while (!queue.length) {
      assert.ok(Date.now() < deadline, 'a message within the time limit');
      await new Promise((r) => {
        wake = r;
        setTimeout(r, 50);
      });
    }
    return queue.shift();
  };
  const opened = new Promise((resolve, reject) => {
    ws.once('open', resolve);
    ws.once('unexpected-response', (_req, res) => reject(Object.assign(new Error('refused'), { status: res.statusCode })));
  });
  return { ws, next, closed, opened };
}

test('the example session of docs/api.md, answer for answer', async () => {
  const lines = docSession();
  assert.ok(lines.length >= 20);
  const s = open();
  await s.opened;
  const welcome = JSON.parse(await s.next());
  assert.equal(welcome.type, 'welcome');
  assert.match(welcome.conn, /^[0-9a-f]{32}$/);
  const docConn = JSON.parse(lines[0].text).conn;
  const expect = (text) => JSON.parse(text.replaceAll(docConn, welcome.conn));
  let i = 1;
  while (i < lines.length) {
    assert.equal(lines[i].dir, '>', `line ${i} is a client message`);
    s.ws.send(lines[i].text);
    i++;
    const want = [];
    while (i < lines.length && lines[i].dir === '<') want.push(expect(lines[i++].text));
    const got = [];
    for (let k = 0; k < want.length; k++) got.push(JSON.parse(await s.next()));
    // The doc says an ack and the session's own copy of its event may come in either order.
    const key = (m) => JSON.stringify(m, Object.keys(m).sort());
    assert.deepEqual(got.map(key).sort(), want.map(key).sort(), `answers to ${lines[i - want.length - 1].text}`);
  }
  s.ws.close(1000);
  assert.equal((await s.closed).code, 1000);
});

test('no token: the upgrade is refused with 401; ?access_token= is accepted', async () => {
  await assert.rejects(open('', {}).opened, (e) => e.status === 401);
  const s = open(`?access_token=${token}`, {});
  await s.opened;
  assert.equal(JSON.parse(await s.next()).type, 'welcome');
  s.ws.close(1000);
  await s.closed;
});

test('documented close codes: 1003 for binary, 1009 past --ws-max-message', async () => {
  const a = open();
  await a.opened;
  a.ws.send(Buffer.from([1, 2, 3]));
  assert.equal((await a.closed).code, 1003);
  const b = open();
  await b.opened;
  b.ws.send(JSON.stringify({ op: 'echo', data: 'x'.repeat(2048) }));
  assert.equal((await b.closed).code, 1009);
});

test('documented errors keep the session open: replay, lastEventId, publish without data', async () => {
  const s = open();
  await s.opened;
  await s.next(); // welcome
  const cases = [
    [{ op: 'subscribe', channel: 'c', replay: -1, ref: 'a' }, 'bad_parameter'],
    [{ op: 'subscribe', channel: 'c', lastEventId: 'x', ref: 'b' }, 'bad_last_event_id'],
    [{ op: 'publish', channel: 'c', ref: 'c' }, 'bad_message'],
    [{ ref: 'd' }, 'bad_message'],
  ];
  for (const [msg, code] of cases) {
    s.ws.send(JSON.stringify(msg));
    const m = JSON.parse(await s.next());
    assert.deepEqual([m.type, m.code, m.ref], ['error', code, msg.ref]);
  }
  s.ws.send(JSON.stringify({ op: 'ping' }));
  assert.deepEqual(JSON.parse(await s.next()), { type: 'pong' });
  s.ws.close(1000);
  await s.closed;
});

test('send: the peer gets {"type":"direct","from","data"} and the sender an ack', async () => {
  const a = open();
  const b = open();
  await Promise.all([a.opened, b.opened]);
  const [wa, wb] = [JSON.parse(await a.next()), JSON.parse(await b.next())];
  a.ws.send(JSON.stringify({ op: 'send', to: wb.conn, data: { hi: 1 }, ref: 's' }));
  assert.deepEqual(JSON.parse(await a.next()), { type: 'ack', ref: 's' });
  assert.deepEqual(JSON.parse(await b.next()), { type: 'direct', from: wa.conn, data: { hi: 1 } });
  a.ws.close(1000);
  b.ws.close(1000);
  await Promise.all([a.closed, b.closed]);
});

test('a session closes with 1008 "token expired" about a second after its token expires', async () => {
  const r = await fetch(`${srv.url}/api/v1/tokens`, {
    method: 'POST',
    headers: { Authorization: `Bearer ${token}` },
    body: JSON.stringify({ sub: 'short', subscribe: ['*'], ttl: 2 }),
  });
  assert.equal(r.status, 201);
  const short = (await r.json()).access_token;
  const s = open(`?access_token=${short}`, {});
  await s.opened;
  const t0 = Date.now();
  const c = await Promise.race([s.closed, new Promise((res) => setTimeout(() => res(null), T(8000)))]);
  assert.ok(c, 'closed within the time limit');
  assert.deepEqual([c.code, c.reason], [1008, 'token expired']);
  assert.ok(Date.now() - t0 <= T(5000));
});
