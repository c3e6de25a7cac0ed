// Issue 13, jobs slice: the run right on workflow and job routes, job control
// by the starter or admin only, job streams answering as their job.{id}
// channel, the job queue cap, GET /jobs pages, and start-up recovery that
// keeps every loop answering.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import fs from 'node:fs';
import http from 'node:http';
import os from 'node:os';
import path from 'node:path';
import { spawn, spawnSync } from 'node:child_process';
import {
  BIN, SANITIZED, T, sleep, freePort, eventually, request, publishOk, assertJsonError, startServer,
  sanitizerReport, serveSupports,
} from './lib/server.mjs';
import { openSSE } from './lib/sse.mjs';

const PASSWORD = 'correct horse battery';

/** A workflows directory holding `defs` ({file: object}). */
function workflowsDir(defs) {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'flowcast-wf-'));
  for (const [f, d] of Object.entries(defs)) fs.writeFileSync(path.join(dir, f), JSON.stringify(d));
  return dir;
}

async function server(defs, opts = {}) {
  const dir = workflowsDir(defs);
  const h = await startServer({ ...opts, extraArgs: ['--workflows', dir, ...(opts.extraArgs || [])] });
  h.wfDir = dir;
  return h;
}

/** An HS256 token signed with the server's own secret (DATA/jwt.secret). */
function token(h, sub, rights) {
  const secret = Buffer.from(fs.readFileSync(path.join(h.dataDir, 'jwt.secret'), 'utf8').trim(), 'hex');
  const b64 = (o) => Buffer.from(JSON.stringify(o)).toString('base64url');
  const exp = Math.floor(Date.now() / 1000) + 600;
  const head = `${b64({ alg: 'HS256', typ: 'JWT' })}.${b64({ sub, exp, flowcast: rights })}`;
  return `${head}.${crypto.createHmac('sha256', secret).update(head).digest('base64url')}`;
}

/** The admin's login token (it carries every right, as admin's own tokens do). */
async function adminLogin(h) {
  const r = await request(`${h.url}/api/v1/login`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ username: 'admin', password: PASSWORD }),
  });
  assert.equal(r.status, 200, r.text);
  return r.json.access_token;
}

const auth = (tok) => (tok ? { authorization: `Bearer ${tok}` } : {});
const post = (url, tok) => request(url, { method: 'POST', headers: auth(tok) });
const get = (url, tok) => request(url, { headers: auth(tok) });

async function startJob(h, w, tok) {
  const r = await post(`${h.url}/api/v1/start?w=${w}`, tok);
  assert.ok(r.status === 200 || r.status === 201, `start ${w}: ${r.status} ${r.text}`);
  assert.equal(typeof r.json, 'string');
  return r.json;
}

async function jobOf(h, w, id, tok) {
  const r = await get(`${h.url}/api/v1/job?w=${w}&i=${id}`, tok);
  assert.equal(r.status, 200, r.text);
  return r.json;
}

const waitStatus = (h, w, id, status, tok, ms = T(10000)) =>
  eventually(async () => (await jobOf(h, w, id, tok)).status === status, ms, `job ${id} ${status}`);

/** The names of every channel (admin only). */
async function channelNames(h, admin) {
  const r = await get(`${h.url}/api/v1/channels`, admin);
  assert.equal(r.status, 200, r.text);
  const list = Array.isArray(r.json) ? r.json : r.json.channels;
  return list.map((c) => c.name ?? c.channel);
}

const APPROVE_THEN_PUBLISH = {
  id: 43, name: 'Approve_Then_Publish',
  tasks: [{ type: 'approval' }, { type: 'publish', channel: 'approvals', event: 'approved', data: { ok: true } }],
};
const WAITS = { id: 41, name: 'Waits', tasks: [{ type: 'wait', seconds: 30 }] };
const OTHER = { id: 50, name: 'Other', tasks: [{ type: 'approval' }] };
const TRIGGERED = { id: 44, name: 'Triggered', triggers: [{ type: 'channel', channel: 'orders' }], tasks: [{ type: 'approval' }] };
const CONTROL_OPS = ['stop', 'suspend', 'resume', 'approve', 'reject'];

test('a token scoped to a channel can neither start, control, read nor stream jobs; nothing is created', async (t) => {
  const h = await server({ 'a.json': APPROVE_THEN_PUBLISH, 'w.json': WAITS, 'o.json': OTHER },
    { open: false, env: { FLOWCAST_ADMIN_PASSWORD: PASSWORD } });
  t.after(() => h.stop());
  const admin = await adminLogin(h);
  const chan = token(h, 'svc', { publish: ['a'], subscribe: ['a'] });
  const before = await channelNames(h, admin);

  // Start: 403 for a workflow it may not run, known or not; nothing appears.
  for (const w of [43, 41, 999]) assertJsonError(await post(`${h.url}/api/v1/start?w=${w}`, chan), 403, 'forbidden');
  for (const w of [43, 41, 999]) assertJsonError(await post(`${h.url}/api/v1/start?w=${w}`), 401);
  assert.deepEqual((await get(`${h.url}/api/v1/jobs?w=43`, admin)).json, []);
  assert.deepEqual(await channelNames(h, admin), before, 'a refused start makes no channel');

  // The admin's job, waiting for approval: the scoped token may not touch it.
  const id = await startJob(h, 43, admin);
  await waitStatus(h, 43, id, 'Waiting', admin);
  for (const op of CONTROL_OPS) {
    assertJsonError(await post(`${h.url}/api/v1/${op}?w=43&i=${id}`, chan), 403, 'forbidden');
    assertJsonError(await post(`${h.url}/api/v1/${op}?w=43&i=${id}`), 401);
  }
  assert.equal((await jobOf(h, 43, id, admin)).status, 'Waiting', 'a refused control changes nothing');
  assert.deepEqual((await get(`${h.url}/api/v1/channels/approvals/events`, admin)).status, 404, 'nothing published');

  // Reading: job, jobs, workflow definitions.
  assertJsonError(await get(`${h.url}/api/v1/job?w=43&i=${id}`, chan), 403, 'forbidden');
  assertJsonError(await get(`${h.url}/api/v1/jobs?w=43`, chan), 403, 'forbidden');
  assertJsonError(await get(`${h.url}/api/v1/workflows/43`, chan), 403, 'forbidden');
  assertJsonError(await get(`${h.url}/api/v1/job?w=43&i=${id}`), 401);
  assertJsonError(await get(`${h.url}/api/v1/jobs?w=43`), 401);
  assertJsonError(await get(`${h.url}/api/v1/workflows/43`), 401);
  assertJsonError(await get(`${h.url}/api/v1/workflows`), 401);
  const listed = await get(`${h.url}/api/v1/workflows`, chan);
  assert.equal(listed.status, 200);
  assert.deepEqual(listed.json, [], 'the list holds only the workflows the token may run');

  // The job's stream answers as its channel's history does.
  const sse = await openSSE(`${h.url}/api/v1/sse/43/${id}`, { headers: auth(chan) });
  const hist = await get(`${h.url}/api/v1/channels/job.${id}/events`, chan);
  assert.equal(sse.status, 403, sse.text);
  assert.equal(hist.status, 403, hist.text);
  assertJsonError(await get(`${h.url}/api/v1/sse/43/${id}`), 401);

  // The admin approves: the workflow publishes.
  assert.equal((await post(`${h.url}/api/v1/approve?w=43&i=${id}`, admin)).status, 200);
  await waitStatus(h, 43, id, 'Done', admin);
  assert.equal((await get(`${h.url}/api/v1/channels/approvals/events`, admin)).json.length, 1);
});

test('run patterns choose the workflows; control needs the starter or admin; triggered jobs are admin-only', async (t) => {
  const h = await server({ 'a.json': APPROVE_THEN_PUBLISH, 'w.json': WAITS, 'o.json': OTHER, 't.json': TRIGGERED },
    { open: false, env: { FLOWCAST_ADMIN_PASSWORD: PASSWORD } });
  t.after(() => h.stop());
  const admin = token(h, 'admin', { admin: true });
  const alice = token(h, 'alice', { run: ['4*'], subscribe: ['job.*'], publish: ['orders'] });
  const alice2 = token(h, 'alice', { run: ['43'] }); // the same user, another token
  const bob = token(h, 'bob', { run: ['*'] });

  // Alice may run 41 and 43 (4*), not 50.
  const listed = await get(`${h.url}/api/v1/workflows`, alice);
  assert.deepEqual(listed.json.map((w) => w.id).sort(), [41, 43, 44]);
  assert.equal((await get(`${h.url}/api/v1/workflows/43`, alice)).json.name, 'Approve_Then_Publish');
  assertJsonError(await get(`${h.url}/api/v1/workflows/50`, alice), 403, 'forbidden');
  assertJsonError(await post(`${h.url}/api/v1/start?w=50`, alice), 403, 'forbidden');
  assertJsonError(await post(`${h.url}/api/v1/start?w=49`, alice), 404); // may run 4*, but no 49
  assert.deepEqual((await get(`${h.url}/api/v1/jobs?w=50`, admin)).json, []);

  // Alice's job: bob (run *) may read it but not control it; alice may, with any of her tokens.
  const a1 = await startJob(h, 43, alice);
  await waitStatus(h, 43, a1, 'Waiting', alice);
  assert.equal((await jobOf(h, 43, a1, bob)).jobId, a1);
  assert.equal((await get(`${h.url}/api/v1/jobs?w=43`, bob)).json.length, 1);
  for (const op of CONTROL_OPS) assertJsonError(await post(`${h.url}/api/v1/${op}?w=43&i=${a1}`, bob), 403, 'forbidden');
  assert.equal((await jobOf(h, 43, a1, admin)).status, 'Waiting');
  assertJsonError(await post(`${h.url}/api/v1/suspend?w=43&i=${a1}`, alice), 409); // allowed, wrong state
  assert.equal((await post(`${h.url}/api/v1/approve?w=43&i=${a1}`, alice2)).status, 200);
  await waitStatus(h, 43, a1, 'Done', alice);

  // Alice's stream (she has subscribe job.*): the final event; bob (no subscribe right): 403, as the history.
  const s = await openSSE(`${h.url}/api/v1/sse/43/${a1}`, { headers: auth(alice) });
  assert.equal(s.status, 200);
  assert.ok(await s.waitEnd(T(3000)));
  assert.equal(JSON.parse(s.events.find((e) => !e.event || e.event === 'message').data).status, 'Done');
  assert.equal((await openSSE(`${h.url}/api/v1/sse/43/${a1}`, { headers: auth(bob) })).status, 403);
  assert.equal((await get(`${h.url}/api/v1/channels/job.${a1}/events`, bob)).status, 403);
  // A token with only the subscribe right on that one job's channel streams it (and reads its history).
  const viewer = token(h, 'viewer', { subscribe: [`job.${a1}`] });
  assert.equal((await openSSE(`${h.url}/api/v1/sse/43/${a1}`, { headers: auth(viewer) })).status, 200);
  assert.equal((await get(`${h.url}/api/v1/channels/job.${a1}/events`, viewer)).status, 200);

  // Bob's job: alice may not stop it even though she may run 41; admin may.
  const b1 = await startJob(h, 41, bob);
  await waitStatus(h, 41, b1, 'Running', bob);
  assertJsonError(await post(`${h.url}/api/v1/stop?w=41&i=${b1}`, alice), 403, 'forbidden');
  assert.equal((await jobOf(h, 41, b1, bob)).status, 'Running');
  assert.equal((await post(`${h.url}/api/v1/stop?w=41&i=${b1}`, admin)).status, 200);
  await waitStatus(h, 41, b1, 'Stopped', admin);

  // A job started by a trigger: only admin controls it.
  const pub = await request(`${h.url}/api/v1/channels/orders/events`, {
    method: 'POST', headers: { 'content-type': 'application/json', ...auth(alice) }, body: '{"n":1}',
  });
  assert.equal(pub.status, 201, pub.text);
  const trig = await eventually(async () => (await get(`${h.url}/api/v1/jobs?w=44`, admin)).json.find((j) => j.status === 'Waiting'), T(5000), 'a triggered job');
  for (const tok of [alice, bob]) assertJsonError(await post(`${h.url}/api/v1/reject?w=44&i=${trig.jobId}`, tok), 403, 'forbidden');
  assert.equal((await post(`${h.url}/api/v1/reject?w=44&i=${trig.jobId}`, admin)).status, 200);
  await waitStatus(h, 44, trig.jobId, 'Rejected', admin);
});

test('a job survives a restart with its starter: the starter still controls it, another user still may not', async (t) => {
  const h = await server({ 'o.json': OTHER }, { open: false, env: { FLOWCAST_ADMIN_PASSWORD: PASSWORD } });
  t.after(() => h.stop());
  const carol = token(h, 'carol', { run: ['50'] });
  const dave = token(h, 'dave', { run: ['50'] });
  const id = await startJob(h, 50, carol);
  await waitStatus(h, 50, id, 'Waiting', carol);
  await h.restart(); // the job was Waiting: it is Failed now, and still carol's
  assert.equal((await jobOf(h, 50, id, carol)).status, 'Failed');
  assertJsonError(await post(`${h.url}/api/v1/stop?w=50&i=${id}`, dave), 403, 'forbidden');
  assertJsonError(await post(`${h.url}/api/v1/stop?w=50&i=${id}`, carol), 409); // hers, but already final
});

test('a database from before started_by gets the column; its jobs are admin-only', async (t) => {
  if (spawnSync('sqlite3', ['-version']).status !== 0) {
    t.skip('no sqlite3 command');
    return;
  }
  const h = await server({ 'o.json': OTHER }, { open: false, env: { FLOWCAST_ADMIN_PASSWORD: PASSWORD } });
  t.after(() => h.stop());
  const erin = token(h, 'erin', { run: ['*'] });
  const admin = token(h, 'admin', { admin: true });
  const id = await startJob(h, 50, erin);
  await waitStatus(h, 50, id, 'Waiting', erin);
  await post(`${h.url}/api/v1/reject?w=50&i=${id}`, erin);
  await waitStatus(h, 50, id, 'Rejected', erin);
  h.sigterm();
  await eventually(() => !h.alive(), T(5000), 'exit');
  const db = path.join(h.dataDir, 'flowcast.db');
  const drop = spawnSync('sqlite3', [db, 'ALTER TABLE jobs DROP COLUMN started_by']);
  assert.equal(drop.status, 0, String(drop.stderr));
  await h.restart();
  assert.match(h.stderrText(), /schema upgraded.*started_by/);
  const cols = spawnSync('sqlite3', [db, "SELECT name FROM pragma_table_info('jobs')"], { encoding: 'utf8' }).stdout;
  assert.match(cols, /started_by/);
  assert.equal((await jobOf(h, 50, id, erin)).status, 'Rejected');
  // Its starter is unknown now: only admin may control it (409: it is final), not erin.
  assertJsonError(await post(`${h.url}/api/v1/stop?w=50&i=${id}`, erin), 403, 'forbidden');
  assertJsonError(await post(`${h.url}/api/v1/stop?w=50&i=${id}`, admin), 409);
  const again = await startJob(h, 50, erin);
  await waitStatus(h, 50, again, 'Waiting', erin);
  assert.equal((await post(`${h.url}/api/v1/approve?w=50&i=${again}`, erin)).status, 200);
  const old = await get(`${h.url}/api/v1/jobs?w=50`, admin);
  assert.equal(old.json.length, 2);
});

test('the job queue is capped: 429 too_many_jobs with Retry-After, nothing created; triggers are skipped', async (t) => {
  const h = await server({
    'w.json': { id: 1, name: 'w', tasks: [{ type: 'wait', seconds: 60 }] },
    't.json': { id: 2, name: 't', triggers: [{ type: 'channel', channel: 'go' }], tasks: [{ type: 'wait', seconds: 60 }] },
  }, { extraArgs: ['--max-jobs', '1', '--max-queued-jobs', '5'] });
  t.after(() => h.stop());
  const ids = [];
  for (let i = 0; i < 6; i++) ids.push(await startJob(h, 1)); // one runs, five wait
  const r = await post(`${h.url}/api/v1/start?w=1`);
  assertJsonError(r, 429, 'too_many_jobs');
  assert.ok(Number(r.headers.get('retry-after')) > 0, `Retry-After: ${r.headers.get('retry-after')}`);
  const list = await get(`${h.url}/api/v1/jobs?w=1`);
  assert.equal(list.json.length, 6, 'the refused start made no job');
  const channels = (await get(`${h.url}/api/v1/channels`)).json;
  const jobChannels = (Array.isArray(channels) ? channels : channels.channels).filter((c) => (c.name ?? c.channel).startsWith('job.'));
  assert.equal(jobChannels.length, 6, 'the refused start made no channel');
  // A trigger while the queue is full: skipped, and said so in the log.
  await publishOk(h.url, 'go', { n: 1 });
  await eventually(() => /job not triggered.*queue is full/.test(h.stderrText()), T(3000), 'the refusal in the log');
  assert.deepEqual((await get(`${h.url}/api/v1/jobs?w=2`)).json, []);
  // Room again once a waiting job goes.
  assert.equal((await post(`${h.url}/api/v1/stop?w=1&i=${ids[5]}`)).status, 200);
  await startJob(h, 1);
  assertJsonError(await post(`${h.url}/api/v1/start?w=1`), 429, 'too_many_jobs');
  assert.ok(/--max-queued-jobs/.test(spawnSync(BIN, ['serve', '--help'], { encoding: 'utf8' }).stdout));
});

test('GET /jobs is paginated: ?limit= and ?after=, a Link to the next page, bounds checked', async (t) => {
  const h = await server({ 'w.json': { id: 3, name: 'w', tasks: [{ type: 'wait', seconds: 0 }] } },
    { extraArgs: ['--max-jobs', '50'] });
  t.after(() => h.stop());
  const started = [];
  for (let i = 0; i < 105; i++) started.push(await startJob(h, 3));
  // The default page is 100 jobs, newest first, with a Link to the rest.
  const first = await get(`${h.url}/api/v1/jobs?w=3`);
  assert.equal(first.status, 200);
  assert.equal(first.json.length, 100);
  assert.deepEqual(first.json.map((j) => j.jobId), started.slice(5).reverse());
  assert.match(first.headers.get('link') || '', /rel="next"/);
  // Walking pages of 40 gives every job once.
  const seen = [];
  let next = `/api/v1/jobs?w=3&limit=40`;
  let pages = 0;
  while (next) {
    const r = await get(`${h.url}${next}`);
    assert.equal(r.status, 200, r.text);
    seen.push(...r.json.map((j) => j.jobId));
    const link = r.headers.get('link');
    next = link ? /<([^>]+)>;\s*rel="next"/.exec(link)[1] : null;
    if (next) assert.equal(r.headers.get('x-next-after'), r.json.at(-1).jobId);
    pages++;
  }
  assert.equal(pages, 3);
  assert.deepEqual(seen, [...started].reverse());
  const last = await get(`${h.url}/api/v1/jobs?w=3&limit=5&after=${started[5]}`);
  assert.deepEqual(last.json.map((j) => j.jobId), started.slice(0, 5).reverse());
  assert.equal(last.headers.get('link'), null);
  // Bounds and bad cursors.
  for (const q of ['limit=0', 'limit=1001', 'limit=abc', 'limit=-1']) assertJsonError(await get(`${h.url}/api/v1/jobs?w=3&${q}`), 400, 'bad_limit');
  assert.equal((await get(`${h.url}/api/v1/jobs?w=3&limit=1000`)).json.length, 105);
  assertJsonError(await get(`${h.url}/api/v1/jobs?w=3&after=nope`), 400, 'bad_cursor');
  assertJsonError(await get(`${h.url}/api/v1/jobs?w=3&after=00000000-0000-4000-8000-000000000000`), 400, 'bad_cursor');
});

/** GET on a new connection (so that requests spread over every loop); resolves {status, ms}. */
function freshGet(port, p) {
  return new Promise((resolve) => {
    const t0 = Date.now();
    const req = http.get({ host: '127.0.0.1', port, path: p, agent: false, timeout: T(10000) }, (res) => {
      res.resume();
      res.on('end', () => resolve({ status: res.statusCode, ms: Date.now() - t0 }));
    });
    req.on('timeout', () => req.destroy());
    req.on('error', () => resolve({ status: 0, ms: Date.now() - t0 }));
  });
}

test('start-up recovery of thousands of jobs keeps every loop answering; they all end Failed with a final event', async (t) => {
  const N = SANITIZED ? 1500 : 3000;
  const wf = workflowsDir({ 'w.json': { id: 7, name: 'w', tasks: [{ type: 'wait', seconds: 600 }] } });
  const dataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'flowcast-e2e-'));
  t.after(() => fs.rmSync(dataDir, { recursive: true, force: true }));
  const port = await freePort();
  const url = `http://127.0.0.1:${port}`;
  const args = ['serve', '--open', '--listen', `127.0.0.1:${port}`, '--data', dataDir, '--workflows', wf,
    '--threads', '2', '--max-jobs', '1', '--log-level', 'info'];
  if (serveSupports('--max-queued-jobs')) args.push('--max-queued-jobs', String(N + 10));
  const launch = () => {
    const p = spawn(BIN, args, { stdio: ['ignore', 'ignore', 'pipe'] });
    p.err = '';
    p.stderr.setEncoding('utf8');
    p.stderr.on('data', (d) => { p.err += d; });
    return p;
  };
  // A server with N unfinished jobs, killed.
  let p = launch();
  t.after(() => p.kill('SIGKILL'));
  await eventually(async () => (await freshGet(port, '/healthz')).status === 200, T(10000), 'first start');
  let made = 0;
  await Promise.all(Array.from({ length: 16 }, async () => {
    while (made < N) {
      made++;
      const r = await request(`${url}/api/v1/start?w=7`, { method: 'POST' });
      assert.ok(r.status === 200 || r.status === 201, r.text);
    }
  }));
  p.kill('SIGKILL');
  await new Promise((r) => p.once('exit', r));

  // The restart: requests on fresh connections (so over every loop) every 20 ms,
  // from the spawn until every recovered job is Failed.
  p = launch();
  let listeningAt = 0;
  p.stderr.on('data', () => {
    if (!listeningAt && /msg=listening/.test(p.err)) listeningAt = Date.now();
  });
  const probes = [];
  const tick = setInterval(() => {
    for (const route of ['/healthz', '/api/v1/workflows']) {
      const sent = Date.now();
      probes.push(freshGet(port, route).then((r) => ({ route, sent, ...r })));
    }
  }, 20);
  let failedAll = false;
  const until = Date.now() + T(15000);
  while (!failedAll && Date.now() < until) {
    await sleep(100);
    const text = await new Promise((resolve) => {
      http.get({ host: '127.0.0.1', port, path: '/metrics', agent: false }, (res) => {
        let b = '';
        res.setEncoding('utf8');
        res.on('data', (d) => { b += d; });
        res.on('end', () => resolve(b));
      }).on('error', () => resolve(''));
    });
    const failed = /flowcast_jobs\{status="Failed"\} (\d+)/.exec(text);
    failedAll = Boolean(failed) && Number(failed[1]) === N;
  }
  await sleep(200);
  clearInterval(tick);
  const results = await Promise.all(probes);
  // Start-up is complete once the server logs "listening" (its jobs module is
  // set up then); /healthz answers from the first healthy answer on.
  const firstOk = Math.min(...results.filter((r) => r.route === '/healthz' && r.status === 200).map((r) => r.sent + r.ms));
  assert.ok(listeningAt > 0 && Number.isFinite(firstOk), `start-up: ${p.err.slice(-2000)}`);
  const bad = results
    .filter((r) => r.sent >= (r.route === '/healthz' ? firstOk : listeningAt))
    .filter((r) => r.status !== 200 || r.ms > T(300))
    .map((r) => ({ ...r, sent: r.sent - firstOk }));
  assert.ok(results.filter((r) => r.sent >= listeningAt).length > 20, 'enough requests during the recovery');
  assert.deepEqual(bad, [], 'every request answered 200 within 300 ms once the server was up');
  assert.ok(failedAll, 'every recovered job is Failed');
  const list = (await request(`${url}/api/v1/jobs?w=7&limit=1000`)).json;
  assert.ok(list.every((j) => j.status === 'Failed' && /server stopped while the job was (Pending|Running)/.test(j.reason)));
  // The oldest and the newest recovered jobs have their final event.
  for (const j of [list[0], list.at(-1)]) {
    const s = await openSSE(`${url}/api/v1/sse/7/${j.jobId}`);
    assert.ok(await s.waitEnd(T(5000)), `the stream of ${j.jobId} ends`);
    assert.equal(JSON.parse(s.events.find((e) => !e.event || e.event === 'message').data).status, 'Failed');
  }
  p.kill('SIGTERM');
  const code = await new Promise((r) => p.once('exit', (c) => r(c)));
  assert.equal(code, 0);
  assert.equal(sanitizerReport(p.err), null);
});
