/**
 * The NFSv3 procedure layer (RFC 1813): each procedure declared once (decode its arguments, its
 * rule over the backend, its success and failure bodies) and run by the shared skeleton of
 * procedure-table.ts. No sockets and no clock: given the same backend state, arguments and
 * context it returns the same bytes, which is what lets BFS replicas execute calls in agreed
 * order.
 */
import {
  type Attributes,
  type CreateMode,
  type FileHandle,
  type FileSystem,
  FileType,
  NfsError,
  NfsStatus,
  type StableHow,
} from './filesystem';
import {
  MAX_PATH,
  MAX_WIRE_NAME,
  NFS3_VERFSIZE,
  type WccAttr,
  type WccData,
  readFh3,
  readSattr3,
  readTime,
  writeFattr3,
  writePostOpAttr,
  writeWcc,
} from './nfs3-xdr';
import * as guards from './guards';
import { accessBits } from './permissions';
import {
  type Call,
  type NfsCallContext,
  type Procedure,
  ProcedureTable,
  refuseReadOnly,
} from './procedure-table';
import { RpcError } from './rpc';
import { XdrReader, XdrWriter } from './xdr';

export { type NfsCallContext, statusOf } from './procedure-table';

/** Largest READ/WRITE payload (FSINFO rtmax/wtmax). Also bounds what a WRITE may carry. */
export const MAX_IO_SIZE = 1024 * 1024;
/** Preferred transfer size reported in FSINFO (rtpref/wtpref). */
export const PREFERRED_IO_SIZE = 64 * 1024;
/** Preferred READDIR request size (FSINFO dtpref). */
export const PREFERRED_READDIR_SIZE = 64 * 1024;

/**
 * Largest READ/WRITE payload and READDIR(PLUS) reply for a call that came over UDP (FSINFO's
 * rtmax, wtmax and dtpref there): its reply must fit one datagram (`MAX_UDP_PAYLOAD`, 65,507
 * bytes) with the RPC and NFS headers. 32 KiB, as knfsd allows over UDP.
 */
export const UDP_MAX_IO_SIZE = 32 * 1024;

/** The I/O bound in force: the server's, or the backend's if it asks for less. */
export function ioMax(fs: FileSystem): number {
  const wanted = fs.limits().maxIoSize;
  return wanted !== undefined && wanted >= 4096 ? Math.min(wanted, MAX_IO_SIZE) : MAX_IO_SIZE;
}

/**
 * The I/O bound for one call: `ioMax`, and no more than `UDP_MAX_IO_SIZE` when the reply goes
 * back in a datagram. It depends only on the backend and `ctx`, never on a socket, so replicas
 * executing a forwarded call agree on it (the relay puts `datagram` into the operation).
 */
export function callIoMax(fs: FileSystem, ctx: NfsCallContext): number {
  const max = ioMax(fs);
  return ctx.datagram ? Math.min(max, UDP_MAX_IO_SIZE) : max;
}
/** Most entries one READDIR/READDIRPLUS asks the backend for; bounds work per call. */
export const MAX_READDIR_ENTRIES = 8192;

export enum Nfs3Proc {
  NULL = 0,
  GETATTR = 1,
  SETATTR = 2,
  LOOKUP = 3,
  ACCESS = 4,
  READLINK = 5,
  READ = 6,
  WRITE = 7,
  CREATE = 8,
  MKDIR = 9,
  SYMLINK = 10,
  MKNOD = 11,
  REMOVE = 12,
  RMDIR = 13,
  RENAME = 14,
  LINK = 15,
  READDIR = 16,
  READDIRPLUS = 17,
  FSSTAT = 18,
  FSINFO = 19,
  PATHCONF = 20,
  COMMIT = 21,
}

/** Procedures that change state: a read-only export refuses them and the DRC caches them. */
export const NFS3_MUTATING: ReadonlySet<number> = new Set([
  Nfs3Proc.SETATTR,
  Nfs3Proc.WRITE,
  Nfs3Proc.CREATE,
  Nfs3Proc.MKDIR,
  Nfs3Proc.SYMLINK,
  Nfs3Proc.MKNOD,
  Nfs3Proc.REMOVE,
  Nfs3Proc.RMDIR,
  Nfs3Proc.RENAME,
  Nfs3Proc.LINK,
]);

export const STABLE_HOW: readonly StableHow[] = ['unstable', 'data_sync', 'file_sync'];

export type NameUse = 'lookup' | 'create' | 'remove';

/**
 * Checks one name component. '.' and '..' are allowed only for lookups: creating one is EXIST,
 * removing or renaming one is INVAL, as knfsd answers.
 */
export function checkName(fs: FileSystem, name: string, use: NameUse): void {
  if (name.length === 0 || name.includes('/') || name.includes('\0')) {
    throw new NfsError(NfsStatus.INVAL, 'bad name');
  }
  if (Buffer.byteLength(name) > fs.limits().maxNameLength) {
    throw new NfsError(NfsStatus.NAMETOOLONG);
  }
  if ((name === '.' || name === '..') && use !== 'lookup') {
    throw new NfsError(use === 'create' ? NfsStatus.EXIST : NfsStatus.INVAL);
  }
}

export function tryAttr(fs: FileSystem, fh: FileHandle): Attributes | undefined {
  try {
    return fs.getattr(fh);
  } catch {
    return undefined;
  }
}

function wccBefore(fs: FileSystem, fh: FileHandle): WccAttr | undefined {
  const a = tryAttr(fs, fh);
  return a && { size: a.size, mtime: a.mtime, ctime: a.ctime };
}

/** The ACCESS answer for these credentials (permissions.accessBits, and ROFS's lack of writes). */
export function accessFor(a: Attributes, ctx: NfsCallContext, requested: number): number {
  return accessBits(a, ctx.cred, requested, ctx.readOnly);
}

function readName(r: XdrReader): string {
  return r.string(MAX_WIRE_NAME);
}

function readDirOp(r: XdrReader): DirOp {
  return { dir: readFh3(r), name: readName(r) };
}

function fixed8(r: XdrReader): Uint8Array {
  return r.fixed(NFS3_VERFSIZE);
}

function toVerf(v: Uint8Array): Uint8Array {
  if (v.length === NFS3_VERFSIZE) return v;
  const out = new Uint8Array(NFS3_VERFSIZE);
  out.set(v.subarray(0, NFS3_VERFSIZE));
  return out;
}

/** Bytes an XDR string/opaque of n bytes takes, length word included. */
function xdrLen(n: number): number {
  return 4 + ((n + 3) & ~3);
}

/**
 * How many of the first `n` entries to send so that the page does not end inside a run of
 * entries sharing one cookie (a backend whose cookies are name hashes may have such runs):
 * resuming after that cookie would skip the rest of the run.
 */
export function wholeCookieGroups(entries: readonly { cookie: number }[], n: number): number {
  if (n >= entries.length || n === 0) return n;
  let k = n;
  while (k > 0 && entries[k - 1].cookie === entries[n].cookie) k--;
  return k;
}

/** Fixed part of a READDIR(PLUS) reply: status, dir attrs, verifier, list end, eof. */
const READDIR_REPLY_OVERHEAD = 4 + 4 + 84 + 8 + 4 + 4;
const FATTR3_SIZE = 84;

/** A directory's handle and one name in it (diropargs3). */
interface DirOp {
  dir: FileHandle;
  name: string;
}

/** Arguments that carry the wcc data `run` fills in, for the failure body to report. */
interface WithWcc {
  wcc: WccData;
}

// Failure bodies (resfail). Attributes `run` did not take before it failed are fetched now.

/** resfail of post_op_attr: the object's attributes after the failure. */
function failPostOp<A>(handleOf: (a: A) => FileHandle) {
  return (w: XdrWriter, { fs }: Call, a: A): void => writePostOpAttr(w, tryAttr(fs, handleOf(a)));
}

/** resfail of a post_op_attr the procedure never reports on failure. */
function failNoAttr(w: XdrWriter): void {
  writePostOpAttr(w, undefined);
}

/** Writes wcc data after a failure: the before attributes run took, the after ones it took or now. */
function writeFailedWcc(w: XdrWriter, fs: FileSystem, wcc: WccData, fh: FileHandle): void {
  if (!wcc.after) wcc.after = tryAttr(fs, fh);
  writeWcc(w, wcc);
}

function failWcc<A extends WithWcc>(handleOf: (a: A) => FileHandle) {
  return (w: XdrWriter, { fs }: Call, a: A): void => writeFailedWcc(w, fs, a.wcc, handleOf(a));
}

function wccAttr(a: Attributes): WccAttr {
  return { size: a.size, mtime: a.mtime, ctime: a.ctime };
}

/** What CREATE, MKDIR, SYMLINK and MKNOD answer: post_op_fh3, post_op_attr, dir wcc. */
interface Created {
  fh: FileHandle;
  attrs: Attributes | undefined;
  wcc: WccData;
}

/**
 * A procedure that makes a new entry `name` in `dir` with `make` (which holds the procedure's own
 * checks): they share the name check, the dir wcc and both result bodies. `decode` builds the
 * whole argument record, empty wcc included, so no call copies it.
 */
function createLike<A extends DirOp & WithWcc>(
  decode: (r: XdrReader) => A,
  make: (call: Call, a: A) => FileHandle,
): Procedure<A, Created> {
  return {
    decode,
    run: (call, a) => {
      const { fs, ctx } = call;
      refuseReadOnly(ctx);
      checkName(fs, a.name, 'create');
      a.wcc.before = wccBefore(fs, a.dir);
      const fh = make(call, a);
      const attrs = tryAttr(fs, fh);
      a.wcc.after = tryAttr(fs, a.dir);
      return { fh, attrs, wcc: a.wcc };
    },
    encodeOk: (w, res) => {
      w.bool(true).opaque(res.fh);
      writePostOpAttr(w, res.attrs);
      writeWcc(w, res.wcc);
    },
    encodeFail: failWcc((a) => a.dir),
  };
}

/** REMOVE and RMDIR: one rule, two backend calls. */
function removeEntry(op: 'remove' | 'rmdir'): Procedure<DirOp & WithWcc, WccData> {
  return {
    decode: (r) => ({ dir: readFh3(r), name: readName(r), wcc: {} as WccData }),
    run: ({ fs, ctx }, a) => {
      refuseReadOnly(ctx);
      checkName(fs, a.name, 'remove');
      guards.remove(fs, a.dir, a.name, ctx);
      a.wcc.before = wccBefore(fs, a.dir);
      if (op === 'remove') fs.remove(a.dir, a.name, ctx);
      else fs.rmdir(a.dir, a.name, ctx);
      a.wcc.after = tryAttr(fs, a.dir);
      return a.wcc;
    },
    encodeOk: writeWcc,
    encodeFail: failWcc((a) => a.dir),
  };
}

interface ReaddirArgs {
  dir: FileHandle;
  cookie: number;
  verifier: Uint8Array;
  dircount: number;
  maxcount: number;
}

interface ReaddirPage {
  dirAttrs: Attributes | undefined;
  verifier: Uint8Array;
  /** The encoded entries, each with its leading `true`. */
  entries: Uint8Array;
  eof: boolean;
}

/**
 * READDIR and READDIRPLUS: as many whole entries (and cookie groups) as fit both the client's
 * counts and the call's I/O bound; TOOSMALL when not even one does.
 */
function readdir(plus: boolean): Procedure<ReaddirArgs, ReaddirPage> {
  return {
    decode: (r) => {
      const dir = readFh3(r);
      const cookie = r.u64();
      const verifier = fixed8(r);
      const dircount = r.u32();
      const maxcount = plus ? r.u32() : dircount;
      return { dir, cookie, verifier, dircount, maxcount };
    },
    run: ({ fs, ctx }, { dir, cookie, verifier, dircount, maxcount }) => {
      const budget = Math.min(maxcount, callIoMax(fs, ctx)) - READDIR_REPLY_OVERHEAD;
      // Smallest entry is 24 bytes (READDIR) with a 1-byte name; ask for no more than fit.
      const want = Math.max(1, Math.min(MAX_READDIR_ENTRIES, Math.floor(budget / 24)));
      guards.list(fs, dir, ctx);
      const res = fs.readdir(dir, cookie, verifier, want);
      const dirAttrs = tryAttr(fs, dir);
      let used = 0;
      let dirUsed = 0;
      let n = 0;
      const attrs: (Attributes | undefined)[] = [];
      for (const e of res.entries) {
        const base = 4 + 8 + xdrLen(Buffer.byteLength(e.name)) + 8;
        let size = base;
        if (plus) {
          attrs.push(tryAttr(fs, e.handle));
          size += 4 + (attrs[n] ? FATTR3_SIZE : 0) + 4 + xdrLen(e.handle.length);
        }
        if (used + size > budget || (plus && dirUsed + base > dircount && n > 0)) break;
        used += size;
        dirUsed += base;
        n++;
      }
      n = wholeCookieGroups(res.entries, n);
      if (n === 0 && res.entries.length > 0) throw new NfsError(NfsStatus.TOOSMALL);
      const body = new XdrWriter(Math.min(used + 64, 64 * 1024));
      for (let k = 0; k < n; k++) {
        const e = res.entries[k];
        body.bool(true).u64(e.fileid).string(e.name).u64(e.cookie);
        if (plus) {
          writePostOpAttr(body, attrs[k]);
          body.bool(true).opaque(e.handle);
        }
      }
      const eof = res.eof && n === res.entries.length;
      return { dirAttrs, verifier: toVerf(res.verifier), entries: body.bytes(), eof };
    },
    encodeOk: (w, page) => {
      writePostOpAttr(w, page.dirAttrs);
      w.fixed(page.verifier);
      w.fixed(page.entries);
      w.bool(false).bool(page.eof);
    },
    encodeFail: failPostOp((a) => a.dir),
  };
}

/** Initial size of the reply writer reused by every call (it grows to the largest reply). */
const REPLY_WRITER_SIZE = 64 * 1024;

/** Every NFSv3 procedure, in RFC 1813's order. */
const NFS3 = new ProcedureTable((s) => s, REPLY_WRITER_SIZE)
  .withoutStatus(Nfs3Proc.NULL)
  .define(Nfs3Proc.GETATTR, {
    decode: readFh3,
    run: ({ fs }, fh) => fs.getattr(fh),
    encodeOk: writeFattr3,
  })
  .define(Nfs3Proc.SETATTR, {
    decode: (r) => {
      const fh = readFh3(r);
      const attrs = readSattr3(r);
      const guard = r.optional(readTime);
      return { fh, attrs, guard, wcc: {} as WccData };
    },
    run: ({ fs, ctx }, a) => {
      refuseReadOnly(ctx);
      const before = fs.getattr(a.fh);
      const permitted = guards.setattr(before, a.attrs, ctx);
      a.wcc.before = wccAttr(before);
      const { ctime } = before;
      if (a.guard && (a.guard.seconds !== ctime.seconds || a.guard.nseconds !== ctime.nseconds)) {
        throw new NfsError(NfsStatus.NOT_SYNC);
      }
      a.wcc.after = fs.setattr(a.fh, permitted, ctx);
      return a.wcc;
    },
    encodeOk: writeWcc,
    encodeFail: failWcc((a) => a.fh),
  })
  .define(Nfs3Proc.LOOKUP, {
    decode: readDirOp,
    run: ({ fs, ctx }, { dir, name }) => {
      checkName(fs, name, 'lookup');
      const checked = guards.lookup(fs, dir, ctx);
      const fh = fs.lookup(dir, name);
      const attrs = tryAttr(fs, fh);
      return { fh, attrs, dirAttrs: checked ?? tryAttr(fs, dir) };
    },
    encodeOk: (w, res) => {
      w.opaque(res.fh);
      writePostOpAttr(w, res.attrs);
      writePostOpAttr(w, res.dirAttrs);
    },
    encodeFail: failPostOp((a) => a.dir),
  })
  .define(Nfs3Proc.ACCESS, {
    decode: (r) => ({ fh: readFh3(r), requested: r.u32() }),
    run: ({ fs, ctx }, a) => {
      const attrs = fs.getattr(a.fh);
      return { attrs, access: accessFor(attrs, ctx, a.requested) };
    },
    encodeOk: (w, res) => {
      writePostOpAttr(w, res.attrs);
      w.u32(res.access);
    },
    encodeFail: failNoAttr,
  })
  .define(Nfs3Proc.READLINK, {
    decode: readFh3,
    run: ({ fs }, fh) => {
      const target = fs.readlink(fh);
      return { target, attrs: tryAttr(fs, fh) };
    },
    encodeOk: (w, res) => {
      writePostOpAttr(w, res.attrs);
      w.string(res.target);
    },
    encodeFail: failPostOp((fh) => fh),
  })
  .define(Nfs3Proc.READ, {
    decode: (r, { fs, ctx }) => {
      const fh = readFh3(r);
      const offset = r.u64();
      return { fh, offset, count: Math.min(r.u32(), callIoMax(fs, ctx)) };
    },
    run: ({ fs, ctx }, { fh, offset, count }) => {
      guards.read(fs, fh, ctx);
      const res = fs.read(fh, offset, count);
      return { res, attrs: tryAttr(fs, fh) };
    },
    encodeOk: (w, { res, attrs }) => {
      writePostOpAttr(w, attrs);
      w.u32(res.data.length).bool(res.eof).opaque(res.data);
    },
    encodeFail: failPostOp((a) => a.fh),
  })
  .define(Nfs3Proc.WRITE, {
    decode: (r) => {
      const fh = readFh3(r);
      const offset = r.u64();
      const count = r.u32();
      const stable = r.u32();
      const data = r.opaque(MAX_IO_SIZE);
      return { fh, offset, count, stable, data, wcc: {} as WccData };
    },
    run: ({ fs, ctx }, a) => {
      refuseReadOnly(ctx);
      if (a.stable > 2 || a.count > a.data.length) throw new NfsError(NfsStatus.INVAL);
      const before = tryAttr(fs, a.fh);
      guards.write(before, ctx);
      a.wcc.before = before && wccAttr(before);
      const data = a.data.subarray(0, a.count);
      const res = fs.write(a.fh, a.offset, data, STABLE_HOW[a.stable], ctx);
      guards.afterWrite(fs, a.fh, before, ctx);
      a.wcc.after = tryAttr(fs, a.fh);
      return { wcc: a.wcc, res, verf: toVerf(fs.writeVerifier()) };
    },
    encodeOk: (w, { wcc, res, verf }) => {
      writeWcc(w, wcc);
      w.u32(res.count).u32(STABLE_HOW.indexOf(res.committed)).fixed(verf);
    },
    encodeFail: failWcc((a) => a.fh),
  })
  .define(
    Nfs3Proc.CREATE,
    createLike(
      (r) => {
        const { dir, name } = readDirOp(r);
        const mode = r.u32();
        let how: CreateMode;
        if (mode === 0) how = { mode: 'unchecked', attributes: readSattr3(r) };
        else if (mode === 1) how = { mode: 'guarded', attributes: readSattr3(r) };
        // The backend keeps the verifier: copy it out of the call's buffer.
        else if (mode === 2) how = { mode: 'exclusive', verifier: Uint8Array.from(fixed8(r)) };
        else throw new RpcError({ kind: 'garbage_args' });
        return { dir, name, how, wcc: {} as WccData };
      },
      ({ fs, ctx }, { dir, name, how }) => {
        const given = how.mode === 'exclusive' ? {} : how.attributes;
        const permitted = guards.newObject(fs, dir, name, FileType.REG, given, ctx);
        const mode = how.mode === 'exclusive' ? how : { mode: how.mode, attributes: permitted };
        return fs.create(dir, name, mode, ctx);
      },
    ),
  )
  .define(
    Nfs3Proc.MKDIR,
    createLike(
      (r) => ({ dir: readFh3(r), name: readName(r), attrs: readSattr3(r), wcc: {} as WccData }),
      ({ fs, ctx }, { dir, name, attrs }) =>
        fs.mkdir(dir, name, guards.newObject(fs, dir, name, FileType.DIR, attrs, ctx), ctx),
    ),
  )
  .define(
    Nfs3Proc.SYMLINK,
    createLike(
      (r) => {
        const dir = readFh3(r);
        const name = readName(r);
        return { dir, name, attrs: readSattr3(r), target: r.string(MAX_PATH), wcc: {} as WccData };
      },
      ({ fs, ctx }, { dir, name, attrs, target }) => {
        if (target.length === 0 || target.includes('\0')) throw new NfsError(NfsStatus.INVAL);
        const permitted = guards.newObject(fs, dir, name, FileType.LNK, attrs, ctx);
        return fs.symlink(dir, name, target, permitted, ctx);
      },
    ),
  )
  .define(
    Nfs3Proc.MKNOD,
    createLike(
      (r) => {
        const { dir, name } = readDirOp(r);
        const type: FileType = r.u32();
        const special = type === FileType.CHR || type === FileType.BLK;
        const other = type === FileType.SOCK || type === FileType.FIFO;
        // Any other type has no more arguments and answers BADTYPE.
        const attrs = special || other ? readSattr3(r) : undefined;
        const rdev = special ? { major: r.u32(), minor: r.u32() } : { major: 0, minor: 0 };
        return { dir, name, type, attrs, rdev, wcc: {} as WccData };
      },
      ({ fs, ctx }, { dir, name, type, attrs, rdev }) => {
        if (attrs === undefined) throw new NfsError(NfsStatus.BADTYPE);
        const permitted = guards.newObject(fs, dir, name, type, attrs, ctx);
        return fs.mknod(dir, name, type, permitted, rdev, ctx);
      },
    ),
  )
  .define(Nfs3Proc.REMOVE, removeEntry('remove'))
  .define(Nfs3Proc.RMDIR, removeEntry('rmdir'))
  .define(Nfs3Proc.RENAME, {
    decode: (r) => {
      const from = readDirOp(r);
      const to = readDirOp(r);
      return { from, to, fromWcc: {} as WccData, toWcc: {} as WccData };
    },
    run: ({ fs, ctx }, { from, to, fromWcc, toWcc }) => {
      refuseReadOnly(ctx);
      checkName(fs, from.name, 'remove');
      checkName(fs, to.name, 'remove');
      guards.rename(fs, from, to, ctx);
      fromWcc.before = wccBefore(fs, from.dir);
      toWcc.before = wccBefore(fs, to.dir);
      fs.rename(from.dir, from.name, to.dir, to.name, ctx);
      fromWcc.after = tryAttr(fs, from.dir);
      toWcc.after = tryAttr(fs, to.dir);
      return { fromWcc, toWcc };
    },
    encodeOk: (w, { fromWcc, toWcc }) => {
      writeWcc(w, fromWcc);
      writeWcc(w, toWcc);
    },
    encodeFail: (w, { fs }, { from, to, fromWcc, toWcc }) => {
      writeFailedWcc(w, fs, fromWcc, from.dir);
      writeFailedWcc(w, fs, toWcc, to.dir);
    },
  })
  .define(Nfs3Proc.LINK, {
    decode: (r) => ({ fh: readFh3(r), dir: readFh3(r), name: readName(r), wcc: {} as WccData }),
    run: ({ fs, ctx }, { fh, dir, name, wcc }) => {
      refuseReadOnly(ctx);
      checkName(fs, name, 'create');
      guards.addEntry(fs, dir, ctx);
      wcc.before = wccBefore(fs, dir);
      fs.link(fh, dir, name, ctx);
      wcc.after = tryAttr(fs, dir);
      return { attrs: tryAttr(fs, fh), wcc };
    },
    encodeOk: (w, { attrs, wcc }) => {
      writePostOpAttr(w, attrs);
      writeWcc(w, wcc);
    },
    encodeFail: (w, { fs }, { fh, dir, wcc }) => {
      writePostOpAttr(w, tryAttr(fs, fh));
      writeFailedWcc(w, fs, wcc, dir);
    },
  })
  .define(Nfs3Proc.READDIR, readdir(false))
  .define(Nfs3Proc.READDIRPLUS, readdir(true))
  .define(Nfs3Proc.FSSTAT, {
    decode: readFh3,
    run: ({ fs }, fh) => {
      const s = fs.fsstat(fh);
      return { s, attrs: tryAttr(fs, fh) };
    },
    encodeOk: (w, { s, attrs }) => {
      writePostOpAttr(w, attrs);
      w.u64(s.totalBytes).u64(s.freeBytes).u64(s.availBytes);
      w.u64(s.totalFiles).u64(s.freeFiles).u64(s.availFiles).u32(s.invarsec);
    },
    encodeFail: failPostOp((fh) => fh),
  })
  .define(Nfs3Proc.FSINFO, {
    decode: readFh3,
    run: ({ fs }, fh) => ({ attrs: fs.getattr(fh), l: fs.limits() }),
    encodeOk: (w, { attrs, l }, { fs, ctx }) => {
      writePostOpAttr(w, attrs);
      const max = callIoMax(fs, ctx);
      const pref = Math.min(PREFERRED_IO_SIZE, max);
      w.u32(max).u32(pref).u32(4096);
      w.u32(max).u32(pref).u32(4096);
      w.u32(Math.min(PREFERRED_READDIR_SIZE, max)).u64(l.maxFileSize);
      w.u32(l.timeDelta.seconds).u32(l.timeDelta.nseconds);
      // FSF3_LINK, FSF3_SYMLINK, FSF3_HOMOGENEOUS, FSF3_CANSETTIME
      w.u32((l.supportsHardLinks ? 1 : 0) | (l.supportsSymlinks ? 2 : 0) | 8 | 16);
    },
    encodeFail: failNoAttr,
  })
  .define(Nfs3Proc.PATHCONF, {
    decode: readFh3,
    run: ({ fs }, fh) => ({ attrs: fs.getattr(fh), l: fs.limits() }),
    encodeOk: (w, { attrs, l }) => {
      writePostOpAttr(w, attrs);
      w.u32(l.maxLinks).u32(l.maxNameLength);
      // no_trunc, chown_restricted, case_insensitive, case_preserving
      w.bool(true).bool(true).bool(false).bool(true);
    },
    encodeFail: failNoAttr,
  })
  .define(Nfs3Proc.COMMIT, {
    decode: (r) => ({ fh: readFh3(r), offset: r.u64(), count: r.u32() }),
    run: ({ fs }, { fh, offset, count }) => {
      const before = wccBefore(fs, fh);
      const verf = toVerf(fs.commit(fh, offset, count));
      return { wcc: { before, after: tryAttr(fs, fh) }, verf };
    },
    encodeOk: (w, { wcc, verf }) => {
      writeWcc(w, wcc);
      w.fixed(verf);
    },
    // A failed COMMIT reports the file's attributes after the failure only.
    encodeFail: (w, { fs }, { fh }) => writeWcc(w, { after: tryAttr(fs, fh) }),
  });

/**
 * Executes one NFSv3 call. Returns the encoded result (no RPC header). Throws RpcError for
 * PROC_UNAVAIL and GARBAGE_ARGS; every file-system failure is an NFS status inside the result.
 */
export function executeNfs3(
  fs: FileSystem,
  procedure: number,
  args: Uint8Array,
  ctx: NfsCallContext,
): Uint8Array {
  return NFS3.execute(fs, procedure, args, ctx);
}
