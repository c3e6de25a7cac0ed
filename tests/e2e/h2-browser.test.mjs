// Chromium past its six-connections-per-host limit: 30 EventSource streams
// from one page all receive events over HTTPS (HTTP/2 by ALPN, one
// connection), while the same page over plain HTTP/1.1 gets six streams and
// the seventh stays pending. The test CA's server key is trusted through
// --ignore-certificate-errors-spki-list.
import { describe, test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { chromium } from 'playwright-core';
import { CHROMIUM } from './lib/browser.mjs';
import { T, startServer, publishOk, metrics, eventually, sleep } from './lib/server.mjs';
import { makeCerts, spkiHash } from './lib/certs.mjs';

const TO = { timeout: T(120000) };
const N = 30;

/** Opens N EventSources on the page; each counts the messages it gets. */
function openMany(page, channel) {
  return page.evaluate(
    ({ channel, n }) => {
      window.__got = new Array(n).fill(0);
      window.__open = new Array(n).fill(false);
      for (let i = 0; i < n; i++) {
        const es = new EventSource(`/api/v1/channels/${channel}/sse?replay=0&i=${i}`);
        es.onopen = () => {
          window.__open[i] = true;
        };
        es.onmessage = () => {
          window.__got[i]++;
        };
      }
    },
    { channel, n: N },
  );
}

const state = (page) => page.evaluate(() => ({ got: window.__got, open: window.__open }));

describe('Chromium: 30 EventSource streams from one page', () => {
  let dir, certs, tlsSrv, plainSrv, browser;

  before(async () => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'flowcast-h2b-'));
    certs = makeCerts(dir);
    tlsSrv = await startServer({ tls: certs });
    plainSrv = await startServer();
    browser = await chromium.launch({
      executablePath: CHROMIUM,
      headless: true,
      timeout: T(60000),
      args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking',
        '--disable-component-update', '--disable-sync', '--disable-dev-shm-usage',
        `--ignore-certificate-errors-spki-list=${spkiHash(certs.cert)}`],
    });
  }, TO);

  after(async () => {
    await browser?.close();
    if (tlsSrv) await tlsSrv.stop();
    if (plainSrv) await plainSrv.stop();
    if (dir) fs.rmSync(dir, { recursive: true, force: true });
  });

  test('over HTTPS (h2) all 30 receive events', TO, async () => {
    const page = await browser.newPage();
    try {
      const resp = await page.goto(`${tlsSrv.url}/healthz`);
      assert.equal(resp.status(), 200);
      assert.equal(await page.evaluate(() => performance.getEntriesByType('navigation')[0].nextHopProtocol), 'h2');
      await openMany(page, 'b-h2');
      await eventually(async () => (await state(page)).open.every(Boolean), T(20000), 'all 30 open');
      // Publish through the page itself (the test's own client does not trust the CA).
      await page.evaluate(() =>
        fetch('/api/v1/channels/b-h2/events', { method: 'POST', headers: { 'content-type': 'application/json' },
          body: '{"n":2}' }));
      await eventually(async () => (await state(page)).got.every((n) => n >= 1), T(20000), 'an event on all 30');
    } finally {
      await page.close();
    }
  });

  test('over plain HTTP/1.1 six open and the seventh stays pending', TO, async () => {
    const page = await browser.newPage();
    try {
      await page.goto(`${plainSrv.url}/healthz`);
      await openMany(page, 'b-h1');
      await eventually(async () => (await metrics(plainSrv.url)).get('flowcast_subscribers') === 6, T(20000),
        'six subscribers');
      await publishOk(plainSrv.url, 'b-h1', { n: 1 });
      await eventually(async () => (await state(page)).got.filter((n) => n >= 1).length === 6, T(20000), 'six got it');
      await sleep(T(1000)); // give a seventh every chance to appear
      const s = await state(page);
      assert.equal(s.open.filter(Boolean).length, 6);
      assert.equal(s.got.filter((n) => n >= 1).length, 6);
      assert.equal((await metrics(plainSrv.url)).get('flowcast_subscribers'), 6);
    } finally {
      await page.close();
    }
  });
});
