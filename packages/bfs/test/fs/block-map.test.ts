import { strict as assert } from 'node:assert';
import * as fc from 'fast-check';
import { BLOCK_SIZE, DIRECT_POINTERS, PTRS_PER_BLOCK } from '../../src';
import { assertClean, ctx, makeFs, MiB } from './helpers';

/** First byte mapped through the single, double and triple indirect block. */
const SINGLE = DIRECT_POINTERS * BLOCK_SIZE;
const DOUBLE = SINGLE + PTRS_PER_BLOCK * BLOCK_SIZE;
const TRIPLE = DOUBLE + PTRS_PER_BLOCK ** 2 * BLOCK_SIZE;

/** A sparse file as a map of 4 KiB blocks: the model of file data. */
class SparseModel {
  size = 0;
  private readonly blocks = new Map<number, Uint8Array>();

  write(offset: number, data: Uint8Array): void {
    for (let i = 0; i < data.length; i++) {
      const pos = offset + i;
      const b = Math.floor(pos / BLOCK_SIZE);
      let blk = this.blocks.get(b);
      if (!blk) this.blocks.set(b, (blk = new Uint8Array(BLOCK_SIZE)));
      blk[pos % BLOCK_SIZE] = data[i];
    }
    if (data.length > 0) this.size = Math.max(this.size, offset + data.length);
  }

  truncate(size: number): void {
    for (const b of [...this.blocks.keys()]) {
      if (b * BLOCK_SIZE >= size) this.blocks.delete(b);
      else if ((b + 1) * BLOCK_SIZE > size) this.blocks.get(b)!.fill(0, size % BLOCK_SIZE);
    }
    this.size = size;
  }

  read(offset: number, count: number): Uint8Array {
    const end = Math.min(this.size, offset + count);
    const out = new Uint8Array(Math.max(0, end - offset));
    for (let pos = offset; pos < end; pos++) {
      out[pos - offset] = this.blocks.get(Math.floor(pos / BLOCK_SIZE))?.[pos % BLOCK_SIZE] ?? 0;
    }
    return out;
  }
}

const boundary = fc.constantFrom(0, SINGLE, DOUBLE, TRIPLE, 4 * 2 ** 30, 5 * 2 ** 30);
const offset = fc.oneof(
  {
    weight: 4,
    arbitrary: fc
      .tuple(boundary, fc.integer({ min: -5000, max: 5000 }))
      .map(([b, d]) => Math.max(0, b + d)),
  },
  { weight: 1, arbitrary: fc.integer({ min: 0, max: 6 * 2 ** 30 }) },
);
type FileOp =
  | { k: 'write'; offset: number; len: number; seed: number }
  | { k: 'truncate'; size: number }
  | { k: 'read'; offset: number; count: number };
const fileOp: fc.Arbitrary<FileOp> = fc.oneof(
  {
    weight: 4,
    arbitrary: fc.record({
      k: fc.constant('write' as const),
      offset,
      len: fc.integer({ min: 0, max: 10_000 }),
      seed: fc.integer({ min: 1, max: 250 }),
    }),
  },
  { weight: 2, arbitrary: fc.record({ k: fc.constant('truncate' as const), size: offset }) },
  {
    weight: 3,
    arbitrary: fc.record({
      k: fc.constant('read' as const),
      offset,
      count: fc.integer({ min: 0, max: 10_000 }),
    }),
  },
);

describe('bfs file system: block map across direct, single, double and triple indirect blocks', function () {
  this.timeout(120_000);

  it('keeps the first and last block of every level apart', () => {
    const { fs, state } = makeFs(16 * MiB, { inodes: 32 });
    const fh = fs.create(fs.root(), 'f', { mode: 'guarded', attributes: {} }, ctx());
    const edges = [0, SINGLE - 1, SINGLE, DOUBLE - 1, DOUBLE, TRIPLE - 1, TRIPLE, TRIPLE + 2 ** 30];
    const blocks = edges.map((e) => Math.floor(e / BLOCK_SIZE));
    blocks.forEach((b, i) =>
      fs.write(fh, b * BLOCK_SIZE, new Uint8Array(BLOCK_SIZE).fill(i + 1), 'file_sync', ctx()),
    );
    blocks.forEach((b, i) => {
      const r = fs.read(fh, b * BLOCK_SIZE, BLOCK_SIZE).data;
      assert.ok(
        r.every((v) => v === i + 1),
        `block ${b} holds ${r[0]}, not ${i + 1}`,
      );
    });
    // Data blocks plus: one single, one double + 2 singles, one triple + double + 2 singles.
    assert.equal(fs.getattr(fh).used / BLOCK_SIZE, blocks.length + 1 + 3 + 4);
    assertClean(state);
  });

  it('reads back what a sparse model holds after random writes and truncations near every boundary', () => {
    fc.assert(
      fc.property(fc.array(fileOp, { minLength: 1, maxLength: 25 }), (ops) => {
        const { fs, state } = makeFs(16 * MiB, { inodes: 32 });
        const fh = fs.create(fs.root(), 'f', { mode: 'guarded', attributes: {} }, ctx());
        const model = new SparseModel();
        for (const op of ops) {
          if (op.k === 'write') {
            const data = new Uint8Array(op.len).map((_, i) => (op.seed + i) % 251);
            fs.write(fh, op.offset, data, 'file_sync', ctx());
            model.write(op.offset, data);
          } else if (op.k === 'truncate') {
            fs.setattr(fh, { size: op.size }, ctx());
            model.truncate(op.size);
          } else {
            const r = fs.read(fh, op.offset, op.count);
            assert.deepEqual(r.data, model.read(op.offset, op.count));
            assert.equal(r.eof, op.offset + r.data.length >= model.size);
          }
          assert.equal(fs.getattr(fh).size, model.size);
        }
        assertClean(state);
        fs.setattr(fh, { size: 0 }, ctx());
        assert.equal(fs.getattr(fh).used, 0);
        assertClean(state);
      }),
      { numRuns: 120 },
    );
  });
});
