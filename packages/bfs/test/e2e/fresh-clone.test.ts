/**
 * What a new user does: clone, `npm ci`, then `npx bfs ...` / `npx nfs-server-ts ...` before any
 * build and after it, and `npm start` with the lines it prints pasted into a shell. The clone is
 * of this checkout's HEAD with its uncommitted changes laid over, installed from the npm cache
 * (`npm ci --offline`); the test skips, saying why, when that cannot be done here.
 */
import { strict as assert } from 'node:assert';
import { type ChildProcess, spawn, spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { LIBNFS_TIMEOUT_MS, ROOT } from './helpers';

/** The environment of a shell the user opened: no npm_* variables of a surrounding `npm test`. */
function userEnv(): NodeJS.ProcessEnv {
  return Object.fromEntries(
    Object.entries(process.env).filter(([k]) => !/^npm_/i.test(k) && k !== 'INIT_CWD'),
  );
}

function git(args: string[], cwd = ROOT): string {
  const r = spawnSync('git', args, { cwd, encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`git ${args.join(' ')}: ${r.stderr}`);
  return r.stdout;
}

/** Clones ROOT's HEAD into `dir` and copies over what is modified, added or deleted since. */
function cloneWorkingTree(dir: string): void {
  git(['clone', '-q', '--shared', '--no-checkout', ROOT, dir]);
  git(['checkout', '-q', '--detach', git(['rev-parse', 'HEAD']).trim()], dir);
  const changed = git(['ls-files', '-z', '--modified', '--others', '--exclude-standard'])
    .split('\0')
    .filter(Boolean);
  for (const f of changed) {
    const from = path.join(ROOT, f);
    const to = path.join(dir, f);
    if (fs.existsSync(from)) {
      fs.mkdirSync(path.dirname(to), { recursive: true });
      fs.copyFileSync(from, to);
    } else fs.rmSync(to, { force: true });
  }
}

/** Runs a command line as pasted into a shell in `cwd`. */
function sh(line: string, cwd: string, timeoutMs = 120_000) {
  return spawnSync('bash', ['-c', line], {
    cwd,
    env: userEnv(),
    encoding: 'utf8',
    timeout: timeoutMs,
    killSignal: 'SIGKILL',
  });
}

/** Kills the process group of `child` (started detached) with `sig` and waits for its exit. */
function stopGroup(child: ChildProcess, sig: NodeJS.Signals): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return Promise.resolve();
  return new Promise((resolve) => {
    const kill = setTimeout(() => process.kill(-child.pid!, 'SIGKILL'), 10_000);
    child.once('exit', () => {
      clearTimeout(kill);
      resolve();
    });
    process.kill(-child.pid!, sig);
  });
}

describe('a fresh clone: npx bfs and npx nfs-server-ts after npm ci', function () {
  this.timeout(300_000);
  let clone: string;

  before(function () {
    if (spawnSync('git', ['-C', ROOT, 'rev-parse', 'HEAD']).status !== 0) {
      console.log('      skipped: this checkout is not a git repository');
      this.skip();
    }
    clone = fs.mkdtempSync(path.join(os.tmpdir(), 'bfs-fresh-clone-'));
    cloneWorkingTree(clone);
    const ci = sh('npm ci --offline --no-audit --no-fund', clone, 240_000);
    if (ci.status !== 0) {
      const why = `${ci.stdout}\n${ci.stderr}`;
      if (/ENOTCACHED|offline|ETIMEDOUT/i.test(why)) {
        console.log(`      skipped: npm ci --offline cannot install from the npm cache here`);
        this.skip();
      }
      assert.fail(`npm ci failed:\n${why}`);
    }
  });

  after(() => {
    if (clone) fs.rmSync(clone, { recursive: true, force: true });
  });

  it('runs both commands before the build (building on first use) and after it', () => {
    assert.ok(!fs.existsSync(path.join(clone, 'packages/bfs/dist')), 'a fresh clone has no dist/');
    for (const [cmd, usage] of [
      ['nfs-server-ts', /Usage: nfs-server-ts/],
      ['bfs', /Usage: bfs/],
    ] as const) {
      const first = sh(`npx ${cmd} --help`, clone);
      assert.equal(first.status, 0, `npx ${cmd} --help before the build:\n${first.stderr}`);
      assert.match(first.stdout, usage);
      assert.match(first.stderr, new RegExp(`${cmd}: not built yet; building`));
    }
    assert.equal(sh('npm run build', clone).status, 0);
    for (const cmd of ['nfs-server-ts', 'bfs']) {
      const again = sh(`npx ${cmd} --help`, clone);
      assert.equal(again.status, 0, again.stderr);
      assert.doesNotMatch(again.stderr, /building/, 'built once: not again');
    }
    const version = sh('npx bfs --version', clone);
    assert.match(version.stdout, /^\d+\.\d+\.\d+\n$/);
  });

  it('serves `npm start`, and the command lines it prints work when pasted', async () => {
    // `npm start` as the README says, on a free port rather than 2049 (a test takes no fixed port).
    const start = spawn('npm', ['start', '--', '--port', '0'], {
      cwd: clone,
      env: userEnv(),
      stdio: ['ignore', 'pipe', 'pipe'],
      detached: true,
    });
    let out = '';
    let err = '';
    start.stdout!.on('data', (d) => (out += d));
    start.stderr!.on('data', (d) => (err += d));
    // Not a terminal: the log is one JSON record per line (a terminal shows their messages).
    const parsed = () =>
      err
        .split('\n')
        .filter(Boolean)
        .map((l) => {
          try {
            return JSON.parse(l) as { msg: string; replica?: number; relay?: string };
          } catch {
            return l;
          }
        });
    const records = () => parsed().filter((r) => typeof r !== 'string');
    try {
      const printed = await new Promise<{ url: string; status: string }>((resolve, reject) => {
        const timer = setTimeout(() => reject(new Error(`not ready in 120 s:\n${err}`)), 120_000);
        const check = () => {
          const ready = /^ready (nfs:\/\/\S+)$/m.exec(out);
          // The command lines to paste come plainly on stdout, after the ready line.
          const status = /^status: (.+)$/m.exec(out);
          // The relay logs once listening, maybe after `bfs up` has printed the ready line.
          const relayLogged = records().some(
            (r) => r.relay === 'relay-0' && /^NFS on /.test(r.msg),
          );
          if (ready && status && relayLogged) {
            clearTimeout(timer);
            resolve({ url: ready[1], status: status[1] });
          }
        };
        start.stdout!.on('data', check);
        start.stderr!.on('data', check);
        start.once('exit', (code) => reject(new Error(`npm start exited (${code}):\n${err}`)));
      });
      assert.match(out, /^mount with: mount -t nfs -o vers=3,proto=tcp,port=\d+/m);
      const notJson = parsed().filter((r) => typeof r === 'string');
      assert.deepEqual(
        notJson.filter((l) => !l.startsWith('npm ')),
        [],
        'bfs up logs JSON',
      );
      for (const id of [0, 1, 2, 3])
        assert.ok(records().some((r) => r.replica === id && / listening; view 0/.test(r.msg)));
      assert.equal(printed.status, 'npx bfs status --dir ./data');
      const status = sh(printed.status, clone);
      assert.equal(status.status, 0, `${printed.status}:\n${status.stdout}${status.stderr}`);
      assert.match(status.stdout, /checkpoint digests agree among the 4 replicas up/);
      // It found the relay `npm start` runs by itself, from what the relay recorded in ./data.
      assert.match(status.stdout, /^relay: http:\/\/127\.0\.0\.1:\d+ \(its own observations/m);
      // The README's libnfs lines as they are, but for the port of the ready line.
      if (spawnSync('which', ['nfs-ls']).status === 0) {
        const port = /nfsport=(\d+)/.exec(printed.url)![1];
        const readme = fs.readFileSync(path.join(clone, 'README.md'), 'utf8');
        const lines = [...readme.matchAll(/^(nfs-(?:ls|cp|cat) .*)$/gm)].map((m) =>
          m[1].replaceAll('2049', port),
        );
        assert.equal(lines.length, 3, 'the README shows nfs-ls, nfs-cp and nfs-cat');
        fs.writeFileSync(path.join(clone, 'file'), 'pasted from the README\n');
        const results = lines.map((line) => ({ line, r: sh(line, clone, LIBNFS_TIMEOUT_MS) }));
        for (const { line, r } of results) assert.equal(r.status, 0, `${line}:\n${r.stderr}`);
        assert.equal(results[2].r.stdout, 'pasted from the README\n');
      } else console.log('      (nfs-ls not installed: the libnfs lines are not tried)');
    } finally {
      await stopGroup(start, 'SIGINT');
    }
  });
});
