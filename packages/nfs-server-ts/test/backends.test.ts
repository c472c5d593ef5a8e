/**
 * What is particular to each backend. What every backend must do (random sequences against the
 * model, handles, cookies, large directories, NFSv2 READDIR) is the compliance suite,
 * compliance/filesystem.ts, run by memfs-compliance, localfs-compliance and BFS's compliance test.
 */
import { strict as assert } from 'node:assert';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { type CallContext, FileType, NfsError, NfsStatus } from '../src/filesystem';
import { LocalFileSystem } from '../src/localfs';
import { MemoryFileSystem } from '../src/memfs';
import { Nfs3Proc } from '../src/nfs3';
import { executeNfsCall } from '../src/procedures';
import { NFS_PROGRAM } from '../src/programs';
import { XdrWriter } from '../src/xdr';
import { wholeCookieGroups } from '../src/nfs3';
import { client3, startServer } from './helpers';

const ctx: CallContext = { cred: { uid: 1, gid: 1, gids: [] }, time: { seconds: 10, nseconds: 0 } };

function statusOfSync(f: () => unknown): NfsStatus {
  try {
    f();
  } catch (e) {
    if (e instanceof NfsError) return e.status;
    throw e;
  }
  throw new Error('expected an NfsError');
}

describe('local-directory backend', () => {
  let dir: string;
  beforeEach(() => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'nfs-localfs-'));
  });
  afterEach(() => fs.rmSync(dir, { recursive: true, force: true }));

  it('keeps handles valid across a server restart (a new backend instance)', () => {
    const a = new LocalFileSystem(dir);
    const sub = a.mkdir(a.root(), 'sub', {}, ctx);
    const deep = a.mkdir(sub, 'deep', {}, ctx);
    const file = a.create(deep, 'f', { mode: 'guarded', attributes: {} }, ctx);
    a.write(file, 0, Buffer.from('persisted'), 'file_sync', ctx);
    const b = new LocalFileSystem(dir);
    assert.deepEqual(b.root(), a.root());
    assert.equal(Buffer.from(b.read(file, 0, 100).data).toString(), 'persisted');
    assert.equal(b.getattr(deep).type, FileType.DIR);
  });

  it('with a handle key, keeps handles across restarts under the same key; without it or under another they are STALE', () => {
    const key = new Uint8Array(16).fill(4);
    const a = new LocalFileSystem(dir, { handleKey: key });
    const file = a.create(a.root(), 'k', { mode: 'guarded', attributes: {} }, ctx);
    assert.equal(new LocalFileSystem(dir, { handleKey: key }).getattr(file).type, FileType.REG);
    for (const other of [
      new LocalFileSystem(dir),
      new LocalFileSystem(dir, { handleKey: new Uint8Array(16).fill(5) }),
    ]) {
      assert.equal(
        statusOfSync(() => other.getattr(file)),
        NfsStatus.STALE,
      );
    }
    // A handle built from the inode number and a zero tag (what a file system without birth
    // times gives) is not the keyed one.
    const guessed = Buffer.from(file);
    guessed.writeUInt32BE(0, 16);
    assert.equal(
      statusOfSync(() => a.getattr(new Uint8Array(guessed))),
      NfsStatus.STALE,
    );
  });

  it('reports STALE for a handle whose file was removed, even if a new file takes its name', () => {
    const a = new LocalFileSystem(dir);
    const f = a.create(a.root(), 'x', { mode: 'guarded', attributes: {} }, ctx);
    fs.unlinkSync(path.join(dir, 'x'));
    fs.writeFileSync(path.join(dir, 'x'), 'new');
    fs.writeFileSync(path.join(dir, 'pad'), 'occupy the old inode number if possible');
    assert.equal(
      statusOfSync(() => new LocalFileSystem(dir).getattr(f)),
      NfsStatus.STALE,
    );
  });

  it('finds files renamed behind its back, by inode', () => {
    const a = new LocalFileSystem(dir);
    const f = a.create(a.root(), 'before', { mode: 'guarded', attributes: {} }, ctx);
    fs.mkdirSync(path.join(dir, 'moved'));
    fs.renameSync(path.join(dir, 'before'), path.join(dir, 'moved', 'after'));
    assert.equal(a.getattr(f).type, FileType.REG);
  });

  it('refuses mknod cleanly with NOTSUPP and never follows symlinks out of the export', () => {
    const a = new LocalFileSystem(dir);
    assert.equal(
      statusOfSync(() => a.mknod()),
      NfsStatus.NOTSUPP,
    );
    fs.symlinkSync('/etc', path.join(dir, 'escape'));
    const link = a.lookup(a.root(), 'escape');
    assert.equal(a.getattr(link).type, FileType.LNK);
    assert.equal(
      statusOfSync(() => a.lookup(link, 'passwd')),
      NfsStatus.NOTDIR,
    );
  });

  // The compliance suite lists 10,000 entries made through the backend; 100,000 made behind its
  // back, faster, put its name-hash cookies' collision handling to the test.
  it('lists a 100,000-entry directory made behind its back completely over NFSv3 READDIRPLUS', async function () {
    this.timeout(120_000);
    const big = path.join(dir, 'big');
    fs.mkdirSync(big);
    for (let i = 0; i < 100_000; i++) fs.closeSync(fs.openSync(path.join(big, `file-${i}`), 'w'));
    const local = new LocalFileSystem(dir);
    const h = await startServer({ fs: local });
    const c = await client3(h.port);
    try {
      const handle = (await c.lookup(local.root(), 'big')).handle;
      const entries = await c.listAll(handle, 1024 * 1024);
      assert.equal(entries.length, 100_002);
      assert.equal(new Set(entries.map((e) => e.name)).size, 100_002);
    } finally {
      c.rpc.close();
      await h.close();
    }
  });

  it('lists directories with name-hash cookies that survive removals made behind its back', () => {
    const a = new LocalFileSystem(dir);
    for (let i = 0; i < 40; i++) fs.writeFileSync(path.join(dir, `e${i}`), '');
    const first = a.readdir(a.root(), 0, new Uint8Array(8), 12);
    assert.equal(first.eof, false);
    for (const e of first.entries)
      if (e.name.startsWith('e')) fs.unlinkSync(path.join(dir, e.name));
    const seen = new Set(first.entries.map((e) => e.name));
    let cookie = first.entries[first.entries.length - 1].cookie;
    for (;;) {
      const r = a.readdir(a.root(), cookie, new Uint8Array(8), 12);
      for (const e of r.entries) {
        assert.ok(!seen.has(e.name), `${e.name} listed twice`);
        seen.add(e.name);
      }
      if (r.eof) break;
      cookie = r.entries[r.entries.length - 1].cookie;
    }
    assert.equal(seen.size, 42);
  });
});

describe('in-memory backend', () => {
  it('draws its fsid and generation key per instance: handles of another instance are BADHANDLE, a guessed root handle STALE', () => {
    const a = new MemoryFileSystem();
    const b = new MemoryFileSystem();
    assert.equal(
      statusOfSync(() => a.getattr(b.root())),
      NfsStatus.BADHANDLE,
    );
    const guessed = Uint8Array.from(a.root());
    new DataView(guessed.buffer).setUint32(12, 1); // the generation every root used to have
    assert.equal(
      statusOfSync(() => a.getattr(guessed)),
      NfsStatus.STALE,
    );
    const gen = (fs: MemoryFileSystem) =>
      new DataView(
        fs.create(fs.root(), 'f', { mode: 'unchecked', attributes: {} }, ctx).buffer,
      ).getUint32(12);
    const ga = gen(a);
    assert.notEqual(ga, 0);
    assert.notEqual(ga, gen(b));
  });

  it('answers BAD_COOKIE for a cookie it never issued', () => {
    const mem = new MemoryFileSystem();
    assert.equal(
      statusOfSync(() => mem.readdir(mem.root(), 999, new Uint8Array(8), 10)),
      NfsStatus.BAD_COOKIE,
    );
  });

  it('refuses writes past its capacity with NOSPC and reports it in FSSTAT', () => {
    const mem = new MemoryFileSystem({ capacityBytes: 8192 });
    const f = mem.create(mem.root(), 'f', { mode: 'guarded', attributes: {} }, ctx);
    mem.write(f, 0, new Uint8Array(8192), 'file_sync', ctx);
    assert.equal(
      statusOfSync(() => mem.write(f, 8192, new Uint8Array(1), 'file_sync', ctx)),
      NfsStatus.NOSPC,
    );
    assert.equal(mem.fsstat(f).freeBytes, 0);
  });
});

describe('procedure layer without sockets', () => {
  it('never ends a READDIR page inside a run of entries that share a cookie', () => {
    const e = (cookie: number) => ({ cookie });
    assert.equal(wholeCookieGroups([e(3), e(5), e(5), e(7)], 2), 1);
    assert.equal(wholeCookieGroups([e(3), e(5), e(5), e(7)], 3), 3);
    assert.equal(wholeCookieGroups([e(5), e(5)], 1), 0, 'TOOSMALL rather than a lossy page');
    assert.equal(wholeCookieGroups([e(3), e(4)], 2), 2);
  });

  it('is deterministic: the same calls with the same times give byte-identical results', () => {
    const run = () => {
      const mem = new MemoryFileSystem({ fsid: 7, generationKey: new Uint8Array(16).fill(3) });
      const root = mem.root();
      const out: Uint8Array[] = [];
      const call = (proc: number, w: XdrWriter, seconds: number) =>
        out.push(
          executeNfsCall(mem, NFS_PROGRAM, 3, proc, w.bytes(), {
            cred: { uid: 5, gid: 5, gids: [] },
            time: { seconds, nseconds: 0 },
          }),
        );
      const sattr = (w: XdrWriter) => w.u32(0).u32(0).u32(0).u32(0).u32(0).u32(0);
      call(Nfs3Proc.MKDIR, sattr(new XdrWriter().opaque(root).string('d')), 1);
      call(Nfs3Proc.CREATE, sattr(new XdrWriter().opaque(root).string('f').u32(1)), 2);
      call(
        Nfs3Proc.READDIRPLUS,
        new XdrWriter().opaque(root).u64(0).fixed(new Uint8Array(8)).u32(4096).u32(8192),
        3,
      );
      call(Nfs3Proc.FSSTAT, new XdrWriter().opaque(root), 4);
      return Buffer.concat(out);
    };
    assert.ok(run().equals(run()));
  });
});
