// HTTPS on the --listen port (--tls-cert, --tls-key): a test CA and server
// certificates made here with the openssl CLI; curl, node's https, the
// `eventsource` client and openssl s_client as the clients. Publish and
// subscribe, the protocol floor, weak ciphers, the server's cipher order,
// ALPN, plain HTTP on the TLS port, a certificate reload on SIGHUP that keeps
// open streams, and the start-up errors for bad files.
import { describe, test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { BIN, T, startServer, httpsRequest, eventually } from './lib/server.mjs';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const TO = { timeout: T(60000) };

function openssl(args, dir) {
  const r = spawnSync('openssl', args, { cwd: dir, encoding: 'utf8', timeout: T(20000) });
  assert.equal(r.status, 0, `openssl ${args.join(' ')}: ${r.stderr}`);
  return r.stdout;
}

/** A P-256 key and a certificate for localhost signed by the test CA. */
function issue(dir, name, org) {
  openssl(['genpkey', '-algorithm', 'EC', '-pkeyopt', 'ec_paramgen_curve:P-256', '-out', `${name}.key`], dir);
  openssl(['req', '-new', '-key', `${name}.key`, '-out', `${name}.csr`, '-subj', `/O=${org}/CN=localhost`], dir);
  fs.writeFileSync(path.join(dir, `${name}.ext`), 'subjectAltName=DNS:localhost,IP:127.0.0.1\n');
  openssl(
    ['x509', '-req', '-in', `${name}.csr`, '-CA', 'ca.pem', '-CAkey', 'ca.key', '-CAcreateserial', '-days', '2',
      '-out', `${name}.pem`, '-extfile', `${name}.ext`],
    dir,
  );
  return { cert: path.join(dir, `${name}.pem`), key: path.join(dir, `${name}.key`) };
}

function makeCA(dir) {
  openssl(['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-keyout', 'ca.key',
    '-out', 'ca.pem', '-days', '2', '-subj', '/CN=flowcast test CA'], dir);
  return path.join(dir, 'ca.pem');
}

/** A long-running client whose stdout is collected; waitFor(re) resolves once it matches. */
function follow(cmd, args, opts = {}) {
  const p = spawn(cmd, args, { stdio: ['ignore', 'pipe', 'pipe'], ...opts });
  const h = { out: '', err: '', waiters: new Set() };
  const notify = () => {
    for (const w of [...h.waiters]) w();
  };
  p.stdout.setEncoding('utf8').on('data', (d) => {
    h.out += d;
    notify();
  });
  p.stderr.setEncoding('utf8').on('data', (d) => {
    h.err += d;
  });
  p.on('exit', notify);
  h.waitFor = (re, ms = T(10000)) =>
    new Promise((resolve, reject) => {
      const check = () => {
        if (re.test(h.out)) {
          clearTimeout(timer);
          h.waiters.delete(check);
          resolve(h.out);
        }
      };
      const timer = setTimeout(() => {
        h.waiters.delete(check);
        reject(new Error(`${cmd}: no ${re} within ${ms} ms\nstdout: ${h.out.slice(-2000)}\nstderr: ${h.err}`));
      }, ms);
      h.waiters.add(check);
      check();
    });
  h.kill = () => {
    if (p.exitCode === null && p.signalCode === null) p.kill('SIGKILL');
  };
  return h;
}

function curl(args) {
  return spawnSync('curl', ['-sS', '--max-time', String(Math.ceil(T(10000) / 1000)), ...args], {
    encoding: 'utf8',
    timeout: T(15000),
  });
}

/** openssl s_client against the port with `args`; its whole output. */
function sClient(port, args) {
  const r = spawnSync('openssl', ['s_client', '-connect', `127.0.0.1:${port}`, '-servername', 'localhost', ...args], {
    input: '',
    encoding: 'utf8',
    timeout: T(10000),
  });
  return { status: r.status, text: `${r.stdout}\n${r.stderr}` };
}

describe('HTTPS', () => {
  let dir, ca, a, b, srv, files;

  before(async () => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'flowcast-tls-'));
    ca = makeCA(dir);
    a = issue(dir, 'a', 'first');
    b = issue(dir, 'b', 'second');
    // The server reads these paths; the reload test rewrites them.
    files = { cert: path.join(dir, 'live.pem'), key: path.join(dir, 'live.key'), ca };
    fs.copyFileSync(a.cert, files.cert);
    fs.copyFileSync(a.key, files.key);
    srv = await startServer({ tls: files, threads: 2 });
  }, TO);

  after(async () => {
    if (srv) await srv.stop();
    if (dir) fs.rmSync(dir, { recursive: true, force: true });
  });

  test('curl publishes and subscribes over TLS with ALPN http/1.1', TO, async () => {
    const sub = follow('curl', ['-sSN', '--http1.1', '--cacert', ca, `${srv.url}/api/v1/channels/tls-curl/sse?replay=0`]);
    try {
      await sub.waitFor(/retry: 3000/);
      const r = curl(['-v', '--http1.1', '--cacert', ca, '-H', 'content-type: application/json', '--data', '{"n":1}',
        `${srv.url}/api/v1/channels/tls-curl/events`]);
      assert.equal(r.status, 0, r.stderr);
      assert.match(r.stderr, /ALPN: server accepted http\/1\.1/);
      assert.match(r.stderr, /SSL connection using TLSv1\.3/);
      assert.equal(JSON.parse(r.stdout).subscribers, 1, r.stdout);
      await sub.waitFor(/data: \{"n":1\}/);
    } finally {
      sub.kill();
    }
  });

  test('node https and the eventsource client (trusting the test CA) get events', TO, async () => {
    const script =
      "import { EventSource } from 'eventsource';" +
      'const es = new EventSource(process.env.URL);' +
      "es.onopen = () => console.log('open');" +
      "es.onmessage = (e) => console.log('message ' + e.lastEventId + ' ' + e.data);" +
      "es.onerror = (e) => console.log('error ' + (e.message || ''));";
    const es = follow(process.execPath, ['--input-type=module', '-e', script], {
      cwd: ROOT,
      env: { ...process.env, NODE_EXTRA_CA_CERTS: ca, URL: `${srv.url}/api/v1/channels/tls-es/sse?replay=0` },
    });
    try {
      await es.waitFor(/^open$/m, T(15000));
      const r = await httpsRequest(`${srv.url}/api/v1/channels/tls-es/events`, ca, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: '{"via":"https"}',
      });
      assert.equal(r.status, 201, r.text);
      assert.equal(r.alpn, false, 'node offers no ALPN by default');
      await es.waitFor(new RegExp(`^message ${r.json.id} \\{"via":"https"\\}$`, 'm'));
      assert.doesNotMatch(es.out, /^error/m);
    } finally {
      es.kill();
    }
  });

  test('the flowcast CLI publishes and subscribes over https, verifying the certificate', TO, async () => {
    const env = { ...process.env, SSL_CERT_FILE: ca };
    const sub = follow(BIN, ['subscribe', 'tls-cli', '--url', srv.url], { env });
    try {
      // `subscribe` prints nothing until an event: publish until one arrives.
      const deadline = Date.now() + T(10000);
      let n = 0;
      while (!/"k":\d+/.test(sub.out) && Date.now() < deadline) {
        const pub = spawnSync(BIN, ['publish', 'tls-cli', JSON.stringify({ k: ++n }), '--url', srv.url], {
          env,
          encoding: 'utf8',
          timeout: T(10000),
        });
        assert.equal(pub.status, 0, pub.stderr);
        await new Promise((r) => setTimeout(r, 100));
      }
      await sub.waitFor(/\{"k":\d+\}/);
    } finally {
      sub.kill();
    }
    // By address too: the certificate names 127.0.0.1.
    const byIp = spawnSync(BIN, ['publish', 'tls-cli', '{}', '--url', `https://127.0.0.1:${srv.port}`], {
      env,
      encoding: 'utf8',
      timeout: T(10000),
    });
    assert.equal(byIp.status, 0, byIp.stderr);
    // Without the test CA the certificate is refused: exit 5, and it says why.
    const env2 = { ...process.env, SSL_CERT_FILE: path.join(dir, 'missing-ca.pem') };
    const bad = spawnSync(BIN, ['publish', 'tls-cli', '{}', '--url', srv.url], { env: env2, encoding: 'utf8', timeout: T(10000) });
    assert.equal(bad.status, 5, bad.stderr);
    assert.match(bad.stderr, /TLS handshake with localhost:\d+ failed: certificate: unable to get local issuer certificate/);
  });

  test('TLS 1.2 is the floor, weak suites are refused, the server picks the suite', TO, () => {
    const old = sClient(srv.port, ['-tls1_1', '-cipher', 'DEFAULT:@SECLEVEL=0']);
    assert.notEqual(old.status, 0);
    assert.match(old.text, /alert protocol version/);
    const weak = sClient(srv.port, ['-tls1_2', '-cipher', 'AES128-SHA']);
    assert.notEqual(weak.status, 0);
    assert.match(weak.text, /alert handshake failure/);
    // The client prefers AES-256; the server's order puts AES-128-GCM first.
    const order = sClient(srv.port, ['-tls1_2', '-cipher', 'ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-ECDSA-AES128-GCM-SHA256']);
    assert.match(order.text, /Cipher is ECDHE-ECDSA-AES128-GCM-SHA256/);
    const tls13 = sClient(srv.port, ['-CAfile', ca, '-alpn', 'http/1.1']);
    assert.match(tls13.text, /New, TLSv1\.3/);
    assert.match(tls13.text, /ALPN protocol: http\/1\.1/);
    assert.match(tls13.text, /Verify return code: 0 \(ok\)/);
    const h2only = sClient(srv.port, ['-alpn', 'h2']);
    assert.match(h2only.text, /ALPN protocol: h2/);
    const other = sClient(srv.port, ['-alpn', 'spdy/3']);
    assert.match(other.text, /No ALPN negotiated/);
  });

  test('plain HTTP or garbage on the TLS port gets no HTTP answer and harms nothing', TO, async () => {
    for (const bytes of ['GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n', Buffer.alloc(4096, 0x16)]) {
      const got = await new Promise((resolve, reject) => {
        const s = net.connect(srv.port, '127.0.0.1');
        const chunks = [];
        s.setTimeout(T(5000), () => reject(new Error('the server neither answered nor closed')));
        s.on('data', (c) => chunks.push(c));
        s.on('error', () => resolve(Buffer.concat(chunks)));
        s.on('close', () => resolve(Buffer.concat(chunks)));
        s.end(bytes);
      });
      assert.ok(!got.toString('latin1').startsWith('HTTP/'), `answered in plain text: ${got}`);
    }
    const r = await httpsRequest(`${srv.url}/healthz`, ca);
    assert.equal(r.status, 200);
  });

  test('SIGHUP reloads the certificate; open streams stay; a bad reload keeps the old one', TO, async () => {
    const before = await httpsRequest(`${srv.url}/healthz`, ca);
    assert.equal(before.cert.subject.O, 'first');
    const sub = follow('curl', ['-sSN', '--cacert', ca, `${srv.url}/api/v1/channels/tls-reload/sse?replay=0`]);
    try {
      await sub.waitFor(/retry: 3000/);
      fs.copyFileSync(b.cert, files.cert);
      fs.copyFileSync(b.key, files.key);
      srv.proc.kill('SIGHUP');
      await eventually(() => /tls certificate reloaded.*O ?= ?second/.test(srv.stderrText()), T(5000), 'reload logged');
      const after = await httpsRequest(`${srv.url}/healthz`, ca);
      assert.equal(after.cert.subject.O, 'second');
      // The stream opened before the reload still gets events.
      const pub = curl(['--cacert', ca, '-H', 'content-type: application/json', '--data', '{"after":"reload"}',
        `${srv.url}/api/v1/channels/tls-reload/events`]);
      assert.equal(pub.status, 0, pub.stderr);
      await sub.waitFor(/data: \{"after":"reload"\}/);
      // A key that does not match: logged, and the second certificate stays.
      fs.copyFileSync(a.key, files.key);
      srv.proc.kill('SIGHUP');
      await eventually(() => /tls certificate reload failed/.test(srv.stderrText()), T(5000), 'failure logged');
      assert.match(srv.stderrText(), /reload failed.*does not match the certificate/);
      const still = await httpsRequest(`${srv.url}/healthz`, ca);
      assert.equal(still.status, 200);
      assert.equal(still.cert.subject.O, 'second');
    } finally {
      sub.kill();
      fs.copyFileSync(b.key, files.key);
    }
  });

  test('bad certificate or key files: a start-up error that names the file, exit 1', TO, () => {
    fs.writeFileSync(path.join(dir, 'junk.pem'), 'not a certificate\n');
    const cases = [
      [['--tls-cert', path.join(dir, 'missing.pem'), '--tls-key', a.key], /tls-cert \S*missing\.pem: No such file/],
      [['--tls-cert', a.cert, '--tls-key', path.join(dir, 'missing.key')], /tls-key \S*missing\.key: No such file/],
      [['--tls-cert', path.join(dir, 'junk.pem'), '--tls-key', a.key], /tls-cert \S*junk\.pem: not a usable PEM certificate/],
      [['--tls-cert', a.cert, '--tls-key', path.join(dir, 'junk.pem')], /tls-key \S*junk\.pem: not a usable PEM private key/],
      [['--tls-cert', a.cert, '--tls-key', b.key], /tls-key \S*b\.key does not match the certificate in \S*a\.pem/],
      // A configuration error, as every other: usage exit status 2.
      [['--tls-cert', a.cert], /tls-cert and tls-key go together/, 2],
    ];
    for (const [args, re, code = 1] of cases) {
      const r = spawnSync(BIN, ['serve', '--listen', '127.0.0.1:0', '--storage', 'memory', '--open', ...args], {
        encoding: 'utf8',
        timeout: T(10000),
        cwd: dir,
      });
      assert.equal(r.status, code, `${args.join(' ')}: exit ${r.status}\n${r.stderr}`);
      assert.match(r.stderr, re);
    }
  });
});
