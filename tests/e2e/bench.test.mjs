// The benchmark tools work as bench/run-all uses them: fcload drives flowcast
// and the floor (fcfloor) and reports every delivery once and in order, and
// fcfloor starts, serves and stops cleanly. Small counts: this is about
// correctness, not speed (no figure here is timed).
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { startServer, freePort, sanitizerReport, request, eventually, BIN, T } from './lib/server.mjs';

const DIR = path.dirname(BIN);
const FCLOAD = path.join(DIR, 'fcload');
const FLOOR = path.join(DIR, 'fcfloor');
const TO = { timeout: T(120000) };

/** Runs fcload to the end with `args`; resolves its JSON report. */
function fcload(url, args) {
  return new Promise((resolve, reject) => {
    const p = spawn(FCLOAD, ['--url', url, '--json', '--quiet', '--timeout', String(T(60)), ...args]);
    let out = '';
    let err = '';
    p.stdout.on('data', (d) => (out += d));
    p.stderr.on('data', (d) => (err += d));
    p.on('error', reject);
    p.on('exit', (code) => {
      try {
        resolve({ code, report: JSON.parse(out), stderr: err });
      } catch (e) {
        reject(new Error(`fcload exited ${code} without JSON: ${err}`));
      }
    });
  });
}

/** Checks a publish run: everything acknowledged arrived once, in order. */
function assertComplete({ code, report, stderr }, subs, channels, messages) {
  assert.equal(code, 0, stderr);
  assert.equal(report.outcome, 'complete', stderr);
  assert.equal(report.published, messages);
  assert.equal(report.publish_errors, 0);
  assert.equal(report.conn_ok, subs);
  assert.equal(report.expected_deliveries, (subs / channels) * messages);
  assert.equal(report.deliveries, report.expected_deliveries);
  for (const k of ['loss', 'duplicates', 'reorders']) assert.equal(report[k], 0, k);
}

/** Starts fcfloor on a free port; resolves {url, proc, stop()}. */
async function startFloor() {
  const port = await freePort();
  const proc = spawn(FLOOR, ['--listen', `127.0.0.1:${port}`]);
  let err = '';
  proc.stderr.on('data', (d) => (err += d));
  const url = `http://127.0.0.1:${port}`;
  const answers = async () => {
    try {
      return (await request(`${url}/nothing`)).status === 404;
    } catch {
      return false; /* not listening yet */
    }
  };
  try {
    await eventually(answers, T(10000), 'fcfloor answering');
  } catch (e) {
    proc.kill('SIGKILL');
    throw e;
  }
  return {
    url,
    proc,
    async stop() {
      const exited = new Promise((r) => proc.once('exit', (code, signal) => r({ code, signal })));
      proc.kill('SIGTERM');
      assert.deepEqual(await exited, { code: 0, signal: null }, err);
      assert.equal(sanitizerReport(err), null);
    },
  };
}

describe('bench tools', { skip: !fs.existsSync(FLOOR) && 'build/fcfloor not built' }, () => {
  test('fcload drives flowcast: every pipelined publish reaches every subscriber once, in order', TO, async () => {
    const srv = await startServer({ logLevel: 'warn' });
    try {
      const r = await fcload(srv.url, ['--subs', '60', '--channels', '3', '--messages', '600', '--inflight', '4', '--pipeline', '4']);
      assertComplete(r, 60, 3, 600);
    } finally {
      await srv.stop();
    }
  });

  test('fcfloor serves fcload the same way, then stops cleanly on SIGTERM', TO, async () => {
    const floor = await startFloor();
    try {
      const paths = ['--pub-path', '/pub/%s', '--sub-path', '/sub/%s', '--server-pid', String(floor.proc.pid)];
      const r = await fcload(floor.url, [...paths, '--subs', '60', '--channels', '3', '--messages', '600', '--inflight', '4', '--pipeline', '4']);
      assertComplete(r, 60, 3, 600);
      assert.ok(r.report.server_cpu_publish_s >= 0, 'fcload read the floor\'s CPU');
      const idle = await fcload(floor.url, [...paths, '--idle', '--subs', '50', '--hold', '0.2']);
      assert.equal(idle.report.conn_ok, 50);
      assert.equal(idle.report.conn_dropped, 0);
    } finally {
      await floor.stop();
    }
  });

  test('fcfloor refuses a bad --listen with a message and status 2', () => {
    const r = spawnSync(FLOOR, ['--listen', 'nowhere'], { encoding: 'utf8', timeout: T(10000) });
    assert.equal(r.status, 2);
    assert.match(r.stderr, /--listen|usage/);
    const h = spawnSync(FLOOR, ['--help'], { encoding: 'utf8', timeout: T(10000) });
    assert.equal(h.status, 0);
    assert.match(h.stdout, /POST \/pub\/NAME/);
  });
});
