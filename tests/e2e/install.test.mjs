// Installing flowcast (issue 20): `make install` into a scratch DESTDIR puts the
// binary, a man page that renders and documents every option, a hardened systemd
// unit, the example config and workflows in place, and `make uninstall` takes
// them away; `make deb` builds a package that unpacks into a scratch root and runs.
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync, spawn } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { BIN, T, freePort, sleep, request, sanitizerReport } from './lib/server.mjs';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const TO = { timeout: T(120000) };
const has = (cmd) => spawnSync('sh', ['-c', `command -v ${cmd}`]).status === 0;

function sh(cmd, args, opts = {}) {
  const r = spawnSync(cmd, args, { encoding: 'utf8', timeout: T(60000), ...opts });
  assert.equal(r.error, undefined, `${cmd}: ${r.error}`);
  return r;
}

function make(target, vars) {
  const r = sh('make', ['-C', ROOT, '--no-print-directory', target, `INSTALL_BIN=${BIN}`, ...Object.entries(vars).map(([k, v]) => `${k}=${v}`)]);
  assert.equal(r.status, 0, `make ${target}: ${r.stdout}${r.stderr}`);
  return r;
}

/** Serves from `bin` with `conf` (listen and data overridden) until /healthz answers; stops with SIGTERM, expects exit 0. */
async function serveBriefly(bin, conf, workflows) {
  const port = await freePort();
  const data = fs.mkdtempSync(path.join(os.tmpdir(), 'flowcast-inst-data-'));
  const p = spawn(bin, ['serve', '--config', conf, '--listen', `127.0.0.1:${port}`, '--data', data, '--workflows', workflows, '--open'], {
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let err = '';
  p.stderr.on('data', (d) => (err += d));
  p.stdout.resume();
  const exited = new Promise((r) => p.on('exit', (code, signal) => r({ code, signal })));
  try {
    let ok = false;
    for (const end = Date.now() + T(10000); !ok && Date.now() < end && p.exitCode === null; ) {
      try {
        ok = (await request(`http://127.0.0.1:${port}/healthz`)).status === 200;
      } catch {
        await sleep(50);
      }
    }
    assert.ok(ok, `the installed flowcast did not serve: ${err}`);
    const wfs = await request(`http://127.0.0.1:${port}/api/v1/workflows`);
    assert.equal(wfs.status, 200, wfs.text);
    assert.ok(JSON.stringify(wfs.json).includes('Workflow_Progress'), `example workflows not loaded: ${wfs.text}`);
  } finally {
    p.kill('SIGTERM');
    const r = await exited;
    fs.rmSync(data, { recursive: true, force: true });
    assert.equal(sanitizerReport(err), null, err);
    assert.equal(r.code, 0, err);
  }
}

describe('make install', () => {
  test('installs into DESTDIR under PREFIX; uninstall removes it', TO, async (t) => {
    const dest = fs.mkdtempSync(path.join(os.tmpdir(), 'flowcast-destdir-'));
    t.after(() => fs.rmSync(dest, { recursive: true, force: true }));
    make('install', { DESTDIR: dest, PREFIX: '/opt/fc' });
    const p = (rel) => path.join(dest, 'opt/fc', rel);
    for (const f of ['bin/flowcast', 'share/man/man1/flowcast.1', 'lib/systemd/system/flowcast.service', 'etc/flowcast/flowcast.conf',
      'share/doc/flowcast/flowcast.conf.example', 'share/doc/flowcast/cli.md', 'share/flowcast/workflows/progress.json',
      'share/flowcast/workflows/scripts/progress.sh']) {
      assert.ok(fs.existsSync(p(f)), `${f} not installed`);
    }
    assert.ok(fs.statSync(p('bin/flowcast')).mode & 0o111, 'the binary is not executable');
    const v = sh(p('bin/flowcast'), ['--version']);
    assert.equal(v.status, 0, v.stderr);
    assert.match(v.stdout, /^flowcast \d/);

    const unit = fs.readFileSync(p('lib/systemd/system/flowcast.service'), 'utf8');
    assert.match(unit, /^ExecStart=\/opt\/fc\/bin\/flowcast serve --config \/opt\/fc\/etc\/flowcast\/flowcast\.conf$/m);
    for (const line of [/^User=flowcast$/m, /^LimitNOFILE=\d+$/m, /^ProtectSystem=strict$/m, /^NoNewPrivileges=yes$/m,
      /^StateDirectory=flowcast$/m, /^ProtectHome=yes$/m, /^PrivateTmp=yes$/m]) {
      assert.match(unit, line);
    }
    assert.doesNotMatch(unit, /@[A-Z]+@/, 'a placeholder was left in the unit');
    if (has('systemd-analyze')) {
      // Point the unit at the scratch binary and let systemd check it.
      const u = path.join(dest, 'flowcast.service');
      fs.writeFileSync(u, unit.replace(/^ExecStart=\S+/m, `ExecStart=${p('bin/flowcast')}`));
      const r = sh('systemd-analyze', ['verify', '--man=no', u]);
      assert.equal(r.status, 0, r.stdout + r.stderr);
    }

    // The man page renders without warnings, and names every option and exit status.
    const man = sh('man', ['--warnings', '-l', p('share/man/man1/flowcast.1')], { env: { ...process.env, MANWIDTH: '100', MAN_DISABLE_SECCOMP: '1' } });
    assert.equal(man.status, 0, man.stderr);
    assert.equal(man.stderr.trim(), '', `man warnings: ${man.stderr}`);
    for (const s of ['NAME', 'SYNOPSIS', 'COMMANDS', 'SERVE OPTIONS', 'ENVIRONMENT', 'EXIT STATUS', 'FILES']) assert.match(man.stdout, new RegExp(`^${s}$`, 'm'));
    const check = sh(path.join(ROOT, 'scripts/check-manpage.sh'), [p('bin/flowcast'), p('share/man/man1/flowcast.1')]);
    assert.equal(check.status, 0, check.stdout + check.stderr);

    // The installed example config is one the server accepts.
    await serveBriefly(p('bin/flowcast'), p('etc/flowcast/flowcast.conf'), p('share/flowcast/workflows'));

    // A second install keeps an edited config; uninstall removes all but it.
    fs.appendFileSync(p('etc/flowcast/flowcast.conf'), '# edited\n');
    make('install', { DESTDIR: dest, PREFIX: '/opt/fc' });
    assert.match(fs.readFileSync(p('etc/flowcast/flowcast.conf'), 'utf8'), /# edited/);
    make('uninstall', { DESTDIR: dest, PREFIX: '/opt/fc' });
    for (const f of ['bin/flowcast', 'share/man/man1/flowcast.1', 'lib/systemd/system/flowcast.service', 'share/flowcast', 'share/doc/flowcast']) {
      assert.ok(!fs.existsSync(p(f)), `${f} left after uninstall`);
    }
    assert.ok(fs.existsSync(p('etc/flowcast/flowcast.conf')), 'uninstall removed the config');
  });
});

describe('make deb', { skip: !has('dpkg-deb') && 'no dpkg-deb' }, () => {
  test('builds a package that unpacks into a scratch root and runs', TO, async (t) => {
    const work = fs.mkdtempSync(path.join(os.tmpdir(), 'flowcast-deb-'));
    t.after(() => fs.rmSync(work, { recursive: true, force: true }));
    const out = make('deb', { DEB_DIR: path.join(work, 'deb') }).stdout.trim().split('\n').pop();
    assert.match(out, /flowcast_\d+\.\d+\.\d+_\w+\.deb$/);
    assert.ok(fs.existsSync(out), out);

    const info = sh('dpkg-deb', ['-I', out]);
    assert.equal(info.status, 0, info.stderr);
    assert.match(info.stdout, /Package: flowcast/);
    assert.match(info.stdout, /Depends: .*libuv1.*/);
    assert.match(sh('dpkg-deb', ['-f', out, 'Version']).stdout, /^\d+\.\d+\.\d+/);
    const ctl = path.join(work, 'control');
    assert.equal(sh('dpkg-deb', ['-e', out, ctl]).status, 0);
    assert.equal(fs.readFileSync(path.join(ctl, 'conffiles'), 'utf8').trim(), '/etc/flowcast/flowcast.conf');
    const postinst = fs.readFileSync(path.join(ctl, 'postinst'), 'utf8');
    assert.match(postinst, /adduser --system/);
    assert.equal(sh('sh', ['-n', path.join(ctl, 'postinst')]).status, 0, 'postinst is not valid sh');

    const root = path.join(work, 'root');
    const x = sh('dpkg', ['-x', out, root]);
    assert.equal(x.status, 0, x.stderr);
    for (const f of ['usr/bin/flowcast', 'usr/share/man/man1/flowcast.1', 'lib/systemd/system/flowcast.service', 'etc/flowcast/flowcast.conf',
      'usr/share/flowcast/workflows/progress.json']) {
      assert.ok(fs.existsSync(path.join(root, f)), `${f} not in the package`);
    }
    assert.match(fs.readFileSync(path.join(root, 'lib/systemd/system/flowcast.service'), 'utf8'), /^ExecStart=\/usr\/bin\/flowcast serve --config \/etc\/flowcast\/flowcast\.conf$/m);
    const bin = path.join(root, 'usr/bin/flowcast');
    const v = sh(bin, ['--version']);
    assert.equal(v.status, 0, v.stderr);
    assert.match(v.stdout, /^flowcast \d/);
    await serveBriefly(bin, path.join(root, 'etc/flowcast/flowcast.conf'), path.join(root, 'usr/share/flowcast/workflows'));
  });
});
