#!/usr/bin/env node
// Jobs across nodes (issue 16): how many jobs a second flowcast starts, runs
// and ends on one node with SQLite, on one node with Redis, and on NODES nodes
// sharing one Redis; and what each job costs Redis (commands, CPU).
//
//   node bench/cluster-jobs.mjs            # JOBS=500 NODES=3 CLIENTS=16 RUNS=3
//
// Each run: a fresh redis-server (`--save '' --appendonly no`) on a free
// loopback port, fresh nodes (`--open --log-level warn --max-jobs 16`) with one
// workflow of one `wait 0` task (the runner's own cost, no child process),
// CLIENTS clients starting JOBS jobs round-robin over the nodes, and one SSE
// follower of workflow.1 on the first node counting the jobs' final events.
// The time is from the first start to the last final event. Redis figures
// come from INFO before and after: commandstats' calls (which count the
// commands a script runs as well as the EVAL itself; EVAL/EVALSHA alone are
// the scripts column), used_cpu_sys + used_cpu_user. Prints one JSON line per run and a summary table.
//
// FLOWCAST_BIN (default build/flowcast), REDIS_SERVER (/usr/bin/redis-server).
import { spawn, execFileSync } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';

const BIN = process.env.FLOWCAST_BIN || path.resolve('build/flowcast');
const REDIS = process.env.REDIS_SERVER || '/usr/bin/redis-server';
const JOBS = Number(process.env.JOBS || 500);
const NODES = Number(process.env.NODES || 3);
const CLIENTS = Number(process.env.CLIENTS || 16);
const RUNS = Number(process.env.RUNS || 3);
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

function freePort() {
  return new Promise((resolve) => {
    const s = net.createServer().listen(0, '127.0.0.1', () => {
      const { port } = s.address();
      s.close(() => resolve(port));
    });
  });
}

async function waitHttp(url, ms = 10000) {
  const end = Date.now() + ms;
  while (Date.now() < end) {
    try {
      const r = await fetch(url);
      if (r.ok) return;
    } catch {}
    await sleep(50);
  }
  throw new Error(`${url} did not answer`);
}

/** One Redis command over redis-cli; its output. */
const redisCli = (port, ...args) => execFileSync('redis-cli', ['-p', String(port), ...args], { encoding: 'utf8' });

function redisStats(port) {
  const info = redisCli(port, 'INFO', 'all');
  let calls = 0, scripts = 0;
  for (const m of info.matchAll(/^cmdstat_([^:]+):calls=(\d+)/gm)) {
    calls += Number(m[2]);
    if (m[1] === 'eval' || m[1] === 'evalsha') scripts += Number(m[2]);
  }
  const cpu = ['used_cpu_sys', 'used_cpu_user'].reduce((s, k) => s + Number(info.match(new RegExp(`^${k}:([\\d.]+)`, 'm'))[1]), 0);
  return { calls, scripts, cpu };
}

async function startRedis() {
  const port = await freePort();
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'fc-bench-redis-'));
  const proc = spawn(REDIS, ['--port', String(port), '--bind', '127.0.0.1', '--dir', dir, '--save', '', '--appendonly', 'no'], {
    stdio: 'ignore',
  });
  for (let i = 0; i < 100; i++) {
    try {
      if (redisCli(port, 'PING').trim() === 'PONG') break;
    } catch {}
    await sleep(50);
  }
  return { port, url: `redis://127.0.0.1:${port}`, stop: () => (proc.kill('SIGKILL'), fs.rmSync(dir, { recursive: true, force: true })) };
}

async function startNodes(n, redisUrl, wfDir) {
  const nodes = [];
  for (let i = 0; i < n; i++) {
    const port = await freePort();
    const data = fs.mkdtempSync(path.join(os.tmpdir(), 'fc-bench-data-'));
    const args = ['serve', '--open', '--log-level', 'warn', '--listen', `127.0.0.1:${port}`, '--data', data, '--workflows', wfDir, '--max-jobs', '16', '--max-queued-jobs', String(JOBS * 2)];
    if (redisUrl) args.push('--redis', redisUrl);
    const proc = spawn(BIN, args, { stdio: 'ignore' });
    const url = `http://127.0.0.1:${port}`;
    await waitHttp(`${url}/healthz`);
    nodes.push({ url, proc, stop: async () => {
      proc.kill('SIGTERM');
      await new Promise((r) => proc.once('exit', r));
      fs.rmSync(data, { recursive: true, force: true });
    } });
  }
  return nodes;
}

/** Counts final (unnamed) events on workflow.1's stream until `n` came. */
async function followFinals(url, n) {
  const ctl = new AbortController();
  const res = await fetch(`${url}/api/v1/channels/workflow.1/sse?replay=0`, { signal: ctl.signal });
  const reader = res.body.getReader();
  const dec = new TextDecoder();
  let buf = '', finals = 0;
  const done = (async () => {
    for (;;) {
      const { value, done: end } = await reader.read();
      if (end) break;
      buf += dec.decode(value, { stream: true });
      let i;
      while ((i = buf.indexOf('\n\n')) >= 0) {
        const block = buf.slice(0, i);
        buf = buf.slice(i + 2);
        if (/^data:/m.test(block) && !/^event:/m.test(block)) finals++;
        if (finals >= n) return Date.now();
      }
    }
  })();
  return { done, stop: () => ctl.abort() };
}

async function run(system) {
  const wfDir = fs.mkdtempSync(path.join(os.tmpdir(), 'fc-bench-wf-'));
  fs.writeFileSync(path.join(wfDir, 'w.json'), JSON.stringify({ id: 1, name: 'bench', tasks: [{ type: 'wait', seconds: 0 }] }));
  const redis = system === 'sqlite1' ? null : await startRedis();
  const nodes = await startNodes(system === 'redis3' ? NODES : 1, redis?.url, wfDir);
  const follower = await followFinals(nodes[0].url, JOBS);
  await sleep(200);
  const before = redis ? redisStats(redis.port) : null;
  const t0 = Date.now();
  let next = 0;
  const clients = Array.from({ length: CLIENTS }, async () => {
    while (next < JOBS) {
      const i = next++;
      const r = await fetch(`${nodes[i % nodes.length].url}/api/v1/start?w=1`, { method: 'POST' });
      if (r.status !== 200) throw new Error(`start answered ${r.status}: ${await r.text()}`);
    }
  });
  await Promise.all(clients);
  const started = Date.now();
  const end = await Promise.race([follower.done, sleep(120000).then(() => null)]);
  follower.stop();
  const after = redis ? redisStats(redis.port) : null;
  for (const n of nodes) await n.stop();
  redis?.stop();
  fs.rmSync(wfDir, { recursive: true, force: true });
  if (!end) throw new Error(`${system}: not every job ended within 120 s`);
  const secs = (end - t0) / 1000;
  return {
    system,
    jobs: JOBS,
    seconds: +secs.toFixed(2),
    jobs_per_s: Math.round(JOBS / secs),
    start_ms_per_job: +(((started - t0) / JOBS) * CLIENTS).toFixed(2),
    redis_cmds_per_job: redis ? +((after.calls - before.calls) / JOBS).toFixed(1) : null,
    redis_scripts_per_job: redis ? +((after.scripts - before.scripts) / JOBS).toFixed(1) : null,
    redis_cpu_us_per_job: redis ? Math.round(((after.cpu - before.cpu) * 1e6) / JOBS) : null,
  };
}

const results = [];
for (let r = 0; r < RUNS; r++) {
  for (const s of ['sqlite1', 'redis1', 'redis3']) {
    const res = await run(s);
    console.log(JSON.stringify(res));
    results.push(res);
  }
}
const med = (xs) => xs.sort((a, b) => a - b)[Math.floor(xs.length / 2)];
console.log('\n| system | jobs/s (median) | start latency ms/job | Redis commands/job (with those in scripts) | scripts/job | Redis CPU µs/job |\n|---|---|---|---|---|---|');
for (const s of ['sqlite1', 'redis1', 'redis3']) {
  const rs = results.filter((x) => x.system === s);
  const f = (k) => (rs[0][k] === null ? '-' : med(rs.map((x) => x[k])));
  console.log(`| ${s} | ${f('jobs_per_s')} | ${f('start_ms_per_job')} | ${f('redis_cmds_per_job')} | ${f('redis_scripts_per_job')} | ${f('redis_cpu_us_per_job')} |`);
}
