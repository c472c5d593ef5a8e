import { strict as assert } from 'node:assert';
import * as fc from 'fast-check';
import { MemoryFileSystem } from 'nfs-server-ts';
import { assertClean, ctx, makeFs, MiB } from './helpers';
import { opArb, runBfs } from './ops';

describe('bfs file system: random operation sequences against the nfs-server-ts memory backend', function () {
  this.timeout(120_000);

  it('gives the same result or error as MemoryFileSystem for every operation', () => {
    fc.assert(
      // Known difference left out: MemoryFileSystem extends a file on a zero-length WRITE past
      // its end; BFS, like POSIX pwrite, leaves the size alone (the model test pins that).
      fc.property(fc.array(opArb, { minLength: 20, maxLength: 100 }), (all) => {
        const ops = all.filter((op) => !(op.k === 'write' && op.len === 0));
        const { fs, state } = makeFs(8 * MiB, { inodes: 256 });
        const mem = new MemoryFileSystem();
        ops.forEach((op, i) => {
          assert.deepEqual(
            runBfs(fs, op, ctx(i + 1)),
            runBfs(mem, op, ctx(i + 1)),
            `op ${i} ${JSON.stringify(op)}`,
          );
        });
        assertClean(state);
      }),
      { numRuns: 150 },
    );
  });
});
