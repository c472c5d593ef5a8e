import { strict as assert } from 'node:assert';
import { FileType, NfsStatus } from '../src/filesystem';
import { MountProc } from '../src/mount';
import { ACCESS3 } from '../src/permissions';
import { MOUNT_PROGRAM } from '../src/programs';
import { XdrReader, XdrWriter } from '../src/xdr';
import type { Nfs3Client } from '../src/client';
import { type Harness, client3, startServer, statusOf } from './helpers';

const bytes = (s: string) => new Uint8Array(Buffer.from(s));

describe('NFSv3 over TCP: every procedure through the client', () => {
  let h: Harness;
  let c: Nfs3Client;
  let root: Uint8Array;
  let tick = 1000;

  before(async () => {
    // A deterministic clock shows that times come from the call context.
    h = await startServer({ clock: () => ({ seconds: tick++, nseconds: 0 }) });
    c = await client3(h.port);
    root = await c.mount('/');
  });
  after(async () => {
    c.rpc.close();
    await h.close();
  });

  it('NULL answers with an empty result', async () => {
    await c.null();
  });

  it('GETATTR returns the root directory attributes; a forged handle is BADHANDLE', async () => {
    const a = await c.getattr(root);
    assert.equal(a.type, FileType.DIR);
    assert.equal(await statusOf(c.getattr(new Uint8Array(16))), NfsStatus.BADHANDLE);
  });

  it('CREATE UNCHECKED, GUARDED and EXCLUSIVE behave as RFC 1813 says', async () => {
    const f = await c.create(root, 'u.txt', { mode: 'unchecked', attributes: { mode: 0o640 } });
    assert.equal(f.attributes?.mode, 0o640);
    assert.equal(f.attributes?.uid, 1000);
    assert.ok(f.dirWcc.before && f.dirWcc.after, 'wcc_data has before and after attributes');
    // UNCHECKED on an existing file succeeds and returns the same file.
    const again = await c.create(root, 'u.txt', { mode: 'unchecked' });
    assert.deepEqual(again.handle, f.handle);
    assert.equal(await statusOf(c.create(root, 'u.txt', { mode: 'guarded' })), NfsStatus.EXIST);
    const verifier = Uint8Array.of(1, 2, 3, 4, 5, 6, 7, 8);
    const x1 = await c.create(root, 'x.txt', { mode: 'exclusive', verifier });
    const x2 = await c.create(root, 'x.txt', { mode: 'exclusive', verifier });
    assert.deepEqual(x2.handle, x1.handle, 'a retried EXCLUSIVE create with the same verifier');
    const other = Uint8Array.of(9, 9, 9, 9, 9, 9, 9, 9);
    assert.equal(
      await statusOf(c.create(root, 'x.txt', { mode: 'exclusive', verifier: other })),
      NfsStatus.EXIST,
    );
  });

  it('WRITE honours stable_how and returns the write verifier that COMMIT returns', async () => {
    const { handle } = await c.create(root, 'w.bin');
    const data = bytes('0123456789');
    const w = await c.write(handle, 0, data, 'unstable');
    assert.equal(w.count, 10);
    assert.ok(['unstable', 'data_sync', 'file_sync'].includes(w.committed));
    assert.equal(w.wcc.after?.size, 10);
    const verf = await c.commit(handle, 0, 0);
    assert.deepEqual(verf, w.verifier);
    await c.write(handle, 20, bytes('end'), 'file_sync');
    const a = await c.getattr(handle);
    assert.equal(a.size, 23);
  });

  it('READ returns data, eof at the end, and zeros for holes', async () => {
    const { handle } = await c.lookup(root, 'w.bin');
    const r = await c.read(handle, 0, 5);
    assert.deepEqual(Buffer.from(r.data).toString(), '01234');
    assert.equal(r.eof, false);
    const hole = await c.read(handle, 10, 100);
    assert.deepEqual([...hole.data.subarray(0, 10)], new Array(10).fill(0));
    assert.equal(Buffer.from(hole.data.subarray(10)).toString(), 'end');
    assert.equal(hole.eof, true);
    const past = await c.read(handle, 1000, 10);
    assert.equal(past.data.length, 0);
    assert.equal(past.eof, true);
  });

  it('SETATTR changes size and mode, and refuses with NOT_SYNC when the ctime guard is stale', async () => {
    const { handle } = await c.lookup(root, 'w.bin');
    const before = await c.getattr(handle);
    const wcc = await c.setattr(handle, { size: 4, mode: 0o600 }, before.ctime);
    assert.equal(wcc.before?.size, 23);
    assert.equal(wcc.after?.size, 4);
    assert.equal(wcc.after?.mode, 0o600);
    assert.equal(await statusOf(c.setattr(handle, { size: 0 }, before.ctime)), NfsStatus.NOT_SYNC);
    assert.equal((await c.getattr(handle)).size, 4);
  });

  it('SETATTR with server time stamps the call time', async () => {
    const { handle } = await c.lookup(root, 'w.bin');
    const wcc = await c.setattr(handle, { mtime: 'server' });
    assert.ok(wcc.after!.mtime.seconds >= 1000);
    const wcc2 = await c.setattr(handle, { atime: { seconds: 42, nseconds: 7 } });
    assert.deepEqual(wcc2.after!.atime, { seconds: 42, nseconds: 7 });
  });

  it('LOOKUP finds names, handles . and .., and reports NOENT, NOTDIR and bad names', async () => {
    const dot = await c.lookup(root, '.');
    assert.deepEqual(dot.handle, root);
    const dotdot = await c.lookup(root, '..');
    assert.deepEqual(dotdot.handle, root);
    assert.equal(await statusOf(c.lookup(root, 'missing')), NfsStatus.NOENT);
    const { handle } = await c.lookup(root, 'w.bin');
    assert.equal(await statusOf(c.lookup(handle, 'x')), NfsStatus.NOTDIR);
    assert.equal(await statusOf(c.lookup(root, 'a/b')), NfsStatus.INVAL);
    assert.equal(await statusOf(c.lookup(root, 'a\0b')), NfsStatus.INVAL);
    assert.equal(await statusOf(c.lookup(root, 'n'.repeat(256))), NfsStatus.NAMETOOLONG);
    assert.equal(await statusOf(c.lookup(root, '')), NfsStatus.INVAL);
  });

  it('ACCESS grants by owner, group and other bits', async () => {
    const { handle } = await c.create(root, 'acc', {
      mode: 'guarded',
      attributes: { mode: 0o640 },
    });
    const all = 0x3f;
    const mine = await c.access(handle, all);
    assert.equal(mine, ACCESS3.READ | ACCESS3.MODIFY | ACCESS3.EXTEND);
    const other = await client3(h.port, 'tcp', 2000);
    try {
      assert.equal(await other.access(handle, all), 0);
    } finally {
      other.rpc.close();
    }
    const dirAccess = await c.access(root, all);
    assert.ok(dirAccess & ACCESS3.LOOKUP && dirAccess & ACCESS3.DELETE);
  });

  it('MKDIR, RMDIR: directories can be made, are not removed while non-empty, and then are', async () => {
    const d = await c.mkdir(root, 'dir', { mode: 0o750 });
    assert.equal(d.attributes?.type, FileType.DIR);
    assert.equal(d.attributes?.mode, 0o750);
    assert.equal(await statusOf(c.mkdir(root, 'dir')), NfsStatus.EXIST);
    await c.create(d.handle, 'inside');
    assert.equal(await statusOf(c.rmdir(root, 'dir')), NfsStatus.NOTEMPTY);
    assert.equal(await statusOf(c.rmdir(root, 'w.bin')), NfsStatus.NOTDIR);
    await c.remove(d.handle, 'inside');
    const wcc = await c.rmdir(root, 'dir');
    assert.ok(wcc.after);
    assert.equal(await statusOf(c.getattr(d.handle)), NfsStatus.STALE);
  });

  it('refuses . and .. where a new name is needed and where a name is removed', async () => {
    assert.equal(await statusOf(c.mkdir(root, '.')), NfsStatus.EXIST);
    assert.equal(await statusOf(c.create(root, '..')), NfsStatus.EXIST);
    assert.equal(await statusOf(c.remove(root, '.')), NfsStatus.INVAL);
    assert.equal(await statusOf(c.rmdir(root, '..')), NfsStatus.INVAL);
  });

  it('SYMLINK and READLINK round-trip the target; READLINK of a file is INVAL', async () => {
    const s = await c.symlink(root, 'link', '../some/where');
    assert.equal(s.attributes?.type, FileType.LNK);
    assert.equal(await c.readlink(s.handle), '../some/where');
    const { handle } = await c.lookup(root, 'w.bin');
    assert.equal(await statusOf(c.readlink(handle)), NfsStatus.INVAL);
  });

  it('MKNOD makes fifos, sockets and devices, and answers BADTYPE for regular files', async () => {
    const fifo = await c.mknod(root, 'fifo', FileType.FIFO);
    assert.equal(fifo.attributes?.type, FileType.FIFO);
    const sock = await c.mknod(root, 'sock', FileType.SOCK);
    assert.equal(sock.attributes?.type, FileType.SOCK);
    const chr = await c.mknod(root, 'null', FileType.CHR, { mode: 0o666 }, { major: 1, minor: 3 });
    assert.deepEqual(chr.attributes?.rdev, { major: 1, minor: 3 });
    assert.equal(await statusOf(c.mknod(root, 'reg', FileType.REG)), NfsStatus.BADTYPE);
  });

  it('REMOVE deletes a file and its handle becomes STALE; directories are ISDIR', async () => {
    const { handle } = await c.create(root, 'gone');
    await c.remove(root, 'gone');
    assert.equal(await statusOf(c.getattr(handle)), NfsStatus.STALE);
    assert.equal(await statusOf(c.remove(root, 'gone')), NfsStatus.NOENT);
    await c.mkdir(root, 'adir');
    assert.equal(await statusOf(c.remove(root, 'adir')), NfsStatus.ISDIR);
  });

  it('RENAME moves files, replaces an existing target, and refuses a directory into itself', async () => {
    const a = await c.create(root, 'ra');
    await c.write(a.handle, 0, bytes('A'));
    const b = await c.create(root, 'rb');
    const res = await c.rename(root, 'ra', root, 'rb');
    assert.ok(res.fromWcc.after && res.toWcc.after);
    const now = await c.lookup(root, 'rb');
    assert.deepEqual(now.handle, a.handle);
    assert.equal(await statusOf(c.getattr(b.handle)), NfsStatus.STALE);
    assert.equal(await statusOf(c.lookup(root, 'ra')), NfsStatus.NOENT);
    const outer = await c.mkdir(root, 'outer');
    await c.mkdir(outer.handle, 'inner');
    const inner = await c.lookup(outer.handle, 'inner');
    assert.equal(await statusOf(c.rename(root, 'outer', inner.handle, 'x')), NfsStatus.INVAL);
    assert.equal(await statusOf(c.rename(root, 'rb', root, 'outer')), NfsStatus.ISDIR);
  });

  it('LINK adds a second name; nlink counts both', async () => {
    const { handle } = await c.create(root, 'l1');
    const res = await c.link(handle, root, 'l2');
    assert.equal(res.attributes?.nlink, 2);
    const l2 = await c.lookup(root, 'l2');
    assert.deepEqual(l2.handle, handle);
    assert.equal(await statusOf(c.link(root, root, 'rootlink')), NfsStatus.ISDIR);
    await c.remove(root, 'l1');
    assert.equal((await c.getattr(handle)).nlink, 1);
  });

  it('READDIR and READDIRPLUS list every entry once with stable cookies and a true eof', async () => {
    const d = await c.mkdir(root, 'list');
    const names = Array.from({ length: 300 }, (_, i) => `entry-${i}`);
    for (const n of names) await c.create(d.handle, n);
    const seen: string[] = [];
    let cookie = 0;
    let pages = 0;
    for (;;) {
      const r = await c.readdir(d.handle, cookie, undefined, 1024);
      pages++;
      seen.push(...r.entries.map((e) => e.name));
      if (r.eof) break;
      cookie = r.entries[r.entries.length - 1].cookie;
    }
    assert.ok(pages > 1, 'a small count forces several pages');
    assert.deepEqual(seen.sort(), ['.', '..', ...names].sort());
    const plus = await c.listAll(d.handle, 4096);
    assert.equal(plus.length, 302);
    for (const e of plus)
      assert.ok(e.handle && e.attributes, `${e.name} has a handle and attributes`);
  });

  it('READDIR resumes correctly after entries are removed mid-listing (cookies survive changes)', async () => {
    const d = await c.mkdir(root, 'churn');
    for (let i = 0; i < 50; i++) await c.create(d.handle, `f${i}`);
    const first = await c.readdir(d.handle, 0, undefined, 600);
    assert.equal(first.eof, false);
    const last = first.entries[first.entries.length - 1];
    // Remove everything already listed, including the entry whose cookie we resume from.
    for (const e of first.entries)
      if (e.name !== '.' && e.name !== '..') await c.remove(d.handle, e.name);
    const rest: string[] = [];
    let cookie = last.cookie;
    for (;;) {
      const r = await c.readdir(d.handle, cookie, first.verifier, 600);
      rest.push(...r.entries.map((e) => e.name));
      if (r.eof) break;
      cookie = r.entries[r.entries.length - 1].cookie;
    }
    const remaining = 50 - first.entries.filter((e) => e.name.startsWith('f')).length;
    assert.equal(rest.length, remaining);
  });

  it('READDIR with a count too small for one entry is TOOSMALL', async () => {
    assert.equal(await statusOf(c.readdir(root, 0, undefined, 50)), NfsStatus.TOOSMALL);
  });

  it('FSSTAT, FSINFO and PATHCONF report the backend’s real figures', async () => {
    const s = await c.fsstat(root);
    assert.ok(s.totalBytes > 0 && s.freeBytes <= s.totalBytes && s.availBytes <= s.totalBytes);
    const i = await c.fsinfo(root);
    assert.ok(i.rtmax >= 65536 && i.wtmax >= 65536 && i.rtpref <= i.rtmax);
    assert.equal(i.properties & 0x1, 0x1, 'FSF3_LINK');
    assert.equal(i.properties & 0x2, 0x2, 'FSF3_SYMLINK');
    const p = await c.pathconf(root);
    assert.equal(p.nameMax, 255);
    assert.equal(p.noTrunc, true);
    assert.equal(p.casePreserving, true);
  });

  it('moves multi-megabyte files through READ and WRITE intact', async () => {
    const { handle } = await c.create(root, 'big');
    const data = new Uint8Array(3 * 1024 * 1024 + 5).map((_, i) => (i * 7) & 0xff);
    await c.writeAll(handle, data, 256 * 1024);
    const back = await c.readAll(handle, 1024 * 1024);
    assert.ok(Buffer.from(back).equals(Buffer.from(data)));
  });
});

describe('NFSv3: export policy', () => {
  it('a read-only export answers ROFS to every change and still serves reads', async () => {
    const h = await startServer({ export: { readOnly: true } });
    const c = await client3(h.port);
    try {
      const root = await c.mount('/');
      assert.equal(await statusOf(c.create(root, 'x')), NfsStatus.ROFS);
      assert.equal(await statusOf(c.mkdir(root, 'x')), NfsStatus.ROFS);
      assert.equal(await statusOf(c.setattr(root, { mode: 0o700 })), NfsStatus.ROFS);
      assert.equal(await statusOf(c.remove(root, 'x')), NfsStatus.ROFS);
      assert.equal((await c.getattr(root)).type, FileType.DIR);
      assert.equal((await c.access(root, ACCESS3.MODIFY)) & ACCESS3.MODIFY, 0);
    } finally {
      c.rpc.close();
      await h.close();
    }
  });

  it('root squashing stamps files created by uid 0 as the anonymous user', async () => {
    const h = await startServer();
    const c = await client3(h.port, 'tcp', 0);
    try {
      const root = await c.mount('/');
      const f = await c.create(root, 'by-root');
      assert.equal(f.attributes?.uid, 65534);
    } finally {
      c.rpc.close();
      await h.close();
    }
  });

  it('a client outside the allowed addresses cannot mount (ACCES) nor call NFS (AUTH_ERROR)', async () => {
    const h = await startServer({ export: { clients: ['10.0.0.0/8'] } });
    const c = await client3(h.port);
    try {
      assert.equal(await statusOf(c.mount('/')), 13);
      await assert.rejects(c.getattr(h.fs.root()), /auth_error/);
    } finally {
      c.rpc.close();
      await h.close();
    }
  });

  it('MNT accepts the export root and directories below it, and refuses files and missing paths', async () => {
    const h = await startServer();
    const c = await client3(h.port);
    try {
      const root = await c.mount('/');
      const d = await c.mkdir(root, 'a');
      await c.mkdir(d.handle, 'b');
      await c.create(root, 'file');
      assert.deepEqual(await c.mount('/a/b/'), (await c.lookup(d.handle, 'b')).handle);
      assert.equal(await statusOf(c.mount('/file')), 20);
      assert.equal(await statusOf(c.mount('/nope')), 2);
    } finally {
      c.rpc.close();
      await h.close();
    }
  });
});

describe('MOUNT v3 and v1 procedures', () => {
  it('DUMP lists mounts, UMNT and UMNTALL remove them, EXPORT lists the export', async () => {
    const h = await startServer();
    const c = await client3(h.port);
    const call = async (version: number, proc: number, args = new XdrWriter()) =>
      new XdrReader(await c.rpc.call(MOUNT_PROGRAM, version, proc, args.bytes(), c.cred));
    const dump = async () => {
      const r = await call(3, MountProc.DUMP);
      const out: string[] = [];
      while (r.bool()) out.push(`${r.string()} ${r.string()}`);
      return out;
    };
    try {
      await call(3, MountProc.NULL);
      await c.mount('/');
      const root = await c.mount('/');
      await c.mkdir(root, 'sub');
      await c.mount('/sub');
      assert.deepEqual(await dump(), ['127.0.0.1 /', '127.0.0.1 /sub']);
      await call(3, MountProc.UMNT, new XdrWriter().string('/'));
      assert.deepEqual(await dump(), ['127.0.0.1 /sub']);
      await call(1, MountProc.UMNTALL);
      assert.deepEqual(await dump(), []);
      for (const v of [1, 3]) {
        const r = await call(v, MountProc.EXPORT);
        assert.equal(r.bool(), true);
        assert.equal(r.string(), '/');
        assert.equal(r.bool(), false, 'no group list');
        assert.equal(r.bool(), false, 'one export');
      }
      const all = await call(1, MountProc.EXPORTALL);
      assert.equal(all.bool(), true);
      await assert.rejects(call(3, MountProc.EXPORTALL), /proc_unavail/);
    } finally {
      c.rpc.close();
      await h.close();
    }
  });
});

describe('NFSv3: permission checks (export option checkPermissions)', () => {
  it('enforces directory write/search bits, file read/write bits with owner override, and chown/chmod rules', async () => {
    const h = await startServer({ export: { checkPermissions: true } });
    const alice = await client3(h.port, 'tcp', 1000);
    const bob = await client3(h.port, 'tcp', 2000);
    try {
      const root = await alice.mount('/');
      const home = await alice.mkdir(root, 'alice', { mode: 0o755 });
      const secret = await alice.create(home.handle, 'secret', {
        mode: 'guarded',
        attributes: { mode: 0o600 },
      });
      await alice.write(secret.handle, 0, bytes('mine'));
      // Bob may look in but not add or remove entries, nor read or write the 0600 file.
      assert.deepEqual((await bob.lookup(home.handle, 'secret')).handle, secret.handle);
      assert.equal(await statusOf(bob.create(home.handle, 'x')), NfsStatus.ACCES);
      assert.equal(await statusOf(bob.remove(home.handle, 'secret')), NfsStatus.ACCES);
      assert.equal(await statusOf(bob.read(secret.handle, 0, 10)), NfsStatus.ACCES);
      assert.equal(await statusOf(bob.write(secret.handle, 0, bytes('x'))), NfsStatus.ACCES);
      assert.equal(await statusOf(bob.setattr(secret.handle, { mode: 0o777 })), NfsStatus.PERM);
      assert.equal(await statusOf(alice.setattr(secret.handle, { uid: 2000 })), NfsStatus.PERM);
      // The owner reads and writes whatever the mode says (knfsd's owner override).
      await alice.setattr(secret.handle, { mode: 0o000 });
      assert.equal(Buffer.from((await alice.read(secret.handle, 0, 10)).data).toString(), 'mine');
      // A directory without search permission hides its entries.
      await alice.setattr(home.handle, { mode: 0o700 });
      assert.equal(await statusOf(bob.lookup(home.handle, 'secret')), NfsStatus.ACCES);
      assert.equal(await statusOf(bob.readdir(home.handle)), NfsStatus.ACCES);
    } finally {
      alice.rpc.close();
      bob.rpc.close();
      await h.close();
    }
  });
});
