// HTTP/2 against HTTP/1.1 and HTTPS/1.1, side by side in one run: RSS per
// idle SSE subscriber and server CPU per delivered event in a fan-out. The
// HTTP/1.1 rows use one connection per subscriber (raw sockets); the HTTP/2
// rows put PER_CONN streams on each connection (node's http2 client), over
// TLS (ALPN h2) and as h2c.
// Usage: node bench/h2/cost.mjs [SUBSCRIBERS=2000] [EVENTS=200] [PER_CONN=1000]
// Env: FLOWCAST_BIN (default build/flowcast).
import fs from 'node:fs';
import http2 from 'node:http2';
import os from 'node:os';
import path from 'node:path';
import { makeCert, measure, printRows, sleep, subscribe } from '../tls/common.mjs';

const N = Number(process.argv[2] || 2000);
const EVENTS = Number(process.argv[3] || 200);
const PER_CONN = Number(process.argv[4] || 1000);

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

const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'fc-h2bench-ca-'));
makeCert(dir);
const kinds = [
  ['HTTP/1.1', false, false],
  ['HTTPS/1.1', true, false],
  [`HTTP/2 over TLS, ${PER_CONN} streams/conn`, true, true],
  [`h2c, ${PER_CONN} streams/conn`, false, true],
];
const rows = [];
for (let round = 0; round < 2; round++) {
  for (const [label, useTls, h2] of kinds) {
    const extra = useTls ? ['--tls-cert', path.join(dir, 'srv.pem'), '--tls-key', path.join(dir, 'srv.key')] : [];
    if (h2 && !useTls) extra.push('--h2c');
    extra.push('--h2-max-streams', String(PER_CONN));
    const open = (port, ca) => (h2 ? subscribeH2(port, useTls, ca, 'bench') : subscribe(port, useTls, ca, 'bench', N));
    rows.push(await measure(label, { extra, useTls, open, n: N, events: EVENTS, dir }));
  }
}
fs.rmSync(dir, { recursive: true, force: true });
printRows(rows, N, EVENTS);
