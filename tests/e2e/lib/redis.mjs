// A real redis-server for the cluster end-to-end tests: started on a free
// port with its own temp dir and an AOF fsynced on every write (so a SIGKILL
// loses nothing that was answered), killed and restarted on the same port and
// dir (the AOF reloads), and a tiny RESP client (one command per fresh socket)
// to look at or change what is stored. No npm redis client on purpose.
//
// Environment:
//   REDIS_SERVER  the redis-server binary (default /usr/bin/redis-server, Debian's)
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { freePort, sleep, T, waitExit } from './server.mjs';

export const REDIS_BIN = process.env.REDIS_SERVER || '/usr/bin/redis-server';

// Every redis-server still running when this process exits is killed with it,
// so a crashed test run leaves none behind.
const live = new Set();
process.on('exit', () => {
  for (const p of live) {
    try {
      p.kill('SIGKILL');
    } catch {
      // already gone
    }
  }
});

// ---------------------------------------------------------------------------
// RESP

/** Encodes one command (an array of strings/numbers/Buffers) as a RESP array of bulk strings. */
export function encodeCommand(args) {
  const parts = [Buffer.from(`*${args.length}\r\n`)];
  for (const a of args) {
    const b = Buffer.isBuffer(a) ? a : Buffer.from(String(a), 'utf8');
    parts.push(Buffer.from(`$${b.length}\r\n`), b, Buffer.from('\r\n'));
  }
  return Buffer.concat(parts);
}

/** A Redis error reply (`-ERR ...`), as a value. */
export class RedisError extends Error {
  constructor(message) {
    super(message);
    this.name = 'RedisError';
    this.code = message.split(' ')[0];
  }
}

/**
 * Parses one RESP2/RESP3 reply from buf at pos. Returns {value, end} or null
 * when buf does not hold the whole reply yet. Simple strings and bulk strings
 * become strings (utf8), integers numbers, nulls null, arrays arrays, error
 * replies RedisError values (not thrown).
 */
export function parseReply(buf, pos = 0) {
  if (pos >= buf.length) return null;
  const le = buf.indexOf('\r\n', pos, 'latin1');
  if (le < 0) return null;
  const type = String.fromCharCode(buf[pos]);
  const line = buf.subarray(pos + 1, le).toString('utf8');
  const next = le + 2;
  switch (type) {
    case '+':
      return { value: line, end: next };
    case '-':
      return { value: new RedisError(line), end: next };
    case ':':
      return { value: Number(line), end: next };
    case '_':
      return { value: null, end: next };
    case '#':
      return { value: line === 't', end: next };
    case ',':
      return { value: Number(line), end: next };
    case '$':
    case '=':
    case '!': {
      const n = Number(line);
      if (n < 0) return { value: null, end: next };
      if (next + n + 2 > buf.length) return null;
      const s = buf.subarray(next, next + n).toString('utf8');
      return { value: type === '!' ? new RedisError(s) : s, end: next + n + 2 };
    }
    case '*':
    case '~':
    case '>':
    case '%': {
      let n = Number(line);
      if (n < 0) return { value: null, end: next };
      if (type === '%') n *= 2;
      const out = [];
      let p = next;
      for (let i = 0; i < n; i++) {
        const r = parseReply(buf, p);
        if (!r) return null;
        out.push(r.value);
        p = r.end;
      }
      return { value: out, end: p };
    }
    default:
      throw new Error(`not a RESP reply: ${JSON.stringify(buf.subarray(pos, pos + 80).toString('latin1'))}`);
  }
}

/**
 * Sends `commands` (an array of argument arrays) pipelined on one fresh socket
 * to 127.0.0.1:port and resolves with their replies (error replies as
 * RedisError values). Rejects when the connection fails, closes early, or
 * `ms` passes.
 */
export function rawCommands(port, commands, ms = T(5000)) {
  return new Promise((resolve, reject) => {
    const sock = net.connect({ port, host: '127.0.0.1' });
    let buf = Buffer.alloc(0);
    let done = false;
    const finish = (err, value) => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      sock.destroy();
      if (err) reject(err);
      else resolve(value);
    };
    const timer = setTimeout(() => finish(new Error(`redis on port ${port}: no answer within ${ms} ms`)), ms);
    sock.on('connect', () => sock.write(Buffer.concat(commands.map(encodeCommand))));
    sock.on('data', (d) => {
      buf = Buffer.concat([buf, d]);
      const replies = [];
      let p = 0;
      try {
        for (let i = 0; i < commands.length; i++) {
          const r = parseReply(buf, p);
          if (!r) return; // wait for more bytes
          replies.push(r.value);
          p = r.end;
        }
      } catch (e) {
        finish(e);
        return;
      }
      finish(null, replies);
    });
    sock.on('error', (e) => finish(e));
    sock.on('close', () => finish(new Error(`redis on port ${port} closed the connection before answering`)));
  });
}

// ---------------------------------------------------------------------------
// The server


/**
 * Starts a redis-server on a free port (or opts.port), in a fresh temp dir,
 * AOF on with appendfsync always, no RDB snapshots, not daemonized.
 * opts: password (adds --requirepass), port, extraArgs (more redis-server argv).
 * Returns {
 *   port, url ('redis://127.0.0.1:P' or 'redis://:PASS@127.0.0.1:P'), password, dir, proc,
 *   alive(), logText(),
 *   kill()     SIGKILL, resolves when it exited (nothing answered is lost: appendfsync always),
 *   restart()  kill if still running, then start again on the same port and dir (the AOF reloads),
 *   stop()     idempotent: kill, then remove the temp dir,
 *   command(...args)  one command over a fresh socket (AUTH first with a password);
 *                     resolves the parsed reply, rejects with a RedisError for an error reply,
 * }.
 */
export async function startRedis(opts = {}) {
  if (!fs.existsSync(REDIS_BIN)) {
    throw new Error(`redis-server not found at ${REDIS_BIN} (apt-get install redis-server, or set REDIS_SERVER)`);
  }
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'flowcast-redis-'));
  const password = opts.password;
  const r = {
    port: 0,
    url: '',
    password,
    dir,
    proc: null,
    log: '',
    logText() {
      return r.log;
    },
    alive() {
      return Boolean(r.proc) && r.proc.exitCode === null && r.proc.signalCode === null;
    },
  };

  const argv = (port) => {
    const a = [
      '--port', String(port),
      '--bind', '127.0.0.1',
      '--dir', dir,
      '--save', '',
      '--appendonly', 'yes',
      '--appendfsync', 'always',
      '--daemonize', 'no',
    ];
    if (password !== undefined) a.push('--requirepass', password);
    if (opts.extraArgs) a.push(...opts.extraArgs);
    return a;
  };

  /** True once the server answers PING (+PONG, or -NOAUTH without a password); false while loading. */
  async function answers(port) {
    try {
      if (password !== undefined) {
        const [, pong] = await rawCommands(port, [['AUTH', password], ['PING']], 1000);
        return pong === 'PONG';
      }
      const [pong] = await rawCommands(port, [['PING']], 1000);
      return pong === 'PONG' || (pong instanceof RedisError && pong.code === 'NOAUTH');
    } catch {
      return false;
    }
  }

  async function launch(port) {
    const proc = spawn(REDIS_BIN, argv(port), { stdio: ['ignore', 'pipe', 'pipe'] });
    r.proc = proc;
    live.add(proc);
    proc.once('exit', () => live.delete(proc));
    proc.stdout.setEncoding('utf8');
    proc.stderr.setEncoding('utf8');
    let own = ''; // this launch's output
    const keep = (d) => {
      if (own.length < 16 * 1024) own += d;
      r.log += d;
      if (r.log.length > 64 * 1024) r.log = r.log.slice(-32 * 1024);
    };
    proc.stdout.on('data', keep);
    proc.stderr.on('data', keep);
    const spawnError = new Promise((resolve) => proc.once('error', resolve));
    const deadline = Date.now() + T(10000);
    while (Date.now() < deadline) {
      const err = await Promise.race([spawnError, sleep(30).then(() => null)]);
      if (err) throw new Error(`cannot spawn ${REDIS_BIN}: ${err.message}`);
      if (!r.alive()) {
        const e = new Error(`redis-server exited during start-up (code ${proc.exitCode}, signal ${proc.signalCode})\n${r.log.slice(-3000)}`);
        e.inUse = /address already in use/i.test(own);
        throw e;
      }
      if (await answers(port)) return;
    }
    proc.kill('SIGKILL');
    await waitExit(proc, 5000);
    throw new Error(`redis-server did not answer PING within ${T(10000)} ms\n${r.log.slice(-3000)}`);
  }

  r.kill = async () => {
    const proc = r.proc;
    if (!proc) return;
    if (r.alive()) proc.kill('SIGKILL');
    await waitExit(proc, T(5000));
  };

  r.restart = async () => {
    if (r.stopped) throw new Error('redis was stopped: it cannot restart');
    await r.kill();
    // The kernel may hold the port for a moment after the kill: a few tries.
    for (let attempt = 0; ; attempt++) {
      try {
        await launch(r.port);
        return;
      } catch (e) {
        if (!e.inUse || attempt >= 20) throw e;
        await sleep(100);
      }
    }
  };

  let stopping = null;
  r.stop = () => {
    if (stopping) return stopping;
    r.stopped = true;
    stopping = (async () => {
      try {
        await r.kill();
      } finally {
        fs.rmSync(dir, { recursive: true, force: true });
      }
    })();
    return stopping;
  };

  r.command = async (...args) => {
    const cmds = password !== undefined ? [['AUTH', password], args] : [args];
    const replies = await rawCommands(r.port, cmds);
    const reply = replies[replies.length - 1];
    if (replies.length === 2 && replies[0] instanceof RedisError) throw replies[0];
    if (reply instanceof RedisError) throw reply;
    return reply;
  };

  const fixed = opts.port !== undefined;
  for (let attempt = 0; ; attempt++) {
    const port = fixed ? opts.port : await freePort();
    r.port = port;
    try {
      await launch(port);
      break;
    } catch (e) {
      if (e.inUse && !fixed && attempt < 3) continue;
      fs.rmSync(dir, { recursive: true, force: true });
      throw e;
    }
  }
  r.url = password !== undefined
    ? `redis://:${encodeURIComponent(password)}@127.0.0.1:${r.port}`
    : `redis://127.0.0.1:${r.port}`;
  return r;
}
