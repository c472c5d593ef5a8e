import { strict as assert } from 'node:assert';
import { NfsStatus } from 'nfs-server-ts';
import { DIR_INITIAL_BUCKETS, DIR_MAX_LOAD, nameHash } from '../../src';
import { assertClean, ctx, makeFs, throwsNfs } from './helpers';

function cookies(fs: ReturnType<typeof makeFs>['fs'], dir: Uint8Array): Map<string, number> {
  const r = fs.readdir(dir, 0, new Uint8Array(8), 10_000);
  assert.equal(r.eof, true);
  return new Map(r.entries.map((e) => [e.name, e.cookie]));
}

describe('bfs file system: hashed directories', () => {
  it('hashes names with a seeded FNV-1a: names crowded into one bucket under one seed spread under another', () => {
    const name = (s: string) => new Uint8Array(Buffer.from(s));
    assert.equal(nameHash(name('a'), 7), nameHash(name('a'), 7));
    assert.notEqual(nameHash(name('a'), 7), nameHash(name('a'), 8));
    const crowded: string[] = [];
    for (let i = 0; crowded.length < 64; i++)
      if ((nameHash(name(`n${i}`), 1) & 15) === 0) crowded.push(`n${i}`);
    const buckets = new Set(crowded.map((n) => nameHash(name(n), 2) & 15));
    assert.ok(buckets.size > 8, `only ${buckets.size} buckets`);
  });

  it('stores the mkfs hash seed so every replica formatted alike hashes alike', () => {
    const size = 2 * 2 ** 20;
    const a = makeFs(size, { hashSeed: 0xdeadbeef });
    const b = makeFs(size, { hashSeed: 0xdeadbeef });
    const c = makeFs(size, { hashSeed: 1 });
    for (const x of [a, b, c])
      for (let i = 0; i < 50; i++)
        x.fs.create(x.fs.root(), `f${i}`, { mode: 'guarded', attributes: {} }, ctx());
    assert.ok(Buffer.from(a.state.read(0, size)).equals(Buffer.from(b.state.read(0, size))));
    assert.ok(!Buffer.from(a.state.read(0, size)).equals(Buffer.from(c.state.read(0, size))));
    assertClean(c.state);
  });

  it('keeps every cookie while the table grows and other entries come and go', () => {
    const { fs, state } = makeFs();
    const d = fs.mkdir(fs.root(), 'd', {}, ctx());
    const first = DIR_INITIAL_BUCKETS * DIR_MAX_LOAD;
    for (let i = 0; i < first; i++)
      fs.create(d, `e${i}`, { mode: 'guarded', attributes: {} }, ctx());
    const before = cookies(fs, d);
    // Grow the bucket array several times, then remove some of the new names again.
    for (let i = 0; i < 200; i++) fs.create(d, `x${i}`, { mode: 'guarded', attributes: {} }, ctx());
    for (let i = 0; i < 200; i += 2) fs.remove(d, `x${i}`, ctx());
    const after = cookies(fs, d);
    for (const [name, cookie] of before) assert.equal(after.get(name), cookie, name);
    for (let i = 0; i < first; i++) fs.lookup(d, `e${i}`);
    assertClean(state);
  });

  it('reuses the slot of a removed entry, so the new entry takes its position', () => {
    const { fs, state } = makeFs();
    for (const n of ['a', 'b', 'c'])
      fs.create(fs.root(), n, { mode: 'guarded', attributes: {} }, ctx());
    const before = cookies(fs, fs.root());
    fs.remove(fs.root(), 'b', ctx());
    fs.create(fs.root(), 'z', { mode: 'guarded', attributes: {} }, ctx());
    const after = cookies(fs, fs.root());
    assert.equal(after.get('z'), before.get('b'));
    assert.equal(after.get('c'), before.get('c'));
    assert.deepEqual([...after.keys()], ['.', '..', 'a', 'z', 'c']);
    assertClean(state);
  });

  it('resumes after a cookie whose entry was removed meanwhile, without repeating entries', () => {
    const { fs } = makeFs();
    for (let i = 0; i < 10; i++)
      fs.create(fs.root(), `n${i}`, { mode: 'guarded', attributes: {} }, ctx());
    const page = fs.readdir(fs.root(), 0, new Uint8Array(8), 5);
    const last = page.entries[page.entries.length - 1];
    fs.remove(fs.root(), last.name, ctx());
    const rest = fs.readdir(fs.root(), last.cookie, new Uint8Array(8), 100);
    const names = [...page.entries, ...rest.entries].map((e) => e.name);
    assert.equal(new Set(names).size, names.length);
    assert.equal(names.length, 12);
    assert.equal(rest.eof, true);
  });

  it("lists '..' alone when asked for one entry after '.'", () => {
    const { fs } = makeFs();
    const d = fs.mkdir(fs.root(), 'd', {}, ctx());
    const one = fs.readdir(d, 0, new Uint8Array(8), 1);
    assert.deepEqual(
      one.entries.map((e) => e.name),
      ['.'],
    );
    assert.equal(one.eof, false);
    const two = fs.readdir(d, one.entries[0].cookie, new Uint8Array(8), 1);
    assert.deepEqual(
      two.entries.map((e) => [e.name, e.fileid]),
      [['..', 1]],
    );
    assert.equal(two.eof, true);
  });

  it('treats names as exact byte strings: case and Unicode forms differ', () => {
    const { fs, state } = makeFs();
    fs.create(fs.root(), 'Name', { mode: 'guarded', attributes: {} }, ctx());
    fs.create(fs.root(), 'name', { mode: 'guarded', attributes: {} }, ctx());
    fs.create(fs.root(), 'caf\u00e9', { mode: 'guarded', attributes: {} }, ctx());
    fs.create(fs.root(), 'cafe\u0301', { mode: 'guarded', attributes: {} }, ctx());
    assert.equal(fs.readdir(fs.root(), 0, new Uint8Array(8), 100).entries.length, 6);
    throwsNfs(() => fs.lookup(fs.root(), 'NAME'), NfsStatus.NOENT);
    assertClean(state);
  });

  it('frees every block of a directory emptied and removed', () => {
    const { fs, state } = makeFs();
    const free0 = fs.fsstat(fs.root()).freeBytes;
    const d = fs.mkdir(fs.root(), 'd', {}, ctx());
    for (let i = 0; i < 300; i++) fs.create(d, `f${i}`, { mode: 'guarded', attributes: {} }, ctx());
    for (let i = 0; i < 300; i++) fs.remove(d, `f${i}`, ctx());
    fs.rmdir(fs.root(), 'd', ctx());
    // The root keeps its one entry slot block and bucket block; the subdirectory left nothing.
    const rootBlocks = fs.getattr(fs.root()).used / 4096;
    assert.equal(free0 - fs.fsstat(fs.root()).freeBytes, (rootBlocks - 1) * 4096);
    assertClean(state);
  });
});
