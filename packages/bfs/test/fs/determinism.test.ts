import { strict as assert } from 'node:assert';
import * as fc from 'fast-check';
import { PageStore } from '@bfs/page-store';
import { BfsFileSystem, mkfs } from '../../src';
import { assertClean, ctx, MiB } from './helpers';
import { opArb, runOp, type Op } from '../../../nfs-server-ts/test/compliance/ops';

const SIZE = 4 * MiB;

function fresh(): { fs: BfsFileSystem; state: PageStore } {
  const state = new PageStore({ size: SIZE });
  mkfs(state, { fsid: 7, inodes: 256, time: { seconds: 100, nseconds: 0 } });
  return { fs: new BfsFileSystem(state), state };
}

function sameBytes(a: PageStore, b: PageStore): void {
  const x = a.read(0, SIZE);
  const y = b.read(0, SIZE);
  assert.ok(Buffer.from(x).equals(Buffer.from(y)), 'states differ');
}

describe('bfs file system: determinism', function () {
  this.timeout(120_000);

  it('formats byte-identically, and the same checkpoint sequence gives the same digest', () => {
    const a = fresh();
    const b = fresh();
    sameBytes(a.state, b.state);
    assert.deepEqual(a.state.checkpoint(1).digest, b.state.checkpoint(1).digest);
  });

  it('two replicas running the same operations with the same times produce identical pages and results', () => {
    fc.assert(
      fc.property(fc.array(opArb, { minLength: 10, maxLength: 80 }), (ops) => {
        const a = fresh();
        const b = fresh();
        ops.forEach((op, i) => {
          assert.deepEqual(runOp(a.fs, op, ctx(i, i), true), runOp(b.fs, op, ctx(i, i), true));
        });
        sameBytes(a.state, b.state);
      }),
      { numRuns: 60 },
    );
  });

  it('a replica that executes tentatively, rolls back and drops its caches converges with one that did not', () => {
    fc.assert(
      fc.property(
        fc.array(opArb, { minLength: 5, maxLength: 40 }),
        fc.array(opArb, { minLength: 1, maxLength: 40 }),
        fc.array(opArb, { minLength: 5, maxLength: 40 }),
        (prefix: Op[], tentative: Op[], suffix: Op[]) => {
          const a = fresh();
          const b = fresh();
          prefix.forEach((op, i) => {
            runOp(a.fs, op, ctx(i));
            runOp(b.fs, op, ctx(i));
          });
          b.state.checkpoint(1);
          tentative.forEach((op, i) => runOp(b.fs, op, ctx(5000 + i)));
          b.state.rollback(1);
          b.fs.dropCaches();
          suffix.forEach((op, i) => {
            const t = ctx(10_000 + i);
            assert.deepEqual(runOp(b.fs, op, t, true), runOp(a.fs, op, t, true));
          });
          sameBytes(a.state, b.state);
          assertClean(b.state);
        },
      ),
      { numRuns: 40 },
    );
  });
});
