import { strict as assert } from 'node:assert';
import * as fc from 'fast-check';
import { NfsError } from 'nfs-server-ts';
import { BfsFileSystem, BLOCK_SIZE, fsck } from '../../src';
import { bytes, ctx, makeFs, MiB } from './helpers';
import { opArb, runOp } from '../../../nfs-server-ts/test/compliance/ops';

/** A small file system with a directory of 40 files, a sparse file and a symlink. */
function populated() {
  const { fs, state } = makeFs(4 * MiB, { inodes: 64 });
  const d = fs.mkdir(fs.root(), 'a', {}, ctx());
  for (let i = 0; i < 40; i++) fs.create(d, `f${i}`, { mode: 'guarded', attributes: {} }, ctx());
  const f = fs.create(fs.root(), 'b', { mode: 'guarded', attributes: {} }, ctx());
  fs.write(f, 0, new Uint8Array(50_000).fill(3), 'file_sync', ctx());
  fs.write(f, 3 * MiB, bytes('tail'), 'file_sync', ctx());
  fs.symlink(fs.root(), 'c', 'a/f1', {}, ctx());
  return state;
}

describe('bfs file system: corrupted state (a faulty replica)', function () {
  this.timeout(120_000);

  it('never hangs or fails with anything but an Error, and fsck never throws', () => {
    fc.assert(
      fc.property(
        fc.array(
          fc.tuple(
            fc.integer({ min: 0, max: 40 * BLOCK_SIZE - 1 }),
            fc.integer({ min: 0, max: 255 }),
          ),
          {
            minLength: 1,
            maxLength: 8,
          },
        ),
        fc.array(opArb, { minLength: 5, maxLength: 30 }),
        (flips, ops) => {
          const state = populated();
          for (const [off, v] of flips) state.write(off, Uint8Array.of(v));
          const report = fsck(state);
          assert.ok(Array.isArray(report.errors));
          let fs: BfsFileSystem;
          try {
            fs = new BfsFileSystem(state);
          } catch (e) {
            assert.ok(e instanceof Error);
            return;
          }
          ops.forEach((op, i) => {
            try {
              runOp(fs, op, ctx(i));
            } catch (e) {
              // NfsErrors are results; anything else must still be an Error (SERVERFAULT).
              assert.ok(e instanceof Error && !(e instanceof NfsError));
            }
          });
          fsck(state);
        },
      ),
      { numRuns: 150 },
    );
  });

  it('fsck flags a corrupted directory slot, hash bucket or pointer block', () => {
    const state = populated();
    assert.deepEqual(fsck(state).errors, []);
    // Overwrite the data area's first blocks (root directory, its buckets and slots).
    const dataStart = new DataView(state.read(40, 4).buffer).getUint32(0, true);
    state.write(dataStart * BLOCK_SIZE + 8, new Uint8Array(64).fill(0x5a));
    assert.notDeepEqual(fsck(state).errors, []);
  });
});
