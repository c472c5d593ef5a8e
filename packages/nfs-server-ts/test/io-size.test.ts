import { strict as assert } from 'node:assert';
import {
  type FsLimits,
  MAX_IO_SIZE,
  NFS2_MAXDATA,
  UDP_MAX_IO_SIZE,
  encodeV2Handle,
  MemoryFileSystem,
  NFS_PROGRAM,
  Nfs3Proc,
  XdrReader,
  XdrWriter,
  executeNfsCall,
  readPostOpAttr,
} from '../src';
import { type Harness, client2, client3, startServer } from './helpers';

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

describe('nfs-server-ts: transfer sizes over UDP fit one datagram (real sockets)', function () {
  this.timeout(20_000);
  let h: Harness;
  let file: Uint8Array;
  let dir: Uint8Array;
  const BIG = 2 * MAX_IO_SIZE + 5;

  before(async () => {
    h = await startServer();
    const fs = h.fs;
    const fh = fs.create(fs.root(), 'big', { mode: 'unchecked', attributes: {} }, ctx);
    fs.write(fh, 0, new Uint8Array(BIG).fill(9), 'file_sync', ctx);
    file = fh;
    dir = fs.mkdir(fs.root(), 'many', {}, ctx);
    for (let i = 0; i < 3000; i++) {
      fs.create(dir, `entry-with-a-longish-name-${i}`, { mode: 'unchecked', attributes: {} }, ctx);
    }
  });
  after(() => h.close());

  it('a UDP READ of 0xffffffff bytes is a short read of UDP_MAX_IO_SIZE, NFSv3 and NFSv2', async () => {
    const v3 = await client3(h.port, 'udp');
    const r = await v3.read(file, 0, 0xffffffff);
    assert.equal(r.data.length, UDP_MAX_IO_SIZE);
    assert.equal(r.eof, false);
    const v2 = await client2(h.port, 'udp');
    const r2 = await v2.read(encodeV2Handle(file), 0, 0xffffffff);
    assert.equal(r2.data.length, NFS2_MAXDATA);
  });

  it('a TCP READ of 0xffffffff bytes is a short read of the server maximum', async () => {
    const v3 = await client3(h.port, 'tcp');
    const r = await v3.read(file, 0, 0xffffffff);
    assert.equal(r.data.length, MAX_IO_SIZE);
    assert.equal(r.eof, false);
    const tail = await v3.read(file, 2 * MAX_IO_SIZE, 0xffffffff);
    assert.deepEqual([tail.data.length, tail.eof], [5, true]);
  });

  it('FSINFO over UDP offers transfer sizes that fit a datagram; over TCP the server maximum', async () => {
    const udp = await (await client3(h.port, 'udp')).fsinfo(h.fs.root());
    assert.equal(udp.rtmax, UDP_MAX_IO_SIZE);
    assert.equal(udp.wtmax, UDP_MAX_IO_SIZE);
    for (const k of ['rtpref', 'wtpref', 'dtpref'] as const)
      assert.ok(udp[k] <= UDP_MAX_IO_SIZE, k);
    const tcp = await (await client3(h.port, 'tcp')).fsinfo(h.fs.root());
    assert.equal(tcp.rtmax, MAX_IO_SIZE);
    assert.equal(tcp.wtmax, MAX_IO_SIZE);
  });

  it('READDIR and READDIRPLUS over UDP with huge counts answer a partial listing, not an error', async () => {
    const v3 = await client3(h.port, 'udp');
    const plus = await v3.readdirplus(dir, 0, undefined, 0xffffffff, 0xffffffff);
    assert.ok(plus.entries.length > 10 && !plus.eof, `${plus.entries.length} entries`);
    const plain = await v3.readdir(dir, 0, undefined, 0xffffffff);
    assert.ok(plain.entries.length > 10 && !plain.eof);
    const v2 = await client2(h.port, 'udp');
    const two = await v2.readdir(encodeV2Handle(dir), 0, 0xffffffff);
    assert.ok(two.entries.length > 10 && !two.eof);
    assert.equal(h.server.rpc.stats.handlerErrors, 0);
  });
});
