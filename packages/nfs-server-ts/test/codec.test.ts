import { strict as assert } from 'node:assert';
import fc from 'fast-check';
import { FileType } from '../src/filesystem';
import {
  readFattr3,
  readSattr3,
  readWcc,
  writeFattr3,
  writeSattr3,
  writeWcc,
} from '../src/nfs3-xdr';
import {
  AuthFlavor,
  AuthStat,
  type RpcErrorKind,
  decodeAuthSys,
  decodeMessage,
  decodeReply,
  encodeAuthSys,
  encodeCall,
  encodeErrorReply,
  encodeSuccessReply,
} from '../src/rpc';
import { RecordReader } from '../src/server';
import { XdrError, XdrReader, XdrWriter } from '../src/xdr';
import { decodeV2Handle, encodeV2Handle } from '../src/nfs2';

describe('XDR codec (RFC 4506)', () => {
  it('round-trips integers, hypers, booleans, opaques and strings with 4-byte padding', () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 0, max: 0xffffffff }),
        fc.integer({ min: -0x80000000, max: 0x7fffffff }),
        fc.integer({ min: 0, max: Number.MAX_SAFE_INTEGER }),
        fc.boolean(),
        fc.uint8Array({ maxLength: 50 }),
        fc.string({ maxLength: 30 }),
        (u, i, h, b, o, s) => {
          const w = new XdrWriter(4).u32(u).i32(i).u64(h).bool(b).opaque(o).string(s);
          const bytes = w.bytes();
          assert.equal(bytes.length % 4, 0);
          const r = new XdrReader(bytes);
          assert.equal(r.u32(), u);
          assert.equal(r.i32(), i);
          assert.equal(r.u64(), h);
          assert.equal(r.bool(), b);
          assert.deepEqual([...r.opaque()], [...o]);
          assert.equal(r.string(), s);
          r.end();
        },
      ),
    );
  });

  it('rejects truncated input, lengths beyond the data or the declared maximum, and bad booleans', () => {
    assert.throws(() => new XdrReader(new Uint8Array(3)).u32(), XdrError);
    const huge = new XdrWriter().u32(0xfffffff0).bytes();
    assert.throws(() => new XdrReader(huge).opaque(), XdrError);
    const long = new XdrWriter().string('abcdef').bytes();
    assert.throws(() => new XdrReader(long).string(4), XdrError);
    assert.throws(() => new XdrReader(new XdrWriter().u32(2).bytes()).bool(), XdrError);
    assert.throws(() => new XdrReader(new Uint8Array(8)).end(), XdrError);
  });
});

describe('ONC RPC messages (RFC 5531)', () => {
  it('round-trips a call with AUTH_SYS credentials', () => {
    const cred = encodeAuthSys({ stamp: 7, machineName: 'host', uid: 10, gid: 20, gids: [1, 2] });
    const msg = encodeCall(99, 100003, 3, 1, Uint8Array.of(0, 0, 0, 5), cred);
    const d = decodeMessage(msg);
    assert.equal(d.type, 'call');
    if (d.type !== 'call') return;
    assert.equal(d.call.xid, 99);
    assert.equal(d.call.program, 100003);
    assert.equal(d.call.cred.flavor, AuthFlavor.SYS);
    assert.deepEqual(decodeAuthSys(d.call.cred.body), {
      stamp: 7,
      machineName: 'host',
      uid: 10,
      gid: 20,
      gids: [1, 2],
    });
    assert.deepEqual([...d.call.args], [0, 0, 0, 5]);
  });

  it('refuses AUTH_SYS bodies with more than 16 groups or trailing bytes', () => {
    const w = new XdrWriter().u32(0).string('h').u32(0).u32(0).u32(17);
    for (let i = 0; i < 17; i++) w.u32(i);
    assert.throws(() => decodeAuthSys(w.bytes()), XdrError);
  });

  it('reports an RPC version other than 2 as rpc_mismatch, keeping the xid', () => {
    const msg = new XdrWriter().u32(5).u32(0).u32(3).u32(1).u32(1).u32(0).bytes();
    assert.deepEqual(decodeMessage(msg), { type: 'rpc_mismatch', xid: 5 });
  });

  it('encodes and decodes every accepted and denied reply', () => {
    const ok = decodeReply(encodeSuccessReply(1, Uint8Array.of(1, 2, 3, 4)));
    assert.deepEqual(ok, { xid: 1, ok: true, result: Uint8Array.of(1, 2, 3, 4) });
    const errors: RpcErrorKind[] = [
      { kind: 'prog_unavail' },
      { kind: 'prog_mismatch', low: 2, high: 3 },
      { kind: 'proc_unavail' },
      { kind: 'garbage_args' },
      { kind: 'system_err' },
      { kind: 'rpc_mismatch', low: 2, high: 2 },
      { kind: 'auth_error', stat: AuthStat.TOOWEAK },
    ];
    for (const e of errors)
      assert.deepEqual(decodeReply(encodeErrorReply(9, e)), { xid: 9, ok: false, error: e });
  });
});

describe('NFSv3 XDR structures', () => {
  it('round-trips fattr3, sattr3 and wcc_data', () => {
    const a = {
      type: FileType.REG,
      mode: 0o644,
      nlink: 1,
      uid: 1,
      gid: 2,
      size: 2 ** 40 + 3,
      used: 4096,
      rdev: { major: 0, minor: 0 },
      fsid: 9,
      fileid: 2 ** 33,
      atime: { seconds: 1, nseconds: 2 },
      mtime: { seconds: 3, nseconds: 4 },
      ctime: { seconds: 5, nseconds: 6 },
    };
    const w = new XdrWriter();
    writeFattr3(w, a);
    assert.equal(w.offset, 84);
    assert.deepEqual(readFattr3(new XdrReader(w.bytes())), a);
    const s = {
      mode: 0o700,
      size: 12,
      atime: 'server' as const,
      mtime: { seconds: 1, nseconds: 0 },
    };
    const ws = new XdrWriter();
    writeSattr3(ws, s);
    assert.deepEqual(readSattr3(new XdrReader(ws.bytes())), s);
    const wcc = { before: { size: 1, mtime: a.mtime, ctime: a.ctime }, after: a };
    const ww = new XdrWriter();
    writeWcc(ww, wcc);
    assert.deepEqual(readWcc(new XdrReader(ww.bytes())), wcc);
  });

  it('pads backend handles into NFSv2’s 32 bytes and refuses forged padding', () => {
    const fh = Uint8Array.of(1, 2, 3, 0, 0);
    const v2 = encodeV2Handle(fh);
    assert.equal(v2.length, 32);
    assert.deepEqual(decodeV2Handle(v2), fh);
    const forged = Uint8Array.from(v2);
    forged[10] = 1;
    assert.throws(() => decodeV2Handle(forged));
  });
});

describe('TCP record marking', () => {
  it('reassembles multi-fragment records split at arbitrary byte boundaries', () => {
    const records: Uint8Array[] = [];
    const rr = new RecordReader(1 << 20, (r) => records.push(Uint8Array.from(r)));
    const frag = (data: number[], last: boolean) => {
      const h = Buffer.alloc(4);
      h.writeUInt32BE(((last ? 0x80000000 : 0) | data.length) >>> 0);
      return Buffer.concat([h, Buffer.from(data)]);
    };
    const stream = Buffer.concat([
      frag([1, 2], false),
      frag([], false),
      frag([3], true),
      frag([4], true),
    ]);
    for (let i = 0; i < stream.length; i++) rr.push(stream.subarray(i, i + 1));
    assert.deepEqual(
      records.map((r) => [...r]),
      [[1, 2, 3], [4]],
    );
  });

  it('skips a record over the limit, keeping only its first bytes, and carries on', () => {
    const seen: { len: number; oversized: boolean }[] = [];
    const rr = new RecordReader(16, (r, oversized) => seen.push({ len: r.length, oversized }));
    const big = Buffer.alloc(4 + 100);
    big.writeUInt32BE((0x80000000 | 100) >>> 0);
    const small = Buffer.from([0x80, 0, 0, 4, 9, 9, 9, 9]);
    rr.push(Buffer.concat([big, small]));
    assert.deepEqual(seen, [
      { len: 16, oversized: true },
      { len: 4, oversized: false },
    ]);
  });
});
