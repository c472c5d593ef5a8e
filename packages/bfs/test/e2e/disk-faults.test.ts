import { strict as assert } from 'node:assert';
import { spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { type FileHandle, Nfs3Client, RpcClient, authSys } from 'nfs-server-ts';
import { damageLevelFile } from '../../../page-store/test/fixtures/damage';
import { initCluster, loadCluster } from '../../src/cluster/config';
import {
  type RunningRelay,
  type RunningReplica,
  startRelay,
  startReplica,
} from '../../src/cluster/node';
import { freeConsecutivePorts } from '../../src/cluster/ports';
import { clusterStatus } from '../../src/cluster/status-page';
import { statusPort } from '../../src/cluster/status';
import {
  DISK_PROBE_INTERVAL_MS,
  type SupervisedReplica,
  superviseReplica,
} from '../../src/cluster/supervisor';
import { BFS_CLI, execFileP } from './helpers';

const STATE = 64 * 2 ** 20;
/** The small disk of replica 3 in the full-disk test. */
const TMPFS_BYTES = 48 * 2 ** 20;

async function until<T>(what: string, ms: number, probe: () => T | undefined | false): Promise<T> {
  const deadline = Date.now() + ms;
  for (;;) {
    const v = probe();
    if (v !== undefined && v !== false) return v;
    if (Date.now() > deadline) throw new Error(`not within ${ms} ms: ${what}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

/** A tmpfs of `bytes` at `dir`, or why this machine cannot make one (it needs root). */
function mountTmpfs(dir: string, bytes: number): string | null {
  const r = spawnSync('mount', ['-t', 'tmpfs', '-o', `size=${bytes}`, 'tmpfs', dir], {
    encoding: 'utf8',
  });
  return r.status === 0 ? null : (r.stderr || r.error?.message || 'mount failed').trim();
}

/** Fills the file system of `dir` to the last byte; returns the filler's path. */
function fillUp(dir: string): string {
  const file = path.join(dir, 'filler');
  const fd = fs.openSync(file, 'w');
  try {
    for (const size of [2 ** 20, 4096, 1]) {
      const chunk = Buffer.alloc(size, 1);
      try {
        for (;;) fs.writeSync(fd, chunk);
      } catch (e) {
        if ((e as NodeJS.ErrnoException).code !== 'ENOSPC') throw e;
      }
    }
  } finally {
    fs.closeSync(fd);
  }
  return file;
}

/**
 * Issue 18, items 5 and 6: a replica's damaged commit log and a replica's full disk. Replicas 0-2
 * run as plain replicas in this process, replica 3 under the supervisor `bfs replica` uses, with
 * its data directory on a disk of its own.
 */
describe('bfs replica: a damaged commit log and a full disk', function () {
  this.timeout(180_000);
  let dir: string;
  let data3: string;
  let mounted = false;
  let replicas: RunningReplica[] = [];
  let r3: SupervisedReplica | undefined;
  let relay: RunningRelay;
  let rpc: RpcClient;
  let nfs: Nfs3Client;
  let root: FileHandle;
  let written = 0;

  const all = () => [...replicas, r3!.current()!];
  async function writeFiles(count: number): Promise<void> {
    for (let i = 0; i < count; i++) {
      const { handle } = await nfs.create(root, `f${written++}`);
      await nfs.write(handle, 0, randomBytes(3000), 'file_sync');
    }
  }
  /** Replica 3 executed what the others did and holds their stable checkpoint's digest. */
  async function caughtUp(ms = 60_000): Promise<void> {
    await until('replica 3 catches up', ms, () => {
      const r = all().map((x) => x.status());
      const same = r.every((s) => s.lastExecuted === r[0].lastExecuted);
      return same && r[3].stable === r[0].stable && r[3].stableDigest === r[0].stableDigest;
    });
  }

  before(async () => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'bfs-disk-'));
    data3 = path.join(dir, 'disk-3');
    fs.mkdirSync(data3);
    mounted = mountTmpfs(data3, TMPFS_BYTES) === null;
    await initCluster({
      dir,
      replicas: 4,
      basePort: await freeConsecutivePorts(4),
      stateSize: STATE,
    });
    replicas = await Promise.all([0, 1, 2].map((id) => startReplica({ dir, id })));
    r3 = await superviseReplica({ dir, id: 3, dataDir: data3 });
    relay = await startRelay({ dir, port: 0 });
    rpc = await RpcClient.connect({ port: relay.port, timeoutMs: 20_000 });
    nfs = new Nfs3Client(rpc, authSys(1000, 1000));
    root = await nfs.mount('/');
  });
  after(async () => {
    rpc?.close();
    await relay?.close();
    await r3?.close();
    await Promise.all(replicas.map((r) => r.close()));
    if (mounted) spawnSync('umount', [data3]);
    fs.rmSync(dir, { recursive: true, force: true });
  });

  it('a commit log with 4 KB overwritten is moved aside at start: the replica runs (no LEVEL_CORRUPTION crash), counts as recovering, and catches up', async () => {
    await writeFiles(150);
    await r3!.close();
    const logDir = path.join(data3, 'commit-log');
    damageLevelFile(logDir, '.log');
    r3 = await superviseReplica({ dir, id: 3, dataDir: data3 });
    const aside = fs.readdirSync(data3).filter((f) => f.startsWith('commit-log.corrupt-'));
    assert.equal(aside.length, 1, 'the damaged log is kept for inspection');
    assert.ok(r3.current()!.replica.recovering, 'an empty log vouches for nothing of before');
    // It crashed 1-3 s after every start: it must still run after the next checkpoints.
    await writeFiles(300);
    await caughtUp();
    assert.equal(r3.current()!.disk.failed, null);
    fs.rmSync(path.join(data3, aside[0]), { recursive: true, force: true });
  });

  it('a damaged view file is moved aside (the replica stays passive through the views its log shows and counts as recovering); a damaged key-epochs file is ignored', async () => {
    await r3!.close();
    fs.writeFileSync(path.join(data3, 'view'), 'garbage\n');
    fs.writeFileSync(path.join(data3, 'key-epochs.json'), '{"not": "epochs"');
    r3 = await superviseReplica({ dir, id: 3, dataDir: data3 });
    const aside = fs.readdirSync(data3).filter((f) => f.startsWith('view.corrupt-'));
    assert.equal(aside.length, 1);
    assert.ok(r3.current()!.replica.recovering);
    await writeFiles(300);
    await caughtUp();
    assert.match(fs.readFileSync(path.join(data3, 'view'), 'utf8'), /^\d+\n$/, 'written anew');
  });

  it('a full disk fences the replica (it sends nothing), bfs status, the status JSON and the metrics say so, the others serve on, and it rejoins by itself once the disk has room; its databases open after a restart', async function () {
    if (!mounted) this.skip();
    const filler = fillUp(data3);
    const before = r3!.current()!;
    // The others go on: every one of these is acknowledged, until and after replica 3's
    // next write finds no room.
    const deadline = Date.now() + 60_000;
    while (!before.disk.failed && Date.now() < deadline) await writeFiles(10);
    const failed = before.disk.failed;
    assert.ok(failed, 'replica 3 reports its failed write');
    assert.match(`${failed.code} ${failed.error}`, /ENOSPC|space|IO error/i);
    assert.ok(before.node.fenced, 'fenced: it votes no more');

    const cfg = loadCluster(dir);
    const cluster = await clusterStatus(cfg);
    assert.deepEqual(cluster.diskFailing, [3]);
    assert.ok(cluster.healthy, 'one fenced replica is within f');
    const json = (await (await fetch(`http://127.0.0.1:${statusPort(cfg, 3)}/status`)).json()) as {
      disk: { failed: unknown };
    };
    assert.ok(json.disk.failed, 'GET /status says it');
    const metrics = await (await fetch(`http://127.0.0.1:${statusPort(cfg, 3)}/metrics`)).text();
    assert.match(metrics, /^bfs_replica_persist_failed\{replica="3"\} 1$/m);
    // Not spawnSync: this process serves the status ports the command asks.
    const status = await execFileP(process.execPath, [BFS_CLI, 'status', '--dir', dir]);
    assert.match(
      status.stdout,
      /replica 3: DISK FAILING since .*: (commit-log|page-store|view-file|key-epochs)/,
    );
    await writeFiles(20);

    fs.rmSync(filler);
    const after = await until(
      'replica 3 restarts from disk',
      10 * DISK_PROBE_INTERVAL_MS + 20_000,
      () => {
        const c = r3!.current();
        return c && c !== before ? c : undefined;
      },
    );
    assert.equal(after.disk.restarts, 1);
    assert.equal(after.disk.failed, null);
    await writeFiles(300);
    await caughtUp();
    const again = await (await fetch(`http://127.0.0.1:${statusPort(cfg, 3)}/metrics`)).text();
    assert.match(again, /^bfs_replica_persist_failed\{replica="3"\} 0$/m);
    assert.match(again, /^bfs_replica_disk_restarts\{replica="3"\} 1$/m);

    // Its databases open after a restart of the process.
    await r3!.close();
    r3 = await superviseReplica({ dir, id: 3, dataDir: data3 });
    assert.equal(r3.current()!.disk.failures, 0);
    await writeFiles(20);
    await caughtUp();
  });
});
