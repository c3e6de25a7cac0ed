// What TLS costs the server, side by side with plain HTTP/1.1 in one run:
// RSS per idle SSE subscriber, and server CPU per delivered event in a fan-out.
// Usage: node bench/tls/cost.mjs [SUBSCRIBERS=2000] [EVENTS=200]
// Env: FLOWCAST_BIN (default build/flowcast). Makes its own CA and
// certificate (P-256) with the openssl CLI in a temporary directory.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { makeCert, measure, printRows, startFlowcast, subscribe } from './common.mjs';

const N = Number(process.argv[2] || 2000);
const EVENTS = Number(process.argv[3] || 200);

const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'fc-tlsbench-ca-'));
makeCert(dir);
const ca = fs.readFileSync(path.join(dir, 'ca.pem'));
const rows = [];
for (const [label, useTls] of [['HTTP/1.1', false], ['HTTPS/1.1', true], ['HTTP/1.1', false], ['HTTPS/1.1', true]]) {
  const extra = useTls ? ['--tls-cert', path.join(dir, 'srv.pem'), '--tls-key', path.join(dir, 'srv.key')] : [];
  // Events are published on the same port: through TLS when it is TLS.
  const start = () => startFlowcast(extra, { useTls, ca });
  const open = (srv) => subscribe(srv.port, useTls, ca, N);
  rows.push(await measure(label, { start, open, n: N, events: EVENTS }));
}
fs.rmSync(dir, { recursive: true, force: true });
printRows(rows, N, EVENTS);
