import { strict as assert } from 'node:assert';
import { PageStore } from '@bfs/page-store';
import {
  MountProc,
  Nfs3Proc,
  NfsStatus,
  RpcError,
  UDP_MAX_IO_SIZE,
  XdrReader,
  XdrWriter,
  readFattr3,
  writeSattr3,
} from 'nfs-server-ts';
import { BfsService, decodeTime, encodeTime } from '../../src/service/bfs-service';
import { OpKind, decodeOp, decodeResult, encodeOp } from '../../src/service/op';
import { MAX_IO_SIZE } from '../../src/fs/constants';
import { decodeHandle } from '../../src/fs/handle';
import { body, rootHandle } from './helpers';

const STATE = 64 * 2 ** 20;
const CRED = { uid: 1000, gid: 1000, gids: [1000] };

function nfsOp(procedure: number, args: Uint8Array, datagram = false) {
  return encodeOp({
    kind: OpKind.Nfs,
    version: 3,
    procedure,
    cred: CRED,
    readOnlyExport: false,
    datagram,
    args,
  });
}

function createArgs(dir: Uint8Array, name: string): Uint8Array {
  const w = new XdrWriter().opaque(dir).string(name).u32(0); // UNCHECKED
  writeSattr3(w, { mode: 0o644 });
  return w.bytes();
}

/** CREATE's reply: status, then post_op_fh3 and post_op_attr; returns the new file's mtime. */
function createdMtime(result: Uint8Array): { seconds: number; nseconds: number } {
  const r = new XdrReader(body(result));
  assert.equal(r.u32(), NfsStatus.OK);
  assert.equal(r.u32(), 1, 'handle follows');
  r.opaque(64);
  assert.equal(r.u32(), 1, 'attributes follow');
  return readFattr3(r).mtime;
}

const t = (seconds: number, nseconds = 0) => encodeTime({ seconds, nseconds });

describe('bfs service: NFS calls as a PBFT state machine', () => {
  it('formats an empty page store and serves the export root through MNT', () => {
    const svc = new BfsService(new PageStore({ size: STATE }));
    assert.ok(BfsService.isFormatted(svc.state));
    const fh = rootHandle(svc);
    const r = new XdrReader(
      body(
        svc.execute(
          nfsOp(Nfs3Proc.GETATTR, new XdrWriter().opaque(fh).bytes()),
          1,
          new Uint8Array(),
          true,
        ),
      ),
    );
    assert.equal(r.u32(), NfsStatus.OK);
  });

  it('gives byte-identical state digests on replicas that execute the same calls (determinism)', () => {
    const a = new BfsService(new PageStore({ size: STATE }));
    const b = new BfsService(new PageStore({ size: STATE }));
    const root = rootHandle(a);
    for (let i = 0; i < 20; i++) {
      const op = nfsOp(Nfs3Proc.CREATE, createArgs(root, `file-${i}`));
      assert.deepEqual(
        a.execute(op, 7, t(1_700_000_000 + i), false),
        b.execute(op, 7, t(1_700_000_000 + i), false),
      );
    }
    assert.deepEqual(a.state.checkpoint(1).digest, b.state.checkpoint(1).digest);
  });

  it('stamps max(proposed, last + 1ns) so time never runs backwards (BFS rule)', () => {
    const svc = new BfsService(new PageStore({ size: STATE }));
    const root = rootHandle(svc);
    const m1 = createdMtime(
      svc.execute(nfsOp(Nfs3Proc.CREATE, createArgs(root, 'a')), 1, t(2000, 5), false),
    );
    assert.deepEqual(m1, { seconds: 2000, nseconds: 5 });
    const m2 = createdMtime(
      svc.execute(nfsOp(Nfs3Proc.CREATE, createArgs(root, 'b')), 1, t(1000), false),
    );
    assert.deepEqual(m2, { seconds: 2000, nseconds: 6 });
    assert.deepEqual(svc.lastTime(), { seconds: 2000, nseconds: 6 });
  });

  it('keeps the last agreed time in the checkpointed state, so a rollback restores it', () => {
    const svc = new BfsService(new PageStore({ size: STATE }));
    const root = rootHandle(svc);
    svc.execute(nfsOp(Nfs3Proc.CREATE, createArgs(root, 'a')), 1, t(3000), false);
    svc.state.checkpoint(1);
    svc.execute(nfsOp(Nfs3Proc.CREATE, createArgs(root, 'b')), 1, t(4000), false);
    svc.state.rollback(1);
    svc.stateReplaced();
    assert.deepEqual(svc.lastTime(), { seconds: 3000, nseconds: 0 });
    const lookup = new XdrWriter().opaque(root).string('b').bytes();
    const r = new XdrReader(
      body(svc.execute(nfsOp(Nfs3Proc.LOOKUP, lookup), 1, new Uint8Array(), true)),
    );
    assert.equal(r.u32(), NfsStatus.NOENT);
  });

  it('backups accept a proposal only within the clock-skew bound', () => {
    const svc = new BfsService(new PageStore({ size: STATE }), { maxSkewNs: 1_000_000_000n });
    const now = 1_700_000_000_000;
    assert.ok(svc.checkNondet(svc.proposeNondet(now), now));
    assert.ok(svc.checkNondet(svc.proposeNondet(now + 900), now));
    assert.ok(!svc.checkNondet(svc.proposeNondet(now + 1500), now));
    assert.ok(!svc.checkNondet(svc.proposeNondet(now - 1500), now));
    assert.ok(!svc.checkNondet(new Uint8Array(3), now), 'malformed proposal');
    assert.equal(
      decodeTime(Uint8Array.of(0, 0, 0, 1, 0xff, 0xff, 0xff, 0xff)),
      undefined,
      'nseconds >= 1e9',
    );
  });

  it('answers GARBAGE_ARGS to a malformed operation and changes nothing', () => {
    const svc = new BfsService(new PageStore({ size: STATE }));
    const before = svc.state.checkpoint(1).digest;
    for (const bad of [new Uint8Array(0), Uint8Array.of(9, 1, 3), new Uint8Array(17).fill(0xff)]) {
      const r = decodeResult(svc.execute(bad, 1, t(5000), false));
      assert.ok(r instanceof RpcError && r.reply.kind === 'garbage_args');
    }
    assert.equal(svc.malformedOps, 3);
    assert.deepEqual(svc.state.checkpoint(2).digest, before);
  });

  it('clamps a READ that came over UDP to UDP_MAX_IO_SIZE, as the operation says, on every replica alike', () => {
    const svc = new BfsService(new PageStore({ size: STATE }));
    const root = rootHandle(svc);
    const created = new XdrReader(
      body(svc.execute(nfsOp(Nfs3Proc.CREATE, createArgs(root, 'f')), 1, t(6000), false)),
    );
    assert.equal(created.u32(), NfsStatus.OK);
    created.u32();
    const fh = created.opaque(64);
    const data = new XdrWriter()
      .opaque(fh)
      .u64(0)
      .u32(MAX_IO_SIZE)
      .u32(2)
      .opaque(new Uint8Array(MAX_IO_SIZE));
    svc.execute(nfsOp(Nfs3Proc.WRITE, data.bytes()), 1, t(6001), false);
    const readCount = (datagram: boolean) => {
      const args = new XdrWriter().opaque(fh).u64(0).u32(0xffffffff).bytes();
      const op = nfsOp(Nfs3Proc.READ, args, datagram);
      assert.equal(decodeOp(op).datagram, datagram);
      const r = new XdrReader(body(svc.execute(op, 1, new Uint8Array(), true)));
      assert.equal(r.u32(), NfsStatus.OK);
      if (r.u32()) readFattr3(r);
      return r.u32();
    };
    assert.equal(readCount(true), UDP_MAX_IO_SIZE);
    assert.equal(readCount(false), MAX_IO_SIZE);
  });

  it('formats with the fsid and generation key it is given, and answers STALE to a handle of another fsid', () => {
    const key = new Uint8Array(16).fill(7);
    const a = new BfsService(new PageStore({ size: STATE }), { fsid: 1234, generationKey: key });
    const b = new BfsService(new PageStore({ size: STATE }), { fsid: 5678, generationKey: key });
    const foreign = rootHandle(b);
    const r = new XdrReader(
      body(
        a.execute(
          nfsOp(Nfs3Proc.GETATTR, new XdrWriter().opaque(foreign).bytes()),
          1,
          new Uint8Array(),
          true,
        ),
      ),
    );
    assert.equal(r.u32(), NfsStatus.STALE);
    assert.equal(decodeHandle(a.exported.unwrap(rootHandle(a)).inner).fsid, 1234);
  });

  it('refuses a mutating call sent down the read-only path without executing it', () => {
    const svc = new BfsService(new PageStore({ size: STATE }));
    const root = rootHandle(svc);
    const before = svc.state.checkpoint(1).digest;
    const r = decodeResult(
      svc.execute(nfsOp(Nfs3Proc.CREATE, createArgs(root, 'x')), 1, new Uint8Array(), true),
    );
    assert.ok(r instanceof RpcError);
    assert.deepEqual(svc.state.checkpoint(2).digest, before);
  });

  it('runs operations of before exports (bare handles) as they first ran in a state of then, until its first read-write operation of the current format; a new state never does', () => {
    const legacy = (kind: OpKind, procedure: number, args: Uint8Array) =>
      encodeOp({
        kind,
        version: 3,
        procedure,
        cred: CRED,
        readOnlyExport: false,
        args,
        legacy: true,
      });
    const mnt = legacy(OpKind.Mount, MountProc.MNT, new XdrWriter().string('/').bytes());
    assert.ok(
      decodeResult(
        new BfsService(new PageStore({ size: STATE })).execute(mnt, 1, t(1), false),
      ) instanceof RpcError,
      'a new state refuses them',
    );
    const svc = new BfsService(new PageStore({ size: STATE }));
    svc.state.write(20, new Uint8Array(4)); // the header of a state formatted before exports
    assert.ok(svc.acceptsLegacyOps);
    const r = new XdrReader(body(svc.execute(mnt, 1, t(1), false)));
    assert.equal(r.u32(), 0);
    const bare = r.opaque(64);
    assert.equal(bare.length, 16, 'the bare file-system handle');
    const created = new XdrReader(
      body(
        svc.execute(legacy(OpKind.Nfs, Nfs3Proc.CREATE, createArgs(bare, 'old')), 1, t(2), false),
      ),
    );
    assert.equal(created.u32(), NfsStatus.OK);
    // A read-only call of the current format changes no state: legacy operations still run.
    const root = rootHandle(svc);
    assert.ok(svc.acceptsLegacyOps);
    const lookup = new XdrWriter().opaque(root).string('old').bytes();
    assert.equal(
      new XdrReader(
        body(svc.execute(nfsOp(Nfs3Proc.LOOKUP, lookup), 1, new Uint8Array(), true)),
      ).u32(),
      NfsStatus.OK,
      'the file made through the bare handle',
    );
    // The first read-write call of the current format ends them.
    assert.equal(
      new XdrReader(
        body(svc.execute(nfsOp(Nfs3Proc.CREATE, createArgs(root, 'new')), 1, t(3), false)),
      ).u32(),
      NfsStatus.OK,
    );
    assert.ok(!svc.acceptsLegacyOps);
    const again = decodeResult(
      svc.execute(legacy(OpKind.Nfs, Nfs3Proc.CREATE, createArgs(bare, 'x')), 1, t(4), false),
    );
    assert.ok(again instanceof RpcError && again.reply.kind === 'garbage_args');
  });
});
