// Helpers shared by bench/tls/cost.mjs and bench/h2/cost.mjs: a test CA and
// certificate, a server's RSS and CPU from /proc, starting flowcast or
// nginx + Nchan (bench/nchan/start), an HTTP/1.1 (or HTTPS) SSE subscriber,
// publishing, one measured row, and the table of results.
import { spawn, spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import tls from 'node:tls';
import http from 'node:http';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const BIN = process.env.FLOWCAST_BIN || path.join(ROOT, 'build/flowcast');
const NCHAN_DIR = path.join(ROOT, 'bench/nchan');
export const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

/** What each server's SSE subscription looks like: the path, and the text its first chunk carries. */
export const FLOWCAST_SSE = { path: '/api/v1/channels/bench/sse?replay=0', ready: 'retry:' };
// Nchan's EventSource answers 403 without `Accept: text/event-stream` and opens with ": hi".
export const NCHAN_SSE = { path: '/sub/bench', ready: ': hi' };

export function openssl(args, cwd) {
  const r = spawnSync('openssl', args, { cwd, encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`openssl ${args.join(' ')}: ${r.stderr}`);
}

export function makeCert(dir) {
  openssl(['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-keyout', 'ca.key',
    '-out', 'ca.pem', '-days', '1', '-subj', '/CN=bench CA'], dir);
  openssl(['req', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-keyout', 'srv.key', '-out',
    'srv.csr', '-subj', '/CN=localhost'], dir);
  fs.writeFileSync(path.join(dir, 'ext'), 'subjectAltName=DNS:localhost,IP:127.0.0.1\n');
  openssl(['x509', '-req', '-in', 'srv.csr', '-CA', 'ca.pem', '-CAkey', 'ca.key', '-CAcreateserial', '-days', '1',
    '-out', 'srv.pem', '-extfile', 'ext'], dir);
}

export const pageSize = 4096;
export const hz = 100;
/** Resident memory (VmRSS) in bytes, summed over the pids. */
export function rssBytes(pids) {
  let t = 0;
  for (const pid of [pids].flat()) t += Number(fs.readFileSync(`/proc/${pid}/statm`, 'utf8').split(' ')[1]) * pageSize;
  return t;
}
/** utime + stime in seconds, summed over the pids. */
export function cpuSeconds(pids) {
  let t = 0;
  for (const pid of [pids].flat()) {
    const s = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
    const f = s.slice(s.lastIndexOf(')') + 2).split(' ');
    t += (Number(f[11]) + Number(f[12])) / hz;
  }
  return t;
}

// Servers that are up, stopped synchronously if the script ends early (an
// error, Ctrl-C): nginx runs as a daemon and would outlive it.
const live = new Set();
process.on('exit', () => {
  for (const s of live) s.stopSync();
});
process.on('SIGINT', () => process.exit(130));
process.on('SIGTERM', () => process.exit(143));

function canConnect(port) {
  return new Promise((resolve) => {
    const s = net.connect(port, '127.0.0.1', () => {
      s.destroy();
      resolve(true);
    });
    s.on('error', () => resolve(false));
  });
}

/** A port in [lo, lo + span) that nothing listens on (below the ephemeral range when lo + span <= 32768). */
export async function freePort(lo, span) {
  for (let i = 0; i < 50; i++) {
    const p = lo + Math.floor(Math.random() * span);
    if (!(await canConnect(p))) return p;
  }
  throw new Error(`no free port in ${lo}-${lo + span - 1}`);
}

/**
 * Starts flowcast (`--threads 2 --storage memory`) with `extra` options on a
 * free port. Resolves to the server handle measure() takes: the port that
 * subscribers and publishes use, the pids to read, publish(i) (over TLS
 * when useTls, on its own connection) and stop().
 */
export async function startFlowcast(extra, { useTls = false, ca } = {}) {
  const port = await freePort(20000, 10000);
  const data = fs.mkdtempSync(path.join(os.tmpdir(), 'fc-tlsbench-'));
  const p = spawn(BIN, ['serve', '--listen', `127.0.0.1:${port}`, '--data', data, '--open', '--storage', 'memory',
    '--threads', '2', '--max-connections-per-ip', '0', '--log-level', 'warn', '--keepalive', '600', ...extra],
  { stdio: ['ignore', 'ignore', 'inherit'] });
  const exited = new Promise((r) => p.once('exit', r));
  for (let i = 0; i < 100 && !(await canConnect(port)); i++) await sleep(50);
  const srv = {
    port,
    pids: [p.pid],
    publish: (i) => (useTls ? publishTls(port, ca, FLOWCAST_EVENTS, i) : publish(port, FLOWCAST_EVENTS, i)),
    stopSync() {
      p.kill('SIGKILL');
      fs.rmSync(data, { recursive: true, force: true });
    },
    async stop() {
      live.delete(srv);
      p.kill('SIGTERM');
      await exited;
      fs.rmSync(data, { recursive: true, force: true });
    },
  };
  live.add(srv);
  return srv;
}

/**
 * Starts nginx + Nchan with bench/nchan/start (2 workers): HTTP/1.1 on a
 * plain port, and with h2 also a listener on an HTTP/2 port, over nginx's
 * own TLS (ALPN h2 or http/1.1) when certDir holds srv.pem and srv.key, else
 * h2c with prior knowledge; http2_max_concurrent_streams is streams. The
 * handle's port is the HTTP/2 port if any, else the plain one; pids are the
 * master and its workers; publish(i) is POST /pub?id=bench on the plain port.
 */
export async function startNchan({ h2 = false, certDir, streams = 128 } = {}) {
  for (let attempt = 0; ; attempt++) {
    const env = { ...process.env };
    if (h2) {
      env.NCHAN_H2_PORT = String(await freePort(30000, 2000));
      env.NCHAN_H2_STREAMS = String(streams);
      if (certDir) {
        env.NCHAN_TLS_CERT = path.join(certDir, 'srv.pem');
        env.NCHAN_TLS_KEY = path.join(certDir, 'srv.key');
      }
    }
    const r = spawnSync(path.join(NCHAN_DIR, 'start'), [], { env, encoding: 'utf8', timeout: 30000 });
    if (r.status !== 0) {
      // start picks its plain port at random: a clash with the HTTP/2 port is retried.
      if (attempt < 2) continue;
      throw new Error(`bench/nchan/start failed: ${r.stderr}`);
    }
    const v = Object.fromEntries(r.stdout.trim().split('\n').map((l) => l.split('=')));
    const plain = Number(v.NCHAN_PORT);
    const srv = {
      port: h2 ? Number(v.NCHAN_H2_PORT) : plain,
      pids: v.NCHAN_PIDS.split(',').map(Number),
      publish: (i) => publish(plain, NCHAN_PUB, i),
      stopSync: () => spawnSync(path.join(NCHAN_DIR, 'stop'), [v.NCHAN_PREFIX], { stdio: 'inherit', timeout: 20000 }),
      async stop() {
        live.delete(srv);
        await new Promise((resolve) =>
          spawn(path.join(NCHAN_DIR, 'stop'), [v.NCHAN_PREFIX], { stdio: 'inherit' }).once('exit', resolve),
        );
      },
    };
    live.add(srv);
    return srv;
  }
}

/**
 * Counts delivered events in one SSE stream: each is one "\ndata: " (flowcast
 * and Nchan both write `id: ...\ndata: ...\n\n`). Call it with each chunk
 * read; it keeps the last 6 bytes, as a read may end inside the pattern,
 * shorter than the 7-byte pattern so that no match is counted twice.
 */
export function dataCounter() {
  let tail = '';
  return (d) => {
    const t = tail + d;
    tail = t.slice(-6);
    return (t.match(/\ndata: /g) || []).length;
  };
}

/**
 * Opens n raw HTTP/1.1 (or HTTPS, ALPN http/1.1) SSE subscriptions, one
 * connection each, to sse.path; resolves once each has sse.ready or after
 * 60 s. connected() is how many got there.
 */
export async function subscribe(port, useTls, ca, n, sse = FLOWCAST_SSE) {
  const subs = [];
  const req = `GET ${sse.path} HTTP/1.1\r\nHost: localhost\r\nAccept: text/event-stream\r\n\r\n`;
  let delivered = 0;
  let ready = 0;
  for (let i = 0; i < n; i++) {
    const s = await new Promise((resolve) => {
      const sock = useTls
        ? tls.connect({ port, host: '127.0.0.1', servername: 'localhost', ca, ALPNProtocols: ['http/1.1'] }, () =>
            resolve(sock),
          )
        : net.connect(port, '127.0.0.1', () => resolve(sock));
      sock.on('error', () => resolve(null));
    });
    if (!s) continue;
    s.setEncoding('utf8');
    const count = dataCounter();
    let seen = false;
    let head = '';
    s.on('data', (d) => {
      if (!seen) {
        head += d;
        if (head.includes(sse.ready)) {
          seen = true;
          ready++;
        }
      }
      delivered += count(d);
    });
    s.write(req);
    subs.push({ s });
  }
  const deadline = Date.now() + 60000;
  while (ready < n && Date.now() < deadline) await sleep(20);
  return { subs, delivered: () => delivered, connected: () => ready };
}

const FLOWCAST_EVENTS = '/api/v1/channels/bench/events';
const NCHAN_PUB = '/pub?id=bench';
const body = (i) => JSON.stringify({ i, pad: 'x'.repeat(100) });

/** POSTs event i (about 115 bytes of JSON) to path on a plain HTTP port. */
export function publish(port, pathname, i) {
  return new Promise((resolve, reject) => {
    const r = http.request({ port, host: '127.0.0.1', method: 'POST', path: pathname,
      headers: { 'content-type': 'application/json' } }, (res) => {
      res.resume();
      res.on('end', resolve);
    });
    r.on('error', reject);
    r.end(body(i));
  });
}

/** The same over TLS on its own connection, for a port that speaks only TLS. */
export function publishTls(port, ca, pathname, i) {
  return new Promise((resolve, reject) => {
    const b = body(i);
    const s = tls.connect({ port, host: '127.0.0.1', servername: 'localhost', ca }, () => {
      s.write(`POST ${pathname} HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n` +
        `Content-Length: ${b.length}\r\nConnection: close\r\n\r\n${b}`);
    });
    s.on('data', () => {});
    s.on('end', () => {
      s.destroy();
      resolve();
    });
    s.on('error', reject);
  });
}

/**
 * One row: start() brings a server up (startFlowcast, startNchan or the
 * like: a handle with port, pids, publish(i) and stop()); open(server) opens
 * n subscribers ({ subs, delivered(), connected() }). Measures the RSS
 * summed over the server's pids before and 1 s after the subscribers are in,
 * then publishes `events` events one at a time and takes the pids' CPU
 * (utime + stime) until every subscriber has every event or 120 s passed.
 * The row is complete only if all n connected and all n * events arrived.
 */
export async function measure(label, { start, open, n, events, server = 'flowcast', transport = label, round = 1 }) {
  const srv = await start();
  try {
    await sleep(300);
    const rss0 = rssBytes(srv.pids);
    const { subs, delivered, connected } = await open(srv);
    await sleep(1000);
    const rss1 = rssBytes(srv.pids);
    const conn = connected();
    const cpu0 = cpuSeconds(srv.pids);
    for (let i = 0; i < events; i++) await srv.publish(i);
    const want = n * events;
    const deadline = Date.now() + 120000;
    while (delivered() < want && Date.now() < deadline) await sleep(50);
    const cpu1 = cpuSeconds(srv.pids);
    const got = delivered();
    for (const x of subs) x.s.destroy();
    return {
      label,
      server,
      transport,
      round,
      rssPerSub: (rss1 - rss0) / Math.max(conn, 1),
      cpuPerDeliveryUs: got ? ((cpu1 - cpu0) * 1e6) / got : NaN,
      connected: conn,
      n,
      delivered: got,
      want,
      complete: conn === n && got === want,
    };
  } finally {
    await srv.stop();
  }
}

/** The rows as a markdown table; an incomplete row says what is missing. */
export function printRows(rows, n, events) {
  console.log(`subscribers=${n} events=${events} payload=~115 B`);
  console.log('| transport | RSS per idle subscriber (B) | server CPU per delivery (µs) | subscribers | delivered |');
  console.log('|---|---|---|---|---|');
  for (const r of rows) {
    const mark = r.complete ? '' : ' **INCOMPLETE**';
    console.log(`| ${r.label}${mark} | ${Math.round(r.rssPerSub)} | ${r.cpuPerDeliveryUs.toFixed(2)} | ` +
      `${r.connected}/${r.n} | ${r.delivered}/${r.want} |`);
  }
}
