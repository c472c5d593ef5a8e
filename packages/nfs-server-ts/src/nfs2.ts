/**
 * The NFSv2 procedure layer (RFC 1094), mapped onto the NFSv3-shaped FileSystem, each procedure
 * declared once and run by the skeleton it shares with NFSv3 (procedure-table.ts). A failure
 * is its status alone: NFSv2 has no failure bodies.
 */
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
  tryAttr,
  wholeCookieGroups,
} from './nfs3';
import { type Call, type Procedure, ProcedureTable, refuseReadOnly } from './procedure-table';
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
/** Largest READDIR reply an NFSv2 call may ask for (bounds per-call work). */
export const NFS2_READDIR_MAX = 64 * 1024;
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
interface Sattr2 {
  attrs: SetAttributes;
  ifmt: number;
}

function readSattr2(r: XdrReader): Sattr2 {
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

function readName2(r: XdrReader): string {
  return r.string(NFS2_MAXNAMLEN);
}

function readDirOp2(r: XdrReader): { dir: Uint8Array; name: string } {
  return { dir: readFh2(r), name: readName2(r) };
}

/** diropres's success body: the entry's handle and attributes. */
interface DirOpRes {
  handle: Uint8Array;
  attrs: Attributes;
}

function dirOpRes(fs: FileSystem, fh: FileHandle): DirOpRes {
  const handle = encodeV2Handle(fh);
  return { handle, attrs: fs.getattr(fh) };
}

function writeDirOpRes(w: XdrWriter, res: DirOpRes): void {
  w.fixed(res.handle);
  writeFattr2(w, res.attrs);
}

/** The success body of procedures that answer their status alone. */
function noBody(): void {}

/** REMOVE and RMDIR: one rule, two backend calls. */
function removeEntry(op: 'remove' | 'rmdir'): Procedure<{ dir: Uint8Array; name: string }, void> {
  return {
    decode: readDirOp2,
    run: ({ fs, ctx }, { dir, name }) => {
      refuseReadOnly(ctx);
      checkName(fs, name, 'remove');
      const d = decodeV2Handle(dir);
      guards.remove(fs, d, name, ctx);
      if (op === 'remove') fs.remove(d, name, ctx);
      else fs.rmdir(d, name, ctx);
    },
    encodeOk: noBody,
  };
}

/** The file type an NFSv2 CREATE asks for with the S_IFMT bits of its mode (none: a file). */
function createdType(ifmt: number): FileType {
  const type = Object.entries(IFMT).find(([, bits]) => bits === ifmt)?.[0];
  return type === undefined ? FileType.REG : (Number(type) as FileType);
}

/** CREATE makes files and, by Linux's convention, directories and devices too. */
function create({ fs, ctx }: Call, a: { dir: Uint8Array; name: string } & Sattr2): DirOpRes {
  refuseReadOnly(ctx);
  checkName(fs, a.name, 'create');
  const d = decodeV2Handle(a.dir);
  const t = createdType(a.ifmt);
  if (t === FileType.LNK) throw new NfsError(NfsStatus.INVAL);
  // Linux's convention: a device's number travels in the size field.
  const device = t !== FileType.REG && t !== FileType.DIR;
  const given = device ? { ...a.attrs, size: undefined } : a.attrs;
  const permitted = guards.newObject(fs, d, a.name, t, given, ctx);
  if (t === FileType.REG) {
    return dirOpRes(fs, fs.create(d, a.name, { mode: 'unchecked', attributes: permitted }, ctx));
  }
  if (t === FileType.DIR) return dirOpRes(fs, fs.mkdir(d, a.name, permitted, ctx));
  const dev = a.attrs.size ?? 0;
  const rdev = { major: (dev >>> 8) & 0xfff, minor: (dev & 0xff) | ((dev >>> 12) & 0xfff00) };
  return dirOpRes(fs, fs.mknod(d, a.name, t, permitted, rdev, ctx));
}

interface Readdir2Page {
  /** The encoded entries, each with its leading `true`. */
  entries: Uint8Array;
  eof: boolean;
}

/** READDIR: as many whole entries (and cookie groups) as fit `count`; IO when none does. */
function readdir({ fs, ctx }: Call, a: { dir: Uint8Array; cookie: number; count: number }) {
  const dir = decodeV2Handle(a.dir);
  const budget = a.count - 12;
  const want = Math.max(1, Math.min(1024, Math.floor(budget / 16)));
  guards.list(fs, dir, ctx);
  const res = fs.readdir(dir, a.cookie, new Uint8Array(8), want);
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
  const page: Readdir2Page = { entries: body.bytes(), eof: res.eof && n === res.entries.length };
  return page;
}

/** Initial size of the reply writer reused by every call (NFSv2 replies stay small). */
const REPLY_WRITER_SIZE = 16 * 1024;

/** Every NFSv2 procedure, in RFC 1094's order. */
const NFS2 = new ProcedureTable(v2Status, REPLY_WRITER_SIZE)
  // ROOT and WRITECACHE are obsolete; RFC 1094 defines them to do nothing.
  .withoutStatus(Nfs2Proc.NULL, Nfs2Proc.ROOT, Nfs2Proc.WRITECACHE)
  .define(Nfs2Proc.GETATTR, {
    decode: readFh2,
    run: ({ fs }, fh) => fs.getattr(decodeV2Handle(fh)),
    encodeOk: writeFattr2,
  })
  .define(Nfs2Proc.SETATTR, {
    decode: (r) => ({ fh: readFh2(r), attrs: readSattr2(r).attrs }),
    run: ({ fs, ctx }, a) => {
      refuseReadOnly(ctx);
      const fh = decodeV2Handle(a.fh);
      return fs.setattr(fh, guards.setattr(fs.getattr(fh), a.attrs, ctx), ctx);
    },
    encodeOk: writeFattr2,
  })
  .define(Nfs2Proc.LOOKUP, {
    decode: readDirOp2,
    run: ({ fs, ctx }, { dir, name }) => {
      checkName(fs, name, 'lookup');
      const d = decodeV2Handle(dir);
      guards.lookup(fs, d, ctx);
      return dirOpRes(fs, fs.lookup(d, name));
    },
    encodeOk: writeDirOpRes,
  })
  .define(Nfs2Proc.READLINK, {
    decode: readFh2,
    run: ({ fs }, fh) => fs.readlink(decodeV2Handle(fh)),
    encodeOk: (w, target) => w.string(target),
  })
  .define(Nfs2Proc.READ, {
    decode: (r) => {
      const fh = readFh2(r);
      const offset = r.u32();
      const count = Math.min(r.u32(), NFS2_MAXDATA);
      r.u32(); // totalcount: unused, as RFC 1094 says
      return { fh, offset, count };
    },
    run: ({ fs, ctx }, a) => {
      const fh = decodeV2Handle(a.fh);
      guards.read(fs, fh, ctx);
      const res = fs.read(fh, a.offset, a.count);
      return { attrs: fs.getattr(fh), data: res.data };
    },
    encodeOk: (w, { attrs, data }) => {
      writeFattr2(w, attrs);
      w.opaque(data);
    },
  })
  .define(Nfs2Proc.WRITE, {
    decode: (r) => {
      const fh = readFh2(r);
      r.u32(); // beginoffset: unused
      const offset = r.u32();
      r.u32(); // totalcount: unused
      return { fh, offset, data: r.opaque(NFS2_MAXDATA) };
    },
    run: ({ fs, ctx }, a) => {
      refuseReadOnly(ctx);
      const fh = decodeV2Handle(a.fh);
      const before = ctx.checkPermissions ? tryAttr(fs, fh) : undefined;
      guards.write(before, ctx);
      // NFSv2 writes are synchronous by definition.
      fs.write(fh, a.offset, a.data, 'file_sync', ctx);
      guards.afterWrite(fs, fh, before, ctx);
      return fs.getattr(fh);
    },
    encodeOk: writeFattr2,
  })
  .define(Nfs2Proc.CREATE, {
    decode: (r) => {
      const dir = readFh2(r);
      const name = readName2(r);
      const { attrs, ifmt } = readSattr2(r);
      return { dir, name, attrs, ifmt };
    },
    run: create,
    encodeOk: writeDirOpRes,
  })
  .define(Nfs2Proc.REMOVE, removeEntry('remove'))
  .define(Nfs2Proc.RENAME, {
    decode: (r) => ({ from: readDirOp2(r), to: readDirOp2(r) }),
    run: ({ fs, ctx }, { from, to }) => {
      refuseReadOnly(ctx);
      checkName(fs, from.name, 'remove');
      checkName(fs, to.name, 'remove');
      const fromDir = decodeV2Handle(from.dir);
      const toDir = decodeV2Handle(to.dir);
      guards.rename(fs, { dir: fromDir, name: from.name }, { dir: toDir, name: to.name }, ctx);
      fs.rename(fromDir, from.name, toDir, to.name, ctx);
    },
    encodeOk: noBody,
  })
  .define(Nfs2Proc.LINK, {
    decode: (r) => ({ fh: readFh2(r), dir: readFh2(r), name: readName2(r) }),
    run: ({ fs, ctx }, { fh, dir, name }) => {
      refuseReadOnly(ctx);
      checkName(fs, name, 'create');
      const d = decodeV2Handle(dir);
      guards.addEntry(fs, d, ctx);
      fs.link(decodeV2Handle(fh), d, name, ctx);
    },
    encodeOk: noBody,
  })
  .define(Nfs2Proc.SYMLINK, {
    decode: (r) => {
      const dir = readFh2(r);
      const name = readName2(r);
      return { dir, name, target: r.string(MAX_PATH), attrs: readSattr2(r).attrs };
    },
    run: ({ fs, ctx }, { dir, name, target, attrs }) => {
      refuseReadOnly(ctx);
      checkName(fs, name, 'create');
      if (target.length === 0 || target.includes('\0')) throw new NfsError(NfsStatus.INVAL);
      const d = decodeV2Handle(dir);
      fs.symlink(d, name, target, guards.newObject(fs, d, name, FileType.LNK, attrs, ctx), ctx);
    },
    encodeOk: noBody,
  })
  .define(Nfs2Proc.MKDIR, {
    decode: (r) => ({ dir: readFh2(r), name: readName2(r), attrs: readSattr2(r).attrs }),
    run: ({ fs, ctx }, { dir, name, attrs }) => {
      refuseReadOnly(ctx);
      checkName(fs, name, 'create');
      const d = decodeV2Handle(dir);
      const permitted = guards.newObject(fs, d, name, FileType.DIR, attrs, ctx);
      return dirOpRes(fs, fs.mkdir(d, name, permitted, ctx));
    },
    encodeOk: writeDirOpRes,
  })
  .define(Nfs2Proc.RMDIR, removeEntry('rmdir'))
  .define(Nfs2Proc.READDIR, {
    decode: (r, { ctx }) => {
      const dir = readFh2(r);
      const cookie = r.u32();
      const count = Math.min(r.u32(), ctx.datagram ? UDP_MAX_IO_SIZE : NFS2_READDIR_MAX);
      return { dir, cookie, count };
    },
    run: readdir,
    encodeOk: (w, page) => {
      w.fixed(page.entries);
      w.bool(false).bool(page.eof);
    },
  })
  .define(Nfs2Proc.STATFS, {
    decode: readFh2,
    run: ({ fs }, fh) => fs.fsstat(decodeV2Handle(fh)),
    encodeOk: (w, s) => {
      const blocks = (n: number) => Math.min(Math.floor(n / NFS2_BLOCK), U32_MAX);
      w.u32(NFS2_MAXDATA).u32(NFS2_BLOCK);
      w.u32(blocks(s.totalBytes)).u32(blocks(s.freeBytes)).u32(blocks(s.availBytes));
    },
  });

/** Executes one NFSv2 call; same contract as executeNfs3. */
export function executeNfs2(
  fs: FileSystem,
  procedure: number,
  args: Uint8Array,
  ctx: NfsCallContext,
): Uint8Array {
  return NFS2.execute(fs, procedure, args, ctx);
}
