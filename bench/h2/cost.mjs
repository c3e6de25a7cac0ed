// HTTP/2 against HTTP/1.1 and HTTPS/1.1, side by side in one run, flowcast
// next to nginx + Nchan (the anchor, issue 18): RSS per idle SSE subscriber
// and server CPU per delivered event in a fan-out. The HTTP/1.1 and HTTPS/1.1
// rows use one connection per subscriber (raw sockets); the HTTP/2 rows put
// PER_CONN streams on each connection (node's http2 client), over TLS (ALPN
// h2) and as h2c (prior knowledge). Nchan runs from bench/nchan/start (2
// workers) behind nginx's own TLS and HTTP/2 (`listen ... ssl http2` or
// `listen ... http2`, http2_max_concurrent_streams PER_CONN); its HTTPS/1.1
// row is the same TLS port with ALPN http/1.1. For nginx, RSS and CPU are
// summed over the master and its workers.
//
// Publishing: flowcast's rows publish on the subscribers' port, so over TLS
// (a new TLS connection per event) on its TLS rows; Nchan's rows publish on
// its plain HTTP/1.1 port (POST /pub?id=bench), whatever the subscribers'
// transport. Either way the same ~115-byte JSON body, one event at a time.
//
// Usage: node bench/h2/cost.mjs [SUBSCRIBERS=2000] [EVENTS=200] [PER_CONN=1000]
// Env: FLOWCAST_BIN (default build/flowcast); ROUNDS (default 2); ROWS,
// comma-separated, default all, in this order: fc-h1, nchan-h1, fc-https1,
// nchan-https1, fc-h2, nchan-h2, fc-h2c, nchan-h2c. Needs nginx and
// libnginx-mod-nchan for the nchan rows, and the openssl CLI.
import fs from 'node:fs';
import http2 from 'node:http2';
import os from 'node:os';
import path from 'node:path';
import {
  FLOWCAST_SSE,
  NCHAN_SSE,
  dataCounter,
  makeCert,
  measure,
  sleep,
  startFlowcast,
  startNchan,
  subscribe,
} from '../tls/common.mjs';

const N = Number(process.argv[2] || 2000);
const EVENTS = Number(process.argv[3] || 200);
const PER_CONN = Number(process.argv[4] || 1000);
const ROUNDS = Number(process.env.ROUNDS || 2);

/**
 * N SSE streams to sse.path, PER_CONN per HTTP/2 connection; resolves once
 * each has sse.ready or after 60 s. connected() is how many got there.
 */
async function subscribeH2(port, useTls, ca, sse) {
  const sessions = [];
  let delivered = 0;
  let ready = 0;
  for (let i = 0; i < N; i++) {
    if (i % PER_CONN === 0) {
      const url = `${useTls ? 'https' : 'http'}://127.0.0.1:${port}`;
      const s = http2.connect(url, useTls ? { ca, servername: 'localhost' } : {});
      s.on('error', () => {});
      sessions.push(s);
    }
    const sep = sse.path.includes('?') ? '&' : '?';
    const headers = { ':path': `${sse.path}${sep}i=${i}`, accept: 'text/event-stream' };
    const r = sessions[sessions.length - 1].request(headers);
    r.setEncoding('utf8');
    const count = dataCounter();
    let head = '';
    r.on('data', (d) => {
      if (head !== null) {
        head += d;
        if (head.includes(sse.ready)) {
          head = null;
          ready++;
        }
      }
      delivered += count(d);
    });
    r.on('error', () => {});
    if (i % 100 === 99) await sleep(5);
  }
  const deadline = Date.now() + 60000;
  while (ready < N && Date.now() < deadline) await sleep(20);
  return { subs: sessions.map((s) => ({ s })), delivered: () => delivered, connected: () => ready };
}

const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'fc-h2bench-ca-'));
process.on('exit', () => fs.rmSync(dir, { recursive: true, force: true })); // also on errors and Ctrl-C
makeCert(dir);
const ca = fs.readFileSync(path.join(dir, 'ca.pem'));
const tlsArgs = ['--tls-cert', path.join(dir, 'srv.pem'), '--tls-key', path.join(dir, 'srv.key')];
const fcStart = (extra, useTls) => () =>
  startFlowcast([...extra, '--h2-max-streams', String(PER_CONN)], { useTls, ca });
const h2 = `HTTP/2 over TLS, ${PER_CONN} streams/conn`;
const h2c = `h2c, ${PER_CONN} streams/conn`;
// id -> [transport, server, start, open]
const ALL = {
  'fc-h1': ['HTTP/1.1', 'flowcast', fcStart([], false), (s) => subscribe(s.port, false, ca, N, FLOWCAST_SSE)],
  'nchan-h1': ['HTTP/1.1', 'nginx + Nchan', () => startNchan(), (s) => subscribe(s.port, false, ca, N, NCHAN_SSE)],
  'fc-https1': ['HTTPS/1.1', 'flowcast', fcStart(tlsArgs, true), (s) => subscribe(s.port, true, ca, N, FLOWCAST_SSE)],
  'nchan-https1': [
    'HTTPS/1.1',
    'nginx + Nchan',
    () => startNchan({ h2: true, certDir: dir, streams: PER_CONN }),
    (s) => subscribe(s.port, true, ca, N, NCHAN_SSE),
  ],
  'fc-h2': [h2, 'flowcast', fcStart(tlsArgs, true), (s) => subscribeH2(s.port, true, ca, FLOWCAST_SSE)],
  'nchan-h2': [
    h2,
    'nginx + Nchan',
    () => startNchan({ h2: true, certDir: dir, streams: PER_CONN }),
    (s) => subscribeH2(s.port, true, ca, NCHAN_SSE),
  ],
  'fc-h2c': [h2c, 'flowcast', fcStart(['--h2c'], false), (s) => subscribeH2(s.port, false, ca, FLOWCAST_SSE)],
  'nchan-h2c': [
    h2c,
    'nginx + Nchan',
    () => startNchan({ h2: true, streams: PER_CONN }),
    (s) => subscribeH2(s.port, false, ca, NCHAN_SSE),
  ],
};
const ids = process.env.ROWS ? process.env.ROWS.split(',') : Object.keys(ALL);
for (const id of ids) if (!ALL[id]) throw new Error(`unknown row ${id} (one of ${Object.keys(ALL).join(', ')})`);

const rows = [];
for (let round = 1; round <= ROUNDS; round++) {
  for (const id of ids) {
    const [transport, server, start, open] = ALL[id];
    const r = await measure(transport, { start, open, n: N, events: EVENTS, server, transport, round });
    console.error(`h2/cost: round ${round} ${id}: ${Math.round(r.rssPerSub)} B, ` +
      `${r.cpuPerDeliveryUs.toFixed(2)} µs, ${r.connected}/${r.n} subscribers, ${r.delivered}/${r.want} delivered`);
    rows.push(r);
  }
}

console.log(`subscribers=${N} events=${EVENTS} payload=~115 B per_conn=${PER_CONN} rounds=${ROUNDS}`);
console.log('publishing: flowcast on the subscribers\' port (over TLS, a new connection per event, on its TLS rows); ' +
  'Nchan on its plain HTTP/1.1 port (POST /pub?id=bench) on every row');
console.log('| round | transport | server | RSS per idle subscriber (B) | server CPU per delivery (µs) | ' +
  'subscribers | delivered |');
console.log('|---|---|---|---|---|---|---|');
for (const r of rows) {
  const mark = r.complete ? '' : ' **INCOMPLETE**';
  console.log(`| ${r.round} | ${r.transport} | ${r.server}${mark} | ${Math.round(r.rssPerSub)} | ` +
    `${r.cpuPerDeliveryUs.toFixed(2)} | ${r.connected}/${r.n} | ${r.delivered}/${r.want} |`);
}

// flowcast ÷ Nchan, per transport and round, from rows of the same run.
console.log('');
console.log('| round | transport | RSS per idle subscriber, flowcast ÷ Nchan | CPU per delivery, flowcast ÷ Nchan |');
console.log('|---|---|---|---|');
for (let round = 1; round <= ROUNDS; round++) {
  for (const t of [...new Set(rows.map((r) => r.transport))]) {
    const fc = rows.find((r) => r.round === round && r.transport === t && r.server === 'flowcast');
    const nc = rows.find((r) => r.round === round && r.transport === t && r.server !== 'flowcast');
    if (!fc || !nc) continue;
    const ok = fc.complete && nc.complete;
    const f = (a, b) => (ok ? `${(a / b).toFixed(2)}×` : 'n/a (incomplete row)');
    const cpu = f(fc.cpuPerDeliveryUs, nc.cpuPerDeliveryUs);
    console.log(`| ${round} | ${t} | ${f(fc.rssPerSub, nc.rssPerSub)} | ${cpu} |`);
  }
}
