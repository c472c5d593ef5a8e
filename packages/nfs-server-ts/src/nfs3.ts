/**
 * The NFSv3 procedure layer (RFC 1813): decode the arguments, call the backend, encode the
 * result. No sockets and no clock: given the same backend state, arguments and context it returns
 * the same bytes, which is what lets BFS replicas execute calls in agreed order.
 */
import {
  type Attributes,
  type CallContext,
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
import { RpcError, asRpcError } from './rpc';
import { XdrReader, XdrWriter } from './xdr';

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

/** The context of one NFS call: the backend's CallContext plus export policy. */
export interface NfsCallContext extends CallContext {
  /** The export is read-only: mutating procedures answer ROFS. */
  readOnly?: boolean;
  /**
   * Check the caller's permissions from the objects' mode, owner and group before calling the
   * backend (ACCES/PERM) with the rules of permissions.ts, as knfsd does, including its owner
   * override for READ and WRITE, and drop set-id bits where POSIX says. Off by default: a
   * backend may enforce its own. The BFS replicas always check.
   */
  checkPermissions?: boolean;
  /**
   * The reply travels in one UDP datagram: READ counts, READDIR replies and FSINFO's sizes are
   * clamped to `UDP_MAX_IO_SIZE`, so a huge count gets a short read rather than a reply too
   * large to send.
   */
  datagram?: boolean;
}

export const STABLE_HOW: readonly StableHow[] = ['unstable', 'data_sync', 'file_sync'];

export function statusOf(e: unknown): NfsStatus {
  return e instanceof NfsError ? e.status : NfsStatus.SERVERFAULT;
}

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

function readDirOp(r: XdrReader): { dir: FileHandle; name: string } {
  return { dir: readFh3(r), name: readName(r) };
}

function rofs(ctx: NfsCallContext): void {
  if (ctx.readOnly) throw new NfsError(NfsStatus.ROFS);
}

/** Writes "status, then resok or resfail" where both arms come from closures. */
export function withStatus(
  w: XdrWriter,
  ok: () => (w: XdrWriter) => void,
  fail: (w: XdrWriter) => void,
): void {
  let body: (w: XdrWriter) => void;
  try {
    body = ok();
  } catch (e) {
    w.u32(statusOf(e));
    fail(w);
    return;
  }
  w.u32(NfsStatus.OK);
  body(w);
}

/** Result of a create-like call: post_op_fh3, post_op_attr, dir wcc. */
function createLike(
  fs: FileSystem,
  w: XdrWriter,
  dir: FileHandle,
  name: string,
  ctx: NfsCallContext,
  make: () => FileHandle,
): void {
  const wcc: WccData = {};
  withStatus(
    w,
    () => {
      rofs(ctx);
      checkName(fs, name, 'create');
      wcc.before = wccBefore(fs, dir);
      const fh = make();
      const attrs = tryAttr(fs, fh);
      wcc.after = tryAttr(fs, dir);
      return (w) => {
        w.bool(true).opaque(fh);
        writePostOpAttr(w, attrs);
        writeWcc(w, wcc);
      };
    },
    (w) => {
      if (!wcc.after) wcc.after = tryAttr(fs, dir);
      writeWcc(w, wcc);
    },
  );
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

function readdir(
  fs: FileSystem,
  r: XdrReader,
  w: XdrWriter,
  plus: boolean,
  ctx: NfsCallContext,
): void {
  const dir = readFh3(r);
  const cookie = r.u64();
  const verifier = fixed8(r);
  const dircount = r.u32();
  const maxcount = plus ? r.u32() : dircount;
  r.end();
  withStatus(
    w,
    () => {
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
      return (w) => {
        writePostOpAttr(w, dirAttrs);
        w.fixed(toVerf(res.verifier));
        w.fixed(body.bytes());
        w.bool(false).bool(eof);
      };
    },
    (w) => writePostOpAttr(w, tryAttr(fs, dir)),
  );
}

/** Initial size of the reply writer reused by every call (it grows to the largest reply). */
const REPLY_WRITER_SIZE = 64 * 1024;
const sharedWriter = new XdrWriter(REPLY_WRITER_SIZE);

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
  const r = new XdrReader(args);
  // Calls run synchronously one at a time, so one writer serves them all.
  const w = sharedWriter.reset();
  try {
    dispatch(fs, procedure, r, w, ctx);
  } catch (e) {
    throw asRpcError(e);
  }
  return w.bytes();
}

function dispatch(
  fs: FileSystem,
  procedure: number,
  r: XdrReader,
  w: XdrWriter,
  ctx: NfsCallContext,
): void {
  switch (procedure) {
    case Nfs3Proc.NULL:
      r.end();
      return;
    case Nfs3Proc.GETATTR: {
      const fh = readFh3(r);
      r.end();
      withStatus(
        w,
        () => {
          const a = fs.getattr(fh);
          return (w) => writeFattr3(w, a);
        },
        () => {},
      );
      return;
    }
    case Nfs3Proc.SETATTR: {
      const fh = readFh3(r);
      const attrs = readSattr3(r);
      const guard = r.optional(readTime);
      r.end();
      const wcc: WccData = {};
      withStatus(
        w,
        () => {
          rofs(ctx);
          const before = fs.getattr(fh);
          const permitted = guards.setattr(before, attrs, ctx);
          wcc.before = { size: before.size, mtime: before.mtime, ctime: before.ctime };
          if (
            guard &&
            (guard.seconds !== before.ctime.seconds || guard.nseconds !== before.ctime.nseconds)
          ) {
            throw new NfsError(NfsStatus.NOT_SYNC);
          }
          wcc.after = fs.setattr(fh, permitted, ctx);
          return (w) => writeWcc(w, wcc);
        },
        (w) => {
          wcc.after = tryAttr(fs, fh);
          writeWcc(w, wcc);
        },
      );
      return;
    }
    case Nfs3Proc.LOOKUP: {
      const { dir, name } = readDirOp(r);
      r.end();
      withStatus(
        w,
        () => {
          checkName(fs, name, 'lookup');
          const checked = guards.lookup(fs, dir, ctx);
          const fh = fs.lookup(dir, name);
          const a = tryAttr(fs, fh);
          const d = checked ?? tryAttr(fs, dir);
          return (w) => {
            w.opaque(fh);
            writePostOpAttr(w, a);
            writePostOpAttr(w, d);
          };
        },
        (w) => writePostOpAttr(w, tryAttr(fs, dir)),
      );
      return;
    }
    case Nfs3Proc.ACCESS: {
      const fh = readFh3(r);
      const requested = r.u32();
      r.end();
      withStatus(
        w,
        () => {
          const a = fs.getattr(fh);
          return (w) => {
            writePostOpAttr(w, a);
            w.u32(accessFor(a, ctx, requested));
          };
        },
        (w) => writePostOpAttr(w, undefined),
      );
      return;
    }
    case Nfs3Proc.READLINK: {
      const fh = readFh3(r);
      r.end();
      withStatus(
        w,
        () => {
          const target = fs.readlink(fh);
          const a = tryAttr(fs, fh);
          return (w) => {
            writePostOpAttr(w, a);
            w.string(target);
          };
        },
        (w) => writePostOpAttr(w, tryAttr(fs, fh)),
      );
      return;
    }
    case Nfs3Proc.READ: {
      const fh = readFh3(r);
      const offset = r.u64();
      const count = Math.min(r.u32(), callIoMax(fs, ctx));
      r.end();
      withStatus(
        w,
        () => {
          guards.read(fs, fh, ctx);
          const res = fs.read(fh, offset, count);
          const a = tryAttr(fs, fh);
          return (w) => {
            writePostOpAttr(w, a);
            w.u32(res.data.length).bool(res.eof).opaque(res.data);
          };
        },
        (w) => writePostOpAttr(w, tryAttr(fs, fh)),
      );
      return;
    }
    case Nfs3Proc.WRITE: {
      const fh = readFh3(r);
      const offset = r.u64();
      const count = r.u32();
      const stable = r.u32();
      const data = r.opaque(MAX_IO_SIZE);
      r.end();
      const wcc: WccData = {};
      withStatus(
        w,
        () => {
          rofs(ctx);
          if (stable > 2 || count > data.length) throw new NfsError(NfsStatus.INVAL);
          const before = tryAttr(fs, fh);
          guards.write(before, ctx);
          wcc.before = before && { size: before.size, mtime: before.mtime, ctime: before.ctime };
          const res = fs.write(fh, offset, data.subarray(0, count), STABLE_HOW[stable], ctx);
          guards.afterWrite(fs, fh, before, ctx);
          wcc.after = tryAttr(fs, fh);
          const verf = toVerf(fs.writeVerifier());
          return (w) => {
            writeWcc(w, wcc);
            w.u32(res.count).u32(STABLE_HOW.indexOf(res.committed)).fixed(verf);
          };
        },
        (w) => {
          if (!wcc.after) wcc.after = tryAttr(fs, fh);
          writeWcc(w, wcc);
        },
      );
      return;
    }
    case Nfs3Proc.CREATE: {
      const { dir, name } = readDirOp(r);
      const mode = r.u32();
      let make: () => FileHandle;
      if (mode === 0 || mode === 1) {
        const attributes = readSattr3(r);
        const how = mode === 0 ? ('unchecked' as const) : ('guarded' as const);
        make = () => {
          const permitted = guards.newObject(fs, dir, name, FileType.REG, attributes, ctx);
          return fs.create(dir, name, { mode: how, attributes: permitted }, ctx);
        };
      } else if (mode === 2) {
        const verifier = Uint8Array.from(fixed8(r));
        make = () => {
          guards.newObject(fs, dir, name, FileType.REG, {}, ctx);
          return fs.create(dir, name, { mode: 'exclusive', verifier }, ctx);
        };
      } else throw new RpcError({ kind: 'garbage_args' });
      r.end();
      createLike(fs, w, dir, name, ctx, make);
      return;
    }
    case Nfs3Proc.MKDIR: {
      const { dir, name } = readDirOp(r);
      const attrs = readSattr3(r);
      r.end();
      createLike(fs, w, dir, name, ctx, () =>
        fs.mkdir(dir, name, guards.newObject(fs, dir, name, FileType.DIR, attrs, ctx), ctx),
      );
      return;
    }
    case Nfs3Proc.SYMLINK: {
      const { dir, name } = readDirOp(r);
      const attrs = readSattr3(r);
      const target = r.string(MAX_PATH);
      r.end();
      createLike(fs, w, dir, name, ctx, () => {
        if (target.length === 0 || target.includes('\0')) throw new NfsError(NfsStatus.INVAL);
        const permitted = guards.newObject(fs, dir, name, FileType.LNK, attrs, ctx);
        return fs.symlink(dir, name, target, permitted, ctx);
      });
      return;
    }
    case Nfs3Proc.MKNOD: {
      const { dir, name } = readDirOp(r);
      const type = r.u32();
      let make: () => FileHandle;
      if (type === FileType.CHR || type === FileType.BLK) {
        const attrs = readSattr3(r);
        const rdev = { major: r.u32(), minor: r.u32() };
        make = () =>
          fs.mknod(dir, name, type, guards.newObject(fs, dir, name, type, attrs, ctx), rdev, ctx);
      } else if (type === FileType.SOCK || type === FileType.FIFO) {
        const attrs = readSattr3(r);
        make = () => {
          const permitted = guards.newObject(fs, dir, name, type, attrs, ctx);
          return fs.mknod(dir, name, type, permitted, { major: 0, minor: 0 }, ctx);
        };
      } else {
        make = () => {
          throw new NfsError(NfsStatus.BADTYPE);
        };
      }
      r.end();
      createLike(fs, w, dir, name, ctx, make);
      return;
    }
    case Nfs3Proc.REMOVE:
    case Nfs3Proc.RMDIR: {
      const { dir, name } = readDirOp(r);
      r.end();
      const wcc: WccData = {};
      withStatus(
        w,
        () => {
          rofs(ctx);
          checkName(fs, name, 'remove');
          guards.remove(fs, dir, name, ctx);
          wcc.before = wccBefore(fs, dir);
          if (procedure === Nfs3Proc.REMOVE) fs.remove(dir, name, ctx);
          else fs.rmdir(dir, name, ctx);
          wcc.after = tryAttr(fs, dir);
          return (w) => writeWcc(w, wcc);
        },
        (w) => {
          if (!wcc.after) wcc.after = tryAttr(fs, dir);
          writeWcc(w, wcc);
        },
      );
      return;
    }
    case Nfs3Proc.RENAME: {
      const from = readDirOp(r);
      const to = readDirOp(r);
      r.end();
      const fromWcc: WccData = {};
      const toWcc: WccData = {};
      const finish = () => {
        fromWcc.after = tryAttr(fs, from.dir);
        toWcc.after = tryAttr(fs, to.dir);
      };
      withStatus(
        w,
        () => {
          rofs(ctx);
          checkName(fs, from.name, 'remove');
          checkName(fs, to.name, 'remove');
          guards.rename(fs, from, to, ctx);
          fromWcc.before = wccBefore(fs, from.dir);
          toWcc.before = wccBefore(fs, to.dir);
          fs.rename(from.dir, from.name, to.dir, to.name, ctx);
          finish();
          return (w) => {
            writeWcc(w, fromWcc);
            writeWcc(w, toWcc);
          };
        },
        (w) => {
          finish();
          writeWcc(w, fromWcc);
          writeWcc(w, toWcc);
        },
      );
      return;
    }
    case Nfs3Proc.LINK: {
      const fh = readFh3(r);
      const { dir, name } = readDirOp(r);
      r.end();
      const wcc: WccData = {};
      withStatus(
        w,
        () => {
          rofs(ctx);
          checkName(fs, name, 'create');
          guards.addEntry(fs, dir, ctx);
          wcc.before = wccBefore(fs, dir);
          fs.link(fh, dir, name, ctx);
          wcc.after = tryAttr(fs, dir);
          const a = tryAttr(fs, fh);
          return (w) => {
            writePostOpAttr(w, a);
            writeWcc(w, wcc);
          };
        },
        (w) => {
          writePostOpAttr(w, tryAttr(fs, fh));
          if (!wcc.after) wcc.after = tryAttr(fs, dir);
          writeWcc(w, wcc);
        },
      );
      return;
    }
    case Nfs3Proc.READDIR:
      readdir(fs, r, w, false, ctx);
      return;
    case Nfs3Proc.READDIRPLUS:
      readdir(fs, r, w, true, ctx);
      return;
    case Nfs3Proc.FSSTAT: {
      const fh = readFh3(r);
      r.end();
      withStatus(
        w,
        () => {
          const s = fs.fsstat(fh);
          const a = tryAttr(fs, fh);
          return (w) => {
            writePostOpAttr(w, a);
            w.u64(s.totalBytes).u64(s.freeBytes).u64(s.availBytes);
            w.u64(s.totalFiles).u64(s.freeFiles).u64(s.availFiles).u32(s.invarsec);
          };
        },
        (w) => writePostOpAttr(w, tryAttr(fs, fh)),
      );
      return;
    }
    case Nfs3Proc.FSINFO: {
      const fh = readFh3(r);
      r.end();
      withStatus(
        w,
        () => {
          const a = fs.getattr(fh);
          const l = fs.limits();
          return (w) => {
            writePostOpAttr(w, a);
            const max = callIoMax(fs, ctx);
            const pref = Math.min(PREFERRED_IO_SIZE, max);
            w.u32(max).u32(pref).u32(4096);
            w.u32(max).u32(pref).u32(4096);
            w.u32(Math.min(PREFERRED_READDIR_SIZE, max)).u64(l.maxFileSize);
            w.u32(l.timeDelta.seconds).u32(l.timeDelta.nseconds);
            // FSF3_LINK, FSF3_SYMLINK, FSF3_HOMOGENEOUS, FSF3_CANSETTIME
            w.u32((l.supportsHardLinks ? 1 : 0) | (l.supportsSymlinks ? 2 : 0) | 8 | 16);
          };
        },
        (w) => writePostOpAttr(w, undefined),
      );
      return;
    }
    case Nfs3Proc.PATHCONF: {
      const fh = readFh3(r);
      r.end();
      withStatus(
        w,
        () => {
          const a = fs.getattr(fh);
          const l = fs.limits();
          return (w) => {
            writePostOpAttr(w, a);
            w.u32(l.maxLinks).u32(l.maxNameLength);
            // no_trunc, chown_restricted, case_insensitive, case_preserving
            w.bool(true).bool(true).bool(false).bool(true);
          };
        },
        (w) => writePostOpAttr(w, undefined),
      );
      return;
    }
    case Nfs3Proc.COMMIT: {
      const fh = readFh3(r);
      const offset = r.u64();
      const count = r.u32();
      r.end();
      const wcc: WccData = {};
      withStatus(
        w,
        () => {
          wcc.before = wccBefore(fs, fh);
          const verf = toVerf(fs.commit(fh, offset, count));
          wcc.after = tryAttr(fs, fh);
          return (w) => {
            writeWcc(w, wcc);
            w.fixed(verf);
          };
        },
        (w) => writeWcc(w, { after: tryAttr(fs, fh) }),
      );
      return;
    }
    default:
      throw new RpcError({ kind: 'proc_unavail' });
  }
}
