// Accepting connections (issue 13): file-descriptor exhaustion, the global and
// per-address connection caps, and start-up failures of the loops.
//
// These servers run through `sh -c 'ulimit ...; exec flowcast serve ...'` so
// that a low open-files limit is in force from the start, and every check is
// made with raw sockets that the test opens and closes itself (fetch's pool
// would hold connections the caps count).
import { describe, test, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import {
  BIN,
  SANITIZED,
  T,
  sleep,
  freePort,
  eventually,
  sanitizerReport,
  serveSupports,
  baseServeArgs,
  RawConn,
  parseResponses,
} from './lib/server.mjs';

const TO = { timeout: T(60000) };
const servers = new Set();
after(async () => {
  for (const s of servers) await s.kill();
});

/** `flowcast serve` flags, the caps' only when the binary knows them (so that
 * the tests run, and fail, against a binary from before the caps). */
function capArgs({ max, perIp }) {
  const a = [];
  if (max !== undefined && serveSupports('--max-connections')) a.push('--max-connections', String(max));
  if (perIp !== undefined && serveSupports('--max-connections-per-ip')) a.push('--max-connections-per-ip', String(perIp));
  return a;
}

/** Waits for exit; resolves {code, signal}, or null after `ms`. */
function waitExit(proc, ms) {
  if (proc.exitCode !== null || proc.signalCode !== null) {
    return Promise.resolve({ code: proc.exitCode, signal: proc.signalCode });
  }
  return new Promise((resolve) => {
    const timer = setTimeout(() => resolve(null), ms);
    proc.once('exit', (code, signal) => {
      clearTimeout(timer);
      resolve({ code, signal });
    });
  });
}

/** Opens a raw connection (from `localAddress` when given). */
function connect(port, localAddress) {
  return new Promise((resolve, reject) => {
    const sock = net.connect({ port, host: '127.0.0.1', localAddress });
    sock.setNoDelay(true);
    sock.once('connect', () => resolve(new RawConn(sock)));
    sock.once('error', reject);
  });
}

/** Opens `n` connections, `batch` at a time; returns them all. */
async function openMany(port, n, { localAddress, batch = 50 } = {}) {
  const out = [];
  for (let i = 0; i < n; i += batch) {
    const k = Math.min(batch, n - i);
    out.push(...(await Promise.all(Array.from({ length: k }, () => connect(port, localAddress)))));
  }
  return out;
}

/** GET `target` on an open raw connection (keep-alive); resolves the response or null. */
async function getOn(c, target, ms = T(5000)) {
  const before = c.responses().filter((r) => r.complete && r.status >= 200).length;
  await c.write(`GET ${target} HTTP/1.1\r\nHost: x\r\n\r\n`);
  const rs = await c.waitResponses(before + 1, ms);
  return rs[before] || null;
}

/** GET `target` on a new connection, then closes it. */
async function getNew(port, target, localAddress) {
  const c = await connect(port, localAddress);
  try {
    return await getOn(c, target);
  } finally {
    c.destroy();
  }
}

/** The refusal answer on a connection the server closed at once, or null. */
function refusal(c) {
  if (!(c.closed || c.ended)) return null;
  const r = parseResponses(c.buffer(), true)[0];
  return r && r.status === 503 ? r : null;
}

/** Asserts `r` is the 503 too_many_connections JSON answer with Connection: close. */
function assertRefusal(r, hint) {
  assert.ok(r, 'no 503 answer');
  assert.equal(r.status, 503);
  assert.match(r.headers['content-type'] || '', /^application\/json/);
  assert.match(r.headers.connection || '', /close/i);
  const j = JSON.parse(r.body);
  assert.equal(j.error.code, 'too_many_connections', r.body);
  assert.equal(typeof j.error.message, 'string');
  if (hint) assert.match(j.error.message, hint);
}

/** Waits until the number of refused connections stays the same for 300 ms; returns it. */
async function settledRefusals(conns) {
  let last = -1;
  let same = 0;
  for (const deadline = Date.now() + T(10000); Date.now() < deadline; await sleep(100)) {
    const n = conns.filter(refusal).length;
    same = n === last ? same + 1 : 0;
    last = n;
    if (same >= 3) break;
  }
  return last;
}

/** Opens a connection and waits until the server counts it as its only one;
 * returns it (kept open, for /metrics, so every count is exact). */
async function probe(port) {
  const c = await connect(port);
  await eventually(async () => {
    const m = await getOn(c, '/metrics');
    return metricValue(m?.body || '', 'flowcast_connections') === 1;
  }, T(5000), 'the server to have no other connection');
  return c;
}

/** Prometheus text -> value of `name` with `labels` ('' for none). */
function metricValue(text, name, labels = '') {
  for (const line of text.split('\n')) {
    if (line.startsWith(`${name}${labels} `)) return Number(line.slice(name.length + labels.length + 1));
  }
  return undefined;
}

/** CPU seconds (user + system) the process has used. */
function cpuSeconds(pid) {
  const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
  const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return (Number(f[11]) + Number(f[12])) / 100; // utime, stime in clock ticks (USER_HZ 100)
}

function openFds(pid) {
  return fs.readdirSync(`/proc/${pid}/fd`).length;
}

/**
 * Starts `flowcast serve` through sh with `ulimit` commands (`limits`, e.g.
 * 'ulimit -n 256'). Waits until /healthz answers on a raw connection.
 * Returns {port, proc, stderr(), stop()}; stop() sends SIGTERM and asserts a
 * clean exit within T(5000) ms.
 */
async function startLimited({ limits = '', threads = 2, args = [] } = {}) {
  const dataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'flowcast-secnet-'));
  const port = await freePort();
  // Connections the tests hold send no request for a while: no header timeout meanwhile.
  const argv = ['serve', '--listen', `127.0.0.1:${port}`, '--data', dataDir, '--threads', String(threads),
    '--log-level', 'info', '--header-timeout', '120', ...baseServeArgs(), ...args];
  const proc = spawn('sh', ['-c', `${limits ? `${limits} && ` : ''}exec "$0" "$@"`, BIN, ...argv], {
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let stderr = '';
  proc.stderr.setEncoding('utf8');
  proc.stderr.on('data', (d) => {
    stderr += d;
  });
  proc.stdout.resume();
  const h = {
    port,
    proc,
    stderr: () => stderr,
    async kill() {
      if (proc.exitCode === null && proc.signalCode === null) proc.kill('SIGKILL');
      await waitExit(proc, 5000);
      fs.rmSync(dataDir, { recursive: true, force: true });
      servers.delete(h);
    },
    async stop() {
      const t0 = Date.now();
      proc.kill('SIGTERM');
      const r = await waitExit(proc, T(5000));
      try {
        assert.ok(r, `no exit within ${T(5000)} ms of SIGTERM\nstderr tail:\n${stderr.slice(-2000)}`);
        await sleep(20);
        assert.equal(sanitizerReport(stderr), null, sanitizerReport(stderr));
        assert.equal(r.signal, null, `killed by ${r.signal}`);
        assert.equal(r.code, 0, `exit code ${r.code}\nstderr tail:\n${stderr.slice(-2000)}`);
        return Date.now() - t0;
      } finally {
        await h.kill();
      }
    },
  };
  servers.add(h);
  const deadline = Date.now() + T(10000);
  for (;;) {
    if (proc.exitCode !== null || proc.signalCode !== null) {
      await h.kill();
      throw new Error(`flowcast exited during start-up (${proc.exitCode}/${proc.signalCode}):\n${stderr}`);
    }
    try {
      const r = await getNew(port, '/healthz');
      if (r && r.status === 200) return h;
    } catch {
      // not listening yet
    }
    if (Date.now() > deadline) {
      await h.kill();
      throw new Error(`flowcast did not answer within ${T(10000)} ms:\n${stderr}`);
    }
    await sleep(50);
  }
}

describe('file-descriptor exhaustion', () => {
  test('past the open-files limit: the excess gets 503, open connections keep working, and the server recovers, idles, logs little and stops on SIGTERM', TO, async () => {
    // 256 descriptors, 2 loops, caps out of the way: accept() itself runs out.
    const srv = await startLimited({ limits: 'ulimit -n 256', args: capArgs({ max: 100000, perIp: 0 }) });
    const pid = srv.proc.pid;
    const N = 400;
    const conns = await openMany(srv.port, N);
    // Let the server take what it can and refuse the rest.
    await eventually(() => conns.filter((c) => c.closed || c.ended).length >= N - 256, T(10000), 'refusals').catch(() => {});
    await settledRefusals(conns);
    const closed = conns.filter((c) => c.closed || c.ended);
    const refused = conns.filter(refusal);
    // A connection it holds still answers while it is out of descriptors.
    const held = conns.find((c) => !(c.closed || c.ended));
    const heldAnswer = held ? await getOn(held, '/healthz') : null;

    for (const c of conns) c.destroy();
    // Recovers: new requests are answered, the held sockets are closed (no CLOSE-WAIT left).
    await eventually(async () => {
      try {
        return (await getNew(srv.port, '/healthz'))?.status === 200;
      } catch {
        return false;
      }
    }, T(10000), 'a new request answered after the clients left');
    await eventually(() => openFds(pid) < 64, T(10000), `descriptors released (open: ${openFds(pid)})`);
    // Idle again: under 0.2 s of CPU in a second.
    await sleep(500);
    const c0 = cpuSeconds(pid);
    await sleep(1000);
    const used = cpuSeconds(pid) - c0;
    assert.ok(used < 0.2, `the idle server used ${used.toFixed(2)} s of CPU in 1 s`);
    // The log stays small: "accept failed" at most about once a second.
    const log = srv.stderr();
    const failed = log.split('\n').filter((l) => l.includes('accept failed')).length;
    assert.ok(log.length < 16384, `stderr grew to ${log.length} bytes (${failed} "accept failed" lines)`);
    assert.ok(failed >= 1 && failed <= 15, `${failed} "accept failed" lines`);
    const m = await getNew(srv.port, '/metrics');
    const ms = await srv.stop();
    assert.ok(ms < T(3000), `SIGTERM took ${ms} ms`);

    // What it could not hold was refused with an answer, not reset or left waiting.
    assert.ok(refused.length >= N - 256, `${refused.length} refusals, ${closed.length} closed`);
    assert.equal(refused.length, closed.length, 'a connection was closed without the 503 answer');
    assertRefusal(refusal(refused[0]), /file descriptors/);
    assert.ok(held, 'no connection was accepted at all');
    assert.equal(heldAnswer?.status, 200, 'an accepted connection did not answer while the server was out of descriptors');
    assert.equal(m?.status, 200);
    assert.ok(metricValue(m.body, 'flowcast_connections_refused_total', '{reason="fd_limit"}') >= N - 256, m.body);
    assert.ok(metricValue(m.body, 'flowcast_accept_pauses_total') >= 1, m.body);
  });

  test('the default cap is derived from the open-files limit: past it new connections get 503 before accept() runs out', TO, async () => {
    const srv = await startLimited({ limits: 'ulimit -n 256', args: capArgs({ perIp: 0 }) });
    const p = await probe(srv.port);
    const conns = await openMany(srv.port, 300);
    await eventually(() => conns.filter(refusal).length >= 300 - 256, T(10000), 'refusals');
    await settledRefusals(conns);
    assertRefusal(refusal(conns.find(refusal)), /--max-connections/);
    const held = conns.filter((c) => !(c.closed || c.ended));
    const m = await getOn(p, '/metrics');
    assert.equal(m?.status, 200);
    const max = metricValue(m.body, 'flowcast_connections_max');
    assert.ok(max > 0 && max < 256 - 64, `flowcast_connections_max ${max}`);
    assert.equal(held.length + 1, max, 'the server holds exactly its cap');
    assert.equal(metricValue(m.body, 'flowcast_connections'), max);
    assert.equal(metricValue(m.body, 'flowcast_connections_refused_total', '{reason="max_connections"}'), 300 - max + 1);
    assert.equal(metricValue(m.body, 'flowcast_connections_refused_total', '{reason="fd_limit"}'), 0);
    assert.ok(!srv.stderr().includes('accept failed'), 'accept() ran out of descriptors although a cap was in force');
    for (const c of conns) c.destroy();
    p.destroy();
    await srv.stop();
  });
});

describe('connection caps', () => {
  test('--max-connections: the next connection gets 503 JSON with Connection: close; the others keep working; a freed slot is reused', TO, async () => {
    const srv = await startLimited({ args: capArgs({ max: 10, perIp: 0 }) });
    const p = await probe(srv.port);
    const conns = await openMany(srv.port, 13);
    await eventually(() => conns.filter(refusal).length >= 4, T(5000), '4 refusals');
    assert.equal(await settledRefusals(conns), 4);
    assertRefusal(refusal(conns.find(refusal)), /--max-connections/);
    const held = conns.filter((c) => !(c.closed || c.ended));
    assert.equal(held.length, 9);
    for (const c of held) assert.equal((await getOn(c, '/healthz'))?.status, 200);
    const m = await getOn(p, '/metrics');
    assert.equal(metricValue(m.body, 'flowcast_connections'), 10);
    assert.equal(metricValue(m.body, 'flowcast_connections_max'), 10);
    assert.equal(metricValue(m.body, 'flowcast_connections_refused_total', '{reason="max_connections"}'), 4);
    // A request sent before the answer arrived does not lose it to a reset.
    const c = await connect(srv.port);
    await c.write('GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n');
    await c.waitClose(T(5000));
    assertRefusal(refusal(c));
    c.destroy();
    // A closed connection frees its slot.
    held[0].destroy();
    await eventually(async () => (await getNew(srv.port, '/healthz'))?.status === 200, T(5000), 'a freed slot');
    for (const x of conns) x.destroy();
    p.destroy();
    await srv.stop();
  });

  test('--max-connections-per-ip: one address is capped (loopback too), another is not, and closing frees the count', TO, async () => {
    const srv = await startLimited({ args: capArgs({ perIp: 4 }) });
    const p = await probe(srv.port);
    const conns = await openMany(srv.port, 5);
    await eventually(() => conns.filter(refusal).length >= 2, T(5000), '2 refusals');
    assert.equal(await settledRefusals(conns), 2);
    assertRefusal(refusal(conns.find(refusal)), /your address/);
    const held = conns.filter((c) => !(c.closed || c.ended));
    for (const c of held) assert.equal((await getOn(c, '/healthz'))?.status, 200);
    // Another address (127.0.0.2 is loopback too) is not limited by 127.0.0.1's count.
    const other = await openMany(srv.port, 3, { localAddress: '127.0.0.2' });
    for (const c of other) assert.equal((await getOn(c, '/healthz'))?.status, 200);
    const m = await getOn(p, '/metrics');
    assert.equal(metricValue(m.body, 'flowcast_connections_refused_total', '{reason="max_connections_per_ip"}'), 2);
    assert.equal(metricValue(m.body, 'flowcast_connections_max_per_ip'), 4);
    for (const c of conns) c.destroy();
    p.destroy();
    await eventually(async () => {
      const again = await openMany(srv.port, 4);
      await sleep(T(100));
      const ok = again.every((c) => !(c.closed || c.ended));
      for (const c of again) c.destroy();
      return ok;
    }, T(5000), "127.0.0.1's count released");
    for (const c of other) c.destroy();
    await srv.stop();
  });

  test('serve --help lists both caps and their defaults', TO, async () => {
    assert.ok(serveSupports('--max-connections'), 'no --max-connections');
    assert.ok(serveSupports('--max-connections-per-ip'), 'no --max-connections-per-ip');
  });
});

describe('start-up', () => {
  test('too few descriptors for the loops: a clear error and exit 1, never a crash', TO, async () => {
    const dataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'flowcast-secnet-'));
    try {
      const outcomes = [];
      for (let n = SANITIZED ? 16 : 8; n <= 48; n += 2) {
        const proc = spawn('sh', ['-c', `ulimit -n ${n} && exec "$0" "$@"`, BIN, 'serve', '--listen', '127.0.0.1:0',
          '--data', dataDir, '--threads', '8', '--log-level', 'warn', ...baseServeArgs()], { stdio: ['ignore', 'ignore', 'pipe'] });
        let stderr = '';
        proc.stderr.setEncoding('utf8');
        proc.stderr.on('data', (d) => {
          stderr += d;
        });
        let r = await waitExit(proc, T(1500));
        let started = false;
        if (!r) {
          started = true;
          proc.kill('SIGTERM');
          r = await waitExit(proc, T(5000));
          if (!r) proc.kill('SIGKILL');
        }
        await sleep(20);
        outcomes.push(`${n}:${started ? 'ran' : r?.code}`);
        assert.ok(r, `nofile ${n}: no exit after SIGTERM`);
        assert.equal(sanitizerReport(stderr), null, `nofile ${n}: ${sanitizerReport(stderr)}`);
        assert.equal(r.signal, null, `nofile ${n}: killed by ${r.signal}\n${stderr}`);
        if (started) assert.equal(r.code, 0, `nofile ${n}: exit ${r.code} after SIGTERM\n${stderr}`);
        else {
          assert.equal(r.code, 1, `nofile ${n}: exit ${r.code}\n${stderr}`);
          assert.match(stderr, /^flowcast: .+/m, `nofile ${n}: no error message\n${stderr}`);
        }
      }
      assert.ok(outcomes.some((o) => !o.endsWith('ran')), outcomes.join(' '));
    } finally {
      fs.rmSync(dataDir, { recursive: true, force: true });
    }
  });

  test('a loop thread that cannot start: a clear error and exit 1, not a server with dead loops', { ...TO, skip: SANITIZED && 'ASan needs more address space than the limit leaves' }, async () => {
    const dataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'flowcast-secnet-'));
    const port = await freePort();
    try {
      // 64 loops with 8 MiB stacks cannot fit in 150 MB of address space.
      const proc = spawn('sh', ['-c', 'ulimit -s 8192 && ulimit -v 150000 && exec "$0" "$@"', BIN, 'serve', '--listen',
        `127.0.0.1:${port}`, '--data', dataDir, '--storage', 'memory', '--threads', '64', '--log-level', 'warn',
        ...baseServeArgs()], { stdio: ['ignore', 'ignore', 'pipe'] });
      let stderr = '';
      proc.stderr.setEncoding('utf8');
      proc.stderr.on('data', (d) => {
        stderr += d;
      });
      const r = await waitExit(proc, T(5000));
      if (!r) proc.kill('SIGKILL');
      assert.ok(r, `still running with loops that never started\n${stderr}`);
      assert.equal(r.signal, null, `killed by ${r.signal}\n${stderr}`);
      assert.equal(r.code, 1, stderr);
      assert.match(stderr, /^flowcast: cannot start the thread of event loop \d+/m, stderr);
    } finally {
      fs.rmSync(dataDir, { recursive: true, force: true });
    }
  });
});
