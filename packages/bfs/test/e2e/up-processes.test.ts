import { strict as assert } from 'node:assert';
import { type ChildProcess, execFileSync, spawn, spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { Level } from 'level';
import { Nfs3Client, RpcClient, authSys } from 'nfs-server-ts';
import { BFS_CLI, execFileP, nfsUrl, startBfs, stop } from './helpers';

interface StatusJson {
  replicas: (
    | {
        id: number;
        stable: number;
        stableDigest: string;
        view: number;
        active: boolean;
        primary: number;
        stats: Record<string, number>;
        keys: Record<string, number>;
        transport: Record<string, number>;
      }
    | { error: string }
  )[];
  disagreeing: number[];
  healthy: boolean;
}

function status(dir: string): StatusJson {
  try {
    return JSON.parse(
      execFileSync(process.execPath, [BFS_CLI, 'status', '--dir', dir, '--json'], {
        encoding: 'utf8',
      }),
    );
  } catch (e) {
    return JSON.parse((e as { stdout: string }).stdout);
  }
}

type Live = Exclude<StatusJson['replicas'][number], { error: string }>;

/**
 * Polls `bfs status` until all four replicas are up on one stable checkpoint with one digest,
 * all active in one view.
 */
async function allAgree(dir: string, timeoutMs = 30_000): Promise<Live[]> {
  const deadline = Date.now() + timeoutMs;
  let s = status(dir);
  for (;;) {
    const live = s.replicas.filter((r): r is Live => !('error' in r));
    // Agreeing on the state is not enough: a restarted replica must vote again, active in the
    // others' view (after a restart the NEW-VIEW's MACs are stale for it; others vouch for it).
    if (
      live.length === 4 &&
      new Set(live.map((r) => r.stable)).size === 1 &&
      new Set(live.map((r) => r.stableDigest)).size === 1 &&
      new Set(live.map((r) => r.view)).size === 1 &&
      live.every((r) => r.active)
    )
      return live;
    if (Date.now() > deadline) {
      // Everyone's counters: where the laggard stopped, and what its peers saw of it.
      const counters = live.map((r) => ({
        id: r.id,
        view: r.view,
        stats: r.stats,
        keys: r.keys,
        transport: r.transport,
      }));
      throw new Error(
        `replicas did not agree: ${JSON.stringify(s.replicas.map((r) => ('error' in r ? r.error : [r.active ? r.view : `${r.view}?`, r.stable, r.stableDigest.slice(0, 8)])))}; counters: ${JSON.stringify(counters)}`,
      );
    }
    await new Promise((r) => setTimeout(r, 250));
    s = status(dir);
  }
}

/** The relay's event counters, from the status page its log names (diagnostics only). */
async function relayMetrics(log: string): Promise<string> {
  const m = /status page (http:\/\/\S+\/)/.exec(log);
  if (!m) return 'no status page in the log';
  try {
    const text = await (await fetch(`${m[1]}metrics`)).text();
    return text
      .split('\n')
      .filter((l) => /^bfs_relay_\w*events_total/.test(l))
      .join('; ');
  } catch (e) {
    return (e as Error).message;
  }
}

/**
 * Runs one phase of a test under its own deadline: a phase that stalls fails with where it
 * stopped, every replica's view and counters and the cluster's last log lines, instead of the
 * bare mocha timeout of the whole test.
 */
async function phase<T>(
  what: string,
  dir: string,
  log: () => string,
  run: () => Promise<T>,
  ms = 100_000,
): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const stalled = new Promise<never>((_, reject) => {
    timer = setTimeout(() => {
      const s = status(dir);
      const replicas = s.replicas.map((r) => ('error' in r ? r.error : r));
      void relayMetrics(log()).then((relay) =>
        reject(
          new Error(
            `${what}: no end within ${ms} ms; replicas: ${JSON.stringify(replicas)}\nrelay: ${relay}\nlast log lines:\n${log().split('\n').slice(-60).join('\n')}`,
          ),
        ),
      );
    }, ms);
  });
  try {
    return await Promise.race([run(), stalled]);
  } finally {
    clearTimeout(timer);
  }
}

/** Starts one replica of the cluster in `dir` as its own process (as `bfs up` does). */
async function startReplicaProcess(
  dir: string,
  id: number,
): Promise<{ child: ChildProcess; stderr: () => string }> {
  const child = spawn(process.execPath, [BFS_CLI, 'replica', '--dir', dir, '--id', String(id)], {
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let out = '';
  let err = '';
  child.stderr!.on('data', (d) => (err += d));
  await new Promise<void>((resolve, reject) => {
    child.stdout!.on('data', (d) => {
      out += d;
      if (/^ready replica \d+$/m.test(out)) resolve();
    });
    child.once('exit', (code) => reject(new Error(`replica exited ${code}: ${err}`)));
  });
  return { child, stderr: () => err };
}

describe('bfs up: four replica processes and a relay, a real client, a replica killed with SIGKILL and restarted', function () {
  // The primary's death needs a view change (OSDI 1999 section 4.4); a backup's does not.
  for (const [victim, who] of [
    [3, 'a backup'],
    [0, 'the primary'],
  ] as const) {
    this.timeout(240_000);
    let tmp: string;
    before(() => {
      tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'bfs-up-'));
    });
    after(() => fs.rmSync(tmp, { recursive: true, force: true }));

    it(`keeps every file intact through the loss of ${who}, restarts it from its disk, and ends with all four digests agreeing`, async () => {
      const dir = path.join(tmp, `data-${victim}`);
      const up = await startBfs(['up', '--dir', dir, '--port', '0', '--size', '256M'], 60_000);
      const rpc = await RpcClient.connect({ port: up.port });
      const nfs = new Nfs3Client(rpc, authSys(1000, 1000));
      try {
        const root = await nfs.mount('/');
        const { handle: dirFh } = await nfs.mkdir(root, 'tree');
        const files = new Map<string, Buffer>();
        const writeFiles = async (from: number, to: number) => {
          for (let i = from; i < to; i++) {
            const name = `file-${i}.txt`;
            const data = randomBytes(100 + (i % 7) * 1000);
            const { handle } = await nfs.create(dirFh, name);
            await nfs.writeAll(handle, data);
            files.set(name, data);
          }
        };
        const log = () => up.stderr();
        // 300+ read-write operations: past two checkpoints (K = 128)
        await phase('writing files 0-149', dir, log, () => writeFiles(0, 150));

        // A real client no one here wrote, through the same relay: tens of megabytes (160 WRITEs
        // of 128 KiB, each agreed by PBFT).
        const big = randomBytes(20_000_000);
        fs.writeFileSync(path.join(tmp, 'big.bin'), big);
        await phase('nfs-cp of 20 MB in', dir, log, () =>
          execFileP('nfs-cp', [path.join(tmp, 'big.bin'), nfsUrl(up.port, '//big.bin')]),
        );

        const pid = execFileSync('pgrep', ['-f', `replica --dir ${dir} --id ${victim}`], {
          encoding: 'utf8',
        })
          .trim()
          .split('\n')[0];
        process.kill(Number(pid), 'SIGKILL');
        await phase(`writing files 150-219 with replica ${victim} killed`, dir, log, () =>
          writeFiles(150, 220),
        );

        await phase('reading every file back', dir, log, async () => {
          const listed = (await nfs.listAll(dirFh))
            .map((e) => e.name)
            .filter((n) => n.startsWith('file-'));
          assert.equal(listed.length, files.size);
          for (const [name, data] of files) {
            const { handle } = await nfs.lookup(dirFh, name);
            assert.ok(Buffer.from(await nfs.readAll(handle)).equals(data), name);
          }
        });
        await phase('nfs-cp of 20 MB out', dir, log, () =>
          execFileP('nfs-cp', [nfsUrl(up.port, '//big.bin'), path.join(tmp, 'big-back.bin')]),
        );
        assert.ok(fs.readFileSync(path.join(tmp, 'big-back.bin')).equals(big));
        const ls = await phase('nfs-ls -R', dir, log, async () => {
          const { stdout } = await execFileP('nfs-ls', ['-R', nfsUrl(up.port, '/')]);
          return stdout;
        });
        assert.equal(ls.match(/file-\d+\.txt/g)?.length, files.size);

        const s = status(dir);
        assert.ok('error' in s.replicas[victim], `replica ${victim} is down`);
        const live = s.replicas.filter(
          (r): r is Exclude<StatusJson['replicas'][number], { error: string }> => !('error' in r),
        );
        assert.equal(live.length, 3);
        assert.deepEqual(s.disagreeing, []);
        assert.ok(s.healthy, 'one replica down is within f = 1');
        assert.ok(
          live.every((r) => r.stable >= 256),
          `stable checkpoints: ${live.map((r) => r.stable)}`,
        );

        // Restart it on its own LevelDB store: it reloads its last persisted checkpoint, fetches
        // what changed since by state transfer, and takes part again.
        const back = await startReplicaProcess(dir, victim);
        try {
          await phase(
            `writing files 220-299 with replica ${victim} restarted`,
            dir,
            () => `${log()}\nrestarted replica ${victim}:\n${back.stderr()}`,
            () => writeFiles(220, 300),
          );
          const all = await allAgree(dir).catch((e: Error) => {
            // Its log (state transfer, view changes, key refresh) goes with the failure.
            throw new Error(
              `${e.message}\nrestarted replica's log, last lines:\n${back.stderr().split('\n').slice(-40).join('\n')}`,
            );
          });
          const me = all.find((r) => r.id === victim)!;
          assert.ok(
            (me.stats.stateTransferDone ?? 0) + (me.stats.replayedBatches ?? 0) > 0,
            `caught up by state transfer or its commit log: ${JSON.stringify(me.stats)}`,
          );
          for (const [name, data] of files) {
            const { handle } = await nfs.lookup(dirFh, name);
            assert.ok(Buffer.from(await nfs.readAll(handle)).equals(data), name);
          }
        } finally {
          await stop(back.child);
        }
      } finally {
        rpc.close();
        assert.equal(await stop(up.child), 0, up.stderr());
      }
      const left = spawnSync('pgrep', ['-f', '--', `--dir ${dir}`], {
        encoding: 'utf8',
      }).stdout.trim();
      assert.equal(left, '', 'no child left behind');
    });
  }
});

describe('bfs up on an existing data directory: the whole cluster stops and starts again', function () {
  this.timeout(240_000);
  let tmp: string;
  before(() => {
    tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'bfs-up-again-'));
  });
  after(() => fs.rmSync(tmp, { recursive: true, force: true }));

  it('keeps every acknowledged file, including those written after the last stable checkpoint', async () => {
    const dir = path.join(tmp, 'data');
    const files = new Map<string, Buffer>();
    const session = async (from: number, to: number): Promise<void> => {
      const up = await startBfs(['up', '--dir', dir, '--port', '0', '--size', '256M'], 60_000);
      const rpc = await RpcClient.connect({ port: up.port });
      const nfs = new Nfs3Client(rpc, authSys(1000, 1000));
      try {
        const root = await nfs.mount('/');
        for (const [name, data] of files) {
          const { handle } = await nfs.lookup(root, name);
          assert.ok(Buffer.from(await nfs.readAll(handle)).equals(data), `${name} survived`);
        }
        for (let i = from; i < to; i++) {
          const name = `f-${i}`;
          const data = randomBytes(50 + i * 37);
          const { handle } = await nfs.create(root, name);
          await nfs.writeAll(handle, data);
          files.set(name, data);
          // Times are the agreed wall-clock time, whichever replica proposed it and however
          // long each replica process has been running.
          const { mtime } = await nfs.getattr(handle);
          assert.ok(Math.abs(mtime.seconds - Date.now() / 1000) < 120, `mtime ${mtime.seconds}`);
        }
      } finally {
        rpc.close();
        assert.equal(await stop(up.child), 0, up.stderr());
      }
    };
    // 150 files: one stable checkpoint (K = 128) and some 170 committed operations after it.
    await session(0, 150);
    // Restarted: replicas reload checkpoint 128 and re-run their commit logs; writes need a
    // view change first (no replica votes again in a view it may have voted in before).
    await session(150, 160);
    await session(160, 161);
  });
});

describe('bfs replica: repairing a damaged disk, and proactive recovery (TOCS 2002 section 4)', function () {
  this.timeout(240_000);
  let tmp: string;
  before(() => {
    tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'bfs-repair-'));
  });
  after(() => fs.rmSync(tmp, { recursive: true, force: true }));

  async function writeSome(
    port: number,
    prefix: string,
    count: number,
    files: Map<string, Buffer>,
    verify = true,
  ) {
    const rpc = await RpcClient.connect({ port });
    const nfs = new Nfs3Client(rpc, authSys(1000, 1000));
    try {
      const root = await nfs.mount('/');
      for (let i = 0; i < count; i++) {
        const data = randomBytes(200 + i * 13);
        const { handle } = await nfs.create(root, `${prefix}-${i}`);
        await nfs.writeAll(handle, data);
        files.set(`${prefix}-${i}`, data);
      }
      if (verify)
        for (const [name, data] of files) {
          const { handle } = await nfs.lookup(root, name);
          assert.ok(Buffer.from(await nfs.readAll(handle)).equals(data), name);
        }
    } finally {
      rpc.close();
    }
  }

  it('a replica whose page store was damaged on disk moves it aside and rejoins from the initial state (state transfer or its own log)', async () => {
    const dir = path.join(tmp, 'damaged');
    const up = await startBfs(['up', '--dir', dir, '--port', '0', '--size', '256M'], 60_000);
    const files = new Map<string, Buffer>();
    let back: { child: ChildProcess } | undefined;
    try {
      await writeSome(up.port, 'a', 150, files);
      const pid = execFileSync('pgrep', ['-f', `replica --dir ${dir} --id 2`], { encoding: 'utf8' })
        .trim()
        .split('\n')[0];
      process.kill(Number(pid), 'SIGKILL');
      while (spawnSync('kill', ['-0', pid!]).status === 0)
        await new Promise((r) => setTimeout(r, 50));
      // Bit rot: one stored page's bytes change behind LevelDB's back.
      const storeDir = path.join(dir, 'replica-2', 'store');
      const db = new Level<Uint8Array, Uint8Array>(storeDir, {
        keyEncoding: 'view',
        valueEncoding: 'view',
      });
      await db.open();
      let damaged = false;
      for await (const [k, v] of db.iterator({ gte: Uint8Array.of(1), lt: Uint8Array.of(2) })) {
        const bad = new Uint8Array(v);
        bad[bad.length - 1] ^= 0xff;
        await db.put(k, bad);
        damaged = true;
        break;
      }
      await db.close();
      assert.ok(damaged, 'found a stored page to damage');
      back = await startReplicaProcess(dir, 2);
      await writeSome(up.port, 'b', 150, files);
      const all = await allAgree(dir);
      // It starts again from the initial state: state transfer brings it up, or its own intact
      // commit log does where that still reaches back to seq 0 (which one wins is timing). Either
      // way a checkpoint became stable with its own vote, so its state matches a quorum's.
      assert.ok((all[2]!.stats.stableCheckpoints ?? 0) >= 1, JSON.stringify(all[2]!.stats));
      assert.ok(
        fs.readdirSync(path.join(dir, 'replica-2')).some((f) => f.startsWith('store.corrupt-')),
        'the damaged store is kept aside',
      );
    } finally {
      if (back) await stop(back.child);
      assert.equal(await stop(up.child), 0, up.stderr());
    }
  });

  it('with --recovery-period every replica is restarted from its disk in turn while clients keep working', async () => {
    const dir = path.join(tmp, 'proactive');
    const up = await startBfs(
      ['up', '--dir', dir, '--port', '0', '--size', '256M', '--recovery-period', '6'],
      60_000,
    );
    const files = new Map<string, Buffer>();
    try {
      const until = Date.now() + 90_000;
      const back = () => up.stderr().match(/proactive recovery: replica \d is back/g) ?? [];
      for (let round = 0; back().length < 2 && Date.now() < until; round++)
        await writeSome(up.port, `r${round}`, 20, files, false);
      assert.ok(back().length >= 2, `restarts completed: ${back().length}\n${up.stderr()}`);
      await writeSome(up.port, 'last', 140, files);
      await allAgree(dir);
    } finally {
      assert.equal(await stop(up.child), 0, up.stderr());
    }
  });
});
