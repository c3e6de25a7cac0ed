// Starts and stops the real flowcast binary for end-to-end tests, and small
// client helpers (publish, plain requests, raw sockets, Prometheus text).
//
// Environment:
//   FLOWCAST_BIN        the binary (default build/flowcast in this checkout)
//   FLOWCAST_SANITIZED  "1" for an ASan/UBSan build: every timeout is stretched
import { spawn, spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import fs from 'node:fs';
import https from 'node:https';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import assert from 'node:assert/strict';

export const BIN =
  process.env.FLOWCAST_BIN || path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../../build/flowcast');
export const SANITIZED = process.env.FLOWCAST_SANITIZED === '1';
/** Timeout multiplier: the sanitized build is several times slower. */
export const SLOW = SANITIZED ? 3 : 1;
/** A timeout in ms, stretched for the sanitized build. */
export const T = (ms) => Math.round(ms * SLOW);

export const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

/**
 * Waits on an object that calls each function in `waiters` (a Set) whenever
 * something arrives. `poll()` returns {value} to resolve, {error} to reject, or
 * nothing to keep waiting (a throw rejects); after `ms`, `onTimeout()` says
 * how it ends, the same way.
 */
export function waitOn(waiters, poll, ms, onTimeout) {
  return new Promise((resolve, reject) => {
    const settle = (r) => {
      if (!r) return;
      clearTimeout(timer);
      waiters.delete(check);
      if ('error' in r) reject(r.error);
      else resolve(r.value);
    };
    const check = () => {
      try {
        settle(poll());
      } catch (e) {
        settle({ error: e });
      }
    };
    const timer = setTimeout(() => settle(onTimeout()), ms);
    waiters.add(check);
    check();
  });
}

const SANITIZER_PATTERNS = [
  'ERROR: AddressSanitizer',
  'ERROR: LeakSanitizer',
  'runtime error:',
  'WARNING: ThreadSanitizer',
];

/** The first sanitizer report line in `text`, or null. */
export function sanitizerReport(text) {
  for (const p of SANITIZER_PATTERNS) {
    const i = text.indexOf(p);
    if (i >= 0) return text.slice(Math.max(0, i - 200), i + 4000);
  }
  return null;
}

/** A TCP port that was free a moment ago (listen on 0, close, reuse). */
export function freePort() {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.unref();
    srv.on('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const { port } = srv.address();
      srv.close(() => resolve(port));
    });
  });
}

/** Waits for a child process to exit; resolves {code, signal} or null on timeout. */
export function waitExit(proc, ms) {
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

let serveHelp = null;
/** True when `flowcast serve --help` lists `flag` (checked once per process). */
export function serveSupports(flag) {
  if (serveHelp === null) {
    const r = spawnSync(BIN, ['serve', '--help'], { encoding: 'utf8', timeout: T(10000) });
    serveHelp = `${r.stdout || ''}${r.stderr || ''}`;
  }
  return new RegExp(`(^|\\s)${flag.replace(/[-]/g, '\\-')}(\\s|=|$)`, 'm').test(serveHelp);
}

/**
 * Extra `serve` flags every test server gets: `--open` (no authentication),
 * when the binary has it. Authentication is tested on its own; these tests
 * are about channels, SSE and HTTP.
 */
export function baseServeArgs() {
  return serveSupports('--open') ? ['--open'] : [];
}

/** Builds the `serve` argv from options. */
function serveArgs(port, dataDir, o) {
  const a = ['serve', '--listen', `127.0.0.1:${port}`, '--data', dataDir];
  const add = (flag, v) => {
    if (v !== undefined && v !== null) a.push(flag, String(v));
  };
  add('--threads', o.threads ?? 2);
  add('--keepalive', o.keepalive ?? 1);
  add('--retention', o.retention);
  add('--max-body', o.maxBody);
  add('--queue-bytes', o.queueBytes);
  add('--cors-origins', o.corsOrigins);
  if (o.corsCredentials) a.push('--cors-credentials');
  add('--header-timeout', o.headerTimeout);
  add('--log-level', o.logLevel ?? 'info');
  if (o.tls) a.push('--tls-cert', o.tls.cert, '--tls-key', o.tls.key);
  if (o.open !== false) a.push(...baseServeArgs());
  if (o.extraArgs) a.push(...o.extraArgs);
  return a;
}

/**
 * Starts the server.
 * opts: threads (2), keepalive (1), retention, maxBody, queueBytes, corsOrigins,
 *       corsCredentials, headerTimeout, logLevel ('info'), open (true: pass --open
 *       when the binary knows it), extraArgs, env, port, dataDir,
 *       tls ({cert, key, ca} files: HTTPS; url is then https://localhost:PORT).
 * Returns {url, port, dataDir, proc, stop(), restart(), stderrText(), stdoutText(), alive()}.
 * stop() sends SIGTERM, waits for the exit, asserts exit code 0 and no sanitizer
 * report, then removes the data dir. It is idempotent.
 */
export async function startServer(opts = {}) {
  if (!fs.existsSync(BIN)) {
    throw new Error(`flowcast binary not found at ${BIN} (build it, or set FLOWCAST_BIN)`);
  }
  const ownDir = !opts.dataDir;
  const dataDir = opts.dataDir ?? fs.mkdtempSync(path.join(os.tmpdir(), 'flowcast-e2e-'));
  const h = {
    url: '',
    port: 0,
    dataDir,
    proc: null,
    stderr: '',
    stdout: '',
    stderrText() {
      return h.stderr;
    },
    stdoutText() {
      return h.stdout;
    },
    alive() {
      return h.proc && h.proc.exitCode === null && h.proc.signalCode === null;
    },
  };

  let stopping = null; // memoized halt() of the current process
  let termSent = false; // SIGTERM already sent to the current process

  /** Sends SIGTERM once to the current process (stop() then only waits). */
  h.sigterm = () => {
    if (!termSent && h.alive()) h.proc.kill('SIGTERM');
    termSent = true;
  };

  async function launch(port) {
    stopping = null;
    termSent = false;
    h.port = port;
    h.url = opts.tls ? `https://localhost:${port}` : `http://127.0.0.1:${port}`;
    const proc = spawn(BIN, serveArgs(port, dataDir, opts), {
      env: { ...process.env, ...(opts.env || {}) },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    h.proc = proc;
    proc.stderr.setEncoding('utf8');
    proc.stdout.setEncoding('utf8');
    proc.stderr.on('data', (d) => {
      h.stderr += d;
    });
    proc.stdout.on('data', (d) => {
      h.stdout += d;
    });
    const spawnError = new Promise((resolve) => proc.once('error', resolve));
    const deadline = Date.now() + T(10000);
    while (Date.now() < deadline) {
      const err = await Promise.race([spawnError, sleep(50).then(() => null)]);
      if (err) throw new Error(`cannot spawn ${BIN}: ${err.message}`);
      if (proc.exitCode !== null || proc.signalCode !== null) {
        const e = new Error(
          `flowcast exited during start-up (code ${proc.exitCode}, signal ${proc.signalCode})\n` +
            `args: ${serveArgs(port, dataDir, opts).join(' ')}\nstderr:\n${h.stderr.slice(-4000)}`,
        );
        e.startupExit = true;
        throw e;
      }
      try {
        if (opts.tls) {
          if ((await httpsGet(`${h.url}/healthz`, opts.tls.ca, 1000)).status === 200) return;
          continue;
        }
        const res = await fetch(`${h.url}/healthz`, { signal: AbortSignal.timeout(1000) });
        await res.text();
        if (res.status === 200) return;
      } catch {
        // not listening yet
      }
    }
    proc.kill('SIGKILL');
    throw new Error(`flowcast did not answer /healthz within ${T(10000)} ms\nstderr:\n${h.stderr.slice(-4000)}`);
  }

  /** SIGTERM, wait, assert a clean exit. */
  function halt() {
    if (stopping) return stopping;
    const proc = h.proc;
    stopping = (async () => {
      h.sigterm();
      const r = await waitExit(proc, T(5000));
      if (!r) {
        proc.kill('SIGKILL');
        await waitExit(proc, 5000);
        assert.fail(`flowcast did not exit within ${T(5000)} ms of SIGTERM\nstderr tail:\n${h.stderr.slice(-3000)}`);
      }
      // Let the pipes drain so the sanitizer report is complete.
      await sleep(20);
      const report = sanitizerReport(h.stderr);
      assert.equal(report, null, `sanitizer report in flowcast stderr:\n${report}`);
      assert.equal(r.signal, null, `flowcast was killed by ${r.signal}\nstderr tail:\n${h.stderr.slice(-3000)}`);
      assert.equal(r.code, 0, `flowcast exited with code ${r.code}\nstderr tail:\n${h.stderr.slice(-3000)}`);
      return r;
    })();
    return stopping;
  }

  let finished = null;
  h.stop = () => {
    if (finished) return finished;
    finished = (async () => {
      try {
        await halt();
      } finally {
        if (ownDir) fs.rmSync(dataDir, { recursive: true, force: true });
      }
    })();
    return finished;
  };

  /** Stops (asserting a clean exit) and starts again on the same port and data dir. */
  h.restart = async () => {
    await halt();
    await launch(h.port);
  };

  const fixed = opts.port !== undefined;
  for (let attempt = 0; ; attempt++) {
    const port = fixed ? opts.port : await freePort();
    try {
      await launch(port);
      break;
    } catch (e) {
      const inUse = /in use|EADDRINUSE/i.test(h.stderr);
      if (e.startupExit && inUse && !fixed && attempt < 3) {
        h.stderr = '';
        continue;
      }
      if (ownDir) fs.rmSync(dataDir, { recursive: true, force: true });
      throw e;
    }
  }
  return h;
}

/**
 * One HTTPS request trusting the CA file `ca` (global fetch cannot take one).
 * Resolves {status, headers, text, json, alpn, cert} (cert: the server's).
 */
export function httpsRequest(url, ca, { method = 'GET', headers = {}, body, timeout = T(10000) } = {}) {
  return new Promise((resolve, reject) => {
    const req = https.request(url, { method, headers, ca: fs.readFileSync(ca), agent: false, timeout }, (res) => {
      const chunks = [];
      const cert = res.socket.getPeerCertificate();
      const alpn = res.socket.alpnProtocol;
      res.on('data', (c) => chunks.push(c));
      res.on('end', () => {
        const text = Buffer.concat(chunks).toString('utf8');
        let json;
        try {
          json = JSON.parse(text);
        } catch {
          json = undefined;
        }
        resolve({ status: res.statusCode, headers: res.headers, text, json, alpn, cert });
      });
      res.on('error', reject);
    });
    req.on('timeout', () => req.destroy(new Error(`no answer from ${url} within ${timeout} ms`)));
    req.on('error', reject);
    req.end(body);
  });
}

function httpsGet(url, ca, timeout) {
  return httpsRequest(url, ca, { timeout });
}

// ---------------------------------------------------------------------------
// HTTP helpers over fetch

/** fetch that never throws on HTTP status; returns {status, headers, text, json}. */
export async function request(url, init = {}) {
  const res = await fetch(url, { signal: AbortSignal.timeout(T(10000)), ...init });
  const text = await res.text();
  let json;
  try {
    json = JSON.parse(text);
  } catch {
    json = undefined;
  }
  return { status: res.status, headers: res.headers, text, json };
}

/**
 * Publishes one event. `data`: a string or Buffer is sent as is; anything else
 * is JSON-encoded. Content-Type: `contentType` when given, else application/json
 * (null sends no Content-Type at all). `event` sets ?event=NAME.
 * Returns {status, headers, text, json}.
 */
export async function publish(url, channel, data, { event, contentType, query } = {}) {
  let body;
  if (typeof data === 'string') body = Buffer.from(data, 'utf8');
  else if (Buffer.isBuffer(data) || data instanceof Uint8Array) body = data;
  else body = Buffer.from(JSON.stringify(data), 'utf8');
  const headers = {};
  const ct = contentType === undefined ? 'application/json' : contentType;
  if (ct !== null) headers['content-type'] = ct;
  const params = new URLSearchParams(query || {});
  if (event !== undefined) params.set('event', event);
  const qs = params.toString();
  const u = `${url}/api/v1/channels/${channel}/events${qs ? `?${qs}` : ''}`;
  return request(u, { method: 'POST', headers, body });
}

/** Publishes and asserts 201; returns the parsed answer. */
export async function publishOk(url, channel, data, opts) {
  const r = await publish(url, channel, data, opts);
  assert.equal(r.status, 201, `publish to ${channel} answered ${r.status}: ${r.text}`);
  return r.json;
}

/** The retained events of a channel as JSON history; [] when the channel is unknown (404). */
export async function storedEvents(url, channel, query = '') {
  const r = await request(`${url}/api/v1/channels/${channel}/events${query}`);
  if (r.status === 404) return [];
  assert.equal(r.status, 200, `history of ${channel} answered ${r.status}: ${r.text}`);
  assert.ok(Array.isArray(r.json), `history is not an array: ${r.text}`);
  return r.json;
}

/** Asserts `r` is a JSON error {"error":{"code","message"}} with `status` (and `code` if given). */
export function assertJsonError(r, status, code) {
  assert.equal(r.status, status, `expected ${status}, got ${r.status}: ${r.text}`);
  const ct = r.headers.get ? r.headers.get('content-type') : r.headers['content-type'];
  assert.match(ct || '', /^application\/json/i, `error content-type: ${ct}`);
  const j = typeof r.json === 'object' ? r.json : safeJson(r.text ?? r.body);
  assert.ok(j && typeof j.error === 'object' && j.error !== null, `not a JSON error: ${r.text ?? r.body}`);
  assert.equal(typeof j.error.code, 'string', `error.code: ${JSON.stringify(j)}`);
  assert.ok(j.error.code.length > 0);
  assert.equal(typeof j.error.message, 'string', `error.message: ${JSON.stringify(j)}`);
  assert.ok(j.error.message.length > 0, 'error.message is empty');
  if (code !== undefined) assert.equal(j.error.code, code, `error code: ${JSON.stringify(j)}`);
  return j;
}

function safeJson(t) {
  try {
    return JSON.parse(t);
  } catch {
    return undefined;
  }
}

/** Asserts /healthz answers 200 {"status":"ok"}. */
export async function assertHealthy(url) {
  const r = await request(`${url}/healthz`);
  assert.equal(r.status, 200, `/healthz answered ${r.status}: ${r.text}`);
  assert.deepEqual(r.json, { status: 'ok' });
}

/** Fetches /metrics; returns {text, get(name, labels?)} where get sums every series of `name`. */
export async function metrics(url) {
  const r = await request(`${url}/metrics`);
  assert.equal(r.status, 200, `/metrics answered ${r.status}`);
  const series = [];
  for (const line of r.text.split('\n')) {
    if (!line || line.startsWith('#')) continue;
    const m = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[^}]*\})?\s+(\S+)/.exec(line);
    if (m) series.push({ name: m[1], labels: m[2] || '', value: Number(m[3]) });
  }
  return {
    text: r.text,
    headers: r.headers,
    series,
    has(name) {
      return series.some((s) => s.name === name);
    },
    get(name) {
      const s = series.filter((x) => x.name === name);
      if (!s.length) return undefined;
      return s.reduce((a, x) => a + x.value, 0);
    },
  };
}

/** Polls `fn` until it returns a truthy value; throws `msg` after `ms`. */
export async function eventually(fn, ms, msg = 'condition') {
  const deadline = Date.now() + ms;
  let last;
  for (;;) {
    last = await fn();
    if (last) return last;
    if (Date.now() > deadline) throw new Error(`timed out after ${ms} ms waiting for ${msg}`);
    await sleep(50);
  }
}

// ---------------------------------------------------------------------------
// Raw sockets

/**
 * Parses as many complete HTTP/1.1 responses as `buf` holds.
 * `closed`: the peer closed, so a response without a length ends at the end.
 * Returns [{status, reason, headers (lower-case names; repeated ones joined by ", "),
 * rawHeaders, body (utf8), complete}], interim (1xx) responses included.
 */
export function parseResponses(buf, closed = false) {
  if (typeof buf === 'string') buf = Buffer.from(buf, 'latin1');
  const out = [];
  let pos = 0;
  while (pos < buf.length) {
    const end = buf.indexOf('\r\n\r\n', pos, 'latin1');
    if (end < 0) break;
    const head = buf.subarray(pos, end).toString('latin1');
    const lines = head.split('\r\n');
    const m = /^HTTP\/1\.[01] (\d{3})(?: (.*))?$/.exec(lines[0]);
    if (!m) break;
    const status = Number(m[1]);
    const headers = {};
    for (const l of lines.slice(1)) {
      const i = l.indexOf(':');
      if (i < 0) continue;
      const k = l.slice(0, i).trim().toLowerCase();
      const v = l.slice(i + 1).trim();
      headers[k] = k in headers ? `${headers[k]}, ${v}` : v;
    }
    let p = end + 4;
    let body = Buffer.alloc(0);
    let complete = true;
    if (status < 200 || status === 204 || status === 304) {
      // no body
    } else if (/chunked/i.test(headers['transfer-encoding'] || '')) {
      const parts = [];
      complete = false;
      for (;;) {
        const le = buf.indexOf('\r\n', p, 'latin1');
        if (le < 0) break;
        const size = parseInt(buf.subarray(p, le).toString('latin1').split(';')[0], 16);
        if (Number.isNaN(size)) break;
        if (size === 0) {
          const te = buf.indexOf('\r\n\r\n', le, 'latin1');
          const e2 = buf.indexOf('\r\n', le + 2, 'latin1');
          // zero chunk followed directly by CRLF, or by trailers then CRLFCRLF
          if (e2 === le + 2) p = le + 4;
          else if (te >= 0) p = te + 4;
          else break;
          complete = true;
          break;
        }
        if (le + 2 + size + 2 > buf.length) break;
        parts.push(buf.subarray(le + 2, le + 2 + size));
        p = le + 2 + size + 2;
      }
      body = Buffer.concat(parts);
    } else if (headers['content-length'] !== undefined) {
      const n = Number(headers['content-length']);
      if (p + n > buf.length) {
        complete = false;
        body = buf.subarray(p);
        p = buf.length;
      } else {
        body = buf.subarray(p, p + n);
        p += n;
      }
    } else {
      body = buf.subarray(p);
      p = buf.length;
      complete = closed;
    }
    out.push({ status, reason: m[2] || '', headers, rawHeaders: head, body: body.toString('utf8'), complete });
    if (!complete) break;
    pos = p;
  }
  return out;
}

/** A raw TCP connection that records everything it receives. */
export class RawConn {
  constructor(sock) {
    this.sock = sock;
    this.chunks = [];
    this.length = 0;
    this.closed = false;
    this.closedAt = 0;
    this.error = null;
    this.openedAt = Date.now();
    this.waiters = new Set();
    sock.on('data', (d) => {
      this.chunks.push(d);
      this.length += d.length;
      this.notify();
    });
    sock.on('error', (e) => {
      this.error = e;
    });
    sock.on('close', () => {
      this.closed = true;
      this.closedAt = Date.now();
      this.notify();
    });
    sock.on('end', () => {
      // the peer half-closed; we finish our side too
      this.ended = true;
      this.notify();
    });
  }
  notify() {
    for (const w of [...this.waiters]) w();
  }
  buffer() {
    if (this.chunks.length > 1) this.chunks = [Buffer.concat(this.chunks)];
    return this.chunks[0] || Buffer.alloc(0);
  }
  text() {
    return this.buffer().toString('utf8');
  }
  responses() {
    return parseResponses(this.buffer(), this.closed || this.ended);
  }
  /** Writes bytes (string as latin1 if `latin1`, else utf8); ignores EPIPE. */
  write(bytes) {
    if (this.closed || this.sock.destroyed) return Promise.resolve(false);
    return new Promise((resolve) => {
      this.sock.write(typeof bytes === 'string' ? Buffer.from(bytes, 'utf8') : bytes, (err) => resolve(!err));
    });
  }
  /** Resolves true when pred(this) holds, false on close or timeout. */
  waitFor(pred, ms) {
    const poll = () => (pred(this) ? { value: true } : this.closed ? { value: false } : undefined);
    return waitOn(this.waiters, poll, ms, () => ({ value: Boolean(pred(this)) }));
  }
  /** Resolves true when the peer closed (or half-closed) within `ms`. */
  waitClose(ms) {
    return this.waitFor((c) => c.closed || c.ended, ms);
  }
  /** Waits for `n` complete final (non-1xx) responses; returns them (possibly fewer on timeout). */
  async waitResponses(n, ms = T(5000)) {
    const finals = () => this.responses().filter((r) => r.complete && r.status >= 200);
    await this.waitFor(() => finals().length >= n, ms);
    return finals();
  }
  destroy() {
    this.sock.destroy();
  }
}

/** Opens a raw TCP connection to 127.0.0.1:port. */
export function rawConnect(port) {
  return new Promise((resolve, reject) => {
    const sock = net.connect({ port, host: '127.0.0.1' });
    sock.setNoDelay(true);
    sock.once('connect', () => resolve(new RawConn(sock)));
    sock.once('error', reject);
  });
}

/**
 * Writes raw bytes (a string, a Buffer, or an array of them written separately)
 * and returns the raw response text. Waits until `responses` complete responses
 * (default 1) arrived, the server closed, or `timeout` ms passed.
 */
export async function rawRequest(port, bytes, { responses = 1, timeout = T(5000) } = {}) {
  const c = await rawConnect(port);
  try {
    for (const b of Array.isArray(bytes) ? bytes : [bytes]) await c.write(b);
    await c.waitFor(
      (x) => x.responses().filter((r) => r.complete && r.status >= 200).length >= responses,
      timeout,
    );
    return c.text();
  } finally {
    c.destroy();
  }
}

/** Like rawRequest but returns the parsed final responses and whether the server closed. */
export async function rawExchange(port, bytes, { responses = 1, timeout = T(5000) } = {}) {
  const c = await rawConnect(port);
  try {
    for (const b of Array.isArray(bytes) ? bytes : [bytes]) await c.write(b);
    const rs = await c.waitResponses(responses, timeout);
    return { responses: rs, text: c.text(), closed: c.closed || c.ended, conn: c };
  } finally {
    c.destroy();
  }
}

/** Makes a JSON-error check from a parsed raw response. */
export function rawJsonError(resp, status, code) {
  assert.ok(resp, `no response (expected ${status})`);
  return assertJsonError(
    {
      status: resp.status,
      headers: resp.headers,
      text: resp.body,
      json: safeJson(resp.body),
    },
    status,
    code,
  );
}
