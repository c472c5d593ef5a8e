import { strict as assert } from 'node:assert';
import type { Nfs2Client } from '../src/client';
import { type Harness, client2, startServer, statusOf } from './helpers';

/** NFSv2 nfsstat values (RFC 1094 2.3.1). */
const NFSERR = { NOENT: 2, EXIST: 17, NOTDIR: 20, ISDIR: 21, ROFS: 30, NOTEMPTY: 66, STALE: 70 };

for (const transport of ['udp', 'tcp'] as const) {
  describe(`NFSv2 over ${transport.toUpperCase()}: every procedure through the client`, () => {
    let h: Harness;
    let c: Nfs2Client;
    let root: Uint8Array;

    before(async () => {
      h = await startServer({ clock: () => ({ seconds: 5000, nseconds: 123_456_000 }) });
      c = await client2(h.port, transport);
      root = await c.mount('/');
    });
    after(async () => {
      c.rpc.close();
      await h.close();
    });

    it('MOUNT v1 returns a 32-byte handle; NULL, ROOT and WRITECACHE answer void', async () => {
      assert.equal(root.length, 32);
      await c.null();
      await c.root();
      await c.writecache();
    });

    it('GETATTR reports type and mode with the file-type bits, in microseconds', async () => {
      const a = await c.getattr(root);
      assert.equal(a.type, 2);
      assert.equal(a.mode & 0o170000, 0o040000);
      assert.equal(await statusOf(c.getattr(new Uint8Array(32))), NFSERR.STALE);
    });

    it('CREATE, WRITE, READ and SETATTR round-trip file contents and attributes', async () => {
      const f = await c.create(root, 'a.txt', { mode: 0o100644 });
      assert.equal(f.attributes.type, 1);
      assert.equal(f.attributes.mode & 0o7777, 0o644);
      const after = await c.write(f.handle, 0, Buffer.from('hello, v2'));
      assert.equal(after.size, 9);
      assert.deepEqual(after.mtime, { seconds: 5000, nseconds: 123_456_000 });
      const r = await c.read(f.handle, 7, 100);
      assert.equal(Buffer.from(r.data).toString(), 'v2');
      const s = await c.setattr(f.handle, { size: 5, mode: 0o600 });
      assert.equal(s.size, 5);
      assert.equal(s.mode & 0o7777, 0o600);
    });

    it('LOOKUP finds a file and reports NOENT and NOTDIR', async () => {
      const f = await c.lookup(root, 'a.txt');
      assert.equal(f.attributes.size, 5);
      assert.equal(await statusOf(c.lookup(root, 'none')), NFSERR.NOENT);
      assert.equal(await statusOf(c.lookup(f.handle, 'x')), NFSERR.NOTDIR);
    });

    it('MKDIR, RMDIR with NOTEMPTY, REMOVE with ISDIR', async () => {
      const d = await c.mkdir(root, 'd');
      await c.create(d.handle, 'inner');
      assert.equal(await statusOf(c.rmdir(root, 'd')), NFSERR.NOTEMPTY);
      assert.equal(await statusOf(c.remove(root, 'd')), NFSERR.ISDIR);
      await c.remove(d.handle, 'inner');
      await c.rmdir(root, 'd');
      assert.equal(await statusOf(c.getattr(d.handle)), NFSERR.STALE);
    });

    it('RENAME, LINK, SYMLINK and READLINK', async () => {
      await c.rename(root, 'a.txt', root, 'b.txt');
      const b = await c.lookup(root, 'b.txt');
      await c.link(b.handle, root, 'c.txt');
      assert.equal((await c.getattr(b.handle)).nlink, 2);
      await c.symlink(root, 'sl', 'b.txt');
      const sl = await c.lookup(root, 'sl');
      assert.equal(sl.attributes.type, 5);
      assert.equal(await c.readlink(sl.handle), 'b.txt');
      assert.equal(await statusOf(c.mkdir(root, 'b.txt')), NFSERR.EXIST);
    });

    it('READDIR pages through a directory with 4-byte cookies to eof', async () => {
      const d = await c.mkdir(root, 'many');
      for (let i = 0; i < 120; i++) await c.create(d.handle, `n${i}`);
      const names: string[] = [];
      let cookie = 0;
      for (;;) {
        const r = await c.readdir(d.handle, cookie, 512);
        names.push(...r.entries.map((e) => e.name));
        if (r.eof) break;
        cookie = r.entries[r.entries.length - 1].cookie;
      }
      assert.equal(names.length, 122);
      assert.equal(new Set(names).size, 122);
    });

    it('STATFS reports blocks that add up', async () => {
      const s = await c.statfs(root);
      assert.equal(s.tsize, 8192);
      assert.ok(s.bfree <= s.blocks && s.bavail <= s.blocks && s.blocks > 0);
    });
  });
}

describe('NFSv2: export policy', () => {
  it('a read-only export answers NFSERR_ROFS', async () => {
    const h = await startServer({ export: { readOnly: true } });
    const c = await client2(h.port);
    try {
      const root = await c.mount('/');
      assert.equal(await statusOf(c.create(root, 'x')), NFSERR.ROFS);
    } finally {
      c.rpc.close();
      await h.close();
    }
  });
});
