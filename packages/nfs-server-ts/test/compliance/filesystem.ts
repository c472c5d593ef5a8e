/**
 * The `FileSystem` compliance suite: what every backend (the memory backend, a local directory,
 * BFS) must do, run by each from a spec file of a few lines. It holds random operation sequences
 * checked against a naive model (model.ts) and against the memory backend as a reference, then
 * rules of handles, directory cookies and the NFS procedures over a real server.
 *
 * Everything comes from the `nfs-server-ts` package as other packages see it (its build), so
 * that a backend's NfsError is the class the server and the suite recognise.
 */
import { strict as assert } from 'node:assert';
import * as fc from 'fast-check';
import {
  type CallContext,
  FileType,
  type FileSystem,
  MemoryFileSystem,
  Nfs2Client,
  Nfs3Client,
  NfsError,
  NfsServer,
  NfsStatus,
  RpcClient,
  authSys,
} from 'nfs-server-ts';
import { ModelFs } from './model';
import { type Op, type Outcome, opArb, runOp } from './ops';

/** One fresh instance of a backend under test, and what to check and undo after it. */
export interface Backend {
  fs: FileSystem;
  /** Checks the backend's own invariants (BFS: fsck); throws when one is broken. */
  check?(): void;
  /** Frees what the instance holds (a temporary directory). */
  close?(): void;
}

export interface ComplianceOptions {
  /** Random sequences per property (fewer for a slow backend). */
  runs?: number;
  /** Entries of the large directory listed over NFS (default 100,000). */
  largeDirectory?: number;
  /**
   * Whether the backend can keep a symbolic link to '' (default true). A local directory
   * cannot: Linux refuses symlink(2) with an empty target (ENOENT). Sequences then have none.
   */
  emptySymlinks?: boolean;
}

const CRED = { uid: 1000, gid: 100, gids: [100] };

/** The context of the i-th call: time moves on, the caller stays. */
function ctx(i: number): CallContext {
  return { cred: CRED, time: { seconds: 1000 + i, nseconds: 0 } };
}

/** The NfsStatus name `f` fails with. */
function failure(f: () => unknown): string {
  try {
    f();
  } catch (e) {
    if (e instanceof NfsError) return NfsStatus[e.status];
    throw e;
  }
  assert.fail('expected an NfsError');
}

/** The tree under `fs`'s root in the model's dump format, read through readdir in small pages. */
export function dumpTree(fs: FileSystem): Map<string, unknown> {
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
  return new Map([...out].sort());
}

/** Runs `body` on a fresh instance, then its check, and closes it whatever happens. */
function withBackend(make: () => Backend, body: (b: Backend) => void): void {
  const b = make();
  try {
    body(b);
    b.check?.();
  } finally {
    b.close?.();
  }
}

/** Serves `fs` over NFS on a loopback port for `body`, with a client of each version. */
async function served(
  fs: FileSystem,
  body: (c: { v3: Nfs3Client; v2: Nfs2Client }) => Promise<void>,
): Promise<void> {
  const server = new NfsServer({ fs });
  const port = await server.listen({ port: 0, host: '127.0.0.1' });
  const v3 = new Nfs3Client(await RpcClient.connect({ port }), authSys(CRED.uid, CRED.gid));
  const v2 = new Nfs2Client(await RpcClient.connect({ port }), authSys(CRED.uid, CRED.gid));
  try {
    await body({ v3, v2 });
  } finally {
    v3.rpc.close();
    v2.rpc.close();
    await server.close();
  }
}

/** Declares the suite for backend `name`: `make` gives a fresh, empty instance each time. */
export function fileSystemCompliance(
  name: string,
  make: () => Backend,
  o: ComplianceOptions = {},
): void {
  const runs = o.runs ?? 150;
  const op =
    o.emptySymlinks === false
      ? opArb.filter((x) => !(x.k === 'symlink' && x.target === ''))
      : opArb;
  const sequences = fc.array(op, { minLength: 20, maxLength: 100 });
  describe(`FileSystem compliance: ${name}`, function () {
    this.timeout(180_000);

    describe('random operation sequences', () => {
      /** Every sequence gives on the backend what the reference gives, op by op; then `end`. */
      const agreeWith = (
        reference: () => { run(op: Op, i: number): Outcome; end?(fs: FileSystem): void },
      ) =>
        fc.assert(
          fc.property(sequences, (ops) =>
            withBackend(make, ({ fs }) => {
              const ref = reference();
              ops.forEach((op, i) =>
                assert.deepEqual(
                  runOp(fs, op, ctx(i)),
                  ref.run(op, i),
                  `op ${i} ${JSON.stringify(op)}`,
                ),
              );
              ref.end?.(fs);
            }),
          ),
          { numRuns: runs },
        );

      it('agree with the model on every result and error, and end with the same tree', () => {
        agreeWith(() => {
          const model = new ModelFs();
          return {
            run: (op) => model.run(op),
            end: (fs) => assert.deepEqual(dumpTree(fs), new Map([...model.dump()].sort())),
          };
        });
      });

      it('agree with the memory backend, the reference, on every result and error', () => {
        agreeWith(() => {
          const mem = new MemoryFileSystem();
          return { run: (op, i) => runOp(mem, op, ctx(i)) };
        });
      });
    });

    describe('handles', () => {
      it('a handle of a removed file is STALE, even once a new file takes its name', () => {
        withBackend(make, ({ fs }) => {
          const root = fs.root();
          const f = fs.create(root, 'x', { mode: 'guarded', attributes: {} }, ctx(1));
          fs.remove(root, 'x', ctx(2));
          fs.create(root, 'x', { mode: 'guarded', attributes: {} }, ctx(3));
          assert.equal(
            failure(() => fs.getattr(f)),
            'STALE',
          );
        });
      });

      it('a handle stays the same through LOOKUP, READDIR and a rename', () => {
        withBackend(make, ({ fs }) => {
          const root = fs.root();
          const d = fs.mkdir(root, 'd', {}, ctx(1));
          const f = fs.create(d, 'f', { mode: 'guarded', attributes: {} }, ctx(2));
          const hex = (h: Uint8Array) => Buffer.from(h).toString('hex');
          assert.equal(hex(fs.lookup(d, 'f')), hex(f));
          const listed = fs
            .readdir(d, 0, new Uint8Array(8), 100)
            .entries.find((e) => e.name === 'f');
          assert.equal(hex(listed!.handle), hex(f));
          fs.rename(d, 'f', root, 'g', ctx(3));
          assert.equal(hex(fs.lookup(root, 'g')), hex(f));
          assert.equal(fs.getattr(f).type, FileType.REG);
        });
      });
    });

    describe('rename errors, in the order rename(2) checks them', () => {
      it('a file renamed onto the directory that holds it is NOTEMPTY, not ISDIR', () => {
        withBackend(make, ({ fs }) => {
          const root = fs.root();
          const a = fs.mkdir(root, 'a', {}, ctx(1));
          fs.create(a, 'a', { mode: 'guarded', attributes: {} }, ctx(2));
          assert.equal(
            failure(() => fs.rename(a, 'a', root, 'a', ctx(3))),
            'NOTEMPTY',
          );
          const b = fs.mkdir(root, 'b', {}, ctx(4));
          fs.create(root, 'f', { mode: 'guarded', attributes: {} }, ctx(5));
          fs.create(b, 'g', { mode: 'guarded', attributes: {} }, ctx(6));
          assert.equal(
            failure(() => fs.rename(root, 'f', root, 'b', ctx(7))),
            'ISDIR',
          );
        });
      });
    });

    describe('directory cookies', () => {
      it('resume a listing after the entries already listed are removed: nothing twice, nothing lost', () => {
        withBackend(make, ({ fs }) => {
          const root = fs.root();
          for (let i = 0; i < 40; i++)
            fs.create(root, `e${i}`, { mode: 'guarded', attributes: {} }, ctx(i));
          const first = fs.readdir(root, 0, new Uint8Array(8), 12);
          assert.equal(first.eof, false);
          for (const e of first.entries)
            if (e.name.startsWith('e')) fs.remove(root, e.name, ctx(100));
          const seen = new Set(first.entries.map((e) => e.name));
          let r = first;
          while (!r.eof) {
            r = fs.readdir(root, r.entries[r.entries.length - 1].cookie, r.verifier, 12);
            for (const e of r.entries) {
              assert.ok(!seen.has(e.name), `${e.name} listed twice`);
              seen.add(e.name);
            }
          }
          assert.equal(seen.size, 42, 'the 40 entries, . and ..');
        });
      });

      it('list a large directory completely over NFSv3 READDIRPLUS', async () => {
        const n = o.largeDirectory ?? 100_000;
        const b = make();
        try {
          const big = b.fs.mkdir(b.fs.root(), 'big', {}, ctx(0));
          for (let i = 0; i < n; i++)
            b.fs.create(big, `file-${i}`, { mode: 'guarded', attributes: {} }, ctx(1));
          await served(b.fs, async ({ v3 }) => {
            const entries = await v3.listAll(big, 1024 * 1024);
            assert.equal(entries.length, n + 2);
            assert.equal(new Set(entries.map((e) => e.name)).size, n + 2);
          });
        } finally {
          b.close?.();
        }
      });

      it('fit NFSv2 READDIR in 4 bytes: every entry of 300 is listed once', async () => {
        const b = make();
        try {
          for (let i = 0; i < 300; i++)
            b.fs.create(b.fs.root(), `v2-${i}`, { mode: 'guarded', attributes: {} }, ctx(i));
          await served(b.fs, async ({ v2 }) => {
            const root = await v2.mount('/');
            const names: string[] = [];
            let cookie = 0;
            for (;;) {
              const r = await v2.readdir(root, cookie, 1024);
              names.push(...r.entries.map((e) => e.name));
              if (r.eof) break;
              cookie = r.entries[r.entries.length - 1].cookie;
            }
            assert.equal(names.length, 302);
            assert.equal(new Set(names).size, 302);
          });
        } finally {
          b.close?.();
        }
      });
    });

    describe('over NFSv3', () => {
      it('copies a file in and out byte for byte with UNSTABLE WRITEs and a COMMIT', async () => {
        const b = make();
        try {
          await served(b.fs, async ({ v3 }) => {
            const root = await v3.mount('/');
            const data = new Uint8Array(300_000).map((_, i) => (i * 7919) % 251);
            const { handle } = await v3.create(root, 'copy', { mode: 'guarded' });
            await v3.writeAll(handle, data, 32_768);
            assert.ok(Buffer.from(await v3.readAll(handle, 65_536)).equals(data));
            assert.equal((await v3.getattr(handle)).size, data.length);
          });
          b.check?.();
        } finally {
          b.close?.();
        }
      });
    });
  });
}
