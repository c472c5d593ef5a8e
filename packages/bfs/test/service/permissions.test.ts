import { strict as assert } from 'node:assert';
import { PageStore } from '@bfs/page-store';
import {
  type Credentials,
  MOUNT_PROGRAM,
  NFS_PROGRAM,
  Nfs2Client,
  Nfs3Client,
  NfsStatus,
  RpcClient,
  RpcError,
  authSys,
  isReadOnlyCall,
} from 'nfs-server-ts';
import { definePermissionTable } from '../../../nfs-server-ts/test/permission-table';
import { statusOf } from '../../../nfs-server-ts/test/helpers';
import { BfsService, encodeTime } from '../../src/service/bfs-service';
import { OpKind, decodeResult, encodeMountArgs, encodeOp } from '../../src/service/op';

const STATE = 64 * 2 ** 20;
const GENERATION_KEY = new Uint8Array(16).fill(7);

/**
 * Four replicas' state machines, without PBFT or sockets: every call becomes the operation the
 * relay would build (the credential inside it) and executes on all four with one agreed time,
 * read-only calls on the read-only path as PBFT's read-only optimisation runs them. Every
 * replica must give the same bytes, or the test fails.
 */
class Replicas {
  readonly services = [0, 1, 2, 3].map(
    () =>
      new BfsService(new PageStore({ size: STATE }), {
        fsid: 0x5eed,
        hashSeed: 42,
        generationKey: GENERATION_KEY,
      }),
  );
  private seconds = 1_700_000_000;
  /** Calls executed on the read-only path (so the test can tell they were). */
  readOnlyCalls = 0;

  execute(
    cred: Credentials,
    program: number,
    version: number,
    procedure: number,
    args: Uint8Array,
  ) {
    const kind = program === MOUNT_PROGRAM ? OpKind.Mount : OpKind.Nfs;
    const readOnly = kind === OpKind.Mount || isReadOnlyCall(NFS_PROGRAM, version, procedure);
    if (readOnly) this.readOnlyCalls++;
    const opArgs = kind === OpKind.Mount ? encodeMountArgs(0, args) : args;
    const op = encodeOp({ kind, version, procedure, cred, readOnlyExport: false, args: opArgs });
    const nondet = encodeTime({ seconds: this.seconds++, nseconds: 0 });
    const results = this.services.map((s) => s.execute(op, 1, nondet, readOnly));
    for (const r of results.slice(1)) assert.deepEqual(r, results[0], 'replicas disagree');
    const body = decodeResult(results[0]);
    if (body instanceof RpcError) throw body;
    return body;
  }

  /** An RpcClient look-alike whose calls all run as `cred`, as the relay would put it in ops. */
  client(cred: Credentials): RpcClient {
    const call = async (program: number, version: number, procedure: number, args: Uint8Array) =>
      this.execute(cred, program, version, procedure, args);
    return { call, close: () => {} } as unknown as RpcClient;
  }
}

const ALICE = { uid: 1000, gid: 1000, gids: [1000] };
const BOB = { uid: 2000, gid: 2000, gids: [2000] };

describe('bfs replicas enforce Unix permissions (the issue-20 probe, on the state machine)', () => {
  let replicas: Replicas;
  let secret: Uint8Array;
  let bob3: Nfs3Client;
  let bob2: Nfs2Client;

  beforeEach(async () => {
    replicas = new Replicas();
    const alice = new Nfs3Client(replicas.client(ALICE), authSys(1000, 1000));
    const root = await alice.mount('/');
    secret = (
      await alice.create(root, 'private.txt', { mode: 'guarded', attributes: { mode: 0o600 } })
    ).handle;
    await alice.write(secret, 0, Buffer.from('only alice'));
    bob3 = new Nfs3Client(replicas.client(BOB), authSys(2000, 2000));
    bob2 = new Nfs2Client(replicas.client(BOB), authSys(2000, 2000));
    await bob3.mount('/');
  });

  it('uid 2000 READs a 0600 file of uid 1000: NFS3ERR_ACCES, on the read-only path', async () => {
    const before = replicas.readOnlyCalls;
    assert.equal(await statusOf(bob3.read(secret, 0, 100)), NfsStatus.ACCES);
    assert.equal(replicas.readOnlyCalls, before + 1, 'READ ran on the read-only path');
  });

  it('uid 2000 WRITEs it: NFS3ERR_ACCES, and the bytes stay', async () => {
    assert.equal(await statusOf(bob3.write(secret, 0, Buffer.from('bob'))), NfsStatus.ACCES);
    const alice = new Nfs3Client(replicas.client(ALICE), authSys(1000, 1000));
    assert.equal(Buffer.from((await alice.read(secret, 0, 100)).data).toString(), 'only alice');
  });

  it('uid 2000 SETATTRs mode 0777: NFS3ERR_PERM, and the mode stays 0600', async () => {
    assert.equal(await statusOf(bob3.setattr(secret, { mode: 0o777 })), NfsStatus.PERM);
    assert.equal((await bob3.getattr(secret)).mode, 0o600);
  });

  it('uid 2000 REMOVEs it from the sticky export root: NFS3ERR_PERM, and it is still there', async () => {
    const root = await bob3.mount('/');
    assert.equal(await statusOf(bob3.remove(root, 'private.txt')), NfsStatus.PERM);
    assert.deepEqual((await bob3.lookup(root, 'private.txt')).handle, secret);
  });

  it('the same four calls over NFSv2 fail with NFSERR_ACCES / NFSERR_PERM', async () => {
    const root2 = await bob2.mount('/');
    const fh2 = (await bob2.lookup(root2, 'private.txt')).handle;
    assert.equal(await statusOf(bob2.read(fh2, 0, 100)), NfsStatus.ACCES);
    assert.equal(await statusOf(bob2.write(fh2, 0, Buffer.from('bob'))), NfsStatus.ACCES);
    assert.equal(await statusOf(bob2.setattr(fh2, { mode: 0o777 })), NfsStatus.PERM);
    assert.equal(await statusOf(bob2.remove(root2, 'private.txt')), NfsStatus.PERM);
  });

  it('the export root of a new file system is 1777 and owned by root', async () => {
    const a = await bob3.getattr(await bob3.mount('/'));
    assert.deepEqual([a.mode, a.uid, a.gid], [0o1777, 0, 0]);
  });
});

describe('permission table (pjd-fstest style): the BFS replicas, state machine only', function () {
  this.timeout(120_000);
  let replicas: Replicas;
  before(() => (replicas = new Replicas()));
  definePermissionTable(() => ({ connect: async (cred) => replicas.client(cred) }));
});
