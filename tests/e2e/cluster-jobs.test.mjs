// Cluster mode, part two (issue 16): workflows and jobs across nodes on a real
// redis-server. A job started on one node runs exactly once somewhere in the
// cluster, is read and followed on any node, is controlled from any node, and
// fails with a reason when the node running it is killed.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { EventSource } from 'eventsource';
import { startServer, request, eventually, sleep, T, assertJsonError } from './lib/server.mjs';
import { openSSE } from './lib/sse.mjs';
import { startRedis } from './lib/redis.mjs';
import { teardown, workflows, runsFile, lines } from './lib/cluster.mjs';

const TO = { timeout: T(90000) };
const PASSWORD = 'correct horse battery';

/** `n` nodes on Redis `r`, each with the workflows in `dir`. */
async function nodes(later, r, dir, n, opts = {}) {
  const { extraArgs = [], ...rest } = opts;
  const out = [];
  for (let i = 0; i < n; i++) {
    const h = await startServer({
      open: true,
      ...rest,
      extraArgs: ['--redis', r.url, '--workflows', dir, '--node-name', `node${'ABC'[i]}`, ...extraArgs],
    });
    later(() => h.stop());
    out.push(h);
  }
  return out;
}

const post = (url, headers = {}) => request(url, { method: 'POST', headers });

async function start(h, w, headers = {}) {
  const r = await post(`${h.url}/api/v1/start?w=${w}`, headers);
  assert.equal(r.status, 200, r.text);
  assert.equal(typeof r.json, 'string');
  return r.json;
}

async function job(h, w, id, headers = {}) {
  const r = await request(`${h.url}/api/v1/job?w=${w}&i=${id}`, { headers });
  assert.equal(r.status, 200, r.text);
  return r.json;
}

const waitStatus = (h, w, id, status, ms = T(15000)) =>
  eventually(async () => (await job(h, w, id)).status === status, ms, `job ${id} ${status} (seen from ${h.url})`);

/** The node name (as given by --node-name) that claimed job `id`. */
async function runner(r, id) {
  const node = await r.command('HGET', `fc:job:${id}`, 'node');
  return node ? String(node).split('/')[0] : null;
}

const WAIT = { id: 41, name: 'Workflow_Wait', description: 'Workflow_Wait', tasks: [{ type: 'wait', seconds: 1 }] };

test('the Wexflow client flow across nodes: start on A, follow on B, a late follower on C gets the end at once', TO, async (t) => {
  const later = teardown(t);
  const r = await startRedis();
  later(() => r.stop());
  const dir = workflows(later, { 'wait.json': WAIT });
  const [a, b, c] = await nodes(later, r, dir, 3, { open: false, env: { FLOWCAST_ADMIN_PASSWORD: PASSWORD } });
  const login = await request(`${a.url}/api/v1/login`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ username: 'admin', password: PASSWORD }),
  });
  assert.equal(login.status, 200, login.text);
  const auth = { authorization: `Bearer ${login.json.access_token}` };
  const jobId = await start(a, 41, auth);

  const statuses = [];
  const messages = [];
  const es = new EventSource(`${b.url}/api/v1/sse/41/${jobId}`, {
    fetch: (input, init) => fetch(input, { ...init, headers: { ...init.headers, ...auth } }),
  });
  es.addEventListener('status', (e) => statuses.push(JSON.parse(e.data).status));
  const ended = new Promise((resolve) => {
    es.onmessage = (e) => messages.push({ data: JSON.parse(e.data), id: e.lastEventId });
    es.onerror = () => {
      if (messages.length) resolve();
    };
  });
  await Promise.race([ended, sleep(T(10000))]);
  es.close();
  assert.equal(messages.length, 1, JSON.stringify(messages));
  assert.deepEqual(messages[0].data, { workflowId: 41, jobId, status: 'Done', name: 'Workflow_Wait', description: 'Workflow_Wait' });
  assert.deepEqual(statuses, ['Pending', 'Running', 'Done'], 'every status once, in order');

  // Every node reads the same record.
  for (const h of [a, b, c]) {
    const j = await job(h, 41, jobId, auth);
    assert.equal(j.status, 'Done');
    assert.ok(j.startedAt && j.endedAt);
    const list = await request(`${h.url}/api/v1/jobs?w=41`, { headers: auth });
    assert.equal(list.status, 200, list.text);
    assert.deepEqual(list.json.map((x) => x.jobId), [jobId]);
  }
  // A follower after the end, on C: the final event at once, then the end; a
  // reconnect after it gets 204.
  const t0 = Date.now();
  const late = await openSSE(`${c.url}/api/v1/sse/41/${jobId}`, { headers: auth });
  await late.waitFor((s) => s.events.some((e) => !e.event || e.event === 'message'), T(3000), 'the final event');
  assert.ok(Date.now() - t0 < T(3000));
  const final = late.events.find((e) => !e.event || e.event === 'message');
  late.close();
  const again = await request(`${c.url}/api/v1/sse/41/${jobId}`, { headers: { ...auth, 'last-event-id': final.id } });
  assert.equal(again.status, 204);
  assertJsonError(await request(`${c.url}/api/v1/job?w=41&i=00000000-0000-4000-8000-000000000000`, { headers: auth }), 404, 'not_found');
});

test('60 jobs started round-robin over three nodes run once each, spread over the nodes', TO, async (t) => {
  const later = teardown(t);
  const r = await startRedis();
  later(() => r.stop());
  const out = runsFile(later, 'flowcast-runs-');
  const dir = workflows(later, {
    'once.json': {
      id: 7, name: 'once',
      tasks: [{ type: 'exec', command: ['sh', '-c', `sleep 0.2; echo "$FLOWCAST_JOB_ID" >> ${out}`] }],
    },
  });
  const ns = await nodes(later, r, dir, 3, { extraArgs: ['--max-jobs', '4'] });
  const ids = [];
  for (let i = 0; i < 60; i++) ids.push(await start(ns[i % 3], 7));
  await eventually(async () => lines(out).length >= 60, T(60000), '60 jobs ran');
  await eventually(async () => {
    const list = await request(`${ns[1].url}/api/v1/jobs?w=7&limit=100`);
    return list.json.length === 60 && list.json.every((j) => j.status === 'Done');
  }, T(15000), 'every job Done in the listing');
  await sleep(T(500)); // a second run would have written by now
  const runs = lines(out);
  assert.equal(runs.length, 60, 'no job ran twice');
  assert.deepEqual(new Set(runs), new Set(ids), 'each started job ran');
  const by = {};
  for (const id of ids) {
    const n = await runner(r, id);
    by[n] = (by[n] || 0) + 1;
  }
  assert.ok(Object.keys(by).length >= 2, `jobs ran on more than one node: ${JSON.stringify(by)}`);
  // Paging over the cluster's records: 25 + 25 + 10, no repeats.
  const seen = [];
  let after = '';
  for (let page = 0; page < 4; page++) {
    const res = await request(`${ns[2].url}/api/v1/jobs?w=7&limit=25${after ? `&after=${after}` : ''}`);
    assert.equal(res.status, 200, res.text);
    seen.push(...res.json.map((j) => j.jobId));
    after = res.headers.get('x-next-after');
    if (!after) break;
  }
  assert.equal(seen.length, 60);
  assert.equal(new Set(seen).size, 60);
});

test('control from any node: approve on another node, stop on another node, 409 for a wrong state', TO, async (t) => {
  const later = teardown(t);
  const r = await startRedis();
  later(() => r.stop());
  const dir = workflows(later, {
    'approval.json': { id: 43, name: 'Workflow_Approval', tasks: [{ type: 'approval' }, { type: 'wait', seconds: 0 }] },
    'long.json': { id: 44, name: 'long', tasks: [{ type: 'wait', seconds: 60 }] },
  });
  const ns = await nodes(later, r, dir, 3);
  const byName = { nodeA: ns[0], nodeB: ns[1], nodeC: ns[2] };
  const other = (name) => Object.entries(byName).find(([n]) => n !== name)[1];

  const ap = await start(ns[0], 43);
  await waitStatus(ns[0], 43, ap, 'Waiting');
  const apRunner = await runner(r, ap);
  assert.ok(byName[apRunner], `a node claimed it: ${apRunner}`);
  const ctl = other(apRunner);
  assertJsonError(await post(`${ctl.url}/api/v1/resume?w=43&i=${ap}`), 409, 'wrong_state');
  const ok = await post(`${ctl.url}/api/v1/approve?w=43&i=${ap}`);
  assert.equal(ok.status, 200, ok.text);
  assert.equal(ok.json, true);
  await waitStatus(ctl, 43, ap, 'Done');
  assertJsonError(await post(`${ctl.url}/api/v1/approve?w=43&i=${ap}`), 409, 'wrong_state');

  const long = await start(ns[1], 44);
  await waitStatus(ns[1], 44, long, 'Running');
  const longRunner = await runner(r, long);
  const ctl2 = other(longRunner);
  assert.equal((await post(`${ctl2.url}/api/v1/suspend?w=44&i=${long}`)).status, 200);
  await waitStatus(ns[2], 44, long, 'Suspended');
  assert.equal((await post(`${ctl2.url}/api/v1/resume?w=44&i=${long}`)).status, 200);
  await waitStatus(ns[2], 44, long, 'Running');
  const stop = await post(`${ctl2.url}/api/v1/stop?w=44&i=${long}`);
  assert.equal(stop.status, 200, stop.text);
  await waitStatus(ns[0], 44, long, 'Stopped');
  assertJsonError(await post(`${ctl2.url}/api/v1/stop?w=44&i=${long}`), 409, 'wrong_state');
  assertJsonError(await post(`${ctl2.url}/api/v1/stop?w=43&i=${long}`), 404, 'not_found');
});

test('a queued job is stopped from any node; maxConcurrent holds across the cluster', TO, async (t) => {
  const later = teardown(t);
  const r = await startRedis();
  later(() => r.stop());
  const dir = workflows(later, { 'one.json': { id: 5, name: 'one at a time', maxConcurrent: 1, tasks: [{ type: 'wait', seconds: 1 }] } });
  const ns = await nodes(later, r, dir, 3);
  const ids = [];
  for (let i = 0; i < 4; i++) ids.push(await start(ns[i % 3], 5));
  // The last one waits behind the others (one runs at a time in the cluster): stop it on another node.
  const stop = await post(`${ns[0].url}/api/v1/stop?w=5&i=${ids[3]}`);
  assert.equal(stop.status, 200, stop.text);
  let most = 0;
  await eventually(async () => {
    const list = (await request(`${ns[2].url}/api/v1/jobs?w=5`)).json;
    most = Math.max(most, list.filter((j) => j.status === 'Running').length);
    return list.filter((j) => ['Done', 'Stopped'].includes(j.status)).length === 4;
  }, T(20000), 'every job ended');
  assert.equal(most, 1, 'never more than one Running');
  assert.equal((await job(ns[1], 5, ids[3])).status, 'Stopped');
  for (const id of ids.slice(0, 3)) assert.equal((await job(ns[1], 5, id)).status, 'Done');
});

test('kill -9 the node running a job: within the lease it is Failed with a reason naming the node, and followers end', TO, async (t) => {
  const later = teardown(t);
  const r = await startRedis();
  later(() => r.stop());
  const dir = workflows(later, { 'long.json': { id: 44, name: 'long', tasks: [{ type: 'wait', seconds: 120 }] } });
  const ns = await nodes(later, r, dir, 3, { extraArgs: ['--job-lease', '3'] });
  const id = await start(ns[0], 44);
  await waitStatus(ns[0], 44, id, 'Running');
  const name = await runner(r, id);
  const victim = ns[{ nodeA: 0, nodeB: 1, nodeC: 2 }[name]];
  const watcher = ns.find((h) => h !== victim);
  const follower = await openSSE(`${watcher.url}/api/v1/sse/44/${id}`);
  later(() => follower.close());
  await follower.waitFor((s) => s.events.some((e) => e.event === 'status' && /Running/.test(e.data)), T(5000), 'Running');
  victim.proc.kill('SIGKILL');
  const t0 = Date.now();
  await follower.waitFor((s) => s.events.some((e) => !e.event || e.event === 'message'), T(15000), 'the final event');
  const waited = Date.now() - t0;
  const final = JSON.parse(follower.events.find((e) => !e.event || e.event === 'message').data);
  assert.equal(final.status, 'Failed');
  const j = await job(watcher, 44, id);
  assert.equal(j.status, 'Failed');
  assert.match(j.reason, new RegExp(`node ${name}/[0-9a-f]+ was lost .*Running`));
  assert.ok(waited < T(3000 + 1000 + 2000), `failed within the lease (3 s) and a sweep (1 s): ${waited} ms`);
  // The killed node's stop() would assert a clean exit: it is gone already.
  victim.stop = async () => {};
});

test('definitions: a node whose workflow differs says so in /healthz; a reload on one node reloads every node', TO, async (t) => {
  const later = teardown(t);
  const r = await startRedis();
  later(() => r.stop());
  const dir = workflows(later, { 'wait.json': WAIT });
  const [a, b] = await nodes(later, r, dir, 2);
  const dir2 = workflows(later, { 'wait.json': { ...WAIT, tasks: [{ type: 'wait', seconds: 2 }] } });
  const c = await startServer({ open: true, extraArgs: ['--redis', r.url, '--workflows', dir2, '--node-name', 'nodeC'] });
  later(() => c.stop());
  const health = await request(`${c.url}/healthz`);
  assert.equal(health.status, 200);
  assert.equal(health.json.status, 'degraded');
  assert.deepEqual(health.json.workflowsDiffer, [41]);
  assert.match(health.json.node, /^nodeC\//);
  assert.match(c.stderrText(), /workflow definition differs from the cluster's.*workflow=41/);
  assert.deepEqual((await request(`${a.url}/healthz`)).json.workflowsDiffer, []);

  // A's files change; its reload makes them the cluster's and B reloads too.
  fs.writeFileSync(path.join(dir, 'wait.json'), JSON.stringify({ ...WAIT, name: 'Renamed' }));
  assert.equal((await post(`${a.url}/api/v1/workflows/reload`)).status, 200);
  await eventually(async () => (await request(`${b.url}/api/v1/workflows/41`)).json?.name === 'Renamed', T(5000), 'B reloaded');
  await eventually(async () => /workflows reload asked by another node/.test(c.stderrText()), T(5000), 'C reloaded');
  assert.deepEqual((await request(`${b.url}/healthz`)).json.workflowsDiffer, []);
  assert.deepEqual((await request(`${c.url}/healthz`)).json.workflowsDiffer, [41]);
});

test('an exec task gets a FLOWCAST_URL that reaches the cluster and a token every node accepts', TO, async (t) => {
  const later = teardown(t);
  const r = await startRedis();
  later(() => r.stop());
  const out = runsFile(later, 'flowcast-env-');
  const dir = workflows(later, {
    'env.json': { id: 12, name: 'env', tasks: [{ type: 'exec', command: ['sh', '-c', `echo "$FLOWCAST_URL $FLOWCAST_TOKEN" > ${out}`] }] },
  });
  const ns = await nodes(later, r, dir, 3, { open: false, env: { FLOWCAST_ADMIN_PASSWORD: PASSWORD } });
  const login = await request(`${ns[2].url}/api/v1/login`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ username: 'admin', password: PASSWORD }),
  });
  const auth = { authorization: `Bearer ${login.json.access_token}` };
  const id = await start(ns[2], 12, auth);
  await eventually(async () => (await job(ns[0], 12, id, auth)).status === 'Done', T(15000), 'the job ran');
  const [url, token] = fs.readFileSync(out, 'utf8').trim().split(' ');
  assert.ok(ns.some((h) => h.url === url), `FLOWCAST_URL ${url} is a node of the cluster`);
  assert.ok(token, 'a token was minted');
  for (const h of ns) {
    const res = await request(`${h.url}/api/v1/channels/job.${id}/events`, {
      method: 'POST',
      headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' },
      body: JSON.stringify({ from: h.url }),
    });
    assert.equal(res.status, 201, `${h.url}: ${res.text}`);
    const other = await request(`${h.url}/api/v1/channels/elsewhere/events`, {
      method: 'POST',
      headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' },
      body: '{}',
    });
    assert.equal(other.status, 403, 'only the job\'s channels');
  }
});

test('a node that stops cleanly fails its running jobs at once, and Redis away gives 503 for job routes', TO, async (t) => {
  const later = teardown(t);
  const r = await startRedis();
  later(() => r.stop());
  const dir = workflows(later, { 'long.json': { id: 44, name: 'long', tasks: [{ type: 'wait', seconds: 120 }] } });
  const ns = await nodes(later, r, dir, 2);
  const id = await start(ns[0], 44);
  await waitStatus(ns[0], 44, id, 'Running');
  const name = await runner(r, id);
  const leaving = ns[{ nodeA: 0, nodeB: 1 }[name]];
  const staying = ns.find((h) => h !== leaving);
  const follower = await openSSE(`${staying.url}/api/v1/sse/44/${id}`);
  later(() => follower.close());
  await leaving.stop();
  await follower.waitFor((s) => s.events.some((e) => !e.event || e.event === 'message'), T(5000), 'the final event');
  const j = await job(staying, 44, id);
  assert.equal(j.status, 'Failed');
  assert.match(j.reason, new RegExp(`node ${name}/[0-9a-f]+ stopped while the job was Running`));

  await r.kill();
  let res;
  for (let i = 0; i < 30; i++) {
    res = await post(`${staying.url}/api/v1/start?w=44`);
    if (res.status === 503) break;
    await sleep(100);
  }
  assertJsonError(res, 503, 'storage_unavailable');
  assertJsonError(await request(`${staying.url}/api/v1/jobs?w=44`), 503, 'storage_unavailable');
  assertJsonError(await request(`${staying.url}/api/v1/job?w=44&i=${id}`), 503, 'storage_unavailable');
});

test('a job whose node died before queueing it is queued by another node; one stopped meanwhile ends Stopped', TO, async (t) => {
  const later = teardown(t);
  const r = await startRedis();
  later(() => r.stop());
  const out = runsFile(later, 'flowcast-stranded-');
  const dir = workflows(later, {
    'stranded.json': { id: 45, name: 'stranded', tasks: [{ type: 'exec', command: ['sh', '-c', `echo "$FLOWCAST_JOB_ID" >> ${out}`] }] },
  });
  // What a node leaves when it dies between saving a new job's record and
  // queueing it (fc_jobq_create, then nothing): a Pending record, listed, not queued.
  const strand = async (id, extra = []) => {
    const created = Date.now() - 5000;
    await r.command('HSET', `fc:job:${id}`, 'wf', '45', 'status', 'Pending', 'reason', '', 'input', '', 'starter', 'admin',
      'name', 'stranded', 'desc', '', 'created', String(created), 'started', '0', 'ended', '0', 'final', '0', 'task', '0', ...extra);
    await r.command('ZADD', 'fc:jobs:45', String(created), id);
    await r.command('ZADD', 'fc:unq', String(created), id);
  };
  const runId = '11111111-2222-4333-8444-555555555555';
  const stopId = '66666666-7777-4888-9999-aaaaaaaaaaaa';
  await strand(runId);
  await strand(stopId, ['cancel', '1']); // a stop reached it before the dead node queued it
  const ns = await nodes(later, r, dir, 2, { extraArgs: ['--job-lease', '3'] });
  await waitStatus(ns[1], 45, runId, 'Done');
  await waitStatus(ns[0], 45, stopId, 'Stopped');
  assert.deepEqual(lines(out), [runId], 'the stranded job ran once, the stopped one never');
  assert.equal(Number(await r.command('ZCARD', 'fc:unq')), 0);
  // Its stream tells the whole story from Pending, and a job started now is not taken over.
  const s = await openSSE(`${ns[0].url}/api/v1/sse/45/${runId}`, { headers: { 'last-event-id': '0' } });
  later(() => s.close());
  await s.waitFor((x) => x.events.some((e) => !e.event || e.event === 'message'), T(5000), 'the final event');
  const statuses = s.events.filter((e) => e.event === 'status').map((e) => JSON.parse(e.data).status);
  assert.equal(statuses[0], 'Pending', JSON.stringify(statuses));
  const fresh = await start(ns[1], 45);
  await waitStatus(ns[0], 45, fresh, 'Done');
  await sleep(T(3000)); // a sweep (every lease/3) has looked at it by now
  assert.deepEqual(lines(out).sort(), [runId, fresh].sort(), 'each job ran exactly once');
});
