import { strict as assert } from 'node:assert';
import { type ChildProcess, execFileSync, spawn, spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { Nfs3Client, RpcClient, authSys } from 'nfs-server-ts';
import { BFS_CLI, execFileP, nfsUrl, startBfs, stop } from './helpers';

interface StatusJson {
  replicas: (
    | {
        id: number;
        stable: number;
        stableDigest: string;
        view: number;
        primary: number;
        stats: Record<string, number>;
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

/** Polls `bfs status` until all four replicas are up on one stable checkpoint with one digest. */
async function allAgree(dir: string, timeoutMs = 30_000): Promise<Live[]> {
  const deadline = Date.now() + timeoutMs;
  let s = status(dir);
  for (;;) {
    const live = s.replicas.filter((r): r is Live => !('error' in r));
    if (
      live.length === 4 &&
      new Set(live.map((r) => r.stable)).size === 1 &&
      new Set(live.map((r) => r.stableDigest)).size === 1
    )
      return live;
    if (Date.now() > deadline)
      throw new Error(
        `replicas did not agree: ${JSON.stringify(s.replicas.map((r) => ('error' in r ? r.error : [r.stable, r.stableDigest.slice(0, 8)])))}`,
      );
    await new Promise((r) => setTimeout(r, 250));
    s = status(dir);
  }
}

/** Starts one replica of the cluster in `dir` as its own process (as `bfs up` does). */
async function startReplicaProcess(dir: string, id: number): Promise<ChildProcess> {
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
  return child;
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
        await writeFiles(0, 150); // 300+ read-write operations: past two checkpoints (K = 128)

        // A real client no one here wrote, through the same relay.
        const big = randomBytes(150_000);
        fs.writeFileSync(path.join(tmp, 'big.bin'), big);
        await execFileP('nfs-cp', [path.join(tmp, 'big.bin'), nfsUrl(up.port, '//big.bin')]);

        const pid = execFileSync('pgrep', ['-f', `replica --dir ${dir} --id ${victim}`], {
          encoding: 'utf8',
        })
          .trim()
          .split('\n')[0];
        process.kill(Number(pid), 'SIGKILL');
        await writeFiles(150, 220);

        const listed = (await nfs.listAll(dirFh))
          .map((e) => e.name)
          .filter((n) => n.startsWith('file-'));
        assert.equal(listed.length, files.size);
        for (const [name, data] of files) {
          const { handle } = await nfs.lookup(dirFh, name);
          assert.ok(Buffer.from(await nfs.readAll(handle)).equals(data), name);
        }
        await execFileP('nfs-cp', [nfsUrl(up.port, '//big.bin'), path.join(tmp, 'big-back.bin')]);
        assert.ok(fs.readFileSync(path.join(tmp, 'big-back.bin')).equals(big));
        const ls = await execFileP('nfs-ls', ['-R', nfsUrl(up.port, '/')]);
        assert.equal(ls.stdout.match(/file-\d+\.txt/g)?.length, files.size);

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
          await writeFiles(220, 300);
          const all = await allAgree(dir);
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
          await stop(back);
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
