// Cluster mode (API.md "Cluster mode"): three flowcast nodes on one real
// redis-server (`serve --redis redis://...`), each with its own --data dir.
// Every single-node promise must hold across nodes: fan-out to SSE and
// WebSocket subscribers on other nodes, ids unique in the cluster and
// increasing per channel, resume with one Last-Event-ID on any node (multi-
// channel too), the gap rule, history, the channel list, purge; Redis going
// away while running (503 storage_unavailable, streams stay open, catch-up
// after it is back, /healthz reports it), a node killed with SIGKILL, start-up
// errors, and a login shared by every node.
//
// Each test has its own redis and nodes, torn down after it (clients first,
// then the nodes with SIGTERM, asserting a clean exit, then redis).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { EventSource } from 'eventsource';
import {
  BIN,
  baseServeArgs,
  startServer,
  freePort,
  publishOk,
  storedEvents,
  request,
  assertJsonError,
  sanitizerReport,
  eventually,
  sleep,
  T,
} from './lib/server.mjs';
import { subscribe } from './lib/sse.mjs';
import { connectWS } from './lib/ws.mjs';
import { startRedis } from './lib/redis.mjs';

const TO = { timeout: T(45000) };
const big = (s) => BigInt(s);

// ---------------------------------------------------------------------------
// Set-up and tear-down

/**
 * One after-hook per test that runs the registered clean-ups in reverse order
 * (clients, then nodes, then redis), every one even if another fails.
 * Returns later(fn).
 */
function teardown(t) {
  const fns = [];
  t.after(async () => {
    let first = null;
    for (const fn of fns.reverse()) {
      try {
        await fn();
      } catch (e) {
        first ??= e;
      }
    }
    if (first) throw first;
  });
  return (fn) => fns.push(fn);
}

/** A redis for this test, stopped last. */
async function redis(later, opts) {
  const r = await startRedis(opts);
  later(() => r.stop());
  return r;
}

/** Stops a node (SIGTERM, clean exit asserted), or only removes the data dir of one the test killed. */
function stopNode(h) {
  if (h.killed) {
    fs.rmSync(h.dataDir, { recursive: true, force: true });
    return undefined;
  }
  return h.stop();
}

/**
 * Starts `n` nodes on redis `r` in parallel: startServer (open mode, own --data,
 * --keepalive 1 unless opts say otherwise) with `--redis URL` and opts.extraArgs.
 */
async function cluster(later, r, opts = {}, n = 3) {
  const { extraArgs = [], ...rest } = opts;
  const settled = await Promise.allSettled(
    Array.from({ length: n }, () => startServer({ ...rest, extraArgs: ['--redis', r.url, ...extraArgs] })),
  );
  const nodes = settled.filter((s) => s.status === 'fulfilled').map((s) => s.value);
  later(async () => {
    const res = await Promise.allSettled(nodes.map(stopNode));
    const bad = res.find((x) => x.status === 'rejected');
    if (bad) throw bad.reason;
  });
  const failed = settled.find((s) => s.status === 'rejected');
  if (failed) throw failed.reason;
  return nodes;
}

/** An SSE stream (sse.mjs) that has its first bytes, closed after the test. */
async function sse(later, url, opts) {
  const s = await subscribe(url, opts);
  later(() => s.close());
  return s;
}

/** A WebSocket client (ws.mjs) past its welcome, closed after the test. */
async function ws(later, h) {
  const c = await connectWS(h);
  later(() => c.close());
  return c;
}

const sseURL = (h, ch, q = '') => `${h.url}/api/v1/channels/${ch}/sse${q}`;

// ---------------------------------------------------------------------------
// Assertions and waits

function assertIncreasing(ids, what) {
  for (let i = 1; i < ids.length; i++) {
    assert.ok(big(ids[i]) > big(ids[i - 1]), `${what}: id ${ids[i]} at ${i} is not above ${ids[i - 1]} (ids: ${ids.join(' ')})`);
  }
}

/** Waits until the stream delivered the event with this id. */
function sseHas(s, id, what = `event ${id}`, ms = T(8000)) {
  return s.waitFor((x) => x.events.some((e) => e.id === id), ms, what);
}

/** Waits until the ws client got the event with this id. */
function wsHas(c, id, what = `event ${id}`, ms = T(8000)) {
  return c.waitMsg((m) => m.type === 'event' && m.id === id, { ms, what });
}

/**
 * Polls until `fn(node)` answers the same (deepEqual) on every node, for at
 * most `ms` (the nodes may catch up a moment after one another); returns A's
 * answer, or fails with all of them.
 */
async function sameOnAll(nodes, fn, what, ms = T(3000)) {
  const deadline = Date.now() + ms;
  for (;;) {
    const all = await Promise.all(nodes.map(fn));
    const same = all.every((x) => {
      try {
        assert.deepEqual(x, all[0]);
        return true;
      } catch {
        return false;
      }
    });
    if (same) return all[0];
    if (Date.now() > deadline) {
      assert.fail(`${what} differs between nodes after ${ms} ms:\n${all.map((x, i) => `node ${i}: ${JSON.stringify(x)}`).join('\n')}`);
    }
    await sleep(50);
  }
}

/**
 * /healthz of a node, read loosely. The field shape is
 * {"redis":{"state":"up"|"down"}} (also accepted: {"redis":"up"|"down"}).
 * Returns {status, json, state}; fails when there is no "redis" member.
 */
async function redisHealth(h) {
  const r = await request(`${h.url}/healthz`, { signal: AbortSignal.timeout(T(3000)) });
  assert.ok(r.json && typeof r.json === 'object' && 'redis' in r.json, `/healthz of ${h.url} has no "redis" member: ${r.status} ${r.text}`);
  const v = r.json.redis;
  return { status: r.status, json: r.json, state: v && typeof v === 'object' ? v.state : v };
}

/** The {p, i} payload of an event's data (SSE text or a WS value). */
function payloadOf(data) {
  const v = typeof data === 'string' ? JSON.parse(data) : data;
  return `${v.p}:${v.i}`;
}

/**
 * Checks one subscriber's deliveries against what the publishers saw:
 * no gap notice, ids strictly increasing (so nothing twice), every id acked
 * with 201 present with its own payload, and anything else only from a
 * publish that got no 201 (its fate is unknown: a publish cut by a dying
 * Redis or node may or may not have been stored).
 */
function checkDelivery(what, delivered, acked, unsure) {
  assert.ok(!delivered.some((e) => e.event === 'flowcast.gap' || e.type === 'gap'), `${what}: a gap notice was delivered`);
  const ids = delivered.map((e) => e.id);
  assertIncreasing(ids, what);
  const got = new Map(delivered.map((e) => [e.id, payloadOf(e.data)]));
  const missing = [];
  for (const [id, key] of acked) {
    if (!got.has(id)) missing.push(`${id} (${key})`);
    else assert.equal(got.get(id), key, `${what}: event ${id} carries ${got.get(id)}, its publish was ${key}`);
  }
  assert.deepEqual(missing, [], `${what}: ${missing.length} of ${acked.size} acknowledged events never arrived`);
  const extra = delivered.filter((e) => !acked.has(e.id));
  const unexpected = extra.filter((e) => !unsure.has(payloadOf(e.data)));
  assert.deepEqual(
    unexpected.map((e) => `${e.id} ${payloadOf(e.data)}`),
    [],
    `${what}: events delivered that no publish asked for (or were acked under another id)`,
  );
  const keys = delivered.map((e) => payloadOf(e.data));
  assert.equal(new Set(keys).size, keys.length, `${what}: one publish delivered under two ids`);
}

/**
 * A publisher: publishes {p, i} (JSON) to `ch` on node `h` one after another
 * until `stop()`, recording each answer {i, status (0: no answer within
 * T(10000) ms, or the connection failed), id, json, text, started, ended}.
 * stopOnError: ends at the first answer other than 201. pace: ms between publishes.
 * stop() lets the publish in flight finish; stop({abort: true}) (the
 * tear-down) cuts it.
 */
function publisher(h, ch, p, { stopOnError = false, pace = 0 } = {}) {
  const st = { p, node: h, results: [], stopped: false, finished: false };
  let inFlight = null; // the AbortController of the publish in flight
  st.stop = ({ abort = false } = {}) => {
    st.stopped = true;
    if (abort) inFlight?.abort();
    return st.done;
  };
  st.acked = () => st.results.filter((x) => x.status === 201);
  st.done = (async () => {
    for (let i = 0; !st.stopped; i++) {
      const started = Date.now();
      const ctl = new AbortController();
      inFlight = ctl;
      const timer = setTimeout(() => ctl.abort(new Error(`no answer within ${T(10000)} ms`)), T(10000));
      let res;
      try {
        const r = await request(`${h.url}/api/v1/channels/${ch}/events`, {
          method: 'POST',
          headers: { 'content-type': 'application/json' },
          body: JSON.stringify({ p, i }),
          signal: ctl.signal,
        });
        res = { i, status: r.status, id: r.json?.id, json: r.json, text: r.text, headers: r.headers, started, ended: Date.now() };
      } catch (e) {
        res = { i, status: 0, error: e.message, started, ended: Date.now() };
      } finally {
        clearTimeout(timer);
        inFlight = null;
      }
      st.results.push(res);
      if (stopOnError && res.status !== 201) break;
      if (pace) await sleep(pace);
    }
    st.finished = true;
  })();
  return st;
}

/** The last few answers of each publisher, for failure messages (times relative to `since`). */
function lastResults(pubs, since = 0, n = 4) {
  return pubs
    .map((st) => {
      const tail = st.results.slice(-n).map((x) => `#${x.i} ${x.status || x.error} [${x.started - since}..${x.ended - since} ms]`);
      return `${st.p}: ${st.results.length} answers, last: ${tail.join(', ')}`;
    })
    .join('\n');
}

/** The last lines of a node's stderr, without the per-request lines. */
function nodeLog(h, n = 15) {
  return h
    .stderrText()
    .split('\n')
    .filter((l) => l && !/msg=request /.test(l))
    .slice(-n)
    .join('\n');
}

/** eventually(), with `detail()` added to a time-out's message. */
async function eventuallyOr(fn, ms, what, detail) {
  try {
    return await eventually(fn, ms, what);
  } catch (e) {
    e.message += `\n${detail()}`;
    throw e;
  }
}

/** acked: Map id -> 'p:i' of every 201; unsure: Set of 'p:i' of every publish without a 201. */
function outcomes(pubs) {
  const acked = new Map();
  const unsure = new Set();
  for (const st of pubs) {
    for (const x of st.results) {
      if (x.status === 201) {
        assert.equal(typeof x.id, 'string', `201 without an id: ${x.text}`);
        assert.ok(!acked.has(x.id), `id ${x.id} acknowledged twice (${acked.get(x.id)} and ${st.p}:${x.i})`);
        acked.set(x.id, `${st.p}:${x.i}`);
      } else {
        unsure.add(`${st.p}:${x.i}`);
      }
    }
  }
  return { acked, unsure };
}

/** Runs `flowcast serve ARGS`; kills it after `ms`. Resolves {code, signal, stderr, stdout, elapsed, timedOut}. */
function runServe(args, { env = {}, ms = T(10000) } = {}) {
  return new Promise((resolve) => {
    const t0 = Date.now();
    const p = spawn(BIN, args, { env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    let timedOut = false;
    p.stdout.setEncoding('utf8');
    p.stderr.setEncoding('utf8');
    p.stdout.on('data', (d) => {
      stdout += d;
    });
    p.stderr.on('data', (d) => {
      stderr += d;
    });
    const timer = setTimeout(() => {
      timedOut = true;
      p.kill('SIGKILL');
    }, ms);
    p.on('error', (e) => {
      clearTimeout(timer);
      resolve({ code: null, signal: null, stdout, stderr: `${stderr}\nspawn error: ${e.message}`, elapsed: Date.now() - t0, timedOut });
    });
    // On exit (not on close: a child it left behind could hold the pipes open),
    // after a moment for the pipes to drain.
    p.on('exit', (code, signal) => {
      clearTimeout(timer);
      const elapsed = Date.now() - t0;
      const done = () => resolve({ code, signal, stdout, stderr, elapsed, timedOut });
      const grace = setTimeout(done, 500);
      p.once('close', () => {
        clearTimeout(grace);
        done();
      });
    });
  });
}

// ---------------------------------------------------------------------------
// 1. Fan-out across nodes

test('cross-node fan-out: SSE on B and WebSocket on C get what A published, with the same id, event, data, time and from', TO, async (t) => {
  const later = teardown(t);
  const r = await redis(later);
  const [A, B, C] = await cluster(later, r);
  const ch = 'fan.out';

  // B: the real EventSource client and the raw-text reader; C: a WebSocket.
  const received = [];
  const es = new EventSource(sseURL(B, ch));
  later(() => es.close());
  const esErrors = [];
  const rec = (e) => received.push({ type: e.type, data: e.data, id: e.lastEventId });
  es.addEventListener('message', rec);
  es.addEventListener('thing.done', rec);
  es.addEventListener('chat', rec);
  es.addEventListener('error', (e) => esErrors.push(e.message ?? 'error'));
  await new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`EventSource on B did not open within ${T(5000)} ms: ${esErrors.join('; ')}`)), T(5000));
    es.addEventListener('open', () => {
      clearTimeout(timer);
      resolve();
    });
  });
  const s = await sse(later, sseURL(B, ch));
  const c = await ws(later, C);
  await c.subscribe(ch);

  // A: HTTP publishes of every kind, and one over a WebSocket (it carries `from`).
  const pubWs = await ws(later, A);
  const sent = []; // [ack, the SSE data text as published (undefined: server-encoded)]
  sent.push([await publishOk(A.url, ch, { n: 1 }), '{"n":1}']);
  sent.push([await publishOk(A.url, ch, { k: 'v' }, { event: 'thing.done' }), '{"k":"v"}']);
  sent.push([await publishOk(A.url, ch, 'plain text\nsecond line', { contentType: 'text/plain' }), 'plain text\nsecond line']);
  sent.push([await publishOk(A.url, ch, 'Grüße — 日本語 🎉', { contentType: 'text/plain; charset=utf-8' }), 'Grüße — 日本語 🎉']);
  sent.push([await pubWs.publish(ch, { via: 'ws', list: [1, 2] }, { event: 'chat' }), undefined]);
  sent.push([await publishOk(A.url, ch, [1, 'two', { three: 3 }]), '[1,"two",{"three":3}]']);
  const ids = sent.map(([a]) => a.id);
  for (const [a] of sent) {
    assert.equal(typeof a.id, 'string', JSON.stringify(a));
    if (a.type !== 'ack') assert.equal(a.channel, ch, `201 answer: ${JSON.stringify(a)}`);
  }
  assertIncreasing(ids, 'ids of the publishes on A');

  // A marker after them: once it arrived, everything before it did (or never will).
  const marker = await publishOk(A.url, ch, { marker: true });
  await sseHas(s, marker.id, 'the marker on B (raw SSE)');
  await wsHas(c, marker.id, 'the marker on C (WebSocket)');
  await eventually(() => received.some((e) => e.id === marker.id), T(8000), 'the marker on B (EventSource)');
  const all = [...ids, marker.id];

  // History on A is the reference; B and C answer the same array (time and from included).
  const hist = await storedEvents(A.url, ch);
  assert.deepEqual(hist.map((e) => e.id), all, 'history on A');
  for (const e of hist) {
    assert.equal(e.channel, ch);
    assert.match(e.time, /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?(Z|[+-]\d\d:\d\d)$/, e.time);
  }
  assert.equal(hist[4].from, pubWs.conn, `the WebSocket publish has from = its conn: ${JSON.stringify(hist[4])}`);
  for (const i of [0, 1, 2, 3, 5]) assert.ok(hist[i].from === undefined || hist[i].from === null, `an HTTP publish has no from: ${JSON.stringify(hist[i])}`);
  await sameOnAll([A, B, C], (h) => storedEvents(h.url, ch), 'the history');

  // SSE on B (raw reader): exactly these events, in order, id/event/data as on A.
  assert.deepEqual(s.events.map((e) => e.id), all, `SSE on B${s.describe()}`);
  hist.forEach((h, i) => {
    const e = s.events[i];
    assert.equal(e.event ?? null, h.event ?? null, `SSE event name of ${h.id}`);
    if (i < sent.length && sent[i][1] !== undefined) assert.equal(e.data, sent[i][1], `SSE data of ${h.id}`);
    if (typeof h.data === 'string') assert.equal(e.data, h.data, `SSE data of ${h.id}`);
    else assert.deepEqual(JSON.parse(e.data), h.data, `SSE data of ${h.id}`);
  });
  assert.ok(s.raw.includes(`id: ${ids[1]}\nevent: thing.done\ndata: {"k":"v"}\n\n`), `named frame on B: ${JSON.stringify(s.raw)}`);

  // EventSource on B: the same.
  assert.deepEqual(received.map((e) => e.id), all, `EventSource on B: ${JSON.stringify(received)}`);
  hist.forEach((h, i) => {
    assert.equal(received[i].type, h.event ?? 'message', `EventSource type of ${h.id}`);
    assert.equal(received[i].data, s.events[i].data, `EventSource data of ${h.id}`);
  });

  // WebSocket on C: event messages with the same id, event, data (the value) and from (and time, if it carries one).
  const evs = c.events(ch);
  assert.deepEqual(evs.map((m) => m.id), all, `WebSocket on C${c.describe()}`);
  hist.forEach((h, i) => {
    const m = evs[i];
    assert.equal(m.channel, ch);
    assert.equal(m.event ?? null, h.event ?? null, `ws event name of ${h.id}`);
    assert.deepEqual(m.data, h.data, `ws data of ${h.id}`);
    assert.equal(m.from ?? null, h.from ?? null, `ws from of ${h.id}`);
    if (m.time !== undefined) assert.equal(m.time, h.time, `ws time of ${h.id}`);
  });
  assert.deepEqual(esErrors, [], 'EventSource errors on B');
});

// ---------------------------------------------------------------------------
// 2. Ids across nodes and multi-channel resume

test('ids: unique in the cluster, increasing per channel; a multi-channel resume on B with one Last-Event-ID gets exactly the rest', TO, async (t) => {
  const later = teardown(t);
  const r = await redis(later);
  const nodes = await cluster(later, r);
  const [A, B, C] = nodes;

  const live = await sse(later, `${B.url}/api/v1/sse?channel=a&channel=b`);
  const seq = []; // {id, ch} in publish order
  for (let i = 0; i < 30; i++) {
    const ch = i % 2 ? 'b' : 'a';
    const ack = await publishOk(nodes[i % 3].url, ch, { i, node: i % 3 });
    seq.push({ id: ack.id, ch });
  }
  const ids = seq.map((x) => x.id);
  assert.equal(new Set(ids).size, ids.length, `duplicate ids: ${ids.join(' ')}`);
  for (const ch of ['a', 'b']) assertIncreasing(seq.filter((x) => x.ch === ch).map((x) => x.id), `channel ${ch}`);
  // Publishes one after another, over any nodes and channels, get increasing ids:
  // without that, a single Last-Event-ID of a multi-channel stream could not say
  // what a client has seen (it would miss or repeat events of the other channel).
  assertIncreasing(ids, 'ids of sequential publishes across nodes and channels');

  // The live multi-channel stream on B got them all, in publish order.
  await live.waitEvents(30, T(8000));
  assert.deepEqual(live.events.map((e) => e.id), ids, `live stream on B${live.describe()}`);
  assert.deepEqual(live.events.map((e) => JSON.parse(e.data).i), [...Array(30).keys()]);

  // Resume on B with the id of the 14th event, as a client that saw that far.
  const k = 13;
  const lastSeen = live.events[k].id;
  const rest = ids.slice(k + 1);
  const s = await sse(later, `${B.url}/api/v1/sse?channel=a&channel=b`, { headers: { 'Last-Event-ID': lastSeen } });
  const m1 = await publishOk(C.url, 'b', { marker: 1 });
  await sseHas(s, m1.id, 'the marker on the resumed stream');
  assert.deepEqual(s.events.map((e) => e.id), [...rest, m1.id], `resumed on B${s.describe()}`);
  assert.ok(!s.events.some((e) => e.event === 'flowcast.gap'), 'no gap: everything is retained');

  // The same with ?lastEventId= and the channels the other way round, on A.
  const q = await sse(later, `${A.url}/api/v1/sse?channel=b&channel=a&lastEventId=${lastSeen}`);
  const m2 = await publishOk(B.url, 'a', { marker: 2 });
  await sseHas(q, m2.id, 'the second marker on A');
  assert.deepEqual(q.events.map((e) => e.id), [...rest, m1.id, m2.id], `resumed on A${q.describe()}`);
});

// ---------------------------------------------------------------------------
// 3. Resume, replay, history, channel list and purge on other nodes

test('resume on another node; replay, history and the channel list agree on every node; a purge on A empties B and C', TO, async (t) => {
  const later = teardown(t);
  const r = await redis(later);
  const nodes = await cluster(later, r);
  const [A, B, C] = nodes;
  const ch = 'res.x';

  // Read five on A, go away.
  const first = await sse(later, sseURL(A, ch));
  const seen = [];
  for (let i = 0; i < 5; i++) seen.push((await publishOk(A.url, ch, { i })).id);
  await first.waitEvents(5);
  assert.deepEqual(first.events.map((e) => e.id), seen);
  first.close();

  // Four more on B meanwhile; come back to C with the last id seen.
  const missed = [];
  for (let i = 5; i < 9; i++) missed.push((await publishOk(B.url, ch, { i })).id);
  const back = await sse(later, sseURL(C, ch), { headers: { 'Last-Event-ID': seen[4] } });
  const live1 = await publishOk(A.url, ch, { i: 9 });
  await sseHas(back, live1.id, 'the live event after the resume on C');
  assert.deepEqual(back.events.map((e) => e.id), [...missed, live1.id], `resumed on C${back.describe()}`);
  const all = [...seen, ...missed, live1.id];
  assertIncreasing(all, 'ids of the channel');

  // ?replay=3 on C: the newest three, then live.
  const rep = await sse(later, sseURL(C, ch, '?replay=3'));
  const live2 = await publishOk(B.url, ch, { i: 10 });
  await sseHas(rep, live2.id, 'the live event after ?replay=3');
  assert.deepEqual(rep.events.map((e) => e.id), [...all.slice(-3), live2.id], `?replay=3 on C${rep.describe()}`);
  all.push(live2.id);
  await sseHas(back, live2.id, 'the second live event on C');

  // History: the same array on every node; ?after and ?limit too.
  const hist = await sameOnAll(nodes, (h) => storedEvents(h.url, ch), 'the history');
  assert.deepEqual(hist.map((e) => e.id), all);
  assert.deepEqual(hist.map((e) => e.data.i), [...Array(11).keys()]);
  const page = await sameOnAll(nodes, (h) => storedEvents(h.url, ch, `?after=${all[3]}&limit=2`), 'a page of history');
  assert.deepEqual(page.map((e) => e.id), all.slice(4, 6));

  // The channel list: a channel used on B only is listed by all three.
  const only = await publishOk(B.url, 'only.on.b', { b: 1 });
  const lists = await sameOnAll(
    nodes,
    async (h) => {
      const res = await request(`${h.url}/api/v1/channels`);
      assert.equal(res.status, 200, res.text);
      assert.ok(Array.isArray(res.json?.channels), res.text);
      const pick = (name) => {
        const x = res.json.channels.find((y) => y.name === name);
        return x && { name: x.name, retained: x.retained, lastId: x.lastId };
      };
      return [pick(ch), pick('only.on.b')];
    },
    'the channel list (name, retained, lastId)',
  );
  assert.deepEqual(lists, [
    { name: ch, retained: all.length, lastId: all.at(-1) },
    { name: 'only.on.b', retained: 1, lastId: only.id },
  ]);

  // Purge on A: history is empty on B and C too; ids go on increasing after it.
  const del = await request(`${A.url}/api/v1/channels/${ch}`, { method: 'DELETE' });
  assert.equal(del.status, 204, del.text);
  assert.deepEqual(await sameOnAll(nodes, (h) => storedEvents(h.url, ch), 'the history after the purge'), []);
  const after = await publishOk(C.url, ch, { i: 11 });
  assert.ok(big(after.id) > big(all.at(-1)), `id after the purge ${after.id} <= ${all.at(-1)}`);
  const h2 = await sameOnAll(nodes, (h) => storedEvents(h.url, ch), 'the history after the purge and one publish');
  assert.deepEqual(h2.map((e) => e.id), [after.id]);
});

// ---------------------------------------------------------------------------
// 4. The gap rule across nodes

test('the gap rule across nodes (--retention 5): resuming on B past evicted events starts with flowcast.gap', TO, async (t) => {
  const later = teardown(t);
  const r = await redis(later);
  const nodes = await cluster(later, r, { retention: 5 });
  const [A, B, C] = nodes;
  const ch = 'gap.x';
  const ids = [];
  for (let i = 0; i < 20; i++) ids.push((await publishOk(A.url, ch, { i })).id);
  // Retention holds cluster-wide: the newest five, on every node.
  const hist = await sameOnAll(nodes, (h) => storedEvents(h.url, ch), 'the history');
  assert.deepEqual(hist.map((e) => e.id), ids.slice(15));

  // Resume on B after the 2nd event: ids[2..14] (13 events) were evicted.
  const s = await sse(later, sseURL(B, ch), { headers: { 'Last-Event-ID': ids[1] } });
  // (the replay first: a publish now would evict one more before it is read)
  await s.waitEvents(6, T(8000));
  const live = await publishOk(C.url, ch, { i: 20 });
  await sseHas(s, live.id, 'the live event after the gap and the retained ones');
  const [gap, ...rest] = s.events;
  assert.equal(gap.event, 'flowcast.gap', `the first event is the gap notice${s.describe()}`);
  const g = JSON.parse(gap.data);
  assert.equal(g.channel, ch, gap.data);
  assert.equal(g.next, ids[15], gap.data);
  assert.equal(typeof g.exact, 'boolean', gap.data);
  // exact: lost is the count; not exact: an honest lower bound
  if (g.exact) assert.deepEqual(g, { channel: ch, lost: 13, exact: true, next: ids[15] });
  else assert.ok(g.lost >= 1 && g.lost <= 13, `lost ${g.lost} of 13`);
  assert.match(s.raw.slice('retry: 3000\n\n'.length), /^(id: [^\n]*\n)?event: flowcast\.gap\n/, 'the gap comes right after the retry line');
  if (gap.id) assert.ok(big(gap.id) < big(ids[15]), `the gap's id ${gap.id} would skip ${ids[15]} on a reconnect`);
  assert.deepEqual(rest.map((e) => e.id), [...ids.slice(15), live.id], `after the gap${s.describe()}`);

  // The same over a WebSocket on C: a gap message, then the retained ones.
  const c = await ws(later, C);
  const ack = await c.subscribe(ch, { lastEventId: ids[1] });
  // retained now: ids[16..19] and live, so ids[2..15] are lost
  await c.waitUntil(() => c.events(ch).length >= 5, T(8000));
  const live2 = await publishOk(B.url, ch, { i: 21 });
  await wsHas(c, live2.id, 'the live event on the WebSocket');
  const msgs = c.msgs.slice(c.msgs.indexOf(ack) + 1).filter((m) => m.type === 'gap' || m.type === 'event');
  assert.equal(msgs[0].type, 'gap', `the first message after subscribed is a gap${c.describe()}`);
  assert.equal(msgs[0].channel, ch);
  assert.equal(msgs[0].next, ids[16]);
  if (msgs[0].exact) assert.equal(msgs[0].lost, 14);
  assert.deepEqual(msgs.slice(1).map((m) => m.id), [...ids.slice(16), live.id, live2.id], c.describe());
});

// ---------------------------------------------------------------------------
// 5. Start-up errors

test('start-up errors: a bad --redis (or FLOWCAST_REDIS) exits 1 within seconds with a one-line error that names the problem', TO, async (t) => {
  const later = teardown(t);
  const locked = await redis(later, { password: 'right-password' });
  const nobody = await freePort(); // nothing listens there
  const cases = [
    { what: 'http:// URL', url: 'http://127.0.0.1:6379', re: /url|scheme/i },
    { what: 'port not a number', url: 'redis://127.0.0.1:notaport', re: /url|port/i },
    { what: 'nothing listening', url: `redis://127.0.0.1:${nobody}`, re: /connect|refused|unreachable/i },
    { what: 'wrong password', url: `redis://:wrong-password@127.0.0.1:${locked.port}`, re: /password|auth/i },
    { what: 'no password where one is required', url: `redis://127.0.0.1:${locked.port}`, re: /password|auth/i },
    { what: 'rediss:// (TLS)', url: `rediss://127.0.0.1:${locked.port}`, re: /TLS|rediss/i },
    { what: 'FLOWCAST_REDIS with an http:// URL', env: { FLOWCAST_REDIS: 'http://127.0.0.1:6379' }, re: /url|scheme/i },
  ];
  const runs = await Promise.all(
    cases.map(async (c) => {
      const data = fs.mkdtempSync(path.join(os.tmpdir(), 'flowcast-e2e-'));
      later(() => fs.rmSync(data, { recursive: true, force: true }));
      const port = await freePort();
      const args = ['serve', '--listen', `127.0.0.1:${port}`, '--data', data, ...baseServeArgs()];
      if (c.url) args.push('--redis', c.url);
      return { c, res: await runServe(args, { env: c.env }) };
    }),
  );
  const problems = [];
  for (const { c, res } of runs) {
    const tail = `\n    stderr: ${JSON.stringify(res.stderr.slice(-600))}`;
    if (res.timedOut) {
      problems.push(`${c.what}: still running after ${T(10000)} ms${tail}`);
      continue;
    }
    if (res.code !== 1) problems.push(`${c.what}: exit code ${res.code} (signal ${res.signal}), expected 1${tail}`);
    if (res.elapsed > T(5000)) problems.push(`${c.what}: took ${res.elapsed} ms to exit${tail}`);
    const lines = res.stderr.split('\n');
    if (!lines.some((l) => /redis/i.test(l) && c.re.test(l))) {
      problems.push(`${c.what}: no stderr line matching /redis/i and ${c.re}${tail}`);
    }
    const report = sanitizerReport(res.stderr);
    if (report) problems.push(`${c.what}: sanitizer report:\n${report}`);
  }
  assert.deepEqual(problems, [], `\n${problems.join('\n')}`);
});

// ---------------------------------------------------------------------------
// 6. Redis down while running

test('Redis down while running: 503 storage_unavailable, streams stay open, /healthz says so, everything acked arrives once after it is back', { timeout: T(60000) }, async (t) => {
  const later = teardown(t);
  const r = await redis(later);
  const [A, B, C] = await cluster(later, r, { keepalive: 1, retention: 10000 });
  const ch = 'down';
  for (const h of [A, B, C]) {
    const hh = await redisHealth(h);
    assert.equal(hh.state, 'up', `/healthz before the kill: ${JSON.stringify(hh.json)}`);
  }

  const sB = await sse(later, sseURL(B, ch));
  const sC = await sse(later, sseURL(C, ch));
  const wC = await ws(later, C);
  await wC.subscribe(ch);

  const pubs = [publisher(A, ch, 'A', { pace: 10 }), publisher(B, ch, 'B', { pace: 10 })];
  later(() => Promise.all(pubs.map((p) => p.stop({ abort: true }))));
  const ackedBy = (st, pred = () => true) => st.results.filter((x) => x.status === 201 && pred(x)).length;
  await eventually(() => pubs.every((st) => ackedBy(st) >= 10), T(8000), '10 acknowledged publishes on A and on B');

  // Kill Redis.
  const keep = (s) => s.comments.filter((c) => c === 'keepalive').length;
  const ka = [keep(sB), keep(sC)];
  await r.kill();
  const killedAt = Date.now();

  // Publishes fail with 503 storage_unavailable on both nodes, at once: the one
  // in flight when Redis died too (201 if Redis had it, else 503; never no
  // answer). The wait is longer than a request's own timeout (T(10000)), so a
  // publish that hangs shows as "no answer" below.
  await eventuallyOr(
    () => pubs.every((st) => st.results.some((x) => x.started > killedAt || (x.status === 0 && x.ended >= killedAt))),
    T(14000),
    'an answer to a publish made on A and on B while Redis is down',
    () => `times from the kill:\n${lastResults(pubs, killedAt)}`,
  );
  for (const st of pubs) {
    for (const x of st.results.filter((y) => y.ended >= killedAt)) {
      assert.notEqual(
        x.status,
        0,
        `publish ${st.p}:${x.i} (sent ${x.started - killedAt} ms after the kill) got no answer: ${x.error}\n${lastResults(pubs, killedAt)}\n` +
          `its node's log (requests left out):\n${nodeLog(st.node)}`,
      );
      if (x.status !== 201) assertJsonError({ status: x.status, headers: x.headers, text: x.text, json: x.json }, 503, 'storage_unavailable');
    }
  }
  // /healthz reports Redis as not up.
  for (const h of [A, B, C]) {
    await eventually(async () => (await redisHealth(h)).state !== 'up', T(5000), `/healthz of ${h.url} to report Redis down`);
  }
  // The streams stay open: keepalives go on (--keepalive 1).
  await sB.waitFor((s) => keep(s) >= ka[0] + 2, T(5000), 'two keepalives on B while Redis is down');
  await sC.waitFor((s) => keep(s) >= ka[1] + 2, T(5000), 'two keepalives on C while Redis is down');
  assert.equal(wC.closeInfo, null, `the WebSocket on C closed while Redis was down${wC.describe()}`);
  const downUntil = Date.now();

  // Back on the same port and dir (the AOF reloads).
  await r.restart();
  const restartedAt = Date.now();
  await eventuallyOr(
    () => pubs.every((st) => ackedBy(st, (x) => x.started > restartedAt) >= 5),
    T(15000),
    'publishes to succeed again on A and B after the restart',
    () => `times from the restart:\n${lastResults(pubs, restartedAt)}`,
  );
  for (const h of [A, B, C]) {
    await eventually(async () => (await redisHealth(h)).state === 'up', T(10000), `/healthz of ${h.url} to report Redis up again`);
  }
  await Promise.all(pubs.map((p) => p.stop()));

  // Every answer that was not a 201 is a 503 storage_unavailable (never a hang, never another error).
  for (const st of pubs) {
    for (const x of st.results) {
      if (x.status === 201) continue;
      assert.notEqual(x.status, 0, `publish ${st.p}:${x.i} got no answer: ${x.error}`);
      assertJsonError({ status: x.status, headers: x.headers, text: x.text, json: x.json }, 503, 'storage_unavailable');
    }
  }
  // No 201 for a publish made entirely while Redis was down: a 201 means Redis has it.
  const liar = pubs.flatMap((st) => st.results.filter((x) => x.status === 201 && x.started > killedAt && x.ended < downUntil));
  assert.deepEqual(liar.map((x) => x.id), [], '201 answers while Redis was down');

  // Ids after the restart are above every id before the kill.
  const before = pubs.flatMap((st) => st.results.filter((x) => x.status === 201 && x.started < killedAt).map((x) => big(x.id)));
  const afterIds = pubs.flatMap((st) => st.results.filter((x) => x.status === 201 && x.started > restartedAt).map((x) => big(x.id)));
  const maxBefore = before.reduce((a, b) => (b > a ? b : a));
  const minAfter = afterIds.reduce((a, b) => (b < a ? b : a));
  assert.ok(minAfter > maxBefore, `an id after the restart (${minAfter}) is not above those before the kill (${maxBefore})`);

  // Everything acknowledged arrives exactly once, in order, on B and C.
  const marker = await publishOk(A.url, ch, { p: 'M', i: 0 });
  await sseHas(sB, marker.id, 'the final marker on B', T(10000));
  await sseHas(sC, marker.id, 'the final marker on C', T(10000));
  await wsHas(wC, marker.id, 'the final marker on the WebSocket on C', T(10000));
  const { acked, unsure } = outcomes(pubs);
  acked.set(marker.id, 'M:0');
  t.diagnostic(`${acked.size} acknowledged, ${unsure.size} refused; down for ${downUntil - killedAt} ms`);
  checkDelivery('SSE on B', sB.events, acked, unsure);
  checkDelivery('SSE on C', sC.events, acked, unsure);
  checkDelivery('WebSocket on C', wC.events(ch), acked, unsure);
  // ... on the same connections all along.
  assert.equal(sB.done, false, `the stream on B ended${sB.describe()}`);
  assert.equal(sC.done, false, `the stream on C ended${sC.describe()}`);
  assert.equal(wC.closeInfo, null, `the WebSocket on C closed${wC.describe()}`);
});

// ---------------------------------------------------------------------------
// 7. A node killed with SIGKILL

test('kill -9 a node: a subscriber on A gets every acknowledged id, from any node, once and in order', { timeout: T(60000) }, async (t) => {
  const later = teardown(t);
  const r = await redis(later);
  const nodes = await cluster(later, r, { retention: 10000 });
  const [A, B, C] = nodes;
  const ch = 'k9';
  const sA = await sse(later, sseURL(A, ch));
  const sB = await sse(later, sseURL(B, ch));

  const t0 = Date.now();
  const pubs = Array.from({ length: 8 }, (_, p) => publisher(nodes[p % 3], ch, `p${p}`, { stopOnError: nodes[p % 3] === C }));
  later(() => Promise.all(pubs.map((p) => p.stop({ abort: true }))));
  const onC = pubs.filter((st) => st.node === C);
  const others = pubs.filter((st) => st.node !== C);
  await eventually(() => pubs.every((st) => st.acked().length >= 5), T(8000), '5 acknowledged publishes from each publisher');
  const mid = t0 + 1500 - Date.now();
  if (mid > 0) await sleep(mid); // pacing: about half-way through the ~3 s of publishing

  C.killed = true;
  C.proc.kill('SIGKILL');
  const killedAt = Date.now();
  // The publishers aimed at C end at their first failure.
  await eventually(() => onC.every((st) => st.finished), T(12000), 'the publishers aimed at the killed node C to fail');
  await eventually(() => others.every((st) => st.acked().filter((x) => x.started > killedAt).length >= 5), T(8000), 'publishes on A and B after the kill');
  const end = t0 + 3000 - Date.now();
  if (end > 0) await sleep(end);
  await Promise.all(pubs.map((p) => p.stop()));

  for (const st of others) {
    const bad = st.results.filter((x) => x.status !== 201);
    assert.deepEqual(bad.map((x) => `${x.i}: ${x.status} ${x.error ?? x.text}`), [], `publisher ${st.p} on a live node had failures`);
  }
  for (const st of onC) assert.ok(st.acked().length >= 5, `publisher ${st.p} on C had acks before the kill`);

  const marker = await publishOk(B.url, ch, { p: 'M', i: 0 });
  await sseHas(sA, marker.id, 'the final marker on A', T(10000));
  await sseHas(sB, marker.id, 'the final marker on B', T(10000));
  const { acked, unsure } = outcomes(pubs);
  acked.set(marker.id, 'M:0');
  t.diagnostic(`${acked.size} acknowledged (${onC.reduce((n, st) => n + st.acked().length, 0)} by C), ${unsure.size} cut by the kill`);
  assert.ok(unsure.size <= onC.length, `only the publishes in flight on C can be unsure: ${[...unsure].join(' ')}`);
  checkDelivery('SSE on A', sA.events, acked, unsure);
  checkDelivery('SSE on B', sB.events, acked, unsure);
  // The survivors agree on the channel's last id: the marker.
  const last = await sameOnAll(
    [A, B],
    async (h) => (await request(`${h.url}/api/v1/channels`)).json?.channels?.find((x) => x.name === ch)?.lastId,
    'the last id of the channel',
  );
  assert.equal(last, marker.id);
  assert.equal(sA.done, false, `the stream on A ended${sA.describe()}`);
});

// ---------------------------------------------------------------------------
// 8. One login for the whole cluster

test('shared login: a token from a login on A, and one minted on B, work on every node', TO, async (t) => {
  const later = teardown(t);
  const r = await redis(later);
  const PASSWORD = 'cluster admin password';
  const nodes = await cluster(later, r, { open: false, env: { FLOWCAST_ADMIN_PASSWORD: PASSWORD } });
  const [A, B, C] = nodes;
  const bearer = (tok) => ({ authorization: `Bearer ${tok}` });
  const post = (url, tok, body) =>
    request(url, { method: 'POST', headers: { 'content-type': 'application/json', ...(tok ? bearer(tok) : {}) }, body: JSON.stringify(body) });

  const login = await post(`${A.url}/api/v1/login`, null, { username: 'admin', password: PASSWORD, stayConnected: false });
  assert.equal(login.status, 200, login.text);
  const tok = login.json.access_token;
  assert.equal(typeof tok, 'string', login.text);
  assert.equal(login.json.token_type, 'Bearer');

  // Authentication is on: no token is 401 on B.
  assertJsonError(await post(`${B.url}/api/v1/channels/shared/events`, null, { no: 'token' }), 401);

  // A's token on C: subscribe with ?access_token=; on B and C: publish with a Bearer header.
  const s = await sse(later, sseURL(C, 'shared', `?access_token=${encodeURIComponent(tok)}`));
  const pb = await post(`${B.url}/api/v1/channels/shared/events`, tok, { from: 'B' });
  assert.equal(pb.status, 201, `publish on B with A's token: ${pb.text}`);
  const pc = await post(`${C.url}/api/v1/channels/shared/events`, tok, { from: 'C' });
  assert.equal(pc.status, 201, `publish on C with A's token: ${pc.text}`);
  await sseHas(s, pc.json.id, 'the publishes on the stream on C');
  assert.deepEqual(s.events.map((e) => e.id), [pb.json.id, pc.json.id]);

  // A scoped token minted on B (admin) works on A and C, within its rights only.
  const mint = await post(`${B.url}/api/v1/tokens`, tok, { sub: 'svc', publish: ['svc.*'], subscribe: ['svc.*'], ttl: 600 });
  assert.equal(mint.status, 201, mint.text);
  const svc = mint.json.access_token;
  const pa = await post(`${A.url}/api/v1/channels/svc.x/events`, svc, { svc: 1 });
  assert.equal(pa.status, 201, `publish on A with B's minted token: ${pa.text}`);
  assertJsonError(await post(`${C.url}/api/v1/channels/other/events`, svc, { svc: 2 }), 403);

  // Wrong password on C is 401 (the same users everywhere).
  assertJsonError(await post(`${C.url}/api/v1/login`, null, { username: 'admin', password: 'not it' }), 401);
});
