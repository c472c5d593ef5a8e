import { strict as assert } from 'node:assert';
import {
  type FsLimits,
  MAX_IO_SIZE,
  MemoryFileSystem,
  NFS_PROGRAM,
  Nfs3Proc,
  XdrReader,
  XdrWriter,
  executeNfsCall,
  readPostOpAttr,
} from '../src';

/** A backend that wants smaller transfers, as a replicated one does. */
class SmallIo extends MemoryFileSystem {
  override limits(): FsLimits {
    return { ...super.limits(), maxIoSize: 128 * 1024 };
  }
}

const ctx = { cred: { uid: 0, gid: 0, gids: [] }, time: { seconds: 1, nseconds: 0 } };

function call(fs: MemoryFileSystem, proc: number, w: XdrWriter): XdrReader {
  return new XdrReader(executeNfsCall(fs, NFS_PROGRAM, 3, proc, w.bytes(), ctx));
}

function fsinfo(fs: MemoryFileSystem): {
  rtmax: number;
  rtpref: number;
  wtmax: number;
  dtpref: number;
} {
  const r = call(fs, Nfs3Proc.FSINFO, new XdrWriter().opaque(fs.root()));
  assert.equal(r.u32(), 0);
  readPostOpAttr(r);
  const rtmax = r.u32();
  const rtpref = r.u32();
  r.u32();
  const wtmax = r.u32();
  r.u32();
  r.u32();
  const dtpref = r.u32();
  return { rtmax, rtpref, wtmax, dtpref };
}

describe('nfs-server-ts: transfer sizes follow the backend (FSINFO, READ)', () => {
  it('advertises the server maximum when the backend states none', () => {
    const i = fsinfo(new MemoryFileSystem());
    assert.equal(i.rtmax, MAX_IO_SIZE);
    assert.equal(i.wtmax, MAX_IO_SIZE);
  });

  it("advertises a backend's smaller maximum and never prefers more than it", () => {
    const i = fsinfo(new SmallIo());
    assert.deepEqual(i, { rtmax: 131072, rtpref: 65536, wtmax: 131072, dtpref: 65536 });
  });

  it("clamps a READ to the backend's maximum (a short read, as NFS allows)", () => {
    const fs = new SmallIo();
    const fh = fs.create(fs.root(), 'f', { mode: 'unchecked', attributes: {} }, ctx);
    fs.write(fh, 0, new Uint8Array(300_000).fill(7), 'file_sync', ctx);
    const r = call(
      fs,
      Nfs3Proc.READ,
      new XdrWriter()
        .opaque(fh)
        .u64(0)
        .u32(1 << 20),
    );
    assert.equal(r.u32(), 0);
    readPostOpAttr(r);
    assert.equal(r.u32(), 128 * 1024, 'count');
    assert.equal(r.bool(), false, 'not eof');
    assert.equal(r.opaque().length, 128 * 1024);
  });
});
