// HTTP/2 against HTTP/1.1 and HTTPS/1.1, side by side in one run: RSS per
// idle SSE subscriber and server CPU per delivered event in a fan-out. The
// HTTP/1.1 rows use one connection per subscriber (raw sockets); the HTTP/2
// rows put PER_CONN streams on each connection (node's http2 client), over
// TLS (ALPN h2) and as h2c.
// Usage: node bench/h2/cost.mjs [SUBSCRIBERS=2000] [EVENTS=200] [PER_CONN=1000]
// Env: FLOWCAST_BIN (default build/flowcast).
import { spawn, spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import fs from 'node:fs';
import http from 'node:http';
import http2 from 'node:http2';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import tls from 'node:tls';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const BIN = process.env.FLOWCAST_BIN || path.join(ROOT, 'build/flowcast');
const N = Number(process.argv[2] || 2000);
const EVENTS = Number(process.argv[3] || 200);
const PER_CONN = Number(process.argv[4] || 1000);
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

function openssl(args, cwd) {
  const r = spawnSync('openssl', args, { cwd, encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`openssl ${args.join(' ')}: ${r.stderr}`);
}

function makeCert(dir) {
  openssl(['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-keyout', 'ca.key',
    '-out', 'ca.pem', '-days', '1', '-subj', '/CN=bench CA'], dir);
  openssl(['req', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-keyout', 'srv.key', '-out',
    'srv.csr', '-subj', '/CN=localhost'], dir);
  fs.writeFileSync(path.join(dir, 'ext'), 'subjectAltName=DNS:localhost,IP:127.0.0.1\n');
  openssl(['x509', '-req', '-in', 'srv.csr', '-CA', 'ca.pem', '-CAkey', 'ca.key', '-CAcreateserial', '-days', '1',
    '-out', 'srv.pem', '-extfile', 'ext'], dir);
}

const pageSize = 4096;
const hz = 100;
function rssBytes(pid) {
  const f = fs.readFileSync(`/proc/${pid}/statm`, 'utf8').split(' ');
  return Number(f[1]) * pageSize;
}
function cpuSeconds(pid) {
  const s = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
  const f = s.slice(s.lastIndexOf(')') + 2).split(' ');
  return (Number(f[11]) + Number(f[12])) / hz;
}

async function startServer(port, extra) {
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

/** Opens N raw SSE subscriptions; resolves once each has its `retry:` line. */
async function subscribe(port, useTls, ca, channel) {
  const subs = [];
  const req = `GET /api/v1/channels/${channel}/sse?replay=0 HTTP/1.1\r\nHost: localhost\r\n\r\n`;
  let delivered = 0;
  for (let i = 0; i < N; i++) {
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

function publish(port, channel, i) {
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

/** N SSE streams, PER_CONN per HTTP/2 connection. */
async function subscribeH2(port, useTls, ca, channel) {
  const sessions = [];
  let delivered = 0;
  let ready = 0;
  for (let i = 0; i < N; i++) {
    if (i % PER_CONN === 0) {
      const url = useTls ? `https://localhost:${port}` : `http://127.0.0.1:${port}`;
      const s = http2.connect(url, useTls ? { ca } : {});
      s.on('error', () => {});
      sessions.push(s);
    }
    const r = sessions[sessions.length - 1].request({ ':path': `/api/v1/channels/${channel}/sse?replay=0&i=${i}` });
    r.setEncoding('utf8');
    let seen = false;
    let tail = ''; // a DATA frame may end inside "\ndata: "
    r.on('data', (d) => {
      const t = tail + d;
      if (!seen && t.includes('retry:')) {
        seen = true;
        ready++;
      }
      delivered += (t.match(/\ndata: /g) || []).length;
      tail = t.slice(-6); // shorter than the 7-byte pattern: no match is counted twice
    });
    r.on('error', () => {});
    if (i % 100 === 99) await sleep(5);
  }
  while (ready < N) await sleep(20);
  return { subs: sessions.map((s) => ({ s })), delivered: () => delivered };
}

function publishTls(port, ca, channel, i) {
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

async function measure(label, useTls, h2, dir) {
  const port = 20000 + Math.floor(Math.random() * 20000);
  const extra = useTls ? ['--tls-cert', path.join(dir, 'srv.pem'), '--tls-key', path.join(dir, 'srv.key')] : [];
  if (h2 && !useTls) extra.push('--h2c');
  extra.push('--h2-max-streams', String(PER_CONN));
  const { p, data } = await startServer(port, extra);
  const ca = fs.readFileSync(path.join(dir, 'ca.pem'));
  await sleep(300);
  const rss0 = rssBytes(p.pid);
  const { subs, delivered } = h2 ? await subscribeH2(port, useTls, ca, 'bench') : await subscribe(port, useTls, ca, 'bench');
  await sleep(1000);
  const rss1 = rssBytes(p.pid);
  const cpu0 = cpuSeconds(p.pid);
  for (let i = 0; i < EVENTS; i++) {
    if (useTls) await publishTls(port, ca, 'bench', i);
    else await publish(port, 'bench', i);
  }
  const want = N * EVENTS;
  const deadline = Date.now() + 120000;
  while (delivered() < want && Date.now() < deadline) await sleep(50);
  const cpu1 = cpuSeconds(p.pid);
  for (const x of subs) x.s.destroy();
  p.kill('SIGTERM');
  await new Promise((r) => p.once('exit', r));
  fs.rmSync(data, { recursive: true, force: true });
  return {
    label,
    rssPerSub: (rss1 - rss0) / N,
    cpuPerDeliveryUs: ((cpu1 - cpu0) * 1e6) / delivered(),
    delivered: delivered(),
    want,
  };
}

const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'fc-h2bench-ca-'));
makeCert(dir);
const kinds = [
  ['HTTP/1.1', false, false],
  ['HTTPS/1.1', true, false],
  [`HTTP/2 over TLS, ${PER_CONN} streams/conn`, true, true],
  [`h2c, ${PER_CONN} streams/conn`, false, true],
];
const rows = [];
for (let round = 0; round < 2; round++) for (const [label, useTls, h2] of kinds) rows.push(await measure(label, useTls, h2, dir));
fs.rmSync(dir, { recursive: true, force: true });
console.log(`subscribers=${N} events=${EVENTS} payload=~115 B`);
console.log('| transport | RSS per idle subscriber (B) | server CPU per delivery (µs) | delivered |');
console.log('|---|---|---|---|');
for (const r of rows)
  console.log(`| ${r.label} | ${Math.round(r.rssPerSub)} | ${r.cpuPerDeliveryUs.toFixed(2)} | ${r.delivered}/${r.want} |`);
