import { strict as assert } from 'node:assert';
import * as fc from 'fast-check';
import { NfsError, NfsStatus } from 'nfs-server-ts';
import { HANDLE_SIZE } from '../../src';
import { assertClean, ctx, makeFs } from './helpers';

describe('bfs file system: hostile input', () => {
  const { fs, state } = makeFs();
  const dir = fs.mkdir(fs.root(), 'd', {}, ctx());
  const file = fs.create(dir, 'f', { mode: 'guarded', attributes: {} }, ctx());
  fs.write(file, 0, new Uint8Array(100).fill(1), 'file_sync', ctx());

  const handle = fc.oneof(
    fc.uint8Array({ maxLength: 64 }),
    // Well-formed prefix, arbitrary fsid/inode/generation.
    fc.tuple(fc.nat(), fc.nat(), fc.nat()).map(([a, b, c]) => {
      const h = new Uint8Array(HANDLE_SIZE);
      const dv = new DataView(h.buffer);
      h[0] = 1;
      h[1] = HANDLE_SIZE;
      dv.setUint32(4, a % 3, true);
      dv.setUint32(8, b % 100, true);
      dv.setUint32(12, c % 3, true);
      return h;
    }),
    fc.constant(file),
    fc.constant(dir),
  );
  const num = fc.oneof(
    fc.integer({ min: -5, max: 1 << 20 }),
    fc.constantFrom(Number.NaN, Infinity, -Infinity, 2 ** 53, 1.5, 2 ** 42 + 1),
  );

  it('answers arbitrary handles and numbers with an NfsError or a result, never anything else', () => {
    fc.assert(
      fc.property(handle, handle, num, num, fc.string({ maxLength: 300 }), (h1, h2, a, b, name) => {
        const calls: (() => unknown)[] = [
          () => fs.getattr(h1),
          () => fs.lookup(h1, name),
          () => fs.read(h1, a, b),
          () => fs.readlink(h1),
          () => fs.readdir(h1, a, new Uint8Array(8), b),
          () => fs.setattr(h1, { size: a, mode: b }, ctx()),
          () => fs.setattr(h1, { atime: { seconds: a, nseconds: b } }, ctx()),
          () => fs.write(h1, a, new Uint8Array(3), 'unstable', ctx()),
          () => fs.create(h1, name, { mode: 'exclusive', verifier: new Uint8Array(b & 15) }, ctx()),
          () => fs.mknod(h1, name, a, {}, { major: b, minor: a }, ctx()),
          () => fs.link(h1, h2, name, ctx()),
          () => fs.rename(h1, name, h2, name, ctx()),
          () => fs.commit(h1, a, b),
          () => fs.fsstat(h1),
        ];
        for (const call of calls) {
          try {
            call();
          } catch (e) {
            assert.ok(e instanceof NfsError, `non-NFS error: ${String(e)}`);
            assert.ok(NfsStatus[e.status] !== undefined);
          }
        }
      }),
      { numRuns: 300 },
    );
    assertClean(state);
  });
});
