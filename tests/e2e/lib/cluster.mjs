// Helpers shared by the cluster tests: clean-ups run after a test, workflow
// directories, and the lines exec tasks append to a file.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';

/** Runs the clean-ups registered with later(fn) after the test, last first. */
export function teardown(t) {
  const fns = [];
  t.after(async () => {
    for (const fn of fns.reverse()) await fn();
  });
  return (fn) => fns.push(fn);
}

/** A workflows directory holding `defs` ({file: object}), removed after the test. */
export function workflows(later, defs) {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'flowcast-wf-'));
  later(() => fs.rmSync(dir, { recursive: true, force: true }));
  for (const [f, d] of Object.entries(defs)) fs.writeFileSync(path.join(dir, f), JSON.stringify(d));
  return dir;
}

/** A file in a fresh directory (removed after the test) for exec tasks to append to. */
export function runsFile(later, prefix = 'flowcast-runs-') {
  const file = path.join(fs.mkdtempSync(path.join(os.tmpdir(), prefix)), 'runs');
  later(() => fs.rmSync(path.dirname(file), { recursive: true, force: true }));
  return file;
}

/** Lines in `file` (none when it is not there yet). */
export const lines = (file) => (fs.existsSync(file) ? fs.readFileSync(file, 'utf8').split('\n').filter(Boolean) : []);
