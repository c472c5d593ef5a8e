import { strict as assert } from 'node:assert';
import { randomBytes } from 'node:crypto';
import * as fc from 'fast-check';
import { PageStore } from '@bfs/page-store';
import {
  type FileHandle,
  Nfs3Client,
  NfsError,
  NfsStatus,
  RpcClient,
  authSys,
} from 'nfs-server-ts';
import { DEFAULT_EXPORTS, type ExportEntry, exportedTrees } from '../../src/exports';
import { Relay } from '../../src/relay';
import { BfsService } from '../../src/service/bfs-service';
import { OpKind, decodeOp } from '../../src/service/op';
import {
  FLUSH_EXTENT_BYTES,
  FLUSH_MAX_IN_FLIGHT,
  FLUSH_MAX_IN_FLIGHT_BYTES,
  WriteBack,
  insertExtent,
} from '../../src/write-back';

const STATE = 64 * 2 ** 20;

/** A relay over one BfsService executed in this process; `gate` holds flush operations back. */
async function relayOver(
  service = new BfsService(new PageStore({ size: STATE }), { fsid: 7 }),
  exports?: ExportEntry[],
) {
  const ops: OpKind[] = [];
  let held: (() => void)[] | undefined;
  const relay = new Relay({
    invoke: async (op, readOnly) => {
      const kind = decodeOp(op).kind;
      if (kind === OpKind.Flush && held) await new Promise<void>((r) => held!.push(r));
      ops.push(kind);
      return service.execute(op, 1, service.proposeNondet(Date.now()), readOnly);
    },
    exports,
  });
  const port = await relay.listen({ port: 0, host: '127.0.0.1' });
  const rpc = await RpcClient.connect({ port, timeoutMs: 10_000 });
  const nfs = new Nfs3Client(rpc, authSys(1000, 1000));
  const root = await nfs.mount('/');
  return {
    relay,
    service,
    nfs,
    root,
    ops,
    flushes: () => ops.filter((k) => k === OpKind.Flush).length,
    hold: () => (held = []),
    release: () => {
      const h = held ?? [];
      held = undefined;
      for (const r of h) r();
    },
    /** `flushMs` 0: the relay dies with what it holds. */
    async close(flushMs?: number) {
      rpc.close();
      await relay.close(flushMs);
    },
  };
}

async function status(p: Promise<unknown>): Promise<NfsStatus | 0> {
  try {
    await p;
    return 0;
  } catch (e) {
    if (e instanceof NfsError) return e.status;
    throw e;
  }
}

describe('write-back relay: UNSTABLE WRITEs answered from the relay, flushed through PBFT (RFC 1813 3.3.7, 3.3.21)', function () {
  this.timeout(30_000);
  let r: Awaited<ReturnType<typeof relayOver>>;
  beforeEach(async () => {
    r = await relayOver();
  });
  afterEach(() => r.close());

  async function unstableFile(name: string, data: Uint8Array): Promise<FileHandle> {
    const { handle } = await r.nfs.create(r.root, name);
    r.hold();
    const w = await r.nfs.write(handle, 0, data, 'unstable');
    assert.equal(w.committed, 'unstable');
    assert.equal(w.count, data.length);
    assert.deepEqual(w.verifier, r.relay.writeBack!.verifier);
    assert.equal(r.flushes(), 0, 'answered before its data went through agreement');
    r.release();
    return handle;
  }

  it('answers an UNSTABLE WRITE at once with committed UNSTABLE and the relay verifier; COMMIT returns after the data is on the replicas, with the same verifier', async () => {
    const data = randomBytes(5000);
    const fh = await unstableFile('a', data);
    await r.relay.writeBack!.flushFile(fh);
    const agreed = r.ops.length;
    const verf = await r.nfs.commit(fh);
    assert.deepEqual(verf, r.relay.writeBack!.verifier);
    assert.ok(r.flushes() >= 1);
    assert.equal(
      r.ops.length,
      agreed,
      'the flush was an agreed FILE_SYNC write: COMMIT needs none',
    );
    await r.nfs.commit(fh);
    assert.equal(
      r.ops.length,
      agreed + 1,
      'a COMMIT with nothing flushed since goes to the replicas',
    );
    assert.equal(r.relay.writeBack!.dirtyBytes, 0);
    const fs = r.service.exported;
    assert.deepEqual(Buffer.from(fs.read(fh, 0, 10_000).data), data);
  });

  it('FILE_SYNC and DATA_SYNC WRITEs are agreed before the reply, as before, and carry the relay verifier', async () => {
    const { handle } = await r.nfs.create(r.root, 'sync');
    for (const how of ['file_sync', 'data_sync'] as const) {
      const w = await r.nfs.write(handle, 0, randomBytes(100), how);
      assert.notEqual(w.committed, 'unstable');
      assert.deepEqual(w.verifier, r.relay.writeBack!.verifier);
    }
    assert.equal(r.flushes(), 0);
  });

  it('coalesces the writes that arrive while a flush is under way into the next flush operation', async () => {
    const { handle } = await r.nfs.create(r.root, 'many');
    r.hold();
    const data = randomBytes(64 * 1024);
    for (let off = 0; off < data.length; off += 4096)
      await r.nfs.write(handle, off, data.subarray(off, off + 4096), 'unstable');
    r.release();
    await r.nfs.commit(handle);
    assert.ok(r.flushes() <= 2, `16 writes in ${r.flushes()} flush operations`);
    assert.deepEqual(Buffer.from((await r.nfs.read(handle, 0, 65536)).data), data);
  });

  describe('read-your-writes: a later call that could observe a buffered write sees it', () => {
    const data = randomBytes(3000);
    it('READ', async () => {
      const fh = await unstableFile('f', data);
      assert.deepEqual(Buffer.from((await r.nfs.read(fh, 0, 5000)).data), data);
    });
    it('GETATTR', async () => {
      const fh = await unstableFile('f', data);
      assert.equal((await r.nfs.getattr(fh)).size, 3000);
    });
    it('LOOKUP of its name', async () => {
      await unstableFile('f', data);
      assert.equal((await r.nfs.lookup(r.root, 'f')).attributes?.size, 3000);
    });
    it('READDIRPLUS of its directory', async () => {
      await unstableFile('f', data);
      const e = (await r.nfs.readdirplus(r.root)).entries.find((x) => x.name === 'f');
      assert.equal(e?.attributes?.size, 3000);
    });
    it('SETATTR (a truncation after the write wins)', async () => {
      const fh = await unstableFile('f', data);
      await r.nfs.setattr(fh, { size: 10 });
      await r.nfs.commit(fh);
      assert.equal((await r.nfs.getattr(fh)).size, 10);
    });
    it('RENAME and LINK', async () => {
      await unstableFile('f', data);
      await r.nfs.rename(r.root, 'f', r.root, 'g');
      const g = await r.nfs.lookup(r.root, 'g');
      assert.equal(g.attributes?.size, 3000);
      await r.nfs.link(g.handle, r.root, 'h');
      assert.equal((await r.nfs.lookup(r.root, 'h')).attributes?.size, 3000);
    });
    it('REMOVE goes on at once; the flush after it fails STALE, as the file is gone, and its COMMIT says so', async () => {
      const fh = await unstableFile('f', data);
      await r.nfs.remove(r.root, 'f');
      assert.equal(await status(r.nfs.getattr(fh)), NfsStatus.STALE);
      assert.equal(await status(r.nfs.commit(fh)), NfsStatus.STALE);
    });
    it('a write of the same file by FILE_SYNC after buffered ones (later bytes win)', async () => {
      const fh = await unstableFile('f', data);
      await r.nfs.write(fh, 0, Buffer.from('xyz'), 'file_sync');
      const back = Buffer.from((await r.nfs.read(fh, 0, 5000)).data);
      assert.equal(back.subarray(0, 3).toString(), 'xyz');
      assert.deepEqual(back.subarray(3), data.subarray(3));
    });
  });

  it('a CREATE of another name goes on while a file is being flushed (it cannot touch its data)', async () => {
    const { handle } = await r.nfs.create(r.root, 'busy');
    r.hold();
    await r.nfs.write(handle, 0, randomBytes(1000), 'unstable');
    await r.nfs.create(r.root, 'other');
    assert.equal(r.flushes(), 0, 'the flush is still held');
    r.release();
    await r.nfs.commit(handle);
  });

  it('a CREATE UNCHECKED of the buffered file with size 0 waits for its flush: the truncation comes after the write', async () => {
    const { handle } = await r.nfs.create(r.root, 'trunc');
    await r.nfs.write(handle, 0, randomBytes(1000), 'unstable');
    await r.nfs.create(r.root, 'trunc', { mode: 'unchecked', attributes: { size: 0 } });
    await r.nfs.commit(handle);
    assert.equal((await r.nfs.getattr(handle)).size, 0);
  });

  it('a LOOKUP that shows a file with buffered data is asked again after its flush', async () => {
    const { handle } = await r.nfs.create(r.root, 'seen');
    r.hold();
    await r.nfs.write(handle, 0, randomBytes(1234), 'unstable');
    const looked = r.nfs.lookup(r.root, 'seen');
    await new Promise((done) => setTimeout(done, 50));
    r.release();
    assert.equal((await looked).attributes?.size, 1234);
    assert.ok(r.relay.writeBackRetries >= 1);
  });

  it('an UNSTABLE WRITE the caller may not make fails at once, as without the buffer (ACCES; STALE for a removed file)', async () => {
    const { handle } = await r.nfs.create(r.root, 'private', {
      mode: 'guarded',
      attributes: { mode: 0o600 },
    });
    const other = new Nfs3Client(r.nfs.rpc, authSys(2000, 2000));
    assert.equal(
      await status(other.write(handle, 0, randomBytes(10), 'unstable')),
      NfsStatus.ACCES,
    );
    await r.nfs.remove(r.root, 'private');
    assert.equal(
      await status(r.nfs.write(handle, 0, randomBytes(10), 'unstable')),
      NfsStatus.STALE,
    );
    assert.equal(r.relay.writeBack!.stats.buffered, 0);
  });

  it('a flush that fails (a permission revoked after the buffer took writes) is reported on the next WRITE and COMMIT of that file, never dropped', async () => {
    const { handle } = await r.nfs.create(r.root, 'shared', {
      mode: 'guarded',
      attributes: { mode: 0o666 },
    });
    const other = new Nfs3Client(r.nfs.rpc, authSys(2000, 2000));
    await other.write(handle, 0, randomBytes(100), 'unstable');
    await other.commit(handle);
    await r.nfs.setattr(handle, { mode: 0o600 });
    // Buffered on the verdict of before; the replicas refuse it.
    const w = await other.write(handle, 0, randomBytes(100), 'unstable');
    assert.equal(w.committed, 'unstable');
    await r.relay.writeBack!.flushAll();
    assert.equal(r.relay.writeBack!.stats.flushErrors, 1);
    assert.equal(
      await status(other.write(handle, 0, randomBytes(10), 'unstable')),
      NfsStatus.ACCES,
    );
    assert.equal(await status(other.commit(handle)), NfsStatus.ACCES);
  });

  it('a restarted relay has a new verifier: the client re-sends what it had not committed and it lands', async () => {
    const { handle } = await r.nfs.create(r.root, 'lost');
    const data = randomBytes(8000);
    r.hold(); // the first relay dies with its flush in the air
    const w = await r.nfs.write(handle, 0, data, 'unstable');
    await r.close(0);
    const again = await relayOver(r.service);
    try {
      const verf = await again.nfs.commit(handle);
      assert.notDeepEqual(verf, w.verifier, 'the client must re-send');
      assert.equal((await again.nfs.getattr(handle)).size, 0, 'the uncommitted data is gone');
      await again.nfs.write(handle, 0, data, 'unstable');
      assert.deepEqual(await again.nfs.commit(handle), verf);
      assert.deepEqual(Buffer.from((await again.nfs.read(handle, 0, 9000)).data), data);
    } finally {
      await again.close();
      r = await relayOver();
    }
  });
});

describe('write-back relay: one file reached through two exports', function () {
  this.timeout(30_000);
  it('a READ through one export sees what an UNSTABLE WRITE through another left in the buffer', async () => {
    const exports = [DEFAULT_EXPORTS[0], { ...DEFAULT_EXPORTS[0], path: '/d' }];
    const service = new BfsService(new PageStore({ size: STATE }), {
      fsid: 7,
      exports: exportedTrees(exports),
    });
    const r = await relayOver(service, exports);
    try {
      const d = (await r.nfs.mkdir(r.root, 'd', { mode: 0o777 })).handle;
      const viaRoot = (await r.nfs.create(d, 'f')).handle;
      const viaD = (await r.nfs.lookup(await r.nfs.mount('/d'), 'f')).handle;
      assert.notDeepEqual(viaD, viaRoot, 'two handles, one file');
      r.hold();
      const data = randomBytes(3000);
      assert.equal((await r.nfs.write(viaD, 0, data, 'unstable')).committed, 'unstable');
      const read = r.nfs.readAll(viaRoot);
      r.release();
      assert.deepEqual(Buffer.from(await read), data);
      assert.equal((await r.nfs.getattr(viaRoot)).size, 3000);
    } finally {
      await r.close();
    }
  });
});

describe('write-back buffer: bounds and order', () => {
  const cred = { uid: 1, gid: 1, gids: [] };
  const fh = Uint8Array.of(1, 2, 3);

  it('a WRITE that would pass the dirty limit waits until flushes make room (back-pressure)', async () => {
    const gates: (() => void)[] = [];
    const wb = new WriteBack(async (_c, _args) => {
      await new Promise<void>((r) => gates.push(r));
      return Uint8Array.of(0, 0, 0, 1, 0, 0, 0, 0);
    }, 2.3 * FLUSH_EXTENT_BYTES);
    // Whole extents: their flushes start at once.
    const extent = new Uint8Array(FLUSH_EXTENT_BYTES);
    assert.equal(await wb.write(fh, cred, 0, extent), 0);
    assert.equal(await wb.write(fh, cred, FLUSH_EXTENT_BYTES, extent), 0);
    let third = false;
    void wb.write(fh, cred, 2 * FLUSH_EXTENT_BYTES, extent).then(() => (third = true));
    await new Promise((r) => setImmediate(r));
    assert.equal(third, false, 'waits: three extents would be over the limit');
    assert.equal(wb.stats.waitedForRoom, 1);
    gates.shift()!();
    await new Promise((r) => setTimeout(r, 10));
    assert.equal(third, true, 'the flush made room');
    assert.ok(wb.dirtyBytes <= 2.3 * FLUSH_EXTENT_BYTES);
    while (gates.length > 0 || !wb.idle) {
      gates.shift()?.();
      await new Promise((r) => setTimeout(r, 5));
    }
    assert.equal(wb.dirtyBytes, 0);
  });

  it('keeps at most FLUSH_MAX_IN_FLIGHT_BYTES of flushes in flight, starting the next as one lands', async () => {
    const gates: (() => void)[] = [];
    const wb = new WriteBack(async () => {
      await new Promise<void>((r) => gates.push(r));
      return Uint8Array.of(0, 0, 0, 1, 0, 0, 0, 0);
    });
    const files = FLUSH_MAX_IN_FLIGHT;
    const bound = Math.ceil(FLUSH_MAX_IN_FLIGHT_BYTES / FLUSH_EXTENT_BYTES);
    assert.ok(bound < files, 'the byte bound binds first for whole extents');
    const extent = new Uint8Array(FLUSH_EXTENT_BYTES);
    for (let i = 0; i < files; i++) await wb.write(Uint8Array.of(i), cred, 0, extent);
    await new Promise((r) => setImmediate(r));
    assert.equal(wb.gauges().flushesInFlight, bound);
    gates.shift()!();
    await new Promise((r) => setTimeout(r, 5));
    assert.equal(wb.gauges().flushesInFlight, bound, 'the next started');
    while (gates.length > 0 || !wb.idle) {
      gates.shift()?.();
      await new Promise((r) => setTimeout(r, 5));
    }
    assert.equal(wb.stats.flushOps, files);
  });

  it('extents: later bytes win, neighbours merge up to FLUSH_EXTENT_BYTES, none overlap (property)', () => {
    const SPAN = 3 * FLUSH_EXTENT_BYTES;
    fc.assert(
      fc.property(
        fc.array(
          fc.record({
            offset: fc.integer({ min: 0, max: SPAN - 1 }),
            length: fc.integer({ min: 1, max: FLUSH_EXTENT_BYTES }),
            byte: fc.integer({ min: 1, max: 255 }),
          }),
          { minLength: 1, maxLength: 40 },
        ),
        (writes) => {
          const model = new Uint8Array(SPAN + FLUSH_EXTENT_BYTES);
          const written = new Uint8Array(model.length);
          const extents: { offset: number; data: Uint8Array }[] = [];
          const held = { extents: 0, bytes: 0 };
          for (const w of writes) {
            const data = new Uint8Array(w.length).fill(w.byte);
            const added = insertExtent(extents, w.offset, data);
            held.extents += added.extents;
            held.bytes += added.bytes;
            model.set(data, w.offset);
            written.fill(1, w.offset, w.offset + w.length);
          }
          const got = new Uint8Array(model.length);
          const covered = new Uint8Array(model.length);
          let end = -1;
          for (const e of extents) {
            assert.ok(e.offset >= end, 'sorted and disjoint');
            assert.ok(e.data.length <= FLUSH_EXTENT_BYTES);
            got.set(e.data, e.offset);
            covered.fill(1, e.offset, e.offset + e.data.length);
            end = e.offset + e.data.length;
          }
          assert.deepEqual(covered, written, 'exactly the written bytes');
          assert.equal(held.extents, extents.length, 'what it says it added');
          assert.equal(
            held.bytes,
            extents.reduce((n, e) => n + e.data.length, 0),
          );
          assert.deepEqual(got, model);
        },
      ),
      { numRuns: 300 },
    );
  });
});

describe('write-back relay against the same relay without it: thousands of mixed calls, same answers (differential)', function () {
  this.timeout(120_000);

  /** One client's view of a call: its status and what it observed (sizes, bytes, names). */
  type Seen = { status: number; value?: unknown };

  it('2,000 seeded calls of CREATE, WRITE (UNSTABLE and FILE_SYNC), READ, GETATTR, SETATTR, LOOKUP, READDIRPLUS, RENAME, REMOVE and COMMIT', async () => {
    const seed = Number(process.env.WRITE_BACK_SEED ?? Date.now() % 1_000_000);
    let x = seed || 1;
    const rand = (n: number): number => {
      x = (Math.imul(x, 1103515245) + 12345) >>> 0;
      return (x >>> 8) % n;
    };
    const sides = [await relayOver(), await relayOver()];
    // The second side without write-back: a relay whose every WRITE is an agreement.
    await sides[1].close();
    const plain = new BfsService(new PageStore({ size: STATE }), { fsid: 7 });
    const plainRelay = new Relay({
      writeBack: false,
      invoke: async (op, ro) => plain.execute(op, 1, plain.proposeNondet(Date.now()), ro),
    });
    const port = await plainRelay.listen({ port: 0, host: '127.0.0.1' });
    const rpc = await RpcClient.connect({ port, timeoutMs: 10_000 });
    const clients = [
      { nfs: sides[0].nfs, root: sides[0].root },
      { nfs: new Nfs3Client(rpc, authSys(1000, 1000)), root: new Uint8Array() },
    ];
    clients[1].root = await clients[1].nfs.mount('/');
    const names = ['a', 'b', 'c', 'd', 'e'];
    const run = async (
      c: (typeof clients)[number],
      call: number,
      args: number[],
    ): Promise<Seen> => {
      const name = names[args[0] % names.length];
      const other = names[args[1] % names.length];
      const fh = async () => (await c.nfs.lookup(c.root, name)).handle;
      try {
        switch (call) {
          case 0:
            await c.nfs.create(c.root, name);
            return { status: 0 };
          case 1:
          case 2: {
            const data = Buffer.alloc(1 + (args[2] % 9000), args[3] % 256);
            const w = await c.nfs.write(
              await fh(),
              args[4] % 20_000,
              data,
              call === 1 ? 'unstable' : 'file_sync',
            );
            return { status: 0, value: w.count };
          }
          case 3:
            return {
              status: 0,
              value: Buffer.from(
                (await c.nfs.read(await fh(), args[4] % 20_000, 9000)).data,
              ).toString('hex'),
            };
          case 4:
            return { status: 0, value: (await c.nfs.getattr(await fh())).size };
          case 5:
            await c.nfs.setattr(await fh(), { size: args[4] % 15_000 });
            return { status: 0 };
          case 6:
            return { status: 0, value: (await c.nfs.lookup(c.root, name)).attributes?.size };
          case 7: {
            const entries = (await c.nfs.readdirplus(c.root)).entries;
            return {
              status: 0,
              value: entries
                .map((e) => `${e.name}:${e.attributes?.size}`)
                .sort()
                .join(),
            };
          }
          case 8:
            await c.nfs.rename(c.root, name, c.root, other);
            return { status: 0 };
          case 9:
            await c.nfs.remove(c.root, name);
            return { status: 0 };
          default:
            await c.nfs.commit(await fh());
            return { status: 0 };
        }
      } catch (e) {
        if (e instanceof NfsError) return { status: e.status };
        throw e;
      }
    };
    try {
      for (let i = 0; i < 2000; i++) {
        const call = rand(11);
        const args = Array.from({ length: 5 }, () => rand(1 << 20));
        const [a, b] = [await run(clients[0], call, args), await run(clients[1], call, args)];
        assert.deepEqual(
          a,
          b,
          `call ${i} (kind ${call}, args ${args}) differs; WRITE_BACK_SEED=${seed}`,
        );
      }
      const buffered = sides[0].relay.writeBack!.stats.buffered;
      assert.ok(buffered > 50, `the write-back path was taken (${buffered} buffered)`);
    } finally {
      rpc.close();
      await plainRelay.close();
      await sides[0].close();
    }
  });
});
