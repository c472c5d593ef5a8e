import { strict as assert } from 'node:assert';
import * as fc from 'fast-check';
import { FileType } from 'nfs-server-ts';
import type { BfsFileSystem } from '../../src';
import { assertClean, ctx, makeFs, MiB } from './helpers';
import { ModelFs } from './model';
import { opArb, runBfs } from './ops';

/** The same tree, read through BFS, in the model's dump format. */
function dumpBfs(fs: BfsFileSystem): Map<string, unknown> {
  const out = new Map<string, unknown>();
  const walk = (dir: Uint8Array, prefix: string) => {
    let cookie = 0;
    for (;;) {
      const r = fs.readdir(dir, cookie, new Uint8Array(8), 4);
      for (const e of r.entries) {
        if (e.name === '.' || e.name === '..') continue;
        const a = fs.getattr(e.handle);
        const p = `${prefix}/${e.name}`;
        const content =
          a.type === FileType.REG
            ? Buffer.from(fs.read(e.handle, 0, a.size).data).toString('hex')
            : a.type === FileType.LNK
              ? fs.readlink(e.handle)
              : undefined;
        out.set(p, {
          type: a.type,
          size: a.type === FileType.DIR ? 0 : a.size,
          nlink: a.nlink,
          content,
        });
        if (a.type === FileType.DIR) walk(e.handle, p);
      }
      if (r.eof) break;
      cookie = r.entries[r.entries.length - 1].cookie;
    }
  };
  walk(fs.root(), '');
  return out;
}

describe('bfs file system: random operation sequences against a model', function () {
  this.timeout(120_000);

  it('agrees with the model on every result and error, stays consistent, and ends with the same tree', () => {
    fc.assert(
      fc.property(fc.array(opArb, { minLength: 20, maxLength: 100 }), (ops) => {
        const { fs, state } = makeFs(8 * MiB, { inodes: 256 });
        const model = new ModelFs();
        ops.forEach((op, i) => {
          const got = runBfs(fs, op, ctx(i + 1));
          const want = model.run(op);
          assert.deepEqual(got, want, `op ${i} ${JSON.stringify(op)}`);
        });
        assertClean(state);
        assert.deepEqual(new Map([...dumpBfs(fs)].sort()), new Map([...model.dump()].sort()));
      }),
      { numRuns: 300 },
    );
  });
});
