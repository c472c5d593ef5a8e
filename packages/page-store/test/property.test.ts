import { strict as assert } from 'node:assert';
import fc from 'fast-check';
import { PageStore } from '../src';
import { NaiveModel } from './model';

type Op =
  | { kind: 'write'; offset: number; data: Uint8Array }
  | { kind: 'modify'; offset: number; length: number }
  | { kind: 'checkpoint'; gap: number }
  | { kind: 'discard'; pick: number }
  | { kind: 'rollback'; pick: number }
  | { kind: 'readAt'; pick: number; offset: number; length: number }
  | { kind: 'partition'; pick: number; level: number; index: number; since: number };

function shapes() {
  return fc.record({
    pageSize: fc.constantFrom(64, 128),
    pages: fc.integer({ min: 1, max: 40 }),
    tail: fc.integer({ min: 0, max: 63 }),
    fanout: fc.integer({ min: 2, max: 5 }),
  });
}

function ops(size: number) {
  const offset = fc.integer({ min: 0, max: size - 1 });
  const pick = fc.nat();
  return fc.array(
    fc.oneof(
      {
        weight: 6,
        arbitrary: fc.record({
          kind: fc.constant('write' as const),
          offset,
          data: fc.uint8Array({ minLength: 1, maxLength: 300 }),
        }),
      },
      {
        weight: 1,
        arbitrary: fc.record({
          kind: fc.constant('modify' as const),
          offset,
          length: fc.integer({ min: 0, max: 200 }),
        }),
      },
      {
        weight: 3,
        arbitrary: fc.record({
          kind: fc.constant('checkpoint' as const),
          gap: fc.integer({ min: 1, max: 3 }),
        }),
      },
      { weight: 1, arbitrary: fc.record({ kind: fc.constant('discard' as const), pick }) },
      { weight: 1, arbitrary: fc.record({ kind: fc.constant('rollback' as const), pick }) },
      {
        weight: 2,
        arbitrary: fc.record({
          kind: fc.constant('readAt' as const),
          pick,
          offset,
          length: fc.integer({ min: 0, max: 300 }),
        }),
      },
      {
        weight: 2,
        arbitrary: fc.record({
          kind: fc.constant('partition' as const),
          pick,
          level: fc.nat(),
          index: fc.nat(),
          since: fc.integer({ min: -1, max: 30 }),
        }),
      },
    ),
    { minLength: 5, maxLength: 80, size: 'max' },
  ) as fc.Arbitrary<Op[]>;
}

function run(
  shape: { pageSize: number; pages: number; tail: number; fanout: number },
  script: Op[],
): void {
  const size = shape.pages * shape.pageSize + (shape.tail % shape.pageSize);
  const store = new PageStore({ size, pageSize: shape.pageSize, fanout: shape.fanout });
  const model = new NaiveModel(size, shape.pageSize, shape.fanout);
  let seq = 0;
  for (const op of script) {
    const kept = [...model.kept.keys()];
    const chosen =
      kept.length > 0 ? kept[(op as { pick?: number }).pick! % kept.length] : undefined;
    switch (op.kind) {
      case 'write': {
        const data = op.data.subarray(0, size - op.offset);
        store.write(op.offset, data);
        model.write(op.offset, data);
        break;
      }
      case 'modify': {
        const length = Math.min(op.length, size - op.offset);
        store.modify(op.offset, length);
        model.modify(op.offset, length);
        break;
      }
      case 'checkpoint': {
        seq = Math.max(seq, model.last) + op.gap;
        const info = store.checkpoint(seq);
        assert.deepEqual(info.digest, model.checkpoint(seq), `digest of checkpoint ${seq}`);
        break;
      }
      case 'discard':
        if (chosen !== undefined) {
          store.discardBelow(chosen);
          model.discardBelow(chosen);
        }
        break;
      case 'rollback':
        if (chosen !== undefined) {
          store.rollback(chosen);
          model.rollback(chosen);
        }
        break;
      case 'readAt':
        if (chosen !== undefined) {
          const length = Math.min(op.length, size - op.offset);
          const want = model.kept.get(chosen)!.bytes.subarray(op.offset, op.offset + length);
          assert.deepEqual(store.readAt(chosen, op.offset, length), want);
        }
        break;
      case 'partition':
        if (chosen !== undefined) {
          const tree = model.kept.get(chosen)!.tree;
          const level = op.level % (model.levels + 1);
          const index = op.index % tree[level].length;
          const newer = tree[0].flatMap((page, i) => (page.lm > op.since ? [i] : []));
          assert.deepEqual(store.pagesModifiedAfter(chosen, op.since), newer);
          const got = store.partitionAt(chosen, level, index);
          assert.deepEqual(
            [got.lm, got.digest],
            [tree[level][index].lm, tree[level][index].digest],
          );
          if (level > 0) {
            const kids = tree[level - 1]
              .map((k, i) => ({ ...k, i }))
              .slice(index * shape.fanout, (index + 1) * shape.fanout)
              .filter((k) => k.lm > op.since);
            const listed = store.modifiedChildren(chosen, level, index, op.since);
            assert.deepEqual(
              listed.map((c) => [c.index, c.lm, c.digest]),
              kids.map((k) => [k.i, k.lm, k.digest]),
            );
          }
        }
        break;
    }
    assert.deepEqual(store.checkpoints(), [...model.kept.keys()]);
    for (const [s, k] of model.kept)
      assert.deepEqual(store.digestAt(s), k.tree[model.levels][0].digest);
  }
  assert.deepEqual(store.read(0, size), model.bytes.subarray(0, size));
}

describe('page-store: agreement with a naive copy-everything model', () => {
  it('agrees on bytes, digests, partitions, modified children and modified pages over random histories', () => {
    fc.assert(
      fc.property(
        shapes().chain((shape) => {
          const size = shape.pages * shape.pageSize + (shape.tail % shape.pageSize);
          return fc.tuple(fc.constant(shape), ops(size));
        }),
        ([shape, script]) => run(shape, script),
      ),
      { numRuns: 300 },
    );
  });
});
