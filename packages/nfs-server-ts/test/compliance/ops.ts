import * as fc from 'fast-check';
import { FileType, NfsError, NfsStatus, type CallContext, type FileSystem } from 'nfs-server-ts';

/** A file-system operation on paths, runnable against any FileSystem backend and against the model. */
export type Op =
  | { k: 'create'; dir: string[]; name: string; guarded: boolean }
  | { k: 'mkdir'; dir: string[]; name: string }
  | { k: 'symlink'; dir: string[]; name: string; target: string }
  | { k: 'write'; path: string[]; offset: number; len: number; fill: number }
  | { k: 'truncate'; path: string[]; size: number }
  | { k: 'read'; path: string[]; offset: number; count: number }
  | { k: 'remove'; dir: string[]; name: string }
  | { k: 'rmdir'; dir: string[]; name: string }
  | { k: 'rename'; fromDir: string[]; fromName: string; toDir: string[]; toName: string }
  | { k: 'link'; path: string[]; dir: string[]; name: string }
  | { k: 'readdir'; dir: string[] }
  | { k: 'getattr'; path: string[] };

/** What an operation returned, with handles and times left out (they legitimately differ). */
export type Outcome = { ok: unknown } | { err: string };

const NAMES = ['a', 'b', 'c', 'd'];
const name = fc.constantFrom(...NAMES);
// Short paths over few names, so that most operations meet existing objects.
const dir = fc.oneof(
  { weight: 4, arbitrary: fc.constant([] as string[]) },
  { weight: 3, arbitrary: fc.tuple(name) },
  { weight: 1, arbitrary: fc.tuple(name, name) },
);
const path = fc.oneof(
  { weight: 5, arbitrary: fc.tuple(name) },
  { weight: 2, arbitrary: fc.tuple(name, name) },
  { weight: 1, arbitrary: fc.tuple(name, name, name) },
);
const offset = fc.oneof(fc.integer({ min: 0, max: 9000 }), fc.integer({ min: 30000, max: 70000 }));

export const opArb: fc.Arbitrary<Op> = fc.oneof(
  {
    weight: 4,
    arbitrary: fc.record({ k: fc.constant('create' as const), dir, name, guarded: fc.boolean() }),
  },
  { weight: 3, arbitrary: fc.record({ k: fc.constant('mkdir' as const), dir, name }) },
  {
    weight: 1,
    arbitrary: fc.record({
      k: fc.constant('symlink' as const),
      dir,
      name,
      target: fc.string({ maxLength: 20 }),
    }),
  },
  {
    weight: 4,
    arbitrary: fc.record({
      k: fc.constant('write' as const),
      path,
      offset,
      len: fc.integer({ min: 0, max: 9000 }),
      fill: fc.integer({ min: 1, max: 255 }),
    }),
  },
  { weight: 2, arbitrary: fc.record({ k: fc.constant('truncate' as const), path, size: offset }) },
  {
    weight: 2,
    arbitrary: fc.record({
      k: fc.constant('read' as const),
      path,
      offset,
      count: fc.integer({ min: 0, max: 20000 }),
    }),
  },
  { weight: 2, arbitrary: fc.record({ k: fc.constant('remove' as const), dir, name }) },
  { weight: 2, arbitrary: fc.record({ k: fc.constant('rmdir' as const), dir, name }) },
  {
    weight: 3,
    arbitrary: fc.record({
      k: fc.constant('rename' as const),
      fromDir: dir,
      fromName: name,
      toDir: dir,
      toName: name,
    }),
  },
  { weight: 2, arbitrary: fc.record({ k: fc.constant('link' as const), path, dir, name }) },
  { weight: 1, arbitrary: fc.record({ k: fc.constant('readdir' as const), dir }) },
  { weight: 1, arbitrary: fc.record({ k: fc.constant('getattr' as const), path }) },
);

function resolve(fs: FileSystem, p: string[]): Uint8Array {
  let fh = fs.root();
  for (const c of p) fh = fs.lookup(fh, c);
  return fh;
}

function hex(b: Uint8Array): string {
  return Buffer.from(b).toString('hex');
}

/** Runs `op` on a backend; `full` keeps handles in the outcome (for comparing two instances of one backend). */
export function runOp(fs: FileSystem, op: Op, ctx: CallContext, full = false): Outcome {
  try {
    return { ok: execOp(fs, op, ctx, full) };
  } catch (e) {
    if (e instanceof NfsError) return { err: NfsStatus[e.status] };
    throw e;
  }
}

function execOp(fs: FileSystem, op: Op, ctx: CallContext, full: boolean): unknown {
  const h = (fh: Uint8Array) => (full ? hex(fh) : 'ok');
  switch (op.k) {
    case 'create':
      return h(
        fs.create(
          resolve(fs, op.dir),
          op.name,
          { mode: op.guarded ? 'guarded' : 'unchecked', attributes: {} },
          ctx,
        ),
      );
    case 'mkdir':
      return h(fs.mkdir(resolve(fs, op.dir), op.name, {}, ctx));
    case 'symlink':
      return h(fs.symlink(resolve(fs, op.dir), op.name, op.target, {}, ctx));
    case 'write':
      return fs.write(
        resolve(fs, op.path),
        op.offset,
        new Uint8Array(op.len).fill(op.fill),
        'unstable',
        ctx,
      ).count;
    case 'truncate':
      return fs.setattr(resolve(fs, op.path), { size: op.size }, ctx).size;
    case 'read': {
      const r = fs.read(resolve(fs, op.path), op.offset, op.count);
      return { data: hex(r.data), eof: r.eof };
    }
    case 'remove':
      fs.remove(resolve(fs, op.dir), op.name, ctx);
      return 'ok';
    case 'rmdir':
      fs.rmdir(resolve(fs, op.dir), op.name, ctx);
      return 'ok';
    case 'rename':
      fs.rename(resolve(fs, op.fromDir), op.fromName, resolve(fs, op.toDir), op.toName, ctx);
      return 'ok';
    case 'link':
      fs.link(resolve(fs, op.path), resolve(fs, op.dir), op.name, ctx);
      return 'ok';
    case 'readdir': {
      const names: string[] = [];
      let cookie = 0;
      for (;;) {
        const r = fs.readdir(resolve(fs, op.dir), cookie, new Uint8Array(8), 3);
        names.push(
          ...r.entries.map((e) => (full ? `${e.name}@${e.cookie}:${hex(e.handle)}` : e.name)),
        );
        if (r.eof) break;
        cookie = r.entries[r.entries.length - 1].cookie;
      }
      return full ? names : names.sort();
    }
    case 'getattr': {
      const a = fs.getattr(resolve(fs, op.path));
      return full
        ? a
        : { type: a.type, size: a.type === FileType.DIR ? 0 : a.size, nlink: a.nlink };
    }
  }
}
