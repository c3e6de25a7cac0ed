// The server side of the dashboard: the stats stream (GET /api/v1/stats/sse),
// /metrics as Prometheus text and as OpenMetrics (checked with Debian's
// python3-prometheus-client parsers when present), process metrics and the
// publish-latency histogram, the embedded assets' headers, ETag revalidation
// and path traversal, the session and logout routes.
import { describe, test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import { startServer, request, publishOk, T } from './lib/server.mjs';
import { openSSE, subscribe } from './lib/sse.mjs';

const TO = { timeout: T(60000) };
const PASSWORD = 'dash board pass';
const PY = '/usr/bin/python3';

async function login(url, username = 'admin', password = PASSWORD) {
  return request(`${url}/api/v1/login`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ username, password }),
  });
}
const bearer = (tok) => ({ authorization: `Bearer ${tok}` });

/** Parses `text` with python's Prometheus or OpenMetrics parser: {ok, out}. */
function pyParse(kind, text) {
  const mod = kind === 'om' ? 'prometheus_client.openmetrics.parser' : 'prometheus_client.parser';
  const script = `import sys, json\nfrom ${mod} import text_string_to_metric_families as p\nfams = list(p(sys.stdin.read()))\nprint(json.dumps({f.name: [f.type, [[s.name, s.labels, s.value] for s in f.samples]] for f in fams}))`;
  const r = spawnSync(PY, ['-c', script], { input: text, encoding: 'utf8', timeout: T(20000) });
  return { ok: r.status === 0, out: r.stdout, err: r.stderr };
}
const havePyParser = () =>
  fs.existsSync(PY) && spawnSync(PY, ['-c', 'import prometheus_client'], { timeout: T(20000) }).status === 0;

/** A raw HTTP/1.1 GET of `target` exactly as written (no client normalization): the status code. */
function rawStatus(port, target) {
  return new Promise((resolve, reject) => {
    const s = net.connect(port, '127.0.0.1');
    let buf = '';
    s.on('data', (d) => {
      buf += d;
      const m = /^HTTP\/1\.1 (\d{3})/.exec(buf);
      if (m && buf.includes('\r\n\r\n')) {
        s.destroy();
        resolve({ status: Number(m[1]), text: buf });
      }
    });
    s.on('error', reject);
    s.write(`GET ${target} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n`);
  });
}

describe('with authentication', () => {
  let srv;
  let admin;
  before(async () => {
    srv = await startServer({ open: false, env: { FLOWCAST_ADMIN_PASSWORD: PASSWORD } });
    admin = (await login(srv.url)).json.access_token;
  });
  after(async () => {
    await srv?.stop();
  });

  test('stats stream: 401 without a token, 403 for a token that is not admin', TO, async () => {
    const none = await openSSE(`${srv.url}/api/v1/stats/sse`);
    assert.equal(none.status, 401);
    assert.equal(none.json.error.code, 'unauthorized');
    const minted = await request(`${srv.url}/api/v1/tokens`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', ...bearer(admin) },
      body: JSON.stringify({ sub: 'svc', publish: ['x.*'], subscribe: ['x.*'], ttl: 600 }),
    });
    assert.equal(minted.status, 201, minted.text);
    const scoped = await openSSE(`${srv.url}/api/v1/stats/sse`, { headers: bearer(minted.json.access_token) });
    assert.equal(scoped.status, 403);
    assert.equal(scoped.json.error.code, 'forbidden');
  });

  test('stats stream: a sample a second with the documented fields; rates follow a publish burst', TO, async (t) => {
    const s = await subscribe(`${srv.url}/api/v1/stats/sse`, { headers: bearer(admin) });
    t.after(() => s.close());
    assert.match(s.headers.get('content-type'), /^text\/event-stream/);
    const [first] = await s.waitEvents(1, T(5000));
    const d = JSON.parse(first.data);
    for (const k of ['time', 'version', 'uptime_s', 'connections', 'subscribers', 'channels', 'published_total',
      'delivered_total', 'jobs', 'storage', 'process']) assert.ok(k in d, `${k} missing in ${first.data}`);
    assert.ok(!first.event || first.event === 'message', `a named sample: ${first.event}`);
    assert.equal(d.published_per_s, null, 'the first sample has no rate yet');
    assert.equal(d.storage.kind, 'sqlite');
    assert.equal(d.cluster, null);
    assert.deepEqual(Object.keys(d.jobs).sort(),
      ['Done', 'Failed', 'Pending', 'Rejected', 'Running', 'Stopped', 'Suspended', 'Waiting', 'Warning']);
    assert.ok(d.connections >= 1 && d.process.resident_bytes > 0 && d.process.open_fds > 0, first.data);
    // a burst of publishes: some sample shows a positive rate and a measured latency
    const before = s.events.length;
    const tok = bearer(admin);
    const burst = [];
    for (let i = 0; i < 50; i++) {
      burst.push(request(`${srv.url}/api/v1/channels/x.burst/events`, {
        method: 'POST', headers: { 'content-type': 'application/json', ...tok }, body: `{"n":${i}}`,
      }));
    }
    for (const r of await Promise.all(burst)) assert.equal(r.status, 201, r.text);
    await s.waitFor(
      (x) => x.events.slice(before).some((e) => JSON.parse(e.data).published_per_s > 0),
      T(5000), 'a sample with published_per_s > 0');
    const busy = s.events.slice(before).map((e) => JSON.parse(e.data)).find((x) => x.published_per_s > 0);
    assert.ok(busy.publish_latency_ms && busy.publish_latency_ms.count > 0, JSON.stringify(busy));
    assert.ok(busy.publish_latency_ms.p99 >= busy.publish_latency_ms.p50 && busy.publish_latency_ms.p50 > 0);
    assert.ok(busy.published_total >= d.published_total + 50);
    // about once a second
    await s.waitEvents(before + 3, T(6000));
    const times = s.events.slice(-3).map((e) => JSON.parse(e.data).time);
    for (let i = 1; i < times.length; i++) {
      assert.ok(times[i] - times[i - 1] > 500 && times[i] - times[i - 1] < T(2500), `samples ${times}`);
    }
  });

  test('session says who is logged in; logout clears the cookie', TO, async () => {
    const anon = await request(`${srv.url}/api/v1/session`);
    assert.equal(anon.status, 200);
    assert.deepEqual(anon.json, { authenticated: false });
    const bad = await request(`${srv.url}/api/v1/session`, { headers: bearer('not.a.token') });
    assert.deepEqual(bad.json, { authenticated: false });
    const me = await request(`${srv.url}/api/v1/session`, { headers: bearer(admin) });
    assert.equal(me.status, 200);
    assert.equal(me.json.sub, 'admin');
    assert.equal(me.json.admin, true);
    assert.equal(me.json.open, false);
    assert.equal(me.json.authenticated, true);
    assert.deepEqual(me.json.subscribe, ['*']);
    const out = await request(`${srv.url}/api/v1/logout`, { method: 'POST' });
    assert.equal(out.status, 204);
    assert.match(out.headers.get('set-cookie'), /^flowcast_token=;.*Max-Age=0.*HttpOnly/i);
  });
});

describe('without authentication', () => {
  let srv;
  before(async () => {
    srv = await startServer({});
  });
  after(async () => {
    await srv?.stop();
  });

  test('/metrics: Prometheus text by default, OpenMetrics when asked; no clashing names', TO, async () => {
    await publishOk(srv.url, 'm.lat', { a: 1 });
    await publishOk(srv.url, 'm.lat', { a: 2 });
    const prom = await request(`${srv.url}/metrics`);
    assert.match(prom.headers.get('content-type'), /^text\/plain; version=0\.0\.4/);
    const om = await request(`${srv.url}/metrics`, {
      headers: { accept: 'application/openmetrics-text; version=1.0.0,text/plain;version=0.0.4;q=0.5' },
    });
    assert.match(om.headers.get('content-type'), /^application\/openmetrics-text; version=1\.0\.0/);
    assert.ok(om.text.endsWith('# EOF\n'));
    assert.match(om.text, /^# TYPE flowcast_events_published counter$/m);
    assert.match(om.text, /^flowcast_events_published_total \d+$/m);
    assert.match(prom.text, /^# TYPE flowcast_events_published_total counter$/m);
    for (const text of [prom.text, om.text]) {
      for (const name of ['process_cpu_seconds_total', 'process_resident_memory_bytes', 'process_open_fds',
        'process_start_time_seconds', 'flowcast_publish_latency_seconds_count', 'flowcast_connections_accepted_total']) {
        assert.match(text, new RegExp(`^${name} [0-9.e+]+$`, 'm'), `${name} missing`);
      }
      const count = Number(/^flowcast_publish_latency_seconds_count (\d+)$/m.exec(text)[1]);
      const inf = Number(/^flowcast_publish_latency_seconds_bucket\{le="\+Inf"\} (\d+)$/m.exec(text)[1]);
      assert.ok(count >= 2 && inf === count, `latency count ${count}, +Inf ${inf}`);
      const start = Number(/^process_start_time_seconds (\S+)$/m.exec(text)[1]);
      assert.ok(Math.abs(start - Date.now() / 1000) < 600, `start time ${start}`);
    }
    // the names a family's samples get never clash with another family's
    const families = [...om.text.matchAll(/^# TYPE (\S+) (\S+)$/gm)].map((m) => m[1]);
    assert.equal(new Set(families).size, families.length, 'a family declared twice');
    if (!havePyParser()) {
      console.log('# python3-prometheus-client missing: strict parser checks skipped (scripts/deps.sh installs it)');
      return;
    }
    const p = pyParse('prom', prom.text);
    assert.ok(p.ok, `the Prometheus parser refused /metrics: ${p.err}`);
    const o = pyParse('om', om.text);
    assert.ok(o.ok, `the OpenMetrics parser refused /metrics: ${o.err}`);
    const fams = JSON.parse(o.out);
    assert.equal(fams.flowcast_publish_latency_seconds[0], 'histogram');
    assert.equal(fams.flowcast_events_published[0], 'counter');
    assert.equal(fams.process_cpu_seconds[0], 'counter');
  });

  test('assets: types, security headers, ETag and 304, favicon', TO, async () => {
    const page = await request(`${srv.url}/`);
    assert.equal(page.status, 200);
    assert.match(page.headers.get('content-type'), /^text\/html; charset=utf-8/);
    const csp = page.headers.get('content-security-policy');
    assert.match(csp, /default-src 'none'/);
    assert.match(csp, /script-src 'self'(;|$)/);
    assert.match(csp, /frame-ancestors 'none'/);
    assert.doesNotMatch(csp, /unsafe-inline|unsafe-eval/);
    assert.equal(page.headers.get('x-content-type-options'), 'nosniff');
    assert.equal(page.headers.get('referrer-policy'), 'no-referrer');
    assert.match(page.headers.get('cache-control'), /no-cache/);
    const etag = page.headers.get('etag');
    assert.match(etag, /^"[0-9a-f]{16}"$/);
    const again = await request(`${srv.url}/`, { headers: { 'if-none-match': etag } });
    assert.equal(again.status, 304);
    assert.equal(again.text, '');
    assert.equal(again.headers.get('etag'), etag);
    const other = await request(`${srv.url}/`, { headers: { 'if-none-match': '"0000000000000000"' } });
    assert.equal(other.status, 200);
    for (const [p, type] of [['/assets/app.js', /^text\/javascript/], ['/assets/app.css', /^text\/css/],
      ['/assets/favicon.svg', /^image\/svg\+xml/], ['/favicon.ico', /^image\/svg\+xml/]]) {
      const r = await request(`${srv.url}${p}`);
      assert.equal(r.status, 200, p);
      assert.match(r.headers.get('content-type'), type, p);
      assert.equal(r.headers.get('x-content-type-options'), 'nosniff', p);
      assert.ok(r.headers.get('etag'), p);
    }
    // the page loads its script and style from the server itself, never inline
    assert.match(page.text, /<script src="\/assets\/app\.js"( defer)?><\/script>/);
    assert.doesNotMatch(page.text, /<script>|<style|style="|onclick=|https?:\/\//i);
  });

  test('only embedded assets: traversal and unknown names are 404', TO, async () => {
    fs.writeFileSync(`${srv.dataDir}/secret.txt`, 'do not serve');
    for (const target of ['/assets/../../etc/passwd', '/assets/..%2f..%2fetc%2fpasswd', '/assets/%2e%2e/%2e%2e/etc/passwd',
      '/assets/%2E%2E%2Fsecret.txt', '/assets/..%5csecret.txt', '/assets/nope.js', '/assets/', '/assets/app.js%00.html',
      '/assets/.%2e/flowcast.db', '/index.html', '/etc/passwd', '/..%2f..%2fetc%2fpasswd']) {
      const r = await rawStatus(srv.port, target);
      assert.ok([400, 404].includes(r.status), `${target} answered ${r.status}`);
      assert.doesNotMatch(r.text, /do not serve|root:/);
    }
  });
});
