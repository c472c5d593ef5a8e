import { strict as assert } from 'node:assert';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { type Attributes, FileType } from '../src/filesystem';
import { LocalFileSystem } from '../src/localfs';
import { MemoryFileSystem } from '../src/memfs';
import { NfsServer } from '../src/nfs-server';
import {
  S_ISGID,
  S_ISUID,
  S_ISVTX,
  checkRemoveEntry,
  modeAfterWrite,
  newObjectOwnership,
  permittedSetattr,
} from '../src/permissions';
import { definePermissionTable, type PermissionTarget, portTarget } from './permission-table';

const EXPORT = { checkPermissions: true, rootSquash: false };

function serveTable(
  name: string,
  make: () => { fs: LocalFileSystem | MemoryFileSystem; cleanup?: () => void },
  unsupported?: string[],
) {
  describe(`permission table (pjd-fstest style): ${name}`, function () {
    this.timeout(60_000);
    let server: NfsServer;
    let target: PermissionTarget;
    let cleanup: (() => void) | undefined;
    before(async () => {
      const made = make();
      cleanup = made.cleanup;
      server = new NfsServer({ fs: made.fs, export: EXPORT });
      target = portTarget(await server.listen({ port: 0, host: '127.0.0.1' }), unsupported);
    });
    after(async () => {
      await server?.close();
      cleanup?.();
    });
    definePermissionTable(() => target);
  });
}

serveTable('nfs-server-ts memory backend', () => ({ fs: new MemoryFileSystem() }));

const isRoot = process.getuid?.() === 0;
(isRoot ? serveTable : describe.skip)(
  'nfs-server-ts local-directory backend (as root, new objects owned by the caller)',
  () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'nfs-perm-'));
    fs.chmodSync(dir, 0o777);
    return {
      fs: new LocalFileSystem(dir, { ownNewObjects: true }),
      cleanup: () => fs.rmSync(dir, { recursive: true, force: true }),
    };
  },
  ['mknod'],
);

function attrs(type: FileType, mode: number, uid: number, gid: number): Attributes {
  const t = { seconds: 0, nseconds: 0 };
  return {
    type,
    mode,
    nlink: 1,
    uid,
    gid,
    size: 0,
    used: 0,
    rdev: { major: 0, minor: 0 },
    fsid: 1,
    fileid: 2,
    atime: t,
    mtime: t,
    ctime: t,
  };
}

describe('permission rules (pure functions)', () => {
  const alice = { uid: 1000, gid: 1000, gids: [3000] };
  const root = { uid: 0, gid: 0, gids: [] };

  it('a write by anyone but root clears set-user-id, and set-group-id only with group execute', () => {
    const f = attrs(FileType.REG, S_ISUID | S_ISGID | 0o755, 1000, 1000);
    assert.equal(modeAfterWrite(f, alice), 0o755);
    assert.equal(modeAfterWrite(f, root), undefined);
    // Set-group-id without group execute is mandatory locking, not a privilege: it stays.
    assert.equal(
      modeAfterWrite(attrs(FileType.REG, S_ISGID | 0o644, 1000, 1000), alice),
      undefined,
    );
  });

  it('a SETATTR that needs no change of mode returns the attributes as given', () => {
    const f = attrs(FileType.REG, 0o644, 1000, 1000);
    const s = { size: 0 };
    assert.equal(permittedSetattr(f, s, alice), s);
  });

  it("the sticky bit lets the owner of the directory remove anyone's entry", () => {
    const dir = attrs(FileType.DIR, S_ISVTX | 0o777, 1000, 1000);
    const bobs = attrs(FileType.REG, 0o644, 2000, 2000);
    assert.doesNotThrow(() => checkRemoveEntry(dir, bobs, alice));
    assert.throws(() => checkRemoveEntry(dir, bobs, { uid: 3000, gid: 3000, gids: [] }));
  });

  it('a new object in a set-group-id directory takes its group; subdirectories the bit', () => {
    const dir = { mode: S_ISGID | 0o775, gid: 3000 };
    assert.deepEqual(newObjectOwnership(dir, alice, FileType.REG, 0o644), {
      gid: 3000,
      mode: 0o644,
    });
    assert.deepEqual(newObjectOwnership(dir, alice, FileType.DIR, 0o755), {
      gid: 3000,
      mode: S_ISGID | 0o755,
    });
    const bob = { uid: 2000, gid: 2000, gids: [] };
    assert.deepEqual(newObjectOwnership(dir, bob, FileType.REG, S_ISGID | 0o755), {
      gid: 3000,
      mode: 0o755,
    });
  });
});
