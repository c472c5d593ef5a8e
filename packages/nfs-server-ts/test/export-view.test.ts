import { strict as assert } from 'node:assert';
import { EXPORT_SUFFIX_BYTES, ExportedFileSystem, exportIndexOf } from '../src/export-view';
import { type FileHandle, FileType, NfsError, NfsStatus } from '../src/filesystem';
import { MemoryFileSystem } from '../src/memfs';

const CTX = { cred: { uid: 0, gid: 0, gids: [] }, time: { seconds: 1, nseconds: 0 } };
const KEY = new Uint8Array(32).fill(9);

function statusOf(f: () => unknown): number {
  try {
    f();
  } catch (e) {
    if (e instanceof NfsError) return e.status;
    throw e;
  }
  throw new Error('expected an NFS error');
}

/** A memory file system with /pub/doc, /home/ann and the exports '/' rw, '/pub' ro, '/home' rw. */
function fixture() {
  const mem = new MemoryFileSystem();
  const pub = mem.mkdir(mem.root(), 'pub', {}, CTX);
  mem.create(pub, 'doc', { mode: 'unchecked', attributes: {} }, CTX);
  const home = mem.mkdir(mem.root(), 'home', {}, CTX);
  mem.mkdir(home, 'ann', {}, CTX);
  const fs = new ExportedFileSystem(
    mem,
    [
      { path: '/', readOnly: false },
      { path: '/pub', readOnly: true },
      { path: '/home', readOnly: false },
    ],
    KEY,
  );
  return { mem, fs, all: fs.view(0), pub: fs.view(1), home: fs.view(2) };
}

describe('exports enforced by the data server: handles bound to their export', () => {
  it("each export's root is its path, and handles found below it carry its index", () => {
    const { mem, pub } = fixture();
    const root = pub.root();
    assert.equal(exportIndexOf(root), 1);
    assert.equal(pub.getattr(root).fileid, mem.getattr(mem.lookup(mem.root(), 'pub')).fileid);
    const doc = pub.lookup(root, 'doc');
    assert.equal(exportIndexOf(doc), 1);
    const listed = pub.readdir(root, 0, new Uint8Array(8), 100).entries;
    for (const e of listed) assert.equal(exportIndexOf(e.handle), 1, e.name);
  });

  it('a handle whose export index or MAC was changed is STALE; one too short to be ours is BADHANDLE', () => {
    const { home, fs } = fixture();
    const ann = home.lookup(home.root(), 'ann');
    const rebound = Uint8Array.from(ann);
    rebound[rebound.length - EXPORT_SUFFIX_BYTES + 1] = 0; // claim export 0 ('/', rw)
    assert.equal(
      statusOf(() => fs.getattr(rebound)),
      NfsStatus.STALE,
    );
    const forged = Uint8Array.from(ann);
    forged[forged.length - 1] ^= 1;
    assert.equal(
      statusOf(() => fs.getattr(forged)),
      NfsStatus.STALE,
    );
    const unknown = Uint8Array.from(ann);
    unknown[unknown.length - EXPORT_SUFFIX_BYTES + 1] = 7;
    assert.equal(
      statusOf(() => fs.getattr(unknown)),
      NfsStatus.STALE,
    );
    assert.equal(
      statusOf(() => fs.getattr(new Uint8Array(4))),
      NfsStatus.BADHANDLE,
    );
  });

  it('the same directory reached through two exports has two handles, each keeping its own rules', () => {
    const { all, pub } = fixture();
    const viaAll = all.lookup(all.root(), 'pub');
    const viaPub = pub.root();
    assert.notDeepEqual(viaAll, viaPub);
    assert.equal(all.getattr(viaAll).fileid, pub.getattr(viaPub).fileid);
    all.create(viaAll, 'new', { mode: 'unchecked', attributes: {} }, CTX);
    assert.equal(
      statusOf(() => pub.create(viaPub, 'new2', { mode: 'unchecked', attributes: {} }, CTX)),
      NfsStatus.ROFS,
    );
  });

  it("'..' of an export's root is the root itself, in LOOKUP and in READDIR; below the root it goes up", () => {
    const { home, mem } = fixture();
    const root = home.root();
    assert.deepEqual(home.lookup(root, '..'), root);
    const dots = home.readdir(root, 0, new Uint8Array(8), 100).entries.find((e) => e.name === '..');
    assert.ok(dots);
    assert.deepEqual(dots.handle, root);
    assert.equal(dots.fileid, home.getattr(root).fileid);
    const ann = home.lookup(root, 'ann');
    assert.deepEqual(home.lookup(ann, '..'), root);
    assert.notEqual(home.getattr(root).fileid, mem.getattr(mem.root()).fileid);
  });

  it('every call that changes the file system answers ROFS through a read-only export; reads work', () => {
    const { pub } = fixture();
    const root = pub.root();
    const doc = pub.lookup(root, 'doc');
    const attrs = {};
    const cases: [string, () => unknown][] = [
      ['SETATTR', () => pub.setattr(doc, { mode: 0o600 }, CTX)],
      ['WRITE', () => pub.write(doc, 0, new Uint8Array([1]), 'file_sync', CTX)],
      ['CREATE', () => pub.create(root, 'x', { mode: 'unchecked', attributes: attrs }, CTX)],
      ['MKDIR', () => pub.mkdir(root, 'x', attrs, CTX)],
      ['SYMLINK', () => pub.symlink(root, 'x', 'doc', attrs, CTX)],
      ['MKNOD', () => pub.mknod(root, 'x', FileType.FIFO, attrs, { major: 0, minor: 0 }, CTX)],
      ['REMOVE', () => pub.remove(root, 'doc', CTX)],
      ['RMDIR', () => pub.rmdir(root, 'doc', CTX)],
      ['RENAME', () => pub.rename(root, 'doc', root, 'doc2', CTX)],
      ['LINK', () => pub.link(doc, root, 'doc2', CTX)],
    ];
    for (const [name, call] of cases) assert.equal(statusOf(call), NfsStatus.ROFS, name);
    assert.equal(pub.read(doc, 0, 10).data.length, 0);
    assert.equal(pub.getattr(doc).type, FileType.REG);
  });

  it('RENAME and LINK between two exports answer XDEV, as between two file systems', () => {
    const { all, home } = fixture();
    const homeRoot = home.root();
    const viaAll = all.lookup(all.root(), 'home');
    const f: FileHandle = home.create(homeRoot, 'f', { mode: 'unchecked', attributes: {} }, CTX);
    assert.equal(
      statusOf(() => all.rename(homeRoot, 'f', viaAll, 'g', CTX)),
      NfsStatus.XDEV,
    );
    assert.equal(
      statusOf(() => all.link(f, viaAll, 'g', CTX)),
      NfsStatus.XDEV,
    );
    home.rename(homeRoot, 'f', homeRoot, 'g', CTX);
  });

  it('an export whose directory is gone has no root: NOENT', () => {
    const { mem, fs } = fixture();
    const pubDir = mem.lookup(mem.root(), 'pub');
    mem.remove(pubDir, 'doc', CTX);
    mem.rmdir(mem.root(), 'pub', CTX);
    assert.equal(
      statusOf(() => fs.view(1).root()),
      NfsStatus.NOENT,
    );
  });
});

describe('exports enforced by the data server: when the exports change', () => {
  it('a handle made before an export was removed, moved or made read-write is STALE, not rebound', () => {
    const { mem, home } = fixture();
    const ann = home.lookup(home.root(), 'ann');
    const changed = [
      [
        { path: '/', readOnly: false },
        { path: '/home', readOnly: false },
      ], // /pub removed
      [
        { path: '/', readOnly: false },
        { path: '/pub', readOnly: true },
        { path: '/srv', readOnly: false },
      ],
      [
        { path: '/', readOnly: false },
        { path: '/pub', readOnly: true },
        { path: '/home', readOnly: true },
      ],
    ];
    for (const exports of changed) {
      const after = new ExportedFileSystem(mem, exports, KEY);
      assert.equal(
        statusOf(() => after.getattr(ann)),
        NfsStatus.STALE,
        JSON.stringify(exports),
      );
    }
    const same = new ExportedFileSystem(
      mem,
      [
        { path: '/', readOnly: false },
        { path: '/pub', readOnly: true },
        { path: '/home', readOnly: false },
      ],
      KEY,
    );
    assert.equal(same.getattr(ann).type, FileType.DIR, 'same exports, same key: still valid');
  });
});
