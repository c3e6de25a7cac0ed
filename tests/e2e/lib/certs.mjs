// A throwaway CA and a localhost certificate it signs, made with the openssl
// CLI (as tls.test.mjs does), for the HTTP/2 and browser tests.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { T } from './server.mjs';

function openssl(args, dir) {
  const r = spawnSync('openssl', args, { cwd: dir, encoding: 'utf8', timeout: T(20000) });
  assert.equal(r.status, 0, `openssl ${args.join(' ')}: ${r.stderr}`);
  return r.stdout;
}

/** Makes ca.pem/ca.key and server.pem/server.key (localhost, 127.0.0.1) in `dir`. */
export function makeCerts(dir) {
  openssl(['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-keyout', 'ca.key',
    '-out', 'ca.pem', '-days', '2', '-subj', '/CN=flowcast h2 test CA'], dir);
  openssl(['genpkey', '-algorithm', 'EC', '-pkeyopt', 'ec_paramgen_curve:P-256', '-out', 'server.key'], dir);
  openssl(['req', '-new', '-key', 'server.key', '-out', 'server.csr', '-subj', '/CN=localhost'], dir);
  fs.writeFileSync(path.join(dir, 'server.ext'), 'subjectAltName=DNS:localhost,IP:127.0.0.1\n');
  openssl(['x509', '-req', '-in', 'server.csr', '-CA', 'ca.pem', '-CAkey', 'ca.key', '-CAcreateserial', '-days', '2',
    '-out', 'server.pem', '-extfile', 'server.ext'], dir);
  return { cert: path.join(dir, 'server.pem'), key: path.join(dir, 'server.key'), ca: path.join(dir, 'ca.pem') };
}

/** The base64 SHA-256 of the certificate's public key (Chromium's --ignore-certificate-errors-spki-list). */
export function spkiHash(certFile) {
  const dir = path.dirname(certFile);
  const pub = openssl(['x509', '-in', certFile, '-pubkey', '-noout'], dir);
  const der = spawnSync('openssl', ['pkey', '-pubin', '-outform', 'der'], { input: pub, timeout: T(20000) });
  const hash = spawnSync('openssl', ['dgst', '-sha256', '-binary'], { input: der.stdout, timeout: T(20000) });
  return hash.stdout.toString('base64');
}
