// Issue 13, channels: a channel nobody uses costs no memory (with SQLite its
// history stays stored and loads again on use), rings grow with use, a cap on
// channels in memory, and a paginated channel list.
//
// RSS is read from /proc/PID/status. The sanitized build keeps freed memory in
// its quarantine, so there the memory assertions use the channel count
// (/metrics flowcast_channels: channels in memory) and skip RSS.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import net from 'node:net';
import {
  SANITIZED, T, sleep, startServer, serveSupports, publishOk, request, storedEvents, assertJsonError,
  metrics, eventually,
} from './lib/server.mjs';
import { subscribe, openSSE } from './lib/sse.mjs';
import { connectWS } from './lib/ws.mjs';

/** Channels leave memory 1 s after their last use (when the binary knows the option). */
const idle = () => (serveSupports('--channel-idle') ? ['--channel-idle', '1'] : []);

/** A field of /proc/PID/status in kB (VmRSS, VmSize). */
function procKB(h, field) {
  const m = new RegExp(`^${field}:\\s+(\\d+) kB`, 'm').exec(fs.readFileSync(`/proc/${h.proc.pid}/status`, 'utf8'));
  return Number(m[1]);
}
const rssMB = (h) => procKB(h, 'VmRSS') / 1024;
const channelsInMemory = async (h) => (await metrics(h.url)).get('flowcast_channels');

/** Waits until no more than `n` channels are in memory; returns the count. */
async function settleChannels(h, n, ms = T(15000)) {
  let last;
  await eventually(async () => (last = await channelsInMemory(h)) <= n, ms, `at most ${n} channels in memory`)
    .catch((e) => {
      throw new Error(`${e.message}; last count ${last}`);
    });
  return last;
}

/**
 * Publishes one small event to each of `names` over `conns` raw keep-alive
 * connections, `depth` pipelined requests at a time; asserts every answer is 201.
 */
async function publishMany(h, names, { conns = 8, depth = 64 } = {}) {
  let next = 0;
  const worker = () => new Promise((resolve, reject) => {
    const sock = net.connect({ port: h.port, host: '127.0.0.1' });
    let pending = 0;
    let carry = '';
    const statuses = {};
    const send = () => {
      if (next >= names.length) {
        sock.end();
        return resolve(statuses);
      }
      const batch = names.slice(next, next + depth);
      next += batch.length;
      pending = batch.length;
      sock.write(batch.map((c) => `POST /api/v1/channels/${c}/events HTTP/1.1\r\nHost: x\r\n`
        + 'Content-Type: application/json\r\nContent-Length: 7\r\n\r\n{"v":1}').join(''));
    };
    sock.setEncoding('latin1');
    sock.on('data', (d) => {
      const text = carry + d;
      const re = /HTTP\/1\.1 (\d{3})/g;
      let m;
      let end = 0;
      while ((m = re.exec(text))) {
        statuses[m[1]] = (statuses[m[1]] || 0) + 1;
        pending--;
        end = re.lastIndex;
      }
      carry = text.slice(Math.max(end, text.length - 16));
      if (pending === 0) send();
    });
    sock.on('error', reject);
    sock.on('connect', send);
  });
  const all = await Promise.all(Array.from({ length: conns }, worker));
  const total = {};
  for (const s of all) for (const [k, v] of Object.entries(s)) total[k] = (total[k] || 0) + v;
  assert.deepEqual(total, { 201: names.length }, `publish answers by status: ${JSON.stringify(total)}`);
}

/** Walks GET /channels page by page; returns every entry and the number of pages. */
async function walkChannels(h, limit) {
  const all = [];
  let after = null;
  let pages = 0;
  for (;;) {
    const q = new URLSearchParams({ limit: String(limit) });
    if (after !== null) q.set('after', after);
    const r = await request(`${h.url}/api/v1/channels?${q}`);
    assert.equal(r.status, 200, r.text);
    assert.ok(Array.isArray(r.json.channels));
    assert.ok(r.json.channels.length <= limit, `a page holds ${r.json.channels.length} > ${limit}`);
    assert.ok('next' in r.json, 'each page says whether there is a next one');
    all.push(...r.json.channels);
    pages++;
    if (r.json.next === null) break;
    assert.equal(r.json.next, r.json.channels.at(-1).name, 'next is the last name of the page');
    after = r.json.next;
    assert.ok(pages < 10000, 'the walk ends');
  }
  return { all, pages };
}

const N = SANITIZED ? 20000 : 100000;
const NEAR_MB = 30; // "back near the baseline": less than this above it

test(`${N} channels published, then idle, leave memory; also after a restart; the list walks them all`, { timeout: T(300000) }, async (t) => {
  const h = await startServer({ extraArgs: idle() });
  t.after(() => h.stop());
  await publishOk(h.url, 'warm', { v: 0 });
  await sleep(T(2500));
  const base = rssMB(h);
  const names = Array.from({ length: N }, (_, i) => `many.${String(i).padStart(6, '0')}`);
  const t0 = Date.now();
  await publishMany(h, names);
  const peak = rssMB(h);
  t.diagnostic(`published ${N} channels in ${Date.now() - t0} ms; RSS baseline ${base.toFixed(1)} MB, after publishing ${peak.toFixed(1)} MB`);

  await settleChannels(h, 0, T(20000));
  await sleep(500);
  const idleRss = rssMB(h);
  t.diagnostic(`RSS once idle: ${idleRss.toFixed(1)} MB`);
  if (!SANITIZED) assert.ok(idleRss < base + NEAR_MB, `RSS ${idleRss.toFixed(1)} MB once idle, baseline ${base.toFixed(1)} MB`);

  // A stored channel comes back with its event and its id.
  const back = await storedEvents(h.url, 'many.012345');
  assert.equal(back.length, 1);
  assert.deepEqual(back[0].data, { v: 1 });

  // The list pages through memory and storage, each channel exactly once, in order.
  const { all, pages } = await walkChannels(h, 1000);
  const listed = all.map((c) => c.name);
  const expected = [...names, 'warm'].sort();
  assert.equal(listed.length, expected.length, `${listed.length} listed, ${expected.length} exist`);
  assert.deepEqual(listed, expected);
  const one = all.find((c) => c.name === 'many.000007');
  assert.equal(one.retained, 1);
  assert.match(one.lastId, /^\d+$/);
  assert.equal(one.subscribers, 0);
  t.diagnostic(`the list took ${pages} pages`);

  await h.restart();
  await sleep(T(1500));
  const restarted = rssMB(h);
  t.diagnostic(`RSS after a restart: ${restarted.toFixed(1)} MB`);
  assert.ok((await channelsInMemory(h)) <= 1, 'start-up does not load every stored channel');
  if (!SANITIZED) assert.ok(restarted < base + NEAR_MB, `RSS ${restarted.toFixed(1)} MB after a restart, baseline ${base.toFixed(1)} MB`);
  const again = await storedEvents(h.url, names[N - 1]);
  assert.equal(again.length, 1, 'the last channel is still stored');
});

test('multi-channel SSE churn over fresh names leaves nothing behind', { timeout: T(180000) }, async (t) => {
  const h = await startServer({ extraArgs: idle() });
  t.after(() => h.stop());
  const STREAMS = SANITIZED ? 60 : 200;
  const PER = 64;
  const round = async (r) => {
    for (let s = 0; s < STREAMS; s += 20) {
      await Promise.all(Array.from({ length: Math.min(20, STREAMS - s) }, async (_, k) => {
        const q = Array.from({ length: PER }, (_, c) => `channel=churn.${r}.${s + k}.${c}`).join('&');
        const st = await subscribe(`${h.url}/api/v1/sse?${q}`);
        st.close();
      }));
    }
  };
  await round(0);
  await settleChannels(h, 0);
  await sleep(500);
  const after1 = rssMB(h);
  for (let r = 1; r <= 3; r++) await round(r);
  const busy = await channelsInMemory(h);
  await settleChannels(h, 0);
  await sleep(500);
  const after4 = rssMB(h);
  t.diagnostic(`${STREAMS * PER} fresh channels per round; in memory right after rounds 2-4: ${busy}; RSS after round 1 ${after1.toFixed(1)} MB, after round 4 ${after4.toFixed(1)} MB`);
  if (!SANITIZED) assert.ok(after4 < after1 + 10, `RSS grew from ${after1.toFixed(1)} to ${after4.toFixed(1)} MB`);
  // Subscribing alone stored nothing: no channel to list.
  const r = await request(`${h.url}/api/v1/channels`);
  assert.equal(r.status, 200);
  assert.deepEqual(r.json.channels, []);
});

test('--max-channels: past the cap a new channel gets 503 too_many_channels and nothing is created', { timeout: T(60000) }, async (t) => {
  const h = await startServer({ extraArgs: ['--max-channels', '3', ...idle()] });
  t.after(() => h.stop());
  const held = [];
  t.after(() => held.forEach((s) => s.close()));
  for (const c of ['cap.a', 'cap.b', 'cap.c']) held.push(await subscribe(`${h.url}/api/v1/channels/${c}/sse`));
  assert.equal(await channelsInMemory(h), 3);

  const pub = await request(`${h.url}/api/v1/channels/cap.new/events`, {
    method: 'POST', headers: { 'content-type': 'application/json' }, body: '{"x":1}',
  });
  assertJsonError(pub, 503, 'too_many_channels');
  const sse = await openSSE(`${h.url}/api/v1/channels/cap.new/sse`);
  assertJsonError({ status: sse.status, headers: sse.headers, text: sse.text, json: sse.json }, 503, 'too_many_channels');
  // Several channels at once: all of them or none.
  const multi = await openSSE(`${h.url}/api/v1/sse?channel=cap.a&channel=cap.new&channel=cap.new2`);
  assertJsonError({ status: multi.status, headers: multi.headers, text: multi.text, json: multi.json }, 503, 'too_many_channels');
  const ws = await connectWS(h, { t });
  ws.send({ op: 'subscribe', channel: 'cap.ws', ref: 's1' });
  const err = await ws.waitMsg((m) => m.type === 'error' && m.ref === 's1');
  assert.equal(err.code, 'too_many_channels');
  ws.send({ op: 'publish', channel: 'cap.ws', data: 1, ref: 'p1' });
  assert.equal((await ws.waitMsg((m) => m.type === 'error' && m.ref === 'p1')).code, 'too_many_channels');

  assert.equal(await channelsInMemory(h), 3, 'nothing was created');
  assert.deepEqual(await storedEvents(h.url, 'cap.new'), [], 'nothing was stored');
  const list = await request(`${h.url}/api/v1/channels`);
  assert.deepEqual(list.json.channels.map((c) => c.name), ['cap.a', 'cap.b', 'cap.c']);
  // Channels in use still work.
  await publishOk(h.url, 'cap.a', { ok: true });

  // Once channels are no longer used, there is room again.
  held.splice(0).forEach((s) => s.close());
  await settleChannels(h, 0);
  await publishOk(h.url, 'cap.new', { x: 2 });
});

test('/channels pagination: every channel once, in memory only or in storage only', { timeout: T(60000) }, async (t) => {
  const h = await startServer({ extraArgs: idle() });
  t.after(() => h.stop());
  const stored = Array.from({ length: 250 }, (_, i) => `pg.s${String(i).padStart(3, '0')}`);
  await publishMany(h, stored, { conns: 4, depth: 32 });
  await settleChannels(h, 0); // now only in storage
  const live = await subscribe(`${h.url}/api/v1/sse?channel=pg.live1&channel=pg.s100&channel=pg.live2`);
  t.after(() => live.close());
  const { all, pages } = await walkChannels(h, 7);
  const names = all.map((c) => c.name);
  assert.deepEqual(names, [...stored, 'pg.live1', 'pg.live2'].sort());
  assert.equal(pages, Math.ceil(names.length / 7));
  const s100 = all.find((c) => c.name === 'pg.s100');
  assert.equal(s100.subscribers, 1, 'a channel in memory and in storage is listed once, live');
  assert.equal(s100.retained, 1);
  assert.equal(all.find((c) => c.name === 'pg.live1').lastId, null);

  const first = await request(`${h.url}/api/v1/channels`);
  assert.equal(first.json.channels.length, 100, 'a default page size');
  assert.equal(first.json.next, first.json.channels[99].name);
  assertJsonError(await request(`${h.url}/api/v1/channels?limit=100000`), 400, 'bad_parameter');
  assertJsonError(await request(`${h.url}/api/v1/channels?limit=0`), 400, 'bad_parameter');
  assertJsonError(await request(`${h.url}/api/v1/channels?after=no%20such`), 400, 'bad_parameter');
  const end = await request(`${h.url}/api/v1/channels?after=pg.s249`);
  assert.deepEqual(end.json, { channels: [], next: null });
});

test('job-like channels do not allocate their whole retention up front', { timeout: T(120000) }, async (t) => {
  const h = await startServer();
  t.after(() => h.stop());
  await publishOk(h.url, 'warm', 1);
  const before = procKB(h, 'VmSize') / 1024;
  const K = 2000;
  await publishMany(h, Array.from({ length: K }, (_, i) => `job.fake-${i}`), { conns: 4, depth: 32 });
  const after = procKB(h, 'VmSize') / 1024;
  t.diagnostic(`VmSize ${before.toFixed(0)} MB before, ${after.toFixed(0)} MB after ${K} job.* channels`);
  assert.ok(await channelsInMemory(h) >= K, 'the channels are still in memory when measured');
  // job.* keeps 100000 events: two such rings up front would be 1.6 MB a channel.
  // (The sanitized build reserves its address space at start: nothing to see there.)
  if (!SANITIZED) assert.ok(after - before < 512, `VmSize grew by ${(after - before).toFixed(0)} MB for ${K} channels`);
});

test('a channel freed and used again continues its ids, history, gaps and resume', { timeout: T(60000) }, async (t) => {
  const h = await startServer({ retention: 3, extraArgs: idle() });
  t.after(() => h.stop());
  const ids = [];
  for (let i = 0; i < 6; i++) ids.push((await publishOk(h.url, 'again', { i })).id);
  const other = (await publishOk(h.url, 'again.b', { b: 1 })).id;
  await settleChannels(h, 0);
  // Back from storage: the same history, and ids go on increasing.
  const hist = await storedEvents(h.url, 'again');
  assert.deepEqual(hist.map((e) => e.id), ids.slice(3));
  await settleChannels(h, 0);
  for (let i = 6; i < 8; i++) ids.push((await publishOk(h.url, 'again', { i })).id);
  for (let i = 1; i < ids.length; i++) assert.ok(BigInt(ids[i]) > BigInt(ids[i - 1]), `ids ${ids}`);
  assert.ok(BigInt(ids[6]) > BigInt(other));
  await settleChannels(h, 0);

  // Resume both channels with one Last-Event-ID, from before the eviction (within
  // the window of evicted ids, as after a restart): a gap of exactly the events
  // no longer retained, then the rest in id order.
  const s = await subscribe(`${h.url}/api/v1/sse?channel=again&channel=again.b&lastEventId=${ids[2]}`);
  t.after(() => s.close());
  const evs = await s.waitEvents(5);
  const gap = evs.find((e) => e.event === 'flowcast.gap');
  assert.ok(gap, `a gap notice: ${JSON.stringify(evs)}`);
  assert.deepEqual(JSON.parse(gap.data), { channel: 'again', lost: 2, exact: true, next: ids[5] });
  const got = evs.filter((e) => e.event !== 'flowcast.gap').map((e) => e.id);
  assert.deepEqual(got, [ids[5], other, ids[6], ids[7]].sort((a, b) => (BigInt(a) < BigInt(b) ? -1 : 1)));
  // Live events still arrive on the reloaded channels.
  const live = (await publishOk(h.url, 'again', { i: 8 })).id;
  await s.waitFor((x) => x.events.some((e) => e.id === live), T(5000), 'the live event');
});

test('--storage memory: a channel stays while it retains events, goes when it has none', { timeout: T(60000) }, async (t) => {
  const h = await startServer({ extraArgs: ['--storage', 'memory', ...idle()] });
  t.after(() => h.stop());
  const id = (await publishOk(h.url, 'mem.kept', { k: 1 })).id;
  const s = await subscribe(`${h.url}/api/v1/channels/mem.gone/sse`);
  s.close();
  await settleChannels(h, 1);
  await sleep(T(2500));
  assert.equal(await channelsInMemory(h), 1, 'the channel with retained events stays');
  assert.deepEqual((await storedEvents(h.url, 'mem.kept')).map((e) => e.id), [id]);
  const r = await request(`${h.url}/api/v1/channels`);
  assert.deepEqual(r.json.channels.map((c) => c.name), ['mem.kept']);
});
