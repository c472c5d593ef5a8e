/**
 * Locks live in the replicated state, so they survive a replica killed with SIGKILL, primary or
 * backup, with no reclaim and no grace period (issue 23). Real `bfs replica` and `bfs relay`
 * processes; the project's NLM client plays the client's lock manager.
 */
import { strict as assert } from 'node:assert';
import type { ChildProcess } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { NlmClient, Nfs3Client, RpcClient, authSys } from 'nfs-server-ts';
import { initCluster, loadCluster } from '../../src/cluster/config';
import { clusterStatus } from '../../src/cluster/status-page';
import { freeConsecutivePorts } from '../../src/cluster/ports';
import { NlmStat } from '../../src/locks/lock-table';
import { startBfs, stop } from './helpers';

const STATE = 64 * 2 ** 20;
const READY_REPLICA = /^ready replica (\d+)$/m;

async function kill(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const exited = new Promise((r) => child.once('exit', r));
  child.kill('SIGKILL');
  await exited;
}

describe('locks survive SIGKILL of the primary and of a backup (real processes)', function () {
  this.timeout(180_000);
  let dir: string;
  const replicas: ChildProcess[] = [];
  let relay: ChildProcess | undefined;
  let rpc: RpcClient | undefined;

  const startReplica = async (id: number) => {
    const r = await startBfs(['replica', '--dir', dir, '--id', String(id)], 60_000, READY_REPLICA);
    replicas[id] = r.child;
  };

  before(async () => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'bfs-locks-kill-'));
    await initCluster({
      dir,
      replicas: 4,
      basePort: await freeConsecutivePorts(4),
      stateSize: STATE,
    });
    await Promise.all([0, 1, 2, 3].map(startReplica));
  });
  after(async () => {
    rpc?.close();
    if (relay) await stop(relay);
    await Promise.all(replicas.map((c) => c && stop(c)));
    fs.rmSync(dir, { recursive: true, force: true });
  });

  it('a held lock still excludes others after the primary is killed, after it restarts and after a backup is killed; unlock and lock go on', async () => {
    const r = await startBfs(['relay', '--dir', dir, '--port', '0', '--key-refresh', '0']);
    relay = r.child;
    rpc = await RpcClient.connect({ port: r.port });
    const nfs = new Nfs3Client(rpc, authSys(1000, 1000));
    const { handle } = await nfs.create(await nfs.mount('/'), 'db');
    const nlm = new NlmClient(rpc);
    const cookie = Buffer.from('k');
    const owner = (svid: number) => ({
      callerName: `host-${svid}`,
      fh: handle,
      oh: Buffer.from(`${svid}@host`),
      svid,
      offset: 0n,
      length: 0n,
    });
    const lock = async (svid: number) =>
      (
        await nlm.lock({
          cookie,
          block: false,
          exclusive: true,
          lock: owner(svid),
          reclaim: false,
          state: 1,
        })
      ).stat;
    const test = async (svid: number) =>
      (await nlm.test({ cookie, exclusive: true, lock: owner(svid) })).stat;

    assert.equal(await lock(1), NlmStat.GRANTED);
    assert.equal(await lock(2), NlmStat.DENIED);

    await kill(replicas[0]!); // the primary of view 0
    assert.equal(await test(2), NlmStat.DENIED, 'TEST (read-only path) sees the lock');
    assert.equal(await lock(2), NlmStat.DENIED, 'a LOCK after the view change is still refused');

    await startReplica(0); // from its disk, no reclaim
    assert.equal(await lock(2), NlmStat.DENIED);
    // A backup of the view the cluster is in now (not the restarted replica 0).
    const s = await clusterStatus(loadCluster(dir), 2000);
    const backup = [1, 2, 3].find((i) => i !== s.primary)!;
    await kill(replicas[backup]!);
    // Three replicas answer now, the restarted one among them: it holds the same lock table.
    assert.equal(await test(2), NlmStat.DENIED);
    assert.equal((await nlm.unlock({ cookie, lock: owner(1) })).stat, NlmStat.GRANTED);
    assert.equal(await lock(2), NlmStat.GRANTED, 'the lock passes on');
    assert.equal(await lock(1), NlmStat.DENIED);
  });
});
