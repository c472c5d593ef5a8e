/** XDR pieces shared by the NFSv3 procedure layer and the client (RFC 1813 section 2.5, 2.6). */
import type { Attributes, NfsTime, SetAttributes } from './filesystem';
import { XdrError, XdrReader, XdrWriter } from './xdr';

/** NFS3_FHSIZE: largest NFSv3 file handle. */
export const NFS3_FHSIZE = 64;
/** NFS3_COOKIEVERFSIZE, NFS3_CREATEVERFSIZE, NFS3_WRITEVERFSIZE. */
export const NFS3_VERFSIZE = 8;
/** Longest name component accepted off the wire (before the backend's own limit). */
export const MAX_WIRE_NAME = 1024;
/** Longest path (symlink target, mount dirpath: MNTPATHLEN). */
export const MAX_PATH = 1024;

export function writeTime(w: XdrWriter, t: NfsTime): void {
  w.u32(t.seconds).u32(t.nseconds);
}

export function readTime(r: XdrReader): NfsTime {
  const seconds = r.u32();
  const nseconds = r.u32();
  if (nseconds >= 1e9) throw new XdrError(`nseconds ${nseconds} out of range`);
  return { seconds, nseconds };
}

export function writeFattr3(w: XdrWriter, a: Attributes): void {
  w.u32(a.type)
    .u32(a.mode & 0o7777)
    .u32(a.nlink)
    .u32(a.uid)
    .u32(a.gid);
  w.u64(a.size).u64(a.used).u32(a.rdev.major).u32(a.rdev.minor);
  w.u64(a.fsid).u64(a.fileid);
  writeTime(w, a.atime);
  writeTime(w, a.mtime);
  writeTime(w, a.ctime);
}

export function readFattr3(r: XdrReader): Attributes {
  return {
    type: r.u32(),
    mode: r.u32(),
    nlink: r.u32(),
    uid: r.u32(),
    gid: r.u32(),
    size: r.u64(),
    used: r.u64(),
    rdev: { major: r.u32(), minor: r.u32() },
    fsid: r.u64(),
    fileid: r.u64(),
    atime: readTime(r),
    mtime: readTime(r),
    ctime: readTime(r),
  };
}

export function writePostOpAttr(w: XdrWriter, a: Attributes | undefined): void {
  if (a) {
    w.bool(true);
    writeFattr3(w, a);
  } else w.bool(false);
}

export function readPostOpAttr(r: XdrReader): Attributes | undefined {
  return r.optional(readFattr3);
}

/** wcc_attr: the subset of attributes captured before an operation. */
export interface WccAttr {
  size: number;
  mtime: NfsTime;
  ctime: NfsTime;
}

export interface WccData {
  before?: WccAttr;
  after?: Attributes;
}

export function writeWcc(w: XdrWriter, wcc: WccData): void {
  if (wcc.before) {
    w.bool(true).u64(wcc.before.size);
    writeTime(w, wcc.before.mtime);
    writeTime(w, wcc.before.ctime);
  } else w.bool(false);
  writePostOpAttr(w, wcc.after);
}

export function readWcc(r: XdrReader): WccData {
  const before = r.optional((x) => ({ size: x.u64(), mtime: readTime(x), ctime: readTime(x) }));
  const after = readPostOpAttr(r);
  return { before, after };
}

export function writeSattr3(w: XdrWriter, s: SetAttributes): void {
  const opt32 = (v: number | undefined) => (v === undefined ? w.bool(false) : w.bool(true).u32(v));
  opt32(s.mode);
  opt32(s.uid);
  opt32(s.gid);
  if (s.size === undefined) w.bool(false);
  else w.bool(true).u64(s.size);
  for (const t of [s.atime, s.mtime]) {
    if (t === undefined) w.u32(0);
    else if (t === 'server') w.u32(1);
    else {
      w.u32(2);
      writeTime(w, t);
    }
  }
}

export function readSattr3(r: XdrReader): SetAttributes {
  const s: SetAttributes = {};
  if (r.bool()) s.mode = r.u32() & 0o7777;
  if (r.bool()) s.uid = r.u32();
  if (r.bool()) s.gid = r.u32();
  if (r.bool()) s.size = r.u64();
  for (const key of ['atime', 'mtime'] as const) {
    const how = r.u32();
    if (how === 1) s[key] = 'server';
    else if (how === 2) s[key] = readTime(r);
    else if (how !== 0) throw new XdrError(`bad time_how ${how}`);
  }
  return s;
}

export function readFh3(r: XdrReader): Uint8Array {
  return r.opaque(NFS3_FHSIZE);
}
