import { strict as assert } from 'node:assert';
import {
  FileType,
  GENERATION_KEY_BYTES,
  NfsError,
  NfsStatus,
  firstGeneration,
} from 'nfs-server-ts';
import { PageStore } from '@bfs/page-store';
import { Volume } from '../../src/fs/volume';
import {
  BfsFileSystem,
  BLOCK_SIZE,
  mkfs,
  decodeHandle,
  encodeHandle,
  HANDLE_SIZE,
  MAX_FILE_SIZE,
  MAX_NAME_LENGTH,
} from '../../src';
import { assertClean, bytes, ctx, GiB, makeFs, MiB, throwsNfs, time } from './helpers';

describe('bfs file system: operations', () => {
  describe('root and attributes', () => {
    it('formats a root directory owned by the mkfs owner with the mkfs time', () => {
      const { fs, state } = makeFs(16 * MiB, { time: time(77), rootUid: 5, rootGid: 6 });
      const a = fs.getattr(fs.root());
      assert.equal(a.type, FileType.DIR);
      assert.equal(a.nlink, 2);
      assert.equal(a.uid, 5);
      assert.equal(a.gid, 6);
      assert.deepEqual(a.mtime, time(77));
      assert.equal(a.fileid, 1);
      assertClean(state);
    });
    it('stamps ctx.time on new objects and their directory, and the caller as owner', () => {
      const { fs } = makeFs();
      const fh = fs.create(
        fs.root(),
        'f',
        { mode: 'guarded', attributes: {} },
        ctx(500, 7, 42, 43),
      );
      const a = fs.getattr(fh);
      assert.deepEqual([a.uid, a.gid, a.mode], [42, 43, 0o644]);
      assert.deepEqual(a.atime, time(500, 7));
      assert.deepEqual(a.mtime, time(500, 7));
      assert.deepEqual(a.ctime, time(500, 7));
      assert.deepEqual(fs.getattr(fs.root()).mtime, time(500, 7));
    });
    it('new objects in a set-group-id directory take its group; new subdirectories keep the bit', () => {
      const { fs } = makeFs();
      const d = fs.mkdir(fs.root(), 'shared', { mode: 0o2775, gid: 500 }, ctx());
      const f = fs.create(d, 'f', { mode: 'guarded', attributes: {} }, ctx(1, 0, 1000, 100));
      assert.equal(fs.getattr(f).gid, 500);
      const sub = fs.mkdir(d, 'sub', { mode: 0o755 }, ctx(1, 0, 1000, 100));
      assert.deepEqual([fs.getattr(sub).gid, fs.getattr(sub).mode], [500, 0o2755]);
      const plain = fs.create(
        fs.root(),
        'g',
        { mode: 'guarded', attributes: {} },
        ctx(1, 0, 1000, 100),
      );
      assert.equal(fs.getattr(plain).gid, 100);
    });
    it('setattr changes mode, owner and times, and always stamps ctime', () => {
      const { fs } = makeFs();
      const fh = fs.create(fs.root(), 'f', { mode: 'guarded', attributes: {} }, ctx(1));
      const a = fs.setattr(
        fh,
        { mode: 0o4751, uid: 9, gid: 8, atime: time(3), mtime: 'server' },
        ctx(20),
      );
      assert.equal(a.mode, 0o4751);
      assert.deepEqual([a.uid, a.gid], [9, 8]);
      assert.deepEqual(a.atime, time(3));
      assert.deepEqual(a.mtime, time(20));
      assert.deepEqual(a.ctime, time(20));
    });
  });

  describe('file data', () => {
    it('reads back what was written, with eof at the end', () => {
      const { fs, state } = makeFs();
      const fh = fs.create(fs.root(), 'f', { mode: 'unchecked', attributes: {} }, ctx());
      const data = new Uint8Array(10000).map((_, i) => i % 251);
      const w = fs.write(fh, 0, data, 'unstable', ctx(2));
      assert.deepEqual(w, { count: 10000, committed: 'file_sync' });
      const r = fs.read(fh, 0, 20000);
      assert.deepEqual(r.data, data);
      assert.equal(r.eof, true);
      const mid = fs.read(fh, 4000, 100);
      assert.deepEqual(mid.data, data.subarray(4000, 4100));
      assert.equal(mid.eof, false);
      assert.equal(fs.getattr(fh).size, 10000);
      assert.equal(fs.getattr(fh).used, 3 * BLOCK_SIZE);
      assertClean(state);
    });
    it('reads holes as zeros and charges only written blocks to a sparse file', () => {
      const { fs, state } = makeFs();
      const fh = fs.create(fs.root(), 'sparse', { mode: 'unchecked', attributes: {} }, ctx());
      fs.write(fh, 5 * MiB, bytes('end'), 'file_sync', ctx());
      const a = fs.getattr(fh);
      assert.equal(a.size, 5 * MiB + 3);
      // one data block plus the indirect blocks on its path
      assert.ok(a.used <= 3 * BLOCK_SIZE, `used ${a.used}`);
      assert.deepEqual(fs.read(fh, 1000, 8).data, new Uint8Array(8));
      assert.deepEqual(Buffer.from(fs.read(fh, 5 * MiB, 10).data).toString(), 'end');
      assertClean(state);
    });
    it('serves a sparse file past 4 GiB, and truncation frees its blocks', () => {
      const { fs, state } = makeFs(64 * MiB);
      const fh = fs.create(fs.root(), 'big', { mode: 'unchecked', attributes: {} }, ctx());
      const free0 = fs.fsstat(fs.root()).freeBytes;
      const at = 5 * GiB + 123;
      fs.write(fh, at, bytes('far away'), 'file_sync', ctx());
      fs.write(fh, 4 * GiB - 2, bytes('edge'), 'file_sync', ctx());
      assert.equal(fs.getattr(fh).size, at + 8);
      assert.equal(Buffer.from(fs.read(fh, at, 8).data).toString(), 'far away');
      assert.equal(Buffer.from(fs.read(fh, 4 * GiB - 2, 4).data).toString(), 'edge');
      assertClean(state);
      fs.setattr(fh, { size: 4 * GiB }, ctx());
      assert.equal(Buffer.from(fs.read(fh, 4 * GiB - 2, 10).data).toString(), 'ed');
      fs.setattr(fh, { size: 0 }, ctx());
      assert.equal(fs.getattr(fh).used, 0);
      assert.equal(fs.fsstat(fs.root()).freeBytes, free0);
      assertClean(state);
    });
    it('a zero-length write past the end stamps times but does not extend the file (as pwrite)', () => {
      const { fs } = makeFs();
      const fh = fs.create(fs.root(), 'f', { mode: 'unchecked', attributes: {} }, ctx(1));
      assert.deepEqual(fs.write(fh, 5000, new Uint8Array(0), 'file_sync', ctx(2)).count, 0);
      assert.equal(fs.getattr(fh).size, 0);
      assert.deepEqual(fs.getattr(fh).mtime, time(2));
    });
    it('truncation zeroes the cut tail so a later extension reads zeros', () => {
      const { fs, state } = makeFs();
      const fh = fs.create(fs.root(), 'f', { mode: 'unchecked', attributes: {} }, ctx());
      fs.write(fh, 0, new Uint8Array(6000).fill(7), 'file_sync', ctx());
      fs.setattr(fh, { size: 100 }, ctx());
      fs.setattr(fh, { size: 6000 }, ctx());
      const r = fs.read(fh, 0, 6000).data;
      assert.ok(r.subarray(0, 100).every((b) => b === 7));
      assert.ok(r.subarray(100).every((b) => b === 0));
      assertClean(state);
    });
    it('refuses writes past the maximum file size with FBIG and changes nothing', () => {
      const { fs } = makeFs();
      const fh = fs.create(fs.root(), 'f', { mode: 'unchecked', attributes: {} }, ctx());
      throwsNfs(
        () => fs.write(fh, MAX_FILE_SIZE - 1, bytes('ab'), 'file_sync', ctx()),
        NfsStatus.FBIG,
      );
      throwsNfs(() => fs.setattr(fh, { size: MAX_FILE_SIZE + 1 }, ctx()), NfsStatus.FBIG);
      assert.equal(fs.getattr(fh).size, 0);
    });
    it('refuses READ and WRITE on directories (ISDIR) and other non-files (INVAL)', () => {
      const { fs } = makeFs();
      throwsNfs(() => fs.read(fs.root(), 0, 1), NfsStatus.ISDIR);
      throwsNfs(() => fs.write(fs.root(), 0, bytes('x'), 'file_sync', ctx()), NfsStatus.ISDIR);
      const l = fs.symlink(fs.root(), 'l', 'target', {}, ctx());
      throwsNfs(() => fs.read(l, 0, 1), NfsStatus.INVAL);
    });
    it('fails a write that does not fit with NOSPC before changing anything, and FSSTAT is true', () => {
      const { fs, state } = makeFs(2 * MiB, { inodes: 64 });
      const fh = fs.create(fs.root(), 'f', { mode: 'unchecked', attributes: {} }, ctx());
      const st = fs.fsstat(fs.root());
      assert.equal(st.totalFiles, 63);
      assert.equal(st.freeFiles, 61);
      throwsNfs(
        () => fs.write(fh, 0, new Uint8Array(st.freeBytes + BLOCK_SIZE), 'file_sync', ctx()),
        NfsStatus.NOSPC,
      );
      assert.equal(fs.fsstat(fs.root()).freeBytes, st.freeBytes);
      fs.write(fh, 0, new Uint8Array(64 * 1024), 'file_sync', ctx());
      // 16 data blocks and the single indirect block past the 8 direct ones
      assert.equal(fs.fsstat(fs.root()).freeBytes, st.freeBytes - 17 * BLOCK_SIZE);
      assertClean(state);
    });
  });

  describe('names and directories', () => {
    it('looks up names up to 255 bytes and rejects longer ones with NAMETOOLONG', () => {
      const { fs } = makeFs();
      const long = 'é'.repeat(127) + 'x'; // 255 UTF-8 bytes
      const fh = fs.create(fs.root(), long, { mode: 'guarded', attributes: {} }, ctx());
      assert.deepEqual(fs.lookup(fs.root(), long), fh);
      throwsNfs(
        () =>
          fs.create(
            fs.root(),
            'y'.repeat(MAX_NAME_LENGTH + 1),
            { mode: 'guarded', attributes: {} },
            ctx(),
          ),
        NfsStatus.NAMETOOLONG,
      );
    });
    it("resolves '.' and '..', the root being its own parent", () => {
      const { fs } = makeFs();
      const d = fs.mkdir(fs.root(), 'd', {}, ctx());
      assert.deepEqual(fs.lookup(d, '.'), d);
      assert.deepEqual(fs.lookup(d, '..'), fs.root());
      assert.deepEqual(fs.lookup(fs.root(), '..'), fs.root());
      throwsNfs(() => fs.lookup(fs.root(), 'missing'), NfsStatus.NOENT);
      const f = fs.create(d, 'f', { mode: 'guarded', attributes: {} }, ctx());
      throwsNfs(() => fs.lookup(f, 'x'), NfsStatus.NOTDIR);
    });
    it('mkdir counts the new directory in its parent link count; rmdir undoes it', () => {
      const { fs, state } = makeFs();
      fs.mkdir(fs.root(), 'a', { mode: 0o700 }, ctx());
      assert.equal(fs.getattr(fs.root()).nlink, 3);
      assert.equal(fs.getattr(fs.lookup(fs.root(), 'a')).mode, 0o700);
      throwsNfs(() => fs.mkdir(fs.root(), 'a', {}, ctx()), NfsStatus.EXIST);
      fs.rmdir(fs.root(), 'a', ctx());
      assert.equal(fs.getattr(fs.root()).nlink, 2);
      assertClean(state);
    });
    it('rmdir refuses non-empty directories (NOTEMPTY) and files (NOTDIR); remove refuses directories (ISDIR)', () => {
      const { fs } = makeFs();
      const d = fs.mkdir(fs.root(), 'd', {}, ctx());
      fs.create(d, 'f', { mode: 'guarded', attributes: {} }, ctx());
      throwsNfs(() => fs.rmdir(fs.root(), 'd', ctx()), NfsStatus.NOTEMPTY);
      throwsNfs(() => fs.rmdir(d, 'f', ctx()), NfsStatus.NOTDIR);
      throwsNfs(() => fs.remove(fs.root(), 'd', ctx()), NfsStatus.ISDIR);
      throwsNfs(() => fs.remove(fs.root(), 'nothing', ctx()), NfsStatus.NOENT);
    });
    it('hard links share the inode and count links; the last remove frees it', () => {
      const { fs, state } = makeFs();
      const f = fs.create(fs.root(), 'f', { mode: 'guarded', attributes: {} }, ctx());
      fs.write(f, 0, bytes('shared'), 'file_sync', ctx());
      const d = fs.mkdir(fs.root(), 'd', {}, ctx());
      fs.link(f, d, 'g', ctx(9));
      assert.equal(fs.getattr(f).nlink, 2);
      assert.deepEqual(fs.getattr(f).ctime, time(9));
      assert.deepEqual(fs.lookup(d, 'g'), f);
      throwsNfs(() => fs.link(f, d, 'g', ctx()), NfsStatus.EXIST);
      throwsNfs(() => fs.link(d, fs.root(), 'dl', ctx()), NfsStatus.ISDIR);
      fs.remove(fs.root(), 'f', ctx());
      assert.equal(fs.getattr(f).nlink, 1);
      assert.equal(Buffer.from(fs.read(f, 0, 10).data).toString(), 'shared');
      fs.remove(d, 'g', ctx());
      throwsNfs(() => fs.getattr(f), NfsStatus.STALE);
      assertClean(state);
    });
    it('symlinks keep their target and READLINK refuses other types', () => {
      const { fs, state } = makeFs();
      const l = fs.symlink(fs.root(), 'l', '../some/where ünïcode', { mode: 0o755 }, ctx());
      assert.equal(fs.readlink(l), '../some/where ünïcode');
      assert.equal(fs.getattr(l).type, FileType.LNK);
      assert.equal(fs.getattr(l).size, Buffer.byteLength('../some/where ünïcode'));
      throwsNfs(() => fs.readlink(fs.root()), NfsStatus.INVAL);
      throwsNfs(
        () => fs.symlink(fs.root(), 'long', 'x'.repeat(1025), {}, ctx()),
        NfsStatus.NAMETOOLONG,
      );
      assertClean(state);
    });
    it('mknod makes fifos, sockets and devices with rdev, and refuses other types with BADTYPE', () => {
      const { fs, state } = makeFs();
      const c = fs.mknod(
        fs.root(),
        'tty',
        FileType.CHR,
        { mode: 0o620 },
        { major: 4, minor: 1 },
        ctx(),
      );
      assert.deepEqual(fs.getattr(c).rdev, { major: 4, minor: 1 });
      const p = fs.mknod(fs.root(), 'pipe', FileType.FIFO, {}, { major: 9, minor: 9 }, ctx());
      assert.equal(fs.getattr(p).type, FileType.FIFO);
      assert.deepEqual(fs.getattr(p).rdev, { major: 0, minor: 0 });
      fs.mknod(fs.root(), 'sock', FileType.SOCK, {}, { major: 0, minor: 0 }, ctx());
      fs.mknod(fs.root(), 'disk', FileType.BLK, {}, { major: 8, minor: 0 }, ctx());
      throwsNfs(
        () => fs.mknod(fs.root(), 'r', FileType.REG, {}, { major: 0, minor: 0 }, ctx()),
        NfsStatus.BADTYPE,
      );
      throwsNfs(
        () => fs.mknod(fs.root(), 'd', FileType.DIR, {}, { major: 0, minor: 0 }, ctx()),
        NfsStatus.BADTYPE,
      );
      assertClean(state);
    });
  });

  describe('create modes', () => {
    it('GUARDED fails on an existing name; UNCHECKED reuses a file, applying attributes only with a size', () => {
      const { fs } = makeFs();
      const f = fs.create(fs.root(), 'f', { mode: 'guarded', attributes: {} }, ctx());
      fs.write(f, 0, bytes('hello'), 'file_sync', ctx());
      throwsNfs(
        () => fs.create(fs.root(), 'f', { mode: 'guarded', attributes: {} }, ctx()),
        NfsStatus.EXIST,
      );
      const again = fs.create(
        fs.root(),
        'f',
        { mode: 'unchecked', attributes: { size: 0 } },
        ctx(),
      );
      assert.deepEqual(again, f);
      assert.equal(fs.getattr(f).size, 0);
      fs.create(fs.root(), 'f', { mode: 'unchecked', attributes: { mode: 0o600 } }, ctx());
      assert.equal(
        fs.getattr(f).mode,
        0o644,
        'attributes without a size leave an existing file alone',
      );
      fs.mkdir(fs.root(), 'd', {}, ctx());
      throwsNfs(
        () => fs.create(fs.root(), 'd', { mode: 'unchecked', attributes: {} }, ctx()),
        NfsStatus.EXIST,
      );
    });
    it('EXCLUSIVE with the same verifier returns the same file; another verifier gets EXIST', () => {
      const { fs } = makeFs();
      const v = new Uint8Array([1, 2, 3, 4, 5, 6, 7, 8]);
      const f = fs.create(fs.root(), 'x', { mode: 'exclusive', verifier: v }, ctx());
      fs.setattr(f, { mode: 0o600 }, ctx());
      assert.deepEqual(
        fs.create(fs.root(), 'x', { mode: 'exclusive', verifier: v.slice() }, ctx()),
        f,
      );
      throwsNfs(
        () => fs.create(fs.root(), 'x', { mode: 'exclusive', verifier: new Uint8Array(8) }, ctx()),
        NfsStatus.EXIST,
      );
    });
  });

  describe('rename', () => {
    it('moves a file between directories and replaces an existing file target', () => {
      const { fs, state } = makeFs();
      const a = fs.mkdir(fs.root(), 'a', {}, ctx());
      const b = fs.mkdir(fs.root(), 'b', {}, ctx());
      const f = fs.create(a, 'f', { mode: 'guarded', attributes: {} }, ctx());
      const g = fs.create(b, 'g', { mode: 'guarded', attributes: {} }, ctx());
      fs.rename(a, 'f', b, 'g', ctx(5));
      throwsNfs(() => fs.lookup(a, 'f'), NfsStatus.NOENT);
      assert.deepEqual(fs.lookup(b, 'g'), f);
      throwsNfs(() => fs.getattr(g), NfsStatus.STALE);
      assert.deepEqual(fs.getattr(f).ctime, time(5));
      assertClean(state);
    });
    it('moves a directory, fixing its parent and both link counts', () => {
      const { fs, state } = makeFs();
      const a = fs.mkdir(fs.root(), 'a', {}, ctx());
      const b = fs.mkdir(fs.root(), 'b', {}, ctx());
      const c = fs.mkdir(a, 'c', {}, ctx());
      fs.rename(a, 'c', b, 'c2', ctx());
      assert.deepEqual(fs.lookup(c, '..'), b);
      assert.equal(fs.getattr(a).nlink, 2);
      assert.equal(fs.getattr(b).nlink, 3);
      assertClean(state);
    });
    it('refuses to move a directory into its own subtree (INVAL)', () => {
      const { fs } = makeFs();
      const a = fs.mkdir(fs.root(), 'a', {}, ctx());
      const b = fs.mkdir(a, 'b', {}, ctx());
      throwsNfs(() => fs.rename(fs.root(), 'a', b, 'x', ctx()), NfsStatus.INVAL);
      throwsNfs(() => fs.rename(fs.root(), 'a', a, 'x', ctx()), NfsStatus.INVAL);
    });
    it('follows POSIX type rules for existing targets', () => {
      const { fs, state } = makeFs();
      const d = fs.mkdir(fs.root(), 'd', {}, ctx());
      fs.mkdir(fs.root(), 'empty', {}, ctx());
      fs.create(fs.root(), 'f', { mode: 'guarded', attributes: {} }, ctx());
      fs.create(d, 'inside', { mode: 'guarded', attributes: {} }, ctx());
      throwsNfs(() => fs.rename(fs.root(), 'f', fs.root(), 'd', ctx()), NfsStatus.ISDIR);
      throwsNfs(() => fs.rename(fs.root(), 'd', fs.root(), 'f', ctx()), NfsStatus.NOTDIR);
      fs.mkdir(fs.root(), 'full', {}, ctx());
      fs.create(fs.lookup(fs.root(), 'full'), 'x', { mode: 'guarded', attributes: {} }, ctx());
      throwsNfs(() => fs.rename(fs.root(), 'd', fs.root(), 'full', ctx()), NfsStatus.NOTEMPTY);
      fs.rename(fs.root(), 'd', fs.root(), 'empty', ctx());
      assert.deepEqual(fs.lookup(fs.root(), 'empty'), d);
      assert.equal(fs.getattr(fs.root()).nlink, 4); // '.', and subdirectories empty(=d) and full
      throwsNfs(() => fs.rename(fs.root(), 'nope', fs.root(), 'x', ctx()), NfsStatus.NOENT);
      assertClean(state);
    });
    it('renaming onto another link of the same file, or onto itself, changes nothing', () => {
      const { fs, state } = makeFs();
      const f = fs.create(fs.root(), 'f', { mode: 'guarded', attributes: {} }, ctx());
      fs.link(f, fs.root(), 'g', ctx());
      fs.rename(fs.root(), 'f', fs.root(), 'g', ctx());
      fs.rename(fs.root(), 'f', fs.root(), 'f', ctx());
      assert.deepEqual(fs.lookup(fs.root(), 'f'), f);
      assert.deepEqual(fs.lookup(fs.root(), 'g'), f);
      assert.equal(fs.getattr(f).nlink, 2);
      assertClean(state);
    });
  });

  describe('handles', () => {
    it('are 16 bytes of (fsid, inode, generation), small enough for NFSv2', () => {
      const key = new Uint8Array(GENERATION_KEY_BYTES).fill(5);
      const { fs } = makeFs(16 * MiB, { fsid: 0xabcdef, generationKey: key });
      const fh = fs.root();
      assert.equal(fh.length, HANDLE_SIZE);
      assert.ok(HANDLE_SIZE <= 32);
      assert.deepEqual(decodeHandle(fh), {
        fsid: 0xabcdef,
        ino: 1,
        generation: firstGeneration(key, 1),
      });
    });
    it('new inodes get keyed generations: never 0, different under another key, the same under the same key', () => {
      const gens = (key: Uint8Array) => {
        const { fs } = makeFs(16 * MiB, { generationKey: key });
        const out = [decodeHandle(fs.root()).generation];
        for (let i = 0; i < 20; i++) {
          const h = fs.create(fs.root(), `f${i}`, { mode: 'guarded', attributes: {} }, ctx());
          out.push(decodeHandle(h).generation);
        }
        return out;
      };
      const a = gens(new Uint8Array(GENERATION_KEY_BYTES).fill(1));
      const b = gens(new Uint8Array(GENERATION_KEY_BYTES).fill(2));
      assert.ok(a.every((g) => g !== 0));
      assert.ok(a.every((g, i) => g !== b[i]));
      assert.deepEqual(gens(new Uint8Array(GENERATION_KEY_BYTES).fill(1)), a);
      assert.ok(new Set(a).size > 15, 'generations look random, not a counter');
    });
    it('without a stored key (a file system made before keyed generations) derive one from the hash seed', () => {
      const { fs } = makeFs(16 * MiB, { hashSeed: 77, fsid: 9 });
      const g = decodeHandle(fs.root()).generation;
      assert.notEqual(g, 0);
      const { fs: other } = makeFs(16 * MiB, { hashSeed: 78, fsid: 9 });
      assert.notEqual(decodeHandle(other.root()).generation, g, 'the seed keys the derivation');
    });
    it('a file system made before keyed generations keeps its handles (fsid 1, root generation 0)', () => {
      const state = new PageStore({ size: 16 * MiB });
      mkfs(state); // fsid 1, no key: as every file system was formatted before
      const vol = new Volume(state);
      const root = vol.readInode(1);
      root.generation = 0; // what the old allocator gave it
      vol.writeInode(root);
      const fs = new BfsFileSystem(state);
      const old = encodeHandle({ fsid: 1, ino: 1, generation: 0 });
      assert.equal(fs.getattr(old).type, FileType.DIR);
      const f = fs.create(old, 'new', { mode: 'guarded', attributes: {} }, ctx());
      assert.notEqual(decodeHandle(f).generation, 0);
    });
    it('go STALE when the inode is freed, and stay stale when it is reused', () => {
      const { fs } = makeFs();
      const f = fs.create(fs.root(), 'f', { mode: 'guarded', attributes: {} }, ctx());
      fs.remove(fs.root(), 'f', ctx());
      throwsNfs(() => fs.getattr(f), NfsStatus.STALE);
      const g = fs.create(fs.root(), 'g', { mode: 'guarded', attributes: {} }, ctx());
      assert.equal(decodeHandle(g).ino, decodeHandle(f).ino);
      assert.notEqual(decodeHandle(g).generation, decodeHandle(f).generation);
      throwsNfs(() => fs.read(f, 0, 1), NfsStatus.STALE);
    });
    it('an inode reused many times never comes back to an earlier generation', () => {
      const { fs } = makeFs();
      const seen = new Set<number>();
      for (let i = 0; i < 300; i++) {
        const f = fs.create(fs.root(), 'f', { mode: 'guarded', attributes: {} }, ctx());
        const { ino, generation } = decodeHandle(f);
        assert.equal(ino, 2, 'the same inode each time');
        assert.ok(!seen.has(generation), `generation ${generation} repeated after ${i} reuses`);
        seen.add(generation);
        fs.remove(fs.root(), 'f', ctx());
      }
    });
    it('malformed handles get BADHANDLE; handles of another file system get STALE', () => {
      const { fs } = makeFs();
      throwsNfs(() => fs.getattr(new Uint8Array(0)), NfsStatus.BADHANDLE);
      throwsNfs(() => fs.getattr(new Uint8Array(32)), NfsStatus.BADHANDLE);
      const bad = fs.root().slice();
      bad[0] = 99;
      throwsNfs(() => fs.getattr(bad), NfsStatus.BADHANDLE);
      throwsNfs(
        () => fs.getattr(encodeHandle({ fsid: 1, ino: 0xffffff, generation: 0 })),
        NfsStatus.BADHANDLE,
      );
      throwsNfs(
        () => fs.getattr(encodeHandle({ fsid: 2, ino: 1, generation: 0 })),
        NfsStatus.STALE,
      );
      throwsNfs(
        () => fs.getattr(encodeHandle({ fsid: 1, ino: 50, generation: 0 })),
        NfsStatus.STALE,
      );
      // A forged root handle: the right fsid and inode, the old fixed generation 0.
      throwsNfs(
        () => fs.getattr(encodeHandle({ fsid: 1, ino: 1, generation: 0 })),
        NfsStatus.STALE,
      );
    });
  });

  describe('readdir', () => {
    it("lists '.', '..' and every entry with cookies that resume where they left off", () => {
      const { fs } = makeFs();
      const names = ['a', 'b', 'c', 'd', 'e'];
      for (const n of names) fs.create(fs.root(), n, { mode: 'guarded', attributes: {} }, ctx());
      const all = fs.readdir(fs.root(), 0, new Uint8Array(8), 100);
      assert.equal(all.eof, true);
      assert.deepEqual(
        all.entries.map((e) => e.name),
        ['.', '..', ...names],
      );
      const seen: string[] = [];
      let cookie = 0;
      for (;;) {
        const r = fs.readdir(fs.root(), cookie, new Uint8Array(8), 2);
        seen.push(...r.entries.map((e) => e.name));
        if (r.eof) break;
        cookie = r.entries[r.entries.length - 1].cookie;
      }
      assert.deepEqual(seen, ['.', '..', ...names]);
      for (const e of all.entries.slice(2))
        assert.deepEqual(fs.lookup(fs.root(), e.name), e.handle);
    });
    it('rejects cookies it never issued with BAD_COOKIE and zero counts with TOOSMALL', () => {
      const { fs } = makeFs();
      throwsNfs(() => fs.readdir(fs.root(), 1000, new Uint8Array(8), 10), NfsStatus.BAD_COOKIE);
      throwsNfs(() => fs.readdir(fs.root(), 0, new Uint8Array(8), 0), NfsStatus.TOOSMALL);
    });
  });

  it('commit returns the write verifier, which is fixed by mkfs', () => {
    const { fs } = makeFs(16 * MiB, { fsid: 3, time: time(1234) });
    const f = fs.create(fs.root(), 'f', { mode: 'guarded', attributes: {} }, ctx());
    assert.deepEqual(fs.commit(f, 0, 0), fs.writeVerifier());
    assert.equal(fs.writeVerifier().length, 8);
    assert.deepEqual(fs.limits().maxNameLength, 255);
    assert.ok(fs.limits().maxFileSize >= 4 * GiB);
  });
});

describe('bfs file system: running out of space', () => {
  it('fails creates with NOSPC when inodes run out, changing nothing', () => {
    const { fs, state } = makeFs(2 * MiB, { inodes: 16 });
    for (let i = 0; i < 14; i++)
      fs.create(fs.root(), `f${i}`, { mode: 'guarded', attributes: {} }, ctx());
    assert.equal(fs.fsstat(fs.root()).freeFiles, 0);
    const before = state.read(0, 2 * MiB);
    throwsNfs(
      () => fs.create(fs.root(), 'one-more', { mode: 'guarded', attributes: {} }, ctx()),
      NfsStatus.NOSPC,
    );
    throwsNfs(() => fs.mkdir(fs.root(), 'dir', {}, ctx()), NfsStatus.NOSPC);
    assert.ok(Buffer.from(state.read(0, 2 * MiB)).equals(Buffer.from(before)));
    fs.remove(fs.root(), 'f3', ctx());
    fs.mkdir(fs.root(), 'dir', {}, ctx());
    assertClean(state);
  });
  it('fails directory operations with NOSPC when blocks run out, changing nothing', () => {
    const { fs, state } = makeFs(2 * MiB, { inodes: 64 });
    const big = fs.create(fs.root(), 'big', { mode: 'guarded', attributes: {} }, ctx());
    // Fill the disk block by block until a write is refused.
    for (let off = 0; ; off += BLOCK_SIZE) {
      try {
        fs.write(big, off, new Uint8Array(BLOCK_SIZE).fill(1), 'file_sync', ctx());
      } catch {
        break;
      }
    }
    const free = fs.fsstat(fs.root()).freeBytes / BLOCK_SIZE;
    assert.ok(free < 16, `free blocks left ${free}`);
    let refused = 0;
    for (let i = 0; i < 40; i++) {
      const before = Buffer.from(state.read(0, 2 * MiB));
      try {
        fs.mkdir(fs.root(), `d${i}`, {}, ctx());
      } catch (e) {
        assert.ok(e instanceof NfsError && e.status === NfsStatus.NOSPC, String(e));
        assert.ok(
          before.equals(Buffer.from(state.read(0, 2 * MiB))),
          'a refused mkdir changed the state',
        );
        refused++;
      }
    }
    assert.ok(refused > 0);
    assertClean(state);
    fs.setattr(big, { size: 0 }, ctx());
    fs.mkdir(fs.lookup(fs.root(), 'd0'), 'sub', {}, ctx());
    assertClean(state);
  });
});
