import { strict as assert } from 'node:assert';
import type { ChildProcess } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { PageStore } from '@bfs/page-store';
import {
  type FileHandle,
  MAX_IO_SIZE as SERVER_MAX_IO_SIZE,
  NFS2_MAXDATA,
  Nfs2Client,
  Nfs3Client,
  NfsStatus,
  RpcClient,
  UDP_MAX_IO_SIZE,
  EXPORT_SUFFIX_BYTES,
  authSys,
  encodeV2Handle,
} from 'nfs-server-ts';
import { fileSystemIdentity, initCluster, loadCluster } from '../../src/cluster/config';
import { type RunningReplica, startReplica } from '../../src/cluster/node';
import { freeConsecutivePorts } from '../../src/cluster/ports';
import { decodeHandle as decodeBfsHandle, encodeHandle } from '../../src/fs/handle';

/** The file system's fields of a handle as clients see it (its export suffix dropped). */
const decodeHandle = (fh: FileHandle) =>
  decodeBfsHandle(fh.subarray(0, fh.length - EXPORT_SUFFIX_BYTES));
import { MAX_IO_SIZE } from '../../src/fs/constants';
import { Relay } from '../../src/relay';
import { BfsService } from '../../src/service/bfs-service';
import {
  FLOOD_RSS_BOUND,
  floodConnections,
  rssBytes,
  until,
} from '../../../nfs-server-ts/test/flood';
import { statusOf } from '../../../nfs-server-ts/test/helpers';
import { converged, startBfs, stop } from './helpers';

const STATE = 64 * 2 ** 20;

async function nfs3(port: number, transport: 'tcp' | 'udp' = 'tcp') {
  const rpc = await RpcClient.connect({ port, transport, timeoutMs: 10_000 });
  return { rpc, nfs: new Nfs3Client(rpc, authSys(1000, 1000)) };
}

/**
 * Cluster A: four replicas in this process and `bfs relay` as a real process (its memory is
 * read from /proc). Cluster B: another `bfs init`, its file system executed directly behind an
 * in-process relay, formatted with B's identity as B's replicas would.
 */
describe('bfs relay: handles belong to one cluster, UDP sizes, a connection flood', function () {
  this.timeout(120_000);
  let dirA: string;
  let dirB: string;
  let replicas: RunningReplica[] = [];
  let relayA: ChildProcess;
  let portA: number;
  let relayB: Relay;
  let portB: number;

  before(async () => {
    dirA = fs.mkdtempSync(path.join(os.tmpdir(), 'bfs-limits-a-'));
    dirB = fs.mkdtempSync(path.join(os.tmpdir(), 'bfs-limits-b-'));
    await initCluster({
      dir: dirA,
      replicas: 4,
      basePort: await freeConsecutivePorts(4),
      stateSize: STATE,
    });
    await initCluster({
      dir: dirB,
      replicas: 4,
      basePort: await freeConsecutivePorts(4),
      stateSize: STATE,
    });
    replicas = await Promise.all([0, 1, 2, 3].map((id) => startReplica({ dir: dirA, id })));
    const started = await startBfs(['relay', '--dir', dirA, '--port', '0']);
    relayA = started.child;
    portA = started.port;
    const service = new BfsService(
      new PageStore({ size: STATE }),
      fileSystemIdentity(loadCluster(dirB)),
    );
    relayB = new Relay({
      invoke: async (op, readOnly) =>
        service.execute(op, 1, service.proposeNondet(Date.now()), readOnly),
    });
    portB = await relayB.listen({ port: 0, host: '127.0.0.1' });
  });
  after(async () => {
    if (relayA) await stop(relayA);
    await relayB?.close();
    await Promise.all(replicas.map((r) => r.close()));
    for (const d of [dirA, dirB]) if (d) fs.rmSync(d, { recursive: true, force: true });
  });

  it('each cluster has its own fsid, and new inodes get non-zero generations that differ between clusters and agree on every replica', async () => {
    const a = await nfs3(portA);
    const b = await nfs3(portB);
    try {
      const rootA = decodeHandle(await a.nfs.mount('/'));
      const rootB = decodeHandle(await b.nfs.mount('/'));
      assert.equal(rootA.fsid, loadCluster(dirA).fsid);
      assert.equal(rootB.fsid, loadCluster(dirB).fsid);
      assert.notEqual(rootA.fsid, rootB.fsid);
      assert.notEqual(rootA.generation, 0);
      const gens = async (c: Nfs3Client) => {
        const root = await c.mount('/');
        const out: number[] = [];
        for (let i = 0; i < 8; i++)
          out.push(decodeHandle((await c.create(root, `g${i}`)).handle).generation);
        return out;
      };
      const ga = await gens(a.nfs);
      const gb = await gens(b.nfs);
      assert.ok(ga.every((g) => g !== 0) && gb.every((g) => g !== 0), `${ga} / ${gb}`);
      assert.ok(
        ga.every((g, i) => g !== gb[i]),
        'the same inode numbers, other generations',
      );
    } finally {
      a.rpc.close();
      b.rpc.close();
    }
    await converged(replicas);
    const states = replicas.map((r) => Buffer.from(r.service.state.read(0, STATE)));
    for (const s of states.slice(1)) assert.ok(s.equals(states[0]), 'replica states differ');
  });

  it('a handle of another cluster, or a forged root handle used without MOUNT, is STALE (NFSv3 and NFSv2); a malformed one BADHANDLE', async () => {
    const a = await nfs3(portA);
    const b = await nfs3(portB);
    const v2rpc = await RpcClient.connect({ port: portA, transport: 'udp' });
    const v2 = new Nfs2Client(v2rpc, authSys(1000, 1000));
    try {
      const foreign = await b.nfs.mount('/');
      const { handle: foreignFile } = await b.nfs.create(foreign, 'theirs');
      const fsidA = loadCluster(dirA).fsid!;
      const forged: FileHandle[] = [
        foreign,
        foreignFile,
        encodeHandle({ fsid: 1, ino: 1, generation: 0 }), // what every cluster used to have
        encodeHandle({ fsid: fsidA, ino: 1, generation: 0 }),
        encodeHandle({ fsid: fsidA, ino: 1, generation: 1 }),
      ];
      for (const fh of forged) {
        assert.equal(await statusOf(a.nfs.getattr(fh)), NfsStatus.STALE);
        assert.equal(await statusOf(a.nfs.lookup(fh, 'x')), NfsStatus.STALE);
        assert.equal(await statusOf(v2.getattr(encodeV2Handle(fh))), NfsStatus.STALE);
      }
      // Changed bytes fail the export MAC (STALE); a handle too short to be ours is BADHANDLE.
      const changed = Uint8Array.from(await a.nfs.mount('/'));
      changed[0] = 99;
      assert.equal(await statusOf(a.nfs.getattr(changed)), NfsStatus.STALE);
      assert.equal(await statusOf(a.nfs.getattr(foreign.subarray(0, 8))), NfsStatus.BADHANDLE);
      // A's own root handle, from MOUNT, works.
      await a.nfs.getattr(await a.nfs.mount('/'));
    } finally {
      a.rpc.close();
      b.rpc.close();
      v2rpc.close();
    }
  });

  it('a READ of 0xffffffff bytes through replication is a short read: UDP_MAX_IO_SIZE over UDP, MAX_IO_SIZE over TCP; FSINFO over UDP fits a datagram', async () => {
    const tcp = await nfs3(portA);
    const udp = await nfs3(portA, 'udp');
    const v2rpc = await RpcClient.connect({ port: portA, transport: 'udp' });
    const v2 = new Nfs2Client(v2rpc, authSys(1000, 1000));
    try {
      const root = await tcp.nfs.mount('/');
      const { handle } = await tcp.nfs.create(root, 'big');
      const chunk = new Uint8Array(MAX_IO_SIZE).fill(3);
      for (let off = 0; off < 2 * MAX_IO_SIZE; off += MAX_IO_SIZE) {
        await tcp.nfs.write(handle, off, chunk, 'file_sync');
      }
      const overUdp = await udp.nfs.read(handle, 0, 0xffffffff);
      assert.deepEqual([overUdp.data.length, overUdp.eof], [UDP_MAX_IO_SIZE, false]);
      const overTcp = await tcp.nfs.read(handle, 0, 0xffffffff);
      assert.deepEqual([overTcp.data.length, overTcp.eof], [MAX_IO_SIZE, false]);
      assert.ok(MAX_IO_SIZE <= SERVER_MAX_IO_SIZE, 'BFS asks for no more than the server maximum');
      const v2read = await v2.read(encodeV2Handle(handle), 0, 0xffffffff);
      assert.equal(v2read.data.length, NFS2_MAXDATA);
      const info = await udp.nfs.fsinfo(root);
      assert.equal(info.rtmax, UDP_MAX_IO_SIZE);
      assert.equal(info.wtmax, UDP_MAX_IO_SIZE);
      assert.ok(info.rtpref <= UDP_MAX_IO_SIZE && info.dtpref <= UDP_MAX_IO_SIZE);
      assert.equal((await tcp.nfs.fsinfo(root)).rtmax, MAX_IO_SIZE);
    } finally {
      tcp.rpc.close();
      udp.rpc.close();
      v2rpc.close();
    }
    await converged(replicas);
  });

  it('under a flood of 3,000 idle and half-sent connections the relay still serves a new client, and its memory stays bounded', async () => {
    for (let i = 0; i < 5; i++) {
      const c = await nfs3(portA);
      await c.nfs.getattr(await c.nfs.mount('/'));
      c.rpc.close();
    }
    const before = rssBytes(relayA.pid!);
    const flood = await floodConnections({
      port: portA,
      addresses: 60,
      perAddress: 50,
      partialBytes: (i) => (i % 2 === 0 ? 128 * 1024 : 0),
    });
    try {
      const t0 = performance.now();
      const c = await nfs3(portA);
      const root = await c.nfs.mount('/');
      await c.nfs.create(root, 'during-flood');
      c.rpc.close();
      const served = performance.now() - t0;
      await until(() => flood.open() <= 1024, 5000, 'flood connections closed down to the cap');
      const after = rssBytes(relayA.pid!);
      console.log(
        `      relay flood: ${flood.opened} opened, ${flood.open()} still open; new client served in ` +
          `${served.toFixed(0)} ms; relay RSS ${(before / 2 ** 20).toFixed(0)} -> ${(after / 2 ** 20).toFixed(0)} MiB`,
      );
      assert.ok(flood.opened >= 2900);
      assert.ok(after - before < FLOOD_RSS_BOUND, `relay RSS grew by ${after - before} bytes`);
    } finally {
      flood.close();
    }
  });
});
