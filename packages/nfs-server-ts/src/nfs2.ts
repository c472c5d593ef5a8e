/** The NFSv2 procedure layer (RFC 1094), mapped onto the NFSv3-shaped FileSystem. */
import {
  type Attributes,
  type FileHandle,
  type FileSystem,
  NfsError,
  NfsStatus,
  FileType,
  type SetAttributes,
} from './filesystem';
import { MAX_PATH } from './nfs3-xdr';
import * as guards from './guards';
import {
  type NfsCallContext,
  UDP_MAX_IO_SIZE,
  checkName,
  statusOf,
  tryAttr,
  wholeCookieGroups,
} from './nfs3';
import { RpcError, asRpcError } from './rpc';
import { XdrError, XdrReader, XdrWriter } from './xdr';

/** FHSIZE: NFSv2 handles are exactly 32 opaque bytes. */
export const NFS2_FHSIZE = 32;
/** Longest backend handle NFSv2 can carry: the last byte of the 32 records the length. */
export const NFS2_MAX_BACKEND_HANDLE = NFS2_FHSIZE - 1;

/** Pads a backend handle to NFSv2's fixed 32 bytes, recording its length in the last byte. */
export function encodeV2Handle(fh: FileHandle): Uint8Array {
  if (fh.length > NFS2_MAX_BACKEND_HANDLE)
    throw new NfsError(NfsStatus.SERVERFAULT, 'handle too long for NFSv2');
  const out = new Uint8Array(NFS2_FHSIZE);
  out.set(fh);
  out[NFS2_FHSIZE - 1] = fh.length;
  return out;
}

/** Recovers the backend handle from an NFSv2 handle; BADHANDLE when it cannot be one of ours. */
export function decodeV2Handle(fh: Uint8Array): FileHandle {
  const n = fh[NFS2_FHSIZE - 1];
  if (fh.length !== NFS2_FHSIZE || n > NFS2_MAX_BACKEND_HANDLE)
    throw new NfsError(NfsStatus.BADHANDLE);
  for (let i = n; i < NFS2_FHSIZE - 1; i++)
    if (fh[i] !== 0) throw new NfsError(NfsStatus.BADHANDLE);
  return fh.slice(0, n);
}

/** NFS_MAXDATA: largest READ/WRITE payload in NFSv2. */
export const NFS2_MAXDATA = 8192;
/** NFS_MAXNAMLEN and NFS_MAXPATHLEN. */
export const NFS2_MAXNAMLEN = 255;
/** Block size reported in STATFS and fattr. */
const NFS2_BLOCK = 4096;

export enum Nfs2Proc {
  NULL = 0,
  GETATTR = 1,
  SETATTR = 2,
  ROOT = 3,
  LOOKUP = 4,
  READLINK = 5,
  READ = 6,
  WRITECACHE = 7,
  WRITE = 8,
  CREATE = 9,
  REMOVE = 10,
  RENAME = 11,
  LINK = 12,
  SYMLINK = 13,
  MKDIR = 14,
  RMDIR = 15,
  READDIR = 16,
  STATFS = 17,
}

export const NFS2_MUTATING: ReadonlySet<number> = new Set([
  Nfs2Proc.SETATTR,
  Nfs2Proc.WRITE,
  Nfs2Proc.CREATE,
  Nfs2Proc.REMOVE,
  Nfs2Proc.RENAME,
  Nfs2Proc.LINK,
  Nfs2Proc.SYMLINK,
  Nfs2Proc.MKDIR,
  Nfs2Proc.RMDIR,
]);

/** ftype (RFC 1094 2.3.2), with Linux's NFSOCK and NFFIFO for the types v2 never named. */
const V2_TYPE: Record<FileType, number> = {
  [FileType.REG]: 1,
  [FileType.DIR]: 2,
  [FileType.BLK]: 3,
  [FileType.CHR]: 4,
  [FileType.LNK]: 5,
  [FileType.SOCK]: 6,
  [FileType.FIFO]: 8,
};
/** S_IFMT bits, which NFSv2 puts in fattr.mode and which CREATE uses to make devices. */
const S_IFMT = 0o170000;
const IFMT: Record<FileType, number> = {
  [FileType.REG]: 0o100000,
  [FileType.DIR]: 0o040000,
  [FileType.BLK]: 0o060000,
  [FileType.CHR]: 0o020000,
  [FileType.LNK]: 0o120000,
  [FileType.SOCK]: 0o140000,
  [FileType.FIFO]: 0o010000,
};
const U32_MAX = 0xffffffff;

/** nfsstat3 to NFSv2's nfsstat: errno-valued codes carry over, v3-only ones become IO/STALE. */
export function v2Status(s: number): number {
  if (s === 10001) return 70; // BADHANDLE: the closest v2 has is STALE
  return s < 100 ? s : 5;
}

function writeFattr2(w: XdrWriter, a: Attributes): void {
  w.u32(V2_TYPE[a.type] ?? 0)
    .u32(IFMT[a.type] | (a.mode & 0o7777))
    .u32(a.nlink);
  w.u32(a.uid).u32(a.gid).u32(Math.min(a.size, U32_MAX)).u32(NFS2_BLOCK);
  w.u32(((a.rdev.major & 0xfff) << 8) | (a.rdev.minor & 0xff) | ((a.rdev.minor & ~0xff) << 12));
  w.u32(Math.min(Math.ceil(a.used / 512), U32_MAX))
    .u32(a.fsid)
    .u32(a.fileid);
  for (const t of [a.atime, a.mtime, a.ctime]) w.u32(t.seconds).u32(Math.floor(t.nseconds / 1000));
}

/** Decoded sattr plus the file type bits of its mode (CREATE uses them to make devices). */
function readSattr2(r: XdrReader): { attrs: SetAttributes; ifmt: number } {
  const mode = r.u32();
  const uid = r.u32();
  const gid = r.u32();
  const size = r.u32();
  const times: (SetAttributes['atime'] | undefined)[] = [];
  for (let k = 0; k < 2; k++) {
    const sec = r.u32();
    const usec = r.u32();
    // Linux clients send usec 1000000 to mean "the server's time".
    if (sec === U32_MAX && usec === U32_MAX) times.push(undefined);
    else if (usec === 1_000_000) times.push('server');
    else if (usec >= 1_000_000) throw new XdrError(`bad useconds ${usec}`);
    else times.push({ seconds: sec, nseconds: usec * 1000 });
  }
  const attrs: SetAttributes = {};
  if (mode !== U32_MAX) attrs.mode = mode & 0o7777;
  if (uid !== U32_MAX) attrs.uid = uid;
  if (gid !== U32_MAX) attrs.gid = gid;
  if (size !== U32_MAX) attrs.size = size;
  if (times[0] !== undefined) attrs.atime = times[0];
  if (times[1] !== undefined) attrs.mtime = times[1];
  return { attrs, ifmt: mode === U32_MAX ? 0 : mode & S_IFMT };
}

function readFh2(r: XdrReader): Uint8Array {
  return r.fixed(NFS2_FHSIZE);
}

function readDirOp2(r: XdrReader): { dir: Uint8Array; name: string } {
  return { dir: readFh2(r), name: r.string(NFS2_MAXNAMLEN) };
}

/** Writes a v2 status then the OK body; failures carry no body in NFSv2. */
function status2(w: XdrWriter, ok: () => (w: XdrWriter) => void): void {
  let body: (w: XdrWriter) => void;
  try {
    body = ok();
  } catch (e) {
    w.u32(v2Status(statusOf(e)));
    return;
  }
  w.u32(0);
  body(w);
}

function rofs(ctx: NfsCallContext): void {
  if (ctx.readOnly) throw new NfsError(NfsStatus.ROFS);
}

const sharedWriter2 = new XdrWriter(16 * 1024);

/** Executes one NFSv2 call; same contract as executeNfs3. */
export function executeNfs2(
  fs: FileSystem,
  procedure: number,
  args: Uint8Array,
  ctx: NfsCallContext,
): Uint8Array {
  const r = new XdrReader(args);
  // Calls run synchronously one at a time, so one writer serves them all.
  const w = sharedWriter2.reset();
  try {
    dispatch2(fs, procedure, r, w, ctx);
  } catch (e) {
    throw asRpcError(e);
  }
  return w.bytes();
}

function dispatch2(
  fs: FileSystem,
  procedure: number,
  r: XdrReader,
  w: XdrWriter,
  ctx: NfsCallContext,
): void {
  const attrstat = (fh: FileHandle) => {
    const a = fs.getattr(fh);
    return (w: XdrWriter) => writeFattr2(w, a);
  };
  const diropres = (fh: FileHandle) => {
    const enc = encodeV2Handle(fh);
    const a = fs.getattr(fh);
    return (w: XdrWriter) => {
      w.fixed(enc);
      writeFattr2(w, a);
    };
  };
  const none = () => () => {};
  switch (procedure) {
    case Nfs2Proc.NULL:
    case Nfs2Proc.ROOT:
    case Nfs2Proc.WRITECACHE:
      // ROOT and WRITECACHE are obsolete; RFC 1094 defines them to do nothing.
      r.end();
      return;
    case Nfs2Proc.GETATTR: {
      const fh = readFh2(r);
      r.end();
      status2(w, () => attrstat(decodeV2Handle(fh)));
      return;
    }
    case Nfs2Proc.SETATTR: {
      const raw = readFh2(r);
      const { attrs } = readSattr2(r);
      r.end();
      status2(w, () => {
        rofs(ctx);
        const fh = decodeV2Handle(raw);
        const a = fs.setattr(fh, guards.setattr(fs.getattr(fh), attrs, ctx), ctx);
        return (w) => writeFattr2(w, a);
      });
      return;
    }
    case Nfs2Proc.LOOKUP: {
      const { dir, name } = readDirOp2(r);
      r.end();
      status2(w, () => {
        checkName(fs, name, 'lookup');
        const d = decodeV2Handle(dir);
        guards.lookup(fs, d, ctx);
        return diropres(fs.lookup(d, name));
      });
      return;
    }
    case Nfs2Proc.READLINK: {
      const fh = readFh2(r);
      r.end();
      status2(w, () => {
        const target = fs.readlink(decodeV2Handle(fh));
        return (w) => w.string(target);
      });
      return;
    }
    case Nfs2Proc.READ: {
      const raw = readFh2(r);
      const offset = r.u32();
      const count = Math.min(r.u32(), NFS2_MAXDATA);
      r.u32(); // totalcount: unused, as RFC 1094 says
      r.end();
      status2(w, () => {
        const fh = decodeV2Handle(raw);
        guards.read(fs, fh, ctx);
        const res = fs.read(fh, offset, count);
        const a = fs.getattr(fh);
        return (w) => {
          writeFattr2(w, a);
          w.opaque(res.data);
        };
      });
      return;
    }
    case Nfs2Proc.WRITE: {
      const raw = readFh2(r);
      r.u32(); // beginoffset: unused
      const offset = r.u32();
      r.u32(); // totalcount: unused
      const data = r.opaque(NFS2_MAXDATA);
      r.end();
      status2(w, () => {
        rofs(ctx);
        const fh = decodeV2Handle(raw);
        const before = ctx.checkPermissions ? tryAttr(fs, fh) : undefined;
        guards.write(before, ctx);
        // NFSv2 writes are synchronous by definition.
        fs.write(fh, offset, data, 'file_sync', ctx);
        guards.afterWrite(fs, fh, before, ctx);
        return attrstat(fh);
      });
      return;
    }
    case Nfs2Proc.CREATE: {
      const { dir, name } = readDirOp2(r);
      const { attrs, ifmt } = readSattr2(r);
      r.end();
      status2(w, () => {
        rofs(ctx);
        checkName(fs, name, 'create');
        const d = decodeV2Handle(dir);
        const type = Object.entries(IFMT).find(([, bits]) => bits === ifmt)?.[0];
        const t = type === undefined ? FileType.REG : (Number(type) as FileType);
        if (t === FileType.LNK) throw new NfsError(NfsStatus.INVAL);
        // Linux's convention: a device's number travels in the size field.
        const device = t !== FileType.REG && t !== FileType.DIR;
        const given = device ? { ...attrs, size: undefined } : attrs;
        const permitted = guards.newObject(fs, d, name, t, given, ctx);
        if (t === FileType.REG) {
          return diropres(fs.create(d, name, { mode: 'unchecked', attributes: permitted }, ctx));
        }
        if (t === FileType.DIR) return diropres(fs.mkdir(d, name, permitted, ctx));
        const dev = attrs.size ?? 0;
        const rest = permitted;
        const rdev = { major: (dev >>> 8) & 0xfff, minor: (dev & 0xff) | ((dev >>> 12) & 0xfff00) };
        return diropres(fs.mknod(d, name, t, rest, rdev, ctx));
      });
      return;
    }
    case Nfs2Proc.REMOVE:
    case Nfs2Proc.RMDIR: {
      const { dir, name } = readDirOp2(r);
      r.end();
      status2(w, () => {
        rofs(ctx);
        checkName(fs, name, 'remove');
        const d = decodeV2Handle(dir);
        guards.remove(fs, d, name, ctx);
        if (procedure === Nfs2Proc.REMOVE) fs.remove(d, name, ctx);
        else fs.rmdir(d, name, ctx);
        return none();
      });
      return;
    }
    case Nfs2Proc.RENAME: {
      const from = readDirOp2(r);
      const to = readDirOp2(r);
      r.end();
      status2(w, () => {
        rofs(ctx);
        checkName(fs, from.name, 'remove');
        checkName(fs, to.name, 'remove');
        const fromDir = decodeV2Handle(from.dir);
        const toDir = decodeV2Handle(to.dir);
        guards.rename(fs, { dir: fromDir, name: from.name }, { dir: toDir, name: to.name }, ctx);
        fs.rename(fromDir, from.name, toDir, to.name, ctx);
        return none();
      });
      return;
    }
    case Nfs2Proc.LINK: {
      const fh = readFh2(r);
      const { dir, name } = readDirOp2(r);
      r.end();
      status2(w, () => {
        rofs(ctx);
        checkName(fs, name, 'create');
        const d = decodeV2Handle(dir);
        guards.addEntry(fs, d, ctx);
        fs.link(decodeV2Handle(fh), d, name, ctx);
        return none();
      });
      return;
    }
    case Nfs2Proc.SYMLINK: {
      const { dir, name } = readDirOp2(r);
      const target = r.string(MAX_PATH);
      const { attrs } = readSattr2(r);
      r.end();
      status2(w, () => {
        rofs(ctx);
        checkName(fs, name, 'create');
        if (target.length === 0 || target.includes('\0')) throw new NfsError(NfsStatus.INVAL);
        const d = decodeV2Handle(dir);
        fs.symlink(d, name, target, guards.newObject(fs, d, name, FileType.LNK, attrs, ctx), ctx);
        return none();
      });
      return;
    }
    case Nfs2Proc.MKDIR: {
      const { dir, name } = readDirOp2(r);
      const { attrs } = readSattr2(r);
      r.end();
      status2(w, () => {
        rofs(ctx);
        checkName(fs, name, 'create');
        const d = decodeV2Handle(dir);
        return diropres(
          fs.mkdir(d, name, guards.newObject(fs, d, name, FileType.DIR, attrs, ctx), ctx),
        );
      });
      return;
    }
    case Nfs2Proc.READDIR: {
      const raw = readFh2(r);
      const cookie = r.u32();
      const count = Math.min(r.u32(), ctx.datagram ? UDP_MAX_IO_SIZE : NFS2_READDIR_MAX);
      r.end();
      status2(w, () => {
        const dir = decodeV2Handle(raw);
        const budget = count - 12;
        const want = Math.max(1, Math.min(1024, Math.floor(budget / 16)));
        guards.list(fs, dir, ctx);
        const res = fs.readdir(dir, cookie, new Uint8Array(8), want);
        let used = 0;
        let n = 0;
        for (const e of res.entries) {
          if (e.cookie > U32_MAX) throw new NfsError(NfsStatus.IO, 'cookie beyond NFSv2 range');
          const nameLen = Buffer.byteLength(e.name);
          const size = 4 + 4 + 4 + nameLen + ((4 - (nameLen % 4)) % 4) + 4;
          if (used + size > budget) break;
          used += size;
          n++;
        }
        n = wholeCookieGroups(res.entries, n);
        if (n === 0 && res.entries.length > 0) throw new NfsError(NfsStatus.IO, 'count too small');
        const body = new XdrWriter(used + 64);
        for (let k = 0; k < n; k++) {
          const e = res.entries[k];
          body.bool(true).u32(e.fileid).string(e.name).u32(e.cookie);
        }
        const eof = res.eof && n === res.entries.length;
        return (w) => {
          w.fixed(body.bytes());
          w.bool(false).bool(eof);
        };
      });
      return;
    }
    case Nfs2Proc.STATFS: {
      const fh = readFh2(r);
      r.end();
      status2(w, () => {
        const s = fs.fsstat(decodeV2Handle(fh));
        const blocks = (n: number) => Math.min(Math.floor(n / NFS2_BLOCK), U32_MAX);
        return (w) => {
          w.u32(NFS2_MAXDATA).u32(NFS2_BLOCK);
          w.u32(blocks(s.totalBytes)).u32(blocks(s.freeBytes)).u32(blocks(s.availBytes));
        };
      });
      return;
    }
    default:
      throw new RpcError({ kind: 'proc_unavail' });
  }
}

/** Largest READDIR reply an NFSv2 call may ask for (bounds per-call work). */
export const NFS2_READDIR_MAX = 64 * 1024;
