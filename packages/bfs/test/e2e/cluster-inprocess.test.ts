import { strict as assert } from 'node:assert';
import { randomBytes } from 'node:crypto';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { initCluster, loadCluster } from '../../src/cluster/config';
import { statusPort } from '../../src/cluster/status';
import {
  type RunningRelay,
  type RunningReplica,
  startRelay,
  startReplica,
} from '../../src/cluster/node';
import { Nfs2Client, Nfs3Client, NfsError, RpcClient, authSys } from 'nfs-server-ts';
import { converged, execFileP, nfsUrl } from './helpers';
import { freeConsecutivePorts } from '../../src/cluster/ports';

const STATE = 64 * 2 ** 20;

describe('bfs cluster: four replicas and a relay over TCP, with libnfs-utils', function () {
  this.timeout(120_000);
  let dir: string;
  let replicas: RunningReplica[] = [];
  let relay: RunningRelay;

  before(async () => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'bfs-cluster-'));
    await initCluster({
      dir,
      replicas: 4,
      basePort: await freeConsecutivePorts(4),
      stateSize: STATE,
    });
    // Replica 3 keeps its store outside the cluster directory, as a container volume does.
    replicas = await Promise.all(
      [0, 1, 2, 3].map((id) =>
        startReplica({ dir, id, dataDir: id === 3 ? path.join(dir, 'volume-3') : undefined }),
      ),
    );
    assert.ok(fs.existsSync(path.join(dir, 'volume-3', 'store')), '--data is honoured');
    assert.ok(!fs.existsSync(path.join(dir, 'replica-3')));
    relay = await startRelay({ dir, port: 0, httpPort: 0 });
  });
  after(async () => {
    await relay?.close();
    await Promise.all(replicas.map((r) => r.close()));
    fs.rmSync(dir, { recursive: true, force: true });
  });

  it('copies files in and out byte for byte through agreement, and every replica ends with the same state', async () => {
    const files = [0, 1, 5000, 300_000, 2 * 2 ** 20 + 7].map((n, i) => ({
      name: `r${i}.bin`,
      data: randomBytes(n),
    }));
    for (const f of files) {
      const local = path.join(dir, f.name);
      fs.writeFileSync(local, f.data);
      await execFileP('nfs-cp', [local, nfsUrl(relay.port, `//${f.name}`)]);
    }
    for (const f of files) {
      const back = path.join(dir, `back-${f.name}`);
      await execFileP('nfs-cp', [nfsUrl(relay.port, `//${f.name}`), back]);
      assert.ok(fs.readFileSync(back).equals(f.data), `${f.name}: ${f.data.length} bytes`);
    }
    const ls = await execFileP('nfs-ls', [nfsUrl(relay.port, '/')]);
    for (const f of files) assert.match(ls.stdout, new RegExp(f.name));
    assert.equal(relay.relay.stats.failed, 0);
    // The relay signs its writes with its key from cluster.json, and the primary checks them.
    const primary = replicas[0]!.replica.stats;
    assert.ok((primary.requestSignatureVerified ?? 0) > 0, 'the primary verified signatures');
    assert.equal(primary.dropBadRequestSignature ?? 0, 0);
    await converged(replicas);
    const states = replicas.map((r) => Buffer.from(r.service.state.read(0, STATE)));
    for (const s of states.slice(1)) assert.ok(s.equals(states[0]), 'replica states differ');
  });

  it('serves NFSv2 clients (MOUNT v1, NFS v2) through the same agreement', async () => {
    const rpc = await RpcClient.connect({ port: relay.port });
    try {
      const v2 = new Nfs2Client(rpc, authSys(1000, 1000));
      const root = await v2.mount('/');
      const { handle: dir } = await v2.mkdir(root, 'v2dir', { mode: 0o755 });
      const { handle } = await v2.create(dir, 'v2file', { mode: 0o644 });
      const data = randomBytes(8192);
      await v2.write(handle, 0, data);
      assert.ok(Buffer.from((await v2.read(handle, 0, 8192)).data).equals(data));
      const names = (await v2.readdir(dir)).entries.map((e) => e.name);
      assert.ok(names.includes('v2file'), names.join(','));
      await v2.remove(dir, 'v2file');
      await assert.rejects(v2.lookup(dir, 'v2file'), (e: unknown) => e instanceof NfsError);
    } finally {
      rpc.close();
    }
  });

  it('lists a tree of 2,000 files completely with nfs-ls -R', async () => {
    const rpc = await RpcClient.connect({ port: relay.port });
    try {
      const nfs = new Nfs3Client(rpc, authSys(1000, 1000));
      const root = await nfs.mount('/');
      const { handle: top } = await nfs.mkdir(root, 'big-tree');
      const pending: Promise<unknown>[] = [];
      for (let d = 0; d < 10; d++) {
        const { handle: sub } = await nfs.mkdir(top, `d${d}`);
        // Many calls outstanding at once, as a real client pipelines them.
        for (let f = 0; f < 200; f++) pending.push(nfs.create(sub, `f${d}-${f}`));
        await Promise.all(pending.splice(0));
      }
    } finally {
      rpc.close();
    }
    const ls = await execFileP('nfs-ls', ['-R', nfsUrl(relay.port, '/big-tree')]);
    const files = ls.stdout.match(/f\d+-\d+/g) ?? [];
    assert.equal(new Set(files).size, 2000);
  });

  it('exposes Prometheus metrics: replica progress and drops by reason, relay latency by path', async () => {
    // One sequence number per call made one after another (pipelined calls share batches): past
    // the first checkpoint interval (K = 128), so that a checkpoint is stable.
    const rpc = await RpcClient.connect({ port: relay.port });
    try {
      const nfs = new Nfs3Client(rpc, authSys(1000, 1000));
      const root = await nfs.mount('/');
      const { handle: d } = await nfs.mkdir(root, 'sequential');
      for (let i = 0; i < 130; i++) await nfs.create(d, `s${i}`);
    } finally {
      rpc.close();
    }
    const cfg = loadCluster(dir);
    const metrics = async () =>
      (await fetch(`http://127.0.0.1:${statusPort(cfg, 1)}/metrics`)).text();
    let text = await metrics();
    for (let i = 0; i < 50 && !/^bfs_replica_stable_checkpoint\{[^}]*\} [1-9]/m.test(text); i++) {
      await new Promise((r) => setTimeout(r, 100));
      text = await metrics();
    }
    const value = (name: string) =>
      Number(new RegExp(`^${name}\\{[^}]*\\} (\\S+)$`, 'm').exec(text)?.[1]);
    assert.equal(value('bfs_replica_view'), 0);
    assert.equal(value('bfs_replica_primary'), 0);
    assert.ok(value('bfs_replica_last_executed') > 100, 'progress after the tests above');
    assert.ok(value('bfs_replica_stable_checkpoint') >= 128);
    assert.match(text, /^process_cpu_seconds_total/m);
    assert.equal(value('bfs_replica_recovering'), 0, 'a fresh replica is not recovering');
    // Keys were refreshed at start (an epoch within the last hour) and announced to the others.
    assert.ok(Math.abs(value('bfs_replica_key_epoch_seconds') - Date.now() / 1000) < 3600);
    assert.match(text, /^bfs_replica_key_events_total\{[^}]*event="keyRefresh"[^}]*\} [1-9]/m);
    // The relay refreshes the keys of its replies too, one NEW-KEY for all its client ids.
    assert.match(
      text,
      /^bfs_replica_key_events_total\{[^}]*event="clientNewKeyAccepted"[^}]*\} [1-9]/m,
    );
    const relayText = await (await fetch(`http://127.0.0.1:${relay.httpPort}/metrics`)).text();
    assert.match(
      relayText,
      /^bfs_relay_call_seconds_count\{path="read-write",result="ok"\} [1-9]/m,
    );
    assert.match(relayText, /^bfs_relay_call_seconds_count\{path="read-only",result="ok"\} [1-9]/m);
    assert.match(relayText, /^bfs_relay_events_total\{event="forwarded"\} [1-9]/m);
  });
});
