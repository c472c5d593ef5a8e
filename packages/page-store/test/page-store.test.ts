import { strict as assert } from 'node:assert';
import { PageStore, UNTOUCHED, bytesEqual } from '../src';

const PAGE = 4096;

function bytes(n: number, fill: number): Uint8Array {
  return new Uint8Array(n).fill(fill);
}

describe('page-store: PageStore', () => {
  it('reads untouched bytes as zeros across a 64 GiB logical state without allocating', () => {
    const s = new PageStore({ size: 64 * 2 ** 30 });
    assert.deepEqual(s.read(64 * 2 ** 30 - 10, 10), new Uint8Array(10));
    assert.equal(s.populatedPages, 0);
    assert.equal(s.levels, 3);
  });

  it('reads back writes that straddle page boundaries', () => {
    const s = new PageStore({ size: 10 * PAGE });
    const data = Uint8Array.from({ length: 3 * PAGE }, (_, i) => i % 251);
    s.write(PAGE - 7, data);
    assert.deepEqual(s.read(PAGE - 7, data.length), data);
    assert.deepEqual(s.read(0, PAGE - 7), new Uint8Array(PAGE - 7));
  });

  it('rejects ranges past the logical size and malformed offsets', () => {
    const s = new PageStore({ size: 2 * PAGE });
    assert.throws(() => s.write(2 * PAGE - 1, bytes(2, 1)), RangeError);
    assert.throws(() => s.read(-1, 1), RangeError);
    assert.throws(() => s.read(0.5, 1), RangeError);
    assert.throws(() => s.modify(0, 2 * PAGE + 1), RangeError);
  });

  it('counts the pages written or marked since the previous checkpoint', () => {
    const s = new PageStore({ size: 100 * PAGE });
    s.write(0, bytes(1, 1));
    s.write(10, bytes(1, 2));
    s.modify(5 * PAGE, 2 * PAGE);
    assert.equal(s.checkpoint(1).dirtyPages, 3);
    assert.equal(s.checkpoint(2).dirtyPages, 0);
  });

  it('gives equal states equal digests regardless of write order, and different states different ones', () => {
    const a = new PageStore({ size: 1000 * PAGE, fanout: 4 });
    const b = new PageStore({ size: 1000 * PAGE, fanout: 4 });
    a.write(0, bytes(10, 1));
    a.write(999 * PAGE, bytes(10, 2));
    b.write(999 * PAGE, bytes(10, 2));
    b.write(0, bytes(10, 1));
    assert.ok(bytesEqual(a.checkpoint(5).digest, b.checkpoint(5).digest));
    a.write(3, bytes(1, 9));
    b.write(3, bytes(1, 8));
    assert.ok(!bytesEqual(a.checkpoint(6).digest, b.checkpoint(6).digest));
  });

  it('includes the last-modified checkpoint in the digest: same bytes, different history, different digest', () => {
    const a = new PageStore({ size: 4 * PAGE });
    const b = new PageStore({ size: 4 * PAGE });
    a.write(0, bytes(1, 1));
    a.checkpoint(1);
    b.checkpoint(1);
    b.write(0, bytes(1, 1));
    assert.ok(!bytesEqual(a.checkpoint(2).digest, b.checkpoint(2).digest));
  });

  it('keeps old bytes for older checkpoints after copy-on-write', () => {
    const s = new PageStore({ size: 8 * PAGE });
    s.write(100, bytes(4, 1));
    s.checkpoint(1);
    s.write(100, bytes(4, 2));
    s.checkpoint(2);
    s.write(100, bytes(4, 3));
    assert.deepEqual(s.readAt(1, 100, 4), bytes(4, 1));
    assert.deepEqual(s.readAt(2, 100, 4), bytes(4, 2));
    assert.deepEqual(s.read(100, 4), bytes(4, 3));
  });

  it('rolls back to a kept checkpoint, restoring bytes and digest and dropping later checkpoints', () => {
    const s = new PageStore({ size: 8 * PAGE });
    s.write(0, bytes(4, 1));
    const c1 = s.checkpoint(1);
    s.write(0, bytes(4, 2));
    s.write(3 * PAGE, bytes(4, 2));
    s.checkpoint(2);
    s.write(5 * PAGE, bytes(4, 3));
    s.rollback(1);
    assert.deepEqual(s.checkpoints(), [1]);
    assert.deepEqual(s.read(0, 4), bytes(4, 1));
    assert.deepEqual(s.read(3 * PAGE, 4), new Uint8Array(4));
    assert.deepEqual(s.read(5 * PAGE, 4), new Uint8Array(4));
    assert.ok(bytesEqual(s.checkpoint(2).digest, c1.digest));
  });

  it('forgets checkpoints below the stable one but keeps it and reads through it', () => {
    const s = new PageStore({ size: 8 * PAGE });
    for (let i = 1; i <= 4; i++) {
      s.write(0, bytes(1, i));
      s.checkpoint(i);
    }
    s.discardBelow(3);
    assert.deepEqual(s.checkpoints(), [3, 4]);
    assert.equal(s.digestAt(2), undefined);
    assert.deepEqual(s.readAt(3, 0, 1), bytes(1, 3));
    assert.throws(() => s.readAt(2, 0, 1), RangeError);
    assert.throws(() => s.rollback(1), RangeError);
  });

  it('refuses checkpoint numbers that do not increase', () => {
    const s = new PageStore({ size: PAGE });
    s.checkpoint(5);
    assert.throws(() => s.checkpoint(5), RangeError);
    assert.throws(() => s.checkpoint(4), RangeError);
  });

  it('reports last-modified checkpoints of pages and partitions and lists only newer children', () => {
    const s = new PageStore({ size: 64 * PAGE, fanout: 4 });
    s.write(0, bytes(1, 1));
    s.checkpoint(1);
    s.write(5 * PAGE, bytes(1, 1));
    s.checkpoint(2);
    assert.equal(s.levels, 3);
    assert.equal(s.partitionAt(2, 3, 0).lm, 2);
    assert.equal(s.partitionAt(2, 0, 0).lm, 1);
    assert.equal(s.partitionAt(2, 0, 7).lm, UNTOUCHED);
    assert.deepEqual(
      s.modifiedChildren(2, 1, 1, 1).map((c) => [c.index, c.lm]),
      [[5, 2]],
    );
    assert.deepEqual(
      s.modifiedChildren(2, 2, 0, 0).map((c) => [c.index, c.lm]),
      [
        [0, 1],
        [1, 2],
      ],
    );
    assert.deepEqual(
      s.modifiedChildren(1, 2, 0, 0).map((c) => c.index),
      [0],
    );
  });

  it('copies pages handed over as Node Buffers (whose slice() is a view) when restoring', () => {
    const backing = Buffer.alloc(2 * PAGE, 5);
    const s = PageStore.restore({ size: 4 * PAGE }, 3, [
      { index: 1, lm: 3, data: backing.subarray(0, PAGE) },
    ]);
    backing.fill(9);
    s.write(PAGE, bytes(10, 1)); // copy-on-write of the restored page
    assert.deepEqual(s.readAt(3, PAGE, 4), bytes(4, 5));
    assert.deepEqual(s.read(PAGE + 10, 4), bytes(4, 5));
  });

  it('hands out copies that own their whole ArrayBuffer, so callers may use new DataView(x.buffer)', () => {
    const s = new PageStore({ size: 4 * PAGE });
    s.write(PAGE + 3, Uint8Array.of(1, 2, 3, 4));
    s.checkpoint(1);
    for (const out of [s.read(PAGE + 3, 4), s.readAt(1, PAGE + 3, 4), s.read(PAGE, 600)]) {
      assert.equal(out.byteOffset, 0);
      assert.equal(out.buffer.byteLength, out.byteLength);
    }
    const copy = s.read(PAGE + 3, 4);
    copy[0] = 99;
    assert.deepEqual(s.read(PAGE + 3, 4), Uint8Array.of(1, 2, 3, 4));
    assert.equal(new DataView(s.read(PAGE + 3, 4).buffer).getUint32(0), 0x01020304);
  });
});
