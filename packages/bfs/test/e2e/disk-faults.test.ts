import { strict as assert } from 'node:assert';
import { type ChildProcess, spawnSync } from 'node:child_process';
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
import { type ReplicaStatus, fetchStatus, statusPort } from '../../src/cluster/status';
import { DISK_PROBE_INTERVAL_MS } from '../../src/cluster/supervisor';
import { BFS_CLI, execFileP, startBfs, stop } from './helpers';

const STATE = 64 * 2 ** 20;
/** The small disk of replica 3 in the full-disk test. */
const TMPFS_BYTES = 48 * 2 ** 20;

async function until<T>(
  what: string,
  ms: number,
  probe: () => Promise<T | undefined | false>,
): Promise<T> {
  const deadline = Date.now() + ms;
  for (;;) {
    const v = await probe();
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
 * run in this process, replica 3 as a real `bfs replica` process with its data directory on a
 * disk of its own (a tmpfs, where the machine lets root mount one).
 */
describe('bfs replica: a damaged commit log and a full disk', function () {
  this.timeout(180_000);
  let dir: string;
  let data3: string;
  let mounted = false;
  let replicas: RunningReplica[] = [];
  let r3: { child: ChildProcess; stderr: () => string } | undefined;
  let relay: RunningRelay;
  let rpc: RpcClient;
  let nfs: Nfs3Client;
  let root: FileHandle;
  let written = 0;

  const startR3 = async (): Promise<void> => {
    r3 = await startBfs(
      ['replica', '--dir', dir, '--id', '3', '--data', data3],
      30_000,
      /^ready replica (\d+)$/m,
    );
  };
  const status3 = async (): Promise<ReplicaStatus> => {
    const s = await fetchStatus('127.0.0.1', statusPort(loadCluster(dir), 3));
    if ('error' in s) throw new Error(`replica 3: ${s.error}; stderr:\n${r3?.stderr()}`);
    return s;
  };
  const metrics3 = async (): Promise<string> =>
    (await fetch(`http://127.0.0.1:${statusPort(loadCluster(dir), 3)}/metrics`)).text();
  async function writeFiles(count: number): Promise<void> {
    for (let i = 0; i < count; i++) {
      const { handle } = await nfs.create(root, `f${written++}`);
      await nfs.write(handle, 0, randomBytes(3000), 'file_sync');
    }
  }
  /** Replica 3 executed what the others did and holds their stable checkpoint's digest. */
  async function caughtUp(ms = 60_000): Promise<ReplicaStatus> {
    return until('replica 3 catches up', ms, async () => {
      const s = await status3();
      const r = replicas.map((x) => x.status());
      const same = r.every((o) => o.lastExecuted === s.lastExecuted);
      return same && s.stable === r[0].stable && s.stableDigest === r[0].stableDigest && s;
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
    await startR3();
    relay = await startRelay({ dir, port: 0 });
    rpc = await RpcClient.connect({ port: relay.port, timeoutMs: 20_000 });
    nfs = new Nfs3Client(rpc, authSys(1000, 1000));
    root = await nfs.mount('/');
  });
  after(async () => {
    rpc?.close();
    await relay?.close();
    if (r3) await stop(r3.child);
    await Promise.all(replicas.map((r) => r.close()));
    if (mounted) spawnSync('umount', [data3]);
    fs.rmSync(dir, { recursive: true, force: true });
  });

  it('a commit log with 4 KB overwritten is moved aside at start: the replica runs on (it crashed with LEVEL_CORRUPTION 1-3 s after every start), counts as recovering, and catches up', async () => {
    await writeFiles(150);
    assert.equal(await stop(r3!.child), 0);
    damageLevelFile(path.join(data3, 'commit-log'), '.log');
    await startR3();
    const aside = fs.readdirSync(data3).filter((f) => f.startsWith('commit-log.corrupt-'));
    assert.equal(aside.length, 1, 'the damaged log is kept for inspection');
    assert.ok((await status3()).recovering, 'an empty log vouches for nothing of before');
    assert.match(r3!.stderr(), /the commit log is damaged: moved aside/);
    // Past the next checkpoints, which is where it crashed.
    await writeFiles(300);
    const s = await caughtUp();
    assert.equal(s.disk?.failed, null);
    assert.equal(r3!.child.exitCode, null, 'still running');
    fs.rmSync(path.join(data3, aside[0]), { recursive: true, force: true });
  });

  it('a damaged view file is moved aside (the replica stays passive through the views its log shows and counts as recovering); a damaged key-epochs file is ignored', async () => {
    assert.equal(await stop(r3!.child), 0);
    fs.writeFileSync(path.join(data3, 'view'), 'garbage\n');
    fs.writeFileSync(path.join(data3, 'key-epochs.json'), '{"not": "epochs"');
    await startR3();
    const aside = fs.readdirSync(data3).filter((f) => f.startsWith('view.corrupt-'));
    assert.equal(aside.length, 1);
    assert.ok((await status3()).recovering);
    assert.match(fs.readFileSync(path.join(data3, 'view'), 'utf8'), /^\d+\n$/, 'written anew');
    await writeFiles(300);
    await caughtUp();
  });

  it('a full disk fences the replica, bfs status, the status JSON and the metrics say so, the others serve on, and it rejoins by itself once the disk has room; its databases open after a restart', async function () {
    if (!mounted) this.skip();
    const filler = fillUp(data3);
    // Every one of these is acknowledged, until and after replica 3's next write finds no room.
    const deadline = Date.now() + 60_000;
    let failed = (await status3()).disk?.failed;
    while (!failed && Date.now() < deadline) {
      await writeFiles(10);
      failed = (await status3()).disk?.failed;
    }
    assert.ok(failed, 'replica 3 reports its failed write');
    assert.match(`${failed.code} ${failed.error}`, /ENOSPC|space|IO error/i);
    assert.match(r3!.stderr(), /a durable write failed: this replica sends nothing any more/);

    const cluster = await clusterStatus(loadCluster(dir));
    assert.deepEqual(cluster.diskFailing, [3]);
    assert.ok(cluster.healthy, 'one fenced replica is within f');
    assert.match(await metrics3(), /^bfs_replica_persist_failed\{replica="3"\} 1$/m);
    const status = await execFileP(process.execPath, [BFS_CLI, 'status', '--dir', dir]);
    assert.match(
      status.stdout,
      /replica 3: DISK FAILING since .*: (commit-log|page-store|view-file|key-epochs): /,
    );
    await writeFiles(20);

    fs.rmSync(filler);
    await until('replica 3 restarts from disk', 10 * DISK_PROBE_INTERVAL_MS + 20_000, async () => {
      const d = (await fetchStatus('127.0.0.1', statusPort(loadCluster(dir), 3))) as ReplicaStatus;
      return d.disk?.restarts === 1 && d.disk.failed === null && !d.disk.restarting;
    });
    await writeFiles(300);
    await caughtUp();
    const again = await metrics3();
    assert.match(again, /^bfs_replica_persist_failed\{replica="3"\} 0$/m);
    assert.match(again, /^bfs_replica_disk_restarts\{replica="3"\} 1$/m);
    assert.equal(r3!.child.exitCode, null, 'the same process');

    // Its databases open after a restart of the process.
    assert.equal(await stop(r3!.child), 0);
    await startR3();
    assert.equal((await status3()).disk?.failures, 0);
    await writeFiles(20);
    await caughtUp();
  });
});
