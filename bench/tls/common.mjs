// Helpers shared by bench/tls/cost.mjs and bench/h2/cost.mjs: a test CA and
// certificate, a server's RSS and CPU from /proc, starting flowcast, an
// HTTP/1.1 (or HTTPS) SSE subscriber, a publish (plain or over TLS), and the
// table of results.
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
export const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

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
export function rssBytes(pid) {
  const f = fs.readFileSync(`/proc/${pid}/statm`, 'utf8').split(' ');
  return Number(f[1]) * pageSize;
}
export function cpuSeconds(pid) {
  const s = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
  const f = s.slice(s.lastIndexOf(')') + 2).split(' ');
  return (Number(f[11]) + Number(f[12])) / hz;
}

export async function startServer(port, extra) {
  const data = fs.mkdtempSync(path.join(os.tmpdir(), 'fc-tlsbench-'));
  const p = spawn(BIN, ['serve', '--listen', `127.0.0.1:${port}`, '--data', data, '--open', '--storage', 'memory',
    '--threads', '2', '--max-connections-per-ip', '0', '--log-level', 'warn', '--keepalive', '600', ...extra],
  { stdio: ['ignore', 'ignore', 'inherit'] });
  for (let i = 0; i < 100; i++) {
    const up = await new Promise((resolve) => {
      const s = net.connect(port, '127.0.0.1', () => {
        s.destroy();
        resolve(true);
      });
      s.on('error', () => resolve(false));
    });
    if (up) break;
    await sleep(50);
  }
  return { p, data };
}

/** Opens n raw SSE subscriptions; resolves once each has its `retry:` line. */
export async function subscribe(port, useTls, ca, channel, n) {
  const subs = [];
  const req = `GET /api/v1/channels/${channel}/sse?replay=0 HTTP/1.1\r\nHost: localhost\r\n\r\n`;
  let delivered = 0;
  for (let i = 0; i < n; i++) {
    const s = await new Promise((resolve, reject) => {
      const sock = useTls
        ? tls.connect({ port, host: '127.0.0.1', servername: 'localhost', ca, ALPNProtocols: ['http/1.1'] }, () =>
            resolve(sock),
          )
        : net.connect(port, '127.0.0.1', () => resolve(sock));
      sock.on('error', reject);
    });
    s.setEncoding('utf8');
    const sub = { s, ready: false };
    s.on('data', (d) => {
      if (!sub.ready && d.includes('retry:')) sub.ready = true;
      delivered += (d.match(/\ndata: /g) || []).length;
    });
    s.write(req);
    subs.push(sub);
  }
  while (subs.some((x) => !x.ready)) await sleep(20);
  return { subs, delivered: () => delivered };
}

export function publish(port, channel, i) {
  return new Promise((resolve, reject) => {
    const r = http.request({ port, host: '127.0.0.1', method: 'POST', path: `/api/v1/channels/${channel}/events`,
      headers: { 'content-type': 'application/json' } }, (res) => {
      res.resume();
      res.on('end', resolve);
    });
    r.on('error', reject);
    r.end(JSON.stringify({ i, pad: 'x'.repeat(100) }));
  });
}

/** A publish over TLS on its own connection, for a port that speaks only TLS. */
export function publishTls(port, ca, channel, i) {
  return new Promise((resolve, reject) => {
    const body = JSON.stringify({ i, pad: 'x'.repeat(100) });
    const s = tls.connect({ port, host: '127.0.0.1', servername: 'localhost', ca }, () => {
      s.write(`POST /api/v1/channels/${channel}/events HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n` +
        `Content-Length: ${body.length}\r\nConnection: close\r\n\r\n${body}`);
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
 * Starts a server with `extra` options, opens n subscribers with `open`, and
 * measures RSS per idle subscriber and server CPU per delivered event.
 */
export async function measure(label, { extra, useTls, open, n, events, dir }) {
  const port = 20000 + Math.floor(Math.random() * 12000); // below the ephemeral range (32768-)
  const { p, data } = await startServer(port, extra);
  const ca = fs.readFileSync(path.join(dir, 'ca.pem'));
  await sleep(300);
  const rss0 = rssBytes(p.pid);
  const { subs, delivered } = await open(port, ca);
  await sleep(1000);
  const rss1 = rssBytes(p.pid);
  const cpu0 = cpuSeconds(p.pid);
  // Events are published on the same port: through TLS when it is TLS.
  for (let i = 0; i < events; i++) {
    if (useTls) await publishTls(port, ca, 'bench', i);
    else await publish(port, 'bench', i);
  }
  const want = n * events;
  const deadline = Date.now() + 120000;
  while (delivered() < want && Date.now() < deadline) await sleep(50);
  const cpu1 = cpuSeconds(p.pid);
  for (const x of subs) x.s.destroy();
  p.kill('SIGTERM');
  await new Promise((r) => p.once('exit', r));
  fs.rmSync(data, { recursive: true, force: true });
  return {
    label,
    rssPerSub: (rss1 - rss0) / n,
    cpuPerDeliveryUs: ((cpu1 - cpu0) * 1e6) / delivered(),
    delivered: delivered(),
    want,
  };
}

export function printRows(rows, n, events) {
  console.log(`subscribers=${n} events=${events} payload=~115 B`);
  console.log('| transport | RSS per idle subscriber (B) | server CPU per delivery (µs) | delivered |');
  console.log('|---|---|---|---|');
  for (const r of rows)
    console.log(`| ${r.label} | ${Math.round(r.rssPerSub)} | ${r.cpuPerDeliveryUs.toFixed(2)} | ${r.delivered}/${r.want} |`);
}
