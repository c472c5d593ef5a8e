import { strict as assert } from 'node:assert';
import { NfsStatus } from 'nfs-server-ts';
import type { BfsFileSystem } from '../../src';
import { assertClean, ctx, makeFs, MiB, throwsNfs } from './helpers';

const ENTRIES = 100_000;

function listAll(fs: BfsFileSystem, dir: Uint8Array, batch: number): string[] {
  const names: string[] = [];
  let cookie = 0;
  for (let calls = 0; ; calls++) {
    assert.ok(calls < ENTRIES, 'listing does not terminate');
    const r = fs.readdir(dir, cookie, new Uint8Array(8), batch);
    names.push(...r.entries.map((e) => e.name));
    if (r.eof) return names;
    cookie = r.entries[r.entries.length - 1].cookie;
  }
}

describe('bfs file system: a directory of 100,000 entries', function () {
  this.timeout(120_000);
  const { fs, state } = makeFs(512 * MiB, { inodes: ENTRIES + 1000 });
  let dir: Uint8Array;

  before(() => {
    dir = fs.mkdir(fs.root(), 'big', {}, ctx());
    for (let i = 0; i < ENTRIES; i++) {
      fs.create(dir, `file-${i}`, { mode: 'guarded', attributes: {} }, ctx(i));
    }
  });

  it('finds every name by hash and misses absent ones', () => {
    for (let i = 0; i < ENTRIES; i += 997) {
      assert.equal(fs.getattr(fs.lookup(dir, `file-${i}`)).atime.seconds, i);
    }
    throwsNfs(() => fs.lookup(dir, `file-${ENTRIES}`), NfsStatus.NOENT);
  });

  it('lists every entry exactly once in batches', () => {
    const names = listAll(fs, dir, 1000);
    assert.equal(names.length, ENTRIES + 2);
    assert.equal(new Set(names).size, ENTRIES + 2);
  });

  it('keeps cookies valid while entries are removed and added mid-listing', () => {
    const seen = new Set<string>();
    const removed = new Set<string>();
    let cookie = 0;
    let round = 0;
    for (;;) {
      const r = fs.readdir(dir, cookie, new Uint8Array(8), 5000);
      for (const e of r.entries) {
        assert.ok(!seen.has(e.name), `${e.name} listed twice`);
        seen.add(e.name);
      }
      if (r.eof) break;
      cookie = r.entries[r.entries.length - 1].cookie;
      // Between batches, remove some entries from everywhere and add new ones.
      for (let k = 0; k < 50; k++) {
        const victim = `file-${(round * 50 + k) * 37}`;
        fs.remove(dir, victim, ctx());
        removed.add(victim);
        fs.create(dir, `new-${round}-${k}`, { mode: 'guarded', attributes: {} }, ctx());
      }
      round++;
    }
    // Every entry present from start to end of the listing was listed.
    assert.ok(round > 10);
    for (let i = 0; i < ENTRIES; i++) {
      const name = `file-${i}`;
      if (!removed.has(name)) assert.ok(seen.has(name), `${name} missing from the listing`);
    }
    assertClean(state);
  });
});
