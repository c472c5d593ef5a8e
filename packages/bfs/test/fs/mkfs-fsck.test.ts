import { strict as assert } from 'node:assert';
import { PageStore } from '@bfs/page-store';
import { FileType } from 'nfs-server-ts';
import { BfsFileSystem, BLOCK_SIZE, fsck, INODE_SIZE, mkfs, ROOT_INO } from '../../src';
import { assertClean, bytes, ctx, GiB, makeFs, MiB } from './helpers';

describe('bfs file system: mkfs and fsck', () => {
  it('lays out superblock, inode table, bitmap and data area, and reports true free space', () => {
    const state = new PageStore({ size: 64 * MiB });
    const r = mkfs(state, { inodes: 1000 });
    assert.equal(r.totalBlocks, (64 * MiB) / BLOCK_SIZE);
    assert.equal(r.inodeCount, 1000);
    // superblock + ceil(1000 * 128 / 4096) inode blocks + 1 bitmap block
    assert.equal(r.dataStart, 1 + 32 + 1);
    const fs = new BfsFileSystem(state);
    const st = fs.fsstat(fs.root());
    assert.equal(st.totalBytes, (r.totalBlocks - r.dataStart) * BLOCK_SIZE);
    // the root directory's header block is the only data block in use
    assert.equal(st.freeBytes, st.totalBytes - BLOCK_SIZE);
    assert.equal(st.freeFiles, 998);
    assertClean(state);
  });

  it('formats a 64 GiB region quickly, touching only a few pages', () => {
    const state = new PageStore({ size: 64 * GiB });
    const r = mkfs(state);
    assert.equal(r.inodeCount, (64 * GiB) / 16384);
    assert.ok(state.populatedPages < 1000, `${state.populatedPages} pages written`);
    const fs = new BfsFileSystem(state);
    const f = fs.create(fs.root(), 'f', { mode: 'guarded', attributes: {} }, ctx());
    fs.write(f, 40 * GiB, bytes('deep'), 'file_sync', ctx());
    assert.equal(Buffer.from(fs.read(f, 40 * GiB, 4).data).toString(), 'deep');
  });

  it('refuses a region too small to hold a file system', () => {
    assert.throws(() => mkfs(new PageStore({ size: 64 * 1024 })), RangeError);
  });

  it('formats over old contents and still yields a sound file system', () => {
    const state = new PageStore({ size: 8 * MiB });
    state.write(0, new Uint8Array(8 * MiB).fill(0xa5));
    mkfs(state, { inodes: 128 });
    const fs = new BfsFileSystem(state);
    const d = fs.mkdir(fs.root(), 'd', {}, ctx());
    const f = fs.create(d, 'f', { mode: 'guarded', attributes: {} }, ctx());
    fs.write(f, 10_000, bytes('x'), 'file_sync', ctx());
    assert.ok(fs.read(f, 0, 10_000).data.every((b) => b === 0));
    assert.equal(fs.getattr(f).nlink, 1);
    assertClean(state);
  });

  it('refuses to open a region that is not a BFS file system', () => {
    assert.throws(() => new BfsFileSystem(new PageStore({ size: MiB })), /not a BFS file system/);
  });

  describe('detects corruption', () => {
    function corrupted(mutate: (state: PageStore, inodeTable: number) => void): string[] {
      const { fs, state } = makeFs(8 * MiB, { inodes: 128 });
      const d = fs.mkdir(fs.root(), 'd', {}, ctx());
      const f = fs.create(d, 'f', { mode: 'guarded', attributes: {} }, ctx());
      fs.write(f, 0, new Uint8Array(50_000).fill(1), 'file_sync', ctx());
      assertClean(state);
      mutate(state, BLOCK_SIZE);
      return fsck(state).errors;
    }
    const inodeField = (state: PageStore, table: number, ino: number, off: number, v: number) => {
      const b = new Uint8Array(4);
      new DataView(b.buffer).setUint32(0, v, true);
      state.write(table + ino * INODE_SIZE + off, b);
    };

    it('a wrong link count', () => {
      const errors = corrupted((s, t) => inodeField(s, t, 3, 8, 5));
      assert.ok(
        errors.some((e) => /nlink/.test(e)),
        errors.join('\n'),
      );
    });
    it('a cleared bitmap bit (block in use marked free) and a wrong free count', () => {
      const errors = corrupted((s) => {
        const dataStart = new DataView(s.read(40, 4).buffer).getUint32(0, true);
        const off = (1 + 4) * BLOCK_SIZE; // bitmap follows 4 inode-table blocks
        const byte = s.read(off + (dataStart >>> 3), 1)[0];
        s.write(off + (dataStart >>> 3), Uint8Array.of(byte & ~(1 << (dataStart & 7))));
      });
      assert.ok(
        errors.some((e) => /marked free/.test(e)),
        errors.join('\n'),
      );
    });
    it('a block pointer shared by two files', () => {
      const errors = corrupted((s, t) => {
        const p = s.read(t + 3 * INODE_SIZE + 84, 4);
        s.write(t + ROOT_INO * INODE_SIZE + 84 + 4, p);
      });
      assert.ok(
        errors.some((e) => /referenced twice|usedBlocks/.test(e)),
        errors.join('\n'),
      );
    });
    it('a directory entry naming a free inode', () => {
      const errors = corrupted((s, t) => {
        s.write(t + 3 * INODE_SIZE, Uint8Array.of(0));
      });
      assert.ok(
        errors.some((e) => /free inode/.test(e)),
        errors.join('\n'),
      );
    });
    it('a bad superblock', () => {
      const errors = corrupted((s) => s.write(0, bytes('garbage!')));
      assert.ok(
        errors.some((e) => /superblock/.test(e)),
        errors.join('\n'),
      );
    });
    it('reports a file type it does not know', () => {
      const errors = corrupted((s, t) =>
        s.write(t + 3 * INODE_SIZE, Uint8Array.of(FileType.FIFO + 5)),
      );
      assert.ok(errors.length > 0);
    });
  });
});
