// The dashboard in a real browser (Debian's Chromium through playwright-core):
// login through the form, admin and scoped views, jobs started and approved
// from the page, publish and the live tail (named events, invalid JSON, a
// restart of the server with nothing lost or repeated, HTML payloads shown as
// text), charts under a publish burst, security headers, no console errors,
// and 360 px without horizontal scroll.
// DASHBOARD_SCREENSHOTS=DIR saves a screenshot of each view there (docs/ uses them).
import { describe, test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { launchChromium } from './lib/browser.mjs';
import { startServer, request, publishOk, storedEvents, T } from './lib/server.mjs';

const TO = { timeout: T(90000) };
const PASSWORD = 'dashboard password';
const SHOTS = process.env.DASHBOARD_SCREENSHOTS || '';

/** A workflows directory with a short Workflow_Wait and Workflow_Approval. */
function workflowsDir() {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'flowcast-dash-wf-'));
  const defs = {
    'wait.json': { id: 41, name: 'Workflow_Wait', description: 'Waits two seconds', tasks: [{ type: 'wait', seconds: 2 }] },
    'approval.json': {
      id: 43,
      name: 'Workflow_Approval',
      description: 'Waits for an approval, then publishes',
      tasks: [{ type: 'approval' }, { type: 'publish', channel: 'approvals', event: 'approved', data: { workflow: 43 } }],
    },
  };
  for (const [f, d] of Object.entries(defs)) fs.writeFileSync(path.join(dir, f), JSON.stringify(d));
  return dir;
}

let browser;
let srv;
let admin; // an admin token, for the test's own requests
const wfDir = workflowsDir();

async function login(url, username = 'admin', password = PASSWORD) {
  const r = await request(`${url}/api/v1/login`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ username, password }),
  });
  assert.equal(r.status, 200, r.text);
  return r.json.access_token;
}
const bearer = (tok) => ({ authorization: `Bearer ${tok}` });
const pub = (channel, data, opts = {}) =>
  request(`${srv.url}/api/v1/channels/${channel}/events${opts.event ? `?event=${opts.event}` : ''}`, {
    method: 'POST',
    headers: { 'content-type': opts.type || 'application/json', ...bearer(admin) },
    body: typeof data === 'string' ? data : JSON.stringify(data),
  });

before(async () => {
  browser = await launchChromium();
  srv = await startServer({ open: false, env: { FLOWCAST_ADMIN_PASSWORD: PASSWORD }, extraArgs: ['--workflows', wfDir, '--presence', 'room.*'] });
  admin = await login(srv.url);
});
after(async () => {
  await browser?.close();
  await srv?.stop();
  fs.rmSync(wfDir, { recursive: true, force: true });
});

/**
 * A fresh page (its own cookies) that records console errors and warnings,
 * uncaught exceptions and CSP violations; `t.after` asserts there were none
 * unless `allowErrors`.
 */
async function newPage(t, { width = 1100, height = 760, allowErrors = false } = {}) {
  const context = await browser.newContext({ viewport: { width, height } });
  const page = await context.newPage();
  page.problems = [];
  page.on('console', (m) => {
    if (m.type() === 'error' || m.type() === 'warning') page.problems.push(`console ${m.type()}: ${m.text()}`);
  });
  page.on('pageerror', (e) => page.problems.push(`exception: ${e}`));
  await page.addInitScript(() => {
    window.__csp = [];
    document.addEventListener('securitypolicyviolation', (e) => window.__csp.push(`${e.violatedDirective} ${e.blockedURI}`));
  });
  t.after(async () => {
    const csp = await page.evaluate(() => window.__csp).catch(() => []);
    await context.close();
    if (!allowErrors) {
      assert.deepEqual(page.problems, [], 'console errors or exceptions');
      assert.deepEqual(csp, [], 'CSP violations');
    }
  });
  return page;
}

async function loginThroughForm(page, user = 'admin', password = PASSWORD) {
  await page.goto(`${srv.url}/`, { timeout: T(15000) });
  await page.waitForSelector('#view-login:not([hidden])', { timeout: T(10000) });
  // by keyboard: the user field has the focus
  await page.keyboard.type(user);
  await page.keyboard.press('Tab');
  await page.keyboard.type(password);
  await page.keyboard.press('Enter');
  await page.waitForSelector('#nav:not([hidden])', { timeout: T(10000) });
}

const go = async (page, view) => {
  await page.click(`#nav a[data-view=${view}]`);
  await page.waitForSelector(`#view-${view}:not([hidden])`);
};

async function shot(page, name) {
  if (!SHOTS) return;
  fs.mkdirSync(SHOTS, { recursive: true });
  await page.screenshot({ path: path.join(SHOTS, `${name}.png`) });
}

/** Adds `channel` to the tail and waits until its stream is open. */
async function tail(page, channel) {
  await go(page, 'tail');
  await page.fill('#tail-channel', channel);
  await page.press('#tail-channel', 'Enter');
  await page.waitForSelector(`#tail-chips li[data-channel="${channel}"][data-state=open]`, { timeout: T(10000) });
}
const tailItems = (page, channel) =>
  page.$$eval(`#tail-list li[data-channel="${channel}"]`, (lis) =>
    lis.map((li) => ({ id: li.dataset.id, event: li.dataset.event, text: li.querySelector('pre').textContent })));

describe('login and rights', () => {
  test('not logged in: a clear "Log in" state, no error; login through the form shows every view; logout', TO, async (t) => {
    const page = await newPage(t);
    await page.goto(`${srv.url}/`, { timeout: T(15000) });
    await page.waitForSelector('#view-login:not([hidden])');
    assert.equal(await page.textContent('#login-title'), 'Log in');
    assert.equal(await page.isVisible('#nav'), false);
    assert.equal(await page.isVisible('#banner'), false, 'no "server unreachable" banner');
    await shot(page, 'login');
    // a wrong password says so and stays on the form
    await page.fill('#login-form [name=username]', 'admin');
    await page.fill('#login-form [name=password]', 'wrong password');
    page.problems.length = 0;
    await page.click('#login-form button[type=submit]');
    await page.waitForFunction(() => document.querySelector('#login-error').textContent.includes('Wrong'));
    page.problems.length = 0; // the browser logs the 401 of the refused login itself
    await page.fill('#login-form [name=password]', '');
    await page.focus('#login-form [name=username]');
    await page.fill('#login-form [name=username]', '');
    await page.keyboard.type('admin');
    await page.keyboard.press('Tab');
    await page.keyboard.type(PASSWORD);
    await page.keyboard.press('Enter');
    await page.waitForSelector('#nav:not([hidden])', { timeout: T(10000) });
    assert.match(await page.textContent('#whoami'), /admin/);
    // the cookie is HttpOnly: the page's script cannot read it
    assert.equal(await page.evaluate(() => document.cookie), '');
    for (const v of ['overview', 'channels', 'tail', 'publish', 'workflows']) {
      await go(page, v);
      assert.equal(await page.isVisible(`#view-${v} [data-note=admin]`).catch(() => false), false, v);
    }
    await go(page, 'channels');
    await page.waitForSelector('#ch-table tbody tr');
    await go(page, 'workflows');
    await page.waitForSelector('#wf-table tr[data-workflow="41"]');
    // a reload keeps the session (the cookie)
    await page.reload();
    await page.waitForSelector('#nav:not([hidden])', { timeout: T(10000) });
    await page.click('#logout');
    await page.waitForSelector('#view-login:not([hidden])');
    assert.match(await page.textContent('#login-error'), /logged out/);
    await page.reload();
    await page.waitForSelector('#view-login:not([hidden])', { timeout: T(10000) });
  });

  test('a scoped token sees only what it may, with a note for the rest', TO, async (t) => {
    const minted = await request(`${srv.url}/api/v1/tokens`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', ...bearer(admin) },
      body: JSON.stringify({ sub: 'viewer', publish: ['pub.*'], subscribe: ['pub.*'], ttl: 600 }),
    });
    assert.equal(minted.status, 201, minted.text);
    const page = await newPage(t, { allowErrors: true });
    await page.goto(`${srv.url}/`, { timeout: T(15000) });
    await page.waitForSelector('#view-login:not([hidden])');
    await page.click('#view-login details summary');
    await page.fill('#token-form [name=token]', minted.json.access_token);
    await page.click('#token-form button[type=submit]');
    await page.waitForSelector('#nav:not([hidden])', { timeout: T(10000) });
    assert.match(await page.textContent('#whoami'), /viewer/);
    assert.doesNotMatch(await page.textContent('#whoami'), /admin/);
    // the default view of a non-admin is the tail; overview and channels say why they are empty
    await page.waitForSelector('#view-tail:not([hidden])');
    await go(page, 'overview');
    assert.equal(await page.isVisible('#view-overview [data-note=admin]'), true);
    assert.equal(await page.isVisible('.charts'), false);
    await go(page, 'channels');
    assert.equal(await page.isVisible('#view-channels [data-note=admin]'), true);
    assert.equal(await page.isVisible('#ch-table'), false);
    assert.equal(await page.getAttribute('#live', 'data-state'), 'off', 'no stats stream for a non-admin');
    // what it may do works: tail and publish on pub.*
    await tail(page, 'pub.one');
    await go(page, 'publish');
    assert.match(await page.textContent('#pub-rights'), /pub\.\*/);
    await page.fill('#pub-form [name=channel]', 'pub.one');
    await page.fill('#pub-form [name=data]', '{"ok":true}');
    await page.click('#pub-form button[type=submit]');
    await page.waitForSelector('#pub-result.ok');
    // what it may not: refused with the server's reason
    await page.fill('#pub-form [name=channel]', 'other');
    await page.click('#pub-form button[type=submit]');
    await page.waitForSelector('#pub-result.error');
    assert.match(await page.textContent('#pub-result'), /may not publish/);
    await go(page, 'workflows');
    await page.waitForFunction(() => document.querySelector('#wf-status').textContent.includes('No workflow'));
    await page.click('#logout');
    await page.waitForSelector('#view-login:not([hidden])');
    assert.equal(await page.evaluate(() => sessionStorage.getItem('flowcast.token')), null);
  });
});

describe('workflows and jobs', () => {
  test('start Workflow_Wait from the page and see it reach Done live', TO, async (t) => {
    const page = await newPage(t);
    await loginThroughForm(page);
    await go(page, 'workflows');
    await page.click('#wf-table tr[data-workflow="41"] button.primary');
    await page.waitForFunction(() => /Started Workflow_Wait: job [0-9a-f-]{36}/.test(document.querySelector('#wf-status').textContent));
    const jobId = (await page.textContent('#wf-status')).match(/[0-9a-f-]{36}/)[0];
    await page.waitForSelector(`#jobs-table tr[data-job="${jobId}"]`);
    await page.waitForSelector('#jobs-stream[data-state=open]');
    const row = `#jobs-table tr[data-job="${jobId}"]`;
    await page.waitForSelector(`${row}[data-status=Running]`, { timeout: T(10000) });
    assert.ok(await page.isVisible(`${row} button[data-action=stop]`));
    assert.ok(await page.isVisible(`${row} button[data-action=suspend]`));
    await shot(page, 'workflows');
    // Done comes over the workflow's stream: no reload, no click
    await page.waitForSelector(`${row}[data-status=Done]`, { timeout: T(15000) });
    assert.equal(await page.$$eval(`${row} button`, (b) => b.length), 0, 'no control on a finished job');
    const j = await request(`${srv.url}/api/v1/job?w=41&i=${jobId}`, { headers: bearer(admin) });
    assert.equal(j.json.status, 'Done');
  });

  test('approve a waiting approval job from the page', TO, async (t) => {
    const page = await newPage(t);
    await loginThroughForm(page);
    await go(page, 'workflows');
    await page.click('#wf-table tr[data-workflow="43"] button.primary');
    await page.waitForFunction(() => /job [0-9a-f-]{36}/.test(document.querySelector('#wf-status').textContent));
    const jobId = (await page.textContent('#wf-status')).match(/[0-9a-f-]{36}/)[0];
    const row = `#jobs-table tr[data-job="${jobId}"]`;
    await page.waitForSelector(`${row}[data-status=Waiting]`, { timeout: T(10000) });
    assert.ok(await page.isVisible(`${row} button[data-action=reject]`));
    await page.click(`${row} button[data-action=approve]`);
    await page.waitForSelector(`${row}[data-status=Done]`, { timeout: T(15000) });
    const approvals = await storedEvents(srv.url, 'approvals', `?access_token=${admin}`);
    assert.ok(approvals.some((e) => e.event === 'approved'), JSON.stringify(approvals));
  });
});

describe('publish and the live tail', () => {
  test('a named event published from the form shows in the tail with its name; invalid JSON is refused unless sent as text', TO, async (t) => {
    const page = await newPage(t);
    await loginThroughForm(page);
    await tail(page, 'dash.pub');
    await go(page, 'publish');
    await page.fill('#pub-form [name=channel]', 'dash.pub');
    await page.fill('#pub-form [name=event]', 'greeting');
    await page.fill('#pub-form [name=data]', '{"hello": "tail", "n": [1, 2]}');
    await page.click('#pub-form button[type=submit]');
    await page.waitForSelector('#pub-result.ok');
    const id = await page.getAttribute('#pub-result', 'data-id');
    assert.match(await page.textContent('#pub-result'), new RegExp(`id ${id}`));
    await shot(page, 'publish');
    // invalid JSON: refused on the page, nothing sent
    await page.fill('#pub-form [name=event]', '');
    await page.fill('#pub-form [name=data]', '{"broken": ');
    await page.click('#pub-form button[type=submit]');
    await page.waitForSelector('#pub-result.error');
    assert.match(await page.textContent('#pub-result'), /Not valid JSON.*Send as text/);
    // the same text, sent as text on purpose
    await page.check('#pub-form [name=text]');
    await page.click('#pub-form button[type=submit]');
    await page.waitForSelector('#pub-result.ok');
    const stored = await storedEvents(srv.url, 'dash.pub', `?access_token=${admin}`);
    assert.deepEqual(stored.map((e) => [e.event ?? null, e.data]), [
      ['greeting', { hello: 'tail', n: [1, 2] }],
      [null, '{"broken": '],
    ]);
    // the tail: both, with the name, channel and pretty JSON
    await go(page, 'tail');
    await page.waitForFunction(() => document.querySelectorAll('#tail-list li[data-channel="dash.pub"]').length >= 2);
    const items = await tailItems(page, 'dash.pub');
    assert.equal(items.length, 2);
    assert.deepEqual(items[1], { id, event: 'greeting', text: '{\n  "hello": "tail",\n  "n": [\n    1,\n    2\n  ]\n}' });
    assert.equal(items[0].event, '');
    assert.equal(items[0].text, '{"broken": ');
    assert.match(await page.textContent(`#tail-list li[data-id="${id}"] .meta`), /dash\.pub.*greeting/);
    // filter, pause/resume, clear
    await page.fill('#tail-filter', 'broken');
    assert.equal(await page.$$eval('#tail-list li[data-channel="dash.pub"]:not([hidden])', (l) => l.length), 1);
    await page.fill('#tail-filter', '');
    await page.click('#tail-pause');
    assert.equal(await page.getAttribute('#tail-pause', 'aria-pressed'), 'true');
    const p3 = await pub('dash.pub', { third: 1 }, { event: 'later' });
    await page.waitForFunction(() => /1 waiting/.test(document.querySelector('#tail-count').textContent));
    assert.equal((await tailItems(page, 'dash.pub')).length, 2, 'paused: nothing new shown');
    await page.click('#tail-pause');
    await page.waitForSelector(`#tail-list li[data-id="${p3.json.id}"][data-event=later]`);
    await shot(page, 'tail');
    await page.click('#tail-clear');
    assert.equal((await tailItems(page, 'dash.pub')).length, 0);
  });

  test('load older reads history before the oldest event shown', TO, async (t) => {
    const ids = [];
    for (let i = 0; i < 30; i++) ids.push((await pub('dash.hist', { i })).json.id);
    const page = await newPage(t);
    await loginThroughForm(page);
    await tail(page, 'dash.hist'); // replays the last 20
    await page.waitForFunction(() => document.querySelectorAll('#tail-list li[data-channel="dash.hist"]').length === 20);
    await page.click('#tail-older');
    await page.waitForFunction(() => document.querySelectorAll('#tail-list li[data-channel="dash.hist"]').length === 30);
    const shown = (await tailItems(page, 'dash.hist')).map((x) => x.id);
    assert.deepEqual(shown, [...ids].reverse(), 'newest first, every id once');
  });

  test('stop and restart the server while the tail is open: the indicator shows it, nothing is lost or repeated', TO, async (t) => {
    const page = await newPage(t, { allowErrors: true }); // the browser logs the refused reconnects
    await loginThroughForm(page);
    const before = [];
    for (let i = 0; i < 3; i++) before.push((await pub('dash.restart', { phase: 'before', i })).json.id);
    await tail(page, 'dash.restart');
    await page.waitForFunction(() => document.querySelectorAll('#tail-list li[data-channel="dash.restart"]').length === 3);
    await page.evaluate(() => {
      window.__states = [];
      const chip = document.querySelector('#tail-chips li[data-channel="dash.restart"]');
      new MutationObserver(() => window.__states.push(chip.dataset.state)).observe(chip, { attributes: true, attributeFilter: ['data-state'] });
    });
    await srv.restart();
    admin = await login(srv.url); // the signing key is kept in the data dir: old tokens stay valid, this is fresh
    // published while the page is still reconnecting: it must catch up with Last-Event-ID
    const afterIds = [];
    for (let i = 0; i < 3; i++) afterIds.push((await pub('dash.restart', { phase: 'after', i })).json.id);
    await page.waitForFunction(() => window.__states.includes('connecting'), null, { timeout: T(10000) });
    await page.waitForSelector('#tail-chips li[data-channel="dash.restart"][data-state=open]', { timeout: T(20000) });
    await page.waitForFunction(() => document.querySelectorAll('#tail-list li[data-channel="dash.restart"]').length >= 6, null, { timeout: T(10000) });
    for (let i = 0; i < 3; i++) afterIds.push((await pub('dash.restart', { phase: 'live', i })).json.id);
    await page.waitForFunction(() => document.querySelectorAll('#tail-list li[data-channel="dash.restart"]').length >= 9, null, { timeout: T(10000) });
    await page.waitForTimeout(300);
    const items = await tailItems(page, 'dash.restart');
    assert.deepEqual(items.map((x) => x.id), [...before, ...afterIds].reverse());
    assert.deepEqual(items.map((x) => JSON.parse(x.text).phase).reverse(),
      ['before', 'before', 'before', 'after', 'after', 'after', 'live', 'live', 'live']);
    // the stats indicator came back too
    await page.waitForSelector('#live[data-state=open]', { timeout: T(20000) });
    const fresh = await newPage(t); // a page opened now has no error to report
    await loginThroughForm(fresh);
  });

  test('an HTML payload is shown as text and runs nothing', TO, async (t) => {
    const page = await newPage(t);
    await page.addInitScript(() => {
      window.__xss = 0;
    });
    await loginThroughForm(page);
    await tail(page, 'dash.xss');
    const payload = '<img src=x onerror="window.__xss=1"><script>window.__xss=2</script><b>bold</b>';
    await pub('dash.xss', payload, { type: 'text/plain', event: 'html' });
    await pub('dash.xss', { html: payload });
    await page.waitForFunction(() => document.querySelectorAll('#tail-list li[data-channel="dash.xss"]').length === 2);
    const items = await tailItems(page, 'dash.xss');
    assert.equal(items[1].text, payload);
    assert.ok(items[0].text.includes('<img src=x onerror'));
    assert.equal(await page.$$eval('#tail-list img, #tail-list script, #tail-list b', (l) => l.length), 0);
    // through the publish form's answer and the channels table too
    await go(page, 'publish');
    await page.fill('#pub-form [name=channel]', 'dash.xss');
    await page.fill('#pub-form [name=data]', JSON.stringify(payload));
    await page.click('#pub-form button[type=submit]');
    await page.waitForSelector('#pub-result.ok');
    await page.waitForTimeout(300);
    assert.equal(await page.evaluate(() => window.__xss), 0);
    assert.equal(await page.$$eval('main img', (l) => l.length), 0);
  });
});

describe('overview', () => {
  test('the charts move under a publish burst', TO, async (t) => {
    const page = await newPage(t);
    await loginThroughForm(page);
    await page.waitForSelector('#view-overview:not([hidden])');
    await page.waitForSelector('#live[data-state=open]');
    await page.waitForFunction(() => Number(document.querySelector('#chart-rate').dataset.points) >= 2, null, { timeout: T(10000) });
    const points0 = Number(await page.getAttribute('#chart-rate', 'data-points'));
    // a burst for about two seconds
    const end = Date.now() + 2500;
    let n = 0;
    while (Date.now() < end) {
      const batch = [];
      for (let i = 0; i < 20; i++) batch.push(pub('dash.burst', { n: n++ }));
      for (const r of await Promise.all(batch)) assert.equal(r.status, 201);
    }
    const seen = await (await page.waitForFunction(() => {
      const rate = Number(document.querySelector('#chart-rate [data-series=published]').dataset.value);
      const p99 = Number(document.querySelector('#chart-lat [data-series=p99]').dataset.value);
      return rate > 0 && { rate, p99 };
    }, null, { timeout: T(5000) })).jsonValue();
    assert.ok(seen.rate > 10, `published/s ${seen.rate} after ${n} publishes`);
    assert.ok(seen.p99 > 0, 'publish latency measured');
    assert.ok(Number(await page.getAttribute('#chart-rate', 'data-points')) > points0);
    // the canvas has drawn something beyond its axes
    const inked = await page.$eval('#chart-rate canvas', (c) => {
      const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
      let blue = 0;
      for (let i = 0; i < d.length; i += 4) if (d[i + 2] > 150 && d[i] < 80) blue++;
      return blue;
    });
    assert.ok(inked > 20, `the published line is drawn (${inked} pixels)`);
    await shot(page, 'overview');
    await go(page, 'channels');
    await page.waitForSelector('#ch-table tbody tr');
    await shot(page, 'channels');
  });

  test('channels: sort, filter, group by prefix, purge with confirmation', TO, async (t) => {
    for (let i = 0; i < 4; i++) await pub(`job.fake${i}`, { i });
    await pub('zz.only', { a: 1 });
    await pub('zz.only', { a: 2 });
    const page = await newPage(t);
    await loginThroughForm(page);
    await go(page, 'channels');
    // job.* is one collapsed row
    await page.waitForSelector('#ch-table tr.group[data-group=job]');
    assert.equal(await page.$$eval('#ch-table tr[data-channel^="job."]', (l) => l.length), 0);
    await page.click('#ch-table tr.group[data-group=job] button');
    await page.waitForSelector('#ch-table tr[data-channel="job.fake0"]');
    // filter: no grouping, only matches
    await page.fill('#ch-filter', 'zz.');
    await page.waitForFunction(() => document.querySelectorAll('#ch-table tbody tr[data-channel]').length === 1);
    assert.equal(await page.textContent('#ch-table tr[data-channel="zz.only"] td:nth-child(2)'), '2');
    await page.fill('#ch-filter', '');
    // sort by name descending: zz.only first
    await page.uncheck('#ch-group');
    await page.click('#ch-table th button[data-sort=name]');
    assert.equal(await page.getAttribute('#ch-table th button[data-sort=name]', 'aria-sort'), 'descending');
    assert.equal(await page.$eval('#ch-table tbody tr', (tr) => tr.dataset.channel), 'zz.only');
    // purge: cancelled changes nothing, accepted purges
    page.once('dialog', (d) => d.dismiss());
    await page.click('#ch-table tr[data-channel="zz.only"] button.danger');
    await page.waitForTimeout(200);
    assert.equal((await storedEvents(srv.url, 'zz.only', `?access_token=${admin}`)).length, 2);
    page.once('dialog', (d) => {
      assert.match(d.message(), /Purge.*zz\.only/);
      d.accept();
    });
    await page.click('#ch-table tr[data-channel="zz.only"] button.danger');
    await page.waitForFunction(() => /Purged zz\.only/.test(document.querySelector('#ch-status').textContent));
    assert.equal((await storedEvents(srv.url, 'zz.only', `?access_token=${admin}`)).length, 0);
  });
});

describe('presence', () => {
  test('channels with presence on have a Presence panel: counts and entries, updated', TO, async (t) => {
    const subscriber = (info) => {
      const ac = new AbortController();
      t.after(() => ac.abort());
      const q = info ? `?info=${encodeURIComponent(JSON.stringify(info))}` : '';
      return fetch(`${srv.url}/api/v1/channels/room.dash/sse${q}`, { headers: bearer(admin), signal: ac.signal }).then((r) => {
        assert.equal(r.status, 200);
        return ac;
      });
    };
    await subscriber({ name: 'Ann' });
    const second = await subscriber();
    await pub('room.dash', { hello: 1 });
    await pub('plain.dash', { hello: 1 });
    const page = await newPage(t);
    await loginThroughForm(page);
    await go(page, 'channels');
    await page.uncheck('#ch-group');
    await page.waitForSelector('#ch-table tr[data-channel="room.dash"] button.presence');
    await page.waitForSelector('#ch-table tr[data-channel="plain.dash"]');
    assert.equal(await page.$('#ch-table tr[data-channel="plain.dash"] button.presence'), null, 'no Presence button without presence');
    await page.click('#ch-table tr[data-channel="room.dash"] button.presence');
    await page.waitForFunction(() => document.querySelector('#pr-stats').textContent.startsWith('2 connections · 1 user'));
    assert.equal(await page.$$eval('#pr-table tbody tr', (l) => l.length), 2);
    assert.match(await page.textContent('#pr-table tbody'), /"name":"Ann"/);
    await shot(page, 'presence');
    second.abort();
    await page.waitForFunction(() => document.querySelector('#pr-stats').textContent.startsWith('1 connection · 1 user'), null, { timeout: T(10000) });
    await page.click('#pr-close');
    assert.equal(await page.isVisible('#pr-panel'), false);
  });
});

describe('headers and small screens', () => {
  test('the page and its assets carry CSP and the other headers in the browser', TO, async (t) => {
    const page = await newPage(t);
    const seen = new Map();
    page.on('response', (r) => {
      if (r.url().startsWith(srv.url) && !r.url().includes('/api/')) seen.set(new URL(r.url()).pathname, r.headers());
    });
    await page.goto(`${srv.url}/`, { timeout: T(15000) });
    await page.waitForSelector('#view-login:not([hidden])');
    for (const p of ['/', '/assets/app.js', '/assets/app.css', '/assets/favicon.svg']) {
      const hd = seen.get(p);
      assert.ok(hd, `${p} not loaded`);
      assert.equal(hd['x-content-type-options'], 'nosniff', p);
      assert.match(hd['content-security-policy'], /frame-ancestors 'none'/, p);
      assert.equal(hd['referrer-policy'], 'no-referrer', p);
    }
    // an inline script injected into the page is refused by the CSP
    const ran = await page.evaluate(async () => {
      window.__inline = 0;
      const s = document.createElement('script');
      s.textContent = 'window.__inline = 1';
      document.body.append(s);
      await new Promise((r) => setTimeout(r, 100));
      const v = window.__inline;
      window.__csp.length = 0; // the refusal is this test's own doing
      return v;
    });
    assert.equal(ran, 0);
    page.problems.length = 0;
  });

  test('360 px wide: every view fits without horizontal scroll, long payloads wrap', TO, async (t) => {
    await pub('dash.narrow', `${'x'.repeat(600)} ${'{"deep":'.repeat(5)}`, { type: 'text/plain', event: 'a-rather-long-event-name-for-a-phone' });
    const page = await newPage(t, { width: 360, height: 740 });
    await loginThroughForm(page);
    await tail(page, 'dash.narrow');
    await page.waitForSelector('#tail-list li[data-channel="dash.narrow"]');
    for (const v of ['overview', 'channels', 'tail', 'publish', 'workflows']) {
      await go(page, v);
      await page.waitForTimeout(150);
      const w = await page.evaluate(() => ({ scroll: document.documentElement.scrollWidth, client: document.documentElement.clientWidth }));
      assert.ok(w.scroll <= w.client, `${v}: scrollWidth ${w.scroll} > ${w.client}`);
      if (v === 'tail') await shot(page, 'mobile-tail');
    }
  });
});
