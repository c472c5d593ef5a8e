import { strict as assert } from 'node:assert';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import {
  EXPORT_SUFFIX_BYTES,
  MountStatus,
  Nfs3Client,
  Nfs3Proc,
  NfsStatus,
  RpcClient,
  RpcError,
  XdrReader,
  XdrWriter,
  authSys,
} from 'nfs-server-ts';
import { initCluster, loadCluster } from '../../src/cluster/config';
import { addExports, removeExports } from '../../src/cluster/exports-command';
import { freeConsecutivePorts } from '../../src/cluster/ports';
import { formatStatus } from '../../src/cluster/status-command';
import { clusterStatus } from '../../src/cluster/status-page';
import {
  type RunningRelay,
  type RunningReplica,
  startRelay,
  startReplica,
} from '../../src/cluster/node';
import { OpKind, decodeResult, encodeOp } from '../../src/service/op';
import { statusOf } from '../../../nfs-server-ts/test/helpers';
import { execFileP, nfsUrl } from './helpers';

const STATE = 64 * 2 ** 20;

/**
 * The exports of the tests below, as `bfs exports add` writes them:
 *   0  /      127.0.0.1(rw,no_root_squash)
 *   1  /pub   127.0.0.1(ro) 127.0.0.2(ro)          (two entries: 1 and 2)
 *   3  /home  127.0.0.3(rw,all_squash,anonuid=3000,anongid=3000)
 * 127.0.0.5 is admitted by none.
 */
const LINES = [
  '/ 127.0.0.1(rw,no_root_squash)',
  '/pub 127.0.0.1(ro) 127.0.0.2(ro)',
  '/home 127.0.0.3(rw,all_squash,anonuid=3000,anongid=3000)',
];

describe('bfs exports: address, squash and ro rules, enforced by the relay and by the replicas', function () {
  this.timeout(300_000);
  let dir: string;
  let replicas: RunningReplica[] = [];
  let relay: RunningRelay;
  const rpcs: RpcClient[] = [];
  /** A client of the relay calling from `from` (a loopback address) as uid/gid `uid`. */
  const client = async (from: string, uid = 1000) => {
    const rpc = await RpcClient.connect({ port: relay.port, localAddress: from });
    rpcs.push(rpc);
    return new Nfs3Client(rpc, authSys(uid, uid));
  };
  let admin: Nfs3Client;
  let doc: Uint8Array;

  before(async () => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'bfs-exports-'));
    await initCluster({
      dir,
      replicas: 4,
      basePort: await freeConsecutivePorts(4),
      stateSize: STATE,
    });
    for (const line of LINES) addExports(dir, line);
    removeExports(dir, '/', '*'); // the default export bfs init wrote
    assert.equal(loadCluster(dir).exports!.length, 4);
    replicas = await Promise.all([0, 1, 2, 3].map((id) => startReplica({ dir, id })));
    relay = await startRelay({ dir, port: 0 });
    admin = await client('127.0.0.1', 0);
    const root = await admin.mount('/');
    const pub = await admin.mkdir(root, 'pub', { mode: 0o755 });
    doc = (await admin.create(pub.handle, 'doc', { mode: 'guarded', attributes: { mode: 0o644 } }))
      .handle;
    await admin.write(doc, 0, Buffer.from('public text'), 'file_sync');
    await admin.mkdir(root, 'home', { mode: 0o777 });
  });

  after(async () => {
    for (const r of rpcs) r.close();
    await relay?.close();
    await Promise.all(replicas.map((r) => r.close()));
    fs.rmSync(dir, { recursive: true, force: true });
  });

  it("MOUNT's EXPORT lists every exported path with its client groups (showmount -e)", async () => {
    const anyone = await client('127.0.0.5');
    assert.deepEqual(await anyone.exports(), [
      { dir: '/', groups: ['127.0.0.1'] },
      { dir: '/pub', groups: ['127.0.0.1', '127.0.0.2'] },
      { dir: '/home', groups: ['127.0.0.3'] },
    ]);
  });

  it('MNT: ACCES for a path whose exports do not admit the client', async () => {
    const two = await client('127.0.0.2');
    assert.equal(await statusOf(two.mount('/')), MountStatus.ACCES);
    assert.equal(await statusOf(two.mount('/home')), MountStatus.ACCES);
    const three = await client('127.0.0.3');
    assert.equal(
      await statusOf(three.mount('/etc')),
      MountStatus.ACCES,
      "'/' covers it, for 127.0.0.1",
    );
    const only = await client('127.0.0.5');
    assert.equal(await statusOf(only.mount('/pub')), MountStatus.ACCES);
  });

  it('a client no export admits gets an RPC authentication error for every NFS call, and nothing changes', async () => {
    const stranger = await client('127.0.0.5');
    const before = await admin.readAll(doc);
    await assert.rejects(stranger.getattr(doc), (e: unknown) => e instanceof RpcError);
    await assert.rejects(
      stranger.write(doc, 0, Buffer.from('defaced'), 'file_sync'),
      (e: unknown) => e instanceof RpcError,
    );
    assert.deepEqual(await admin.readAll(doc), before);
  });

  it('a read-only export reads, and answers ROFS to every write, also for a client a read-write export admits', async () => {
    for (const from of ['127.0.0.1', '127.0.0.2']) {
      const c = await client(from, 1000);
      const pub = await c.mount('/pub');
      const file = (await c.lookup(pub, 'doc')).handle;
      assert.equal(Buffer.from(await c.readAll(file)).toString(), 'public text');
      assert.equal(await statusOf(c.write(file, 0, Buffer.from('x'), 'file_sync')), NfsStatus.ROFS);
      assert.equal(await statusOf(c.write(file, 0, Buffer.from('x'), 'unstable')), NfsStatus.ROFS);
      assert.equal(await statusOf(c.create(pub, 'new')), NfsStatus.ROFS);
      assert.equal(await statusOf(c.remove(pub, 'doc')), NfsStatus.ROFS);
      assert.equal(await statusOf(c.setattr(file, { mode: 0o666 })), NfsStatus.ROFS);
      // '..' of the export's root is the root: the export cannot be left upwards.
      assert.deepEqual((await c.lookup(pub, '..')).handle, pub);
    }
    assert.equal(Buffer.from(await admin.readAll(doc)).toString(), 'public text');
  });

  it('a real client (libnfs): nfs-cat reads the read-only export, nfs-cp into it fails and writes nothing', async () => {
    const out = await execFileP('nfs-cat', [nfsUrl(relay.port, '/pub/doc')]);
    assert.equal(out.stdout, 'public text');
    const local = path.join(dir, 'upload.txt');
    fs.writeFileSync(local, 'uploaded');
    await assert.rejects(execFileP('nfs-cp', [local, nfsUrl(relay.port, '/pub/upload.txt')]));
    const pub = await admin.lookup(await admin.mount('/'), 'pub');
    assert.equal(await statusOf(admin.lookup(pub.handle, 'upload.txt')), NfsStatus.NOENT);
  });

  it('a handle of an export that does not admit the client is refused ACCES, though the client may mount another export', async () => {
    const two = await client('127.0.0.2');
    await two.mount('/pub');
    assert.equal(
      await statusOf(two.getattr(doc)),
      NfsStatus.ACCES,
      "doc's handle came through '/'",
    );
    assert.equal(await statusOf(two.write(doc, 0, Buffer.from('x'), 'file_sync')), NfsStatus.ACCES);
  });

  it('all_squash with anonuid: every caller, root too, creates files as uid 3000', async () => {
    for (const uid of [0, 1000]) {
      const c = await client('127.0.0.3', uid);
      const home = await c.mount('/home');
      const made = await c.create(home, `by-${uid}`);
      const attrs = await c.getattr(made.handle);
      assert.equal(attrs.uid, 3000);
      assert.equal(attrs.gid, 3000);
    }
  });

  it('the replicas enforce ro and the binding themselves: a faulty relay that clears the read-only flag, or rebinds a handle to a read-write export, changes nothing', async () => {
    const two = await client('127.0.0.2');
    const pub = await two.mount('/pub');
    const file = (await two.lookup(pub, 'doc')).handle;
    const write = (fh: Uint8Array) =>
      encodeOp({
        kind: OpKind.Nfs,
        version: 3,
        procedure: Nfs3Proc.WRITE,
        cred: { uid: 0, gid: 0, gids: [] },
        readOnlyExport: false,
        args: new XdrWriter()
          .opaque(fh)
          .u64(0)
          .u32(7)
          .u32(2)
          .opaque(Buffer.from('defaced'))
          .bytes(),
      });
    const statusOfOp = async (op: Uint8Array) => {
      const r = decodeResult(await relay.client.invoke(op, { readOnly: false }));
      assert.ok(!(r instanceof RpcError));
      return new XdrReader(r).u32();
    };
    assert.equal(await statusOfOp(write(file)), NfsStatus.ROFS, 'the ro flag cleared');
    const rebound = Uint8Array.from(file);
    rebound[rebound.length - EXPORT_SUFFIX_BYTES + 1] = 0; // claim export 0: '/', rw
    assert.equal(await statusOfOp(write(rebound)), NfsStatus.STALE, 'rebound to a rw export');
    assert.equal(Buffer.from(await admin.readAll(doc)).toString(), 'public text');
  });
});

describe('bfs status names a replica whose exports differ from the others', function () {
  this.timeout(120_000);
  it('replica 3 started with another exports list: EXPORTS DIFFER, and the cluster is not healthy', async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'bfs-exports-differ-'));
    const replicas: RunningReplica[] = [];
    try {
      await initCluster({
        dir,
        replicas: 4,
        basePort: await freeConsecutivePorts(4),
        stateSize: STATE,
      });
      const other = path.join(dir, 'other');
      fs.mkdirSync(other);
      fs.cpSync(path.join(dir, 'cluster.json'), path.join(other, 'cluster.json'));
      fs.cpSync(path.join(dir, 'keys'), path.join(other, 'keys'), { recursive: true });
      addExports(other, '/pub *(ro)');
      for (const id of [0, 1, 2]) replicas.push(await startReplica({ dir, id }));
      replicas.push(
        await startReplica({ dir: other, id: 3, dataDir: path.join(dir, 'replica-3') }),
      );
      const s = await clusterStatus(loadCluster(dir));
      assert.deepEqual(s.exportsDiffer, [3]);
      assert.equal(s.healthy, false);
      assert.match(formatStatus(s), /replica 3: EXPORTS DIFFER/);
    } finally {
      await Promise.all(replicas.map((r) => r.close()));
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });
});
