/**
 * A FileSystem that passes through to a local directory. Handles carry the inode number and a
 * hash of the birth time, so they survive server restarts and detect a reused inode as stale;
 * the path of a handle is cached and, after a restart, found again by walking the tree.
 * Symbolic links are never followed. The server process's own permissions apply; per-caller
 * checks are the procedure layer's (export option checkPermissions). With `ownNewObjects` (the
 * server runs as root) new objects belong to the caller and the group permissions.ts names, as
 * unfs3 does, so those checks see the owners a local file system would have.
 */
import * as crypto from 'node:crypto';
import * as nodefs from 'node:fs';
import * as path from 'node:path';
import {
  type Attributes,
  type CallContext,
  type CreateMode,
  type DirEntry,
  type FileHandle,
  type FileSystem,
  FileType,
  type FsLimits,
  type FsStat,
  NfsError,
  NfsStatus,
  type NfsTime,
  type ReadDirResult,
  type SetAttributes,
  type StableHow,
} from './filesystem';
import { newObjectOwnership } from './permissions';

const HANDLE_MAGIC = 0x4c4f434c; // 'LOCL'
const HANDLE_SIZE = 20;
/** Most directory entries visited when looking for a handle's path after a restart. */
export const MAX_HANDLE_SEARCH_ENTRIES = 200_000;
/** Handles recently searched for in vain: answered STALE at once, so forged handles cannot
 * make every call walk the tree. Entries expire after NEGATIVE_CACHE_MS. */
export const NEGATIVE_CACHE_ENTRIES = 4096;
export const NEGATIVE_CACHE_MS = 10_000;
/** Handle-to-path entries kept (LRU); a forgotten one is found again by a tree walk. */
export const PATH_CACHE_ENTRIES = 500_000;
/** Directories whose sorted listing is cached for READDIR (keyed by their mtime). */
export const READDIR_CACHE_DIRS = 64;
export const LOCALFS_MAX_NAME = 255;
/**
 * Cookies are 32-bit hashes of names, above the reserved cookies 0..2: 32 bits so that NFSv2's
 * 4-byte cookies carry them too. Colliding names share a cookie (see readdir).
 */
const COOKIE_SPACE = 2 ** 32;

type BigStats = nodefs.BigIntStats;

const { constants: C } = nodefs;

export class LocalFileSystem implements FileSystem {
  readonly rootPath: string;
  private readonly rootIno: bigint;
  private readonly fsidTag: number;
  private readonly paths = new Map<bigint, string>();
  private readonly listings = new Map<
    string,
    { mtime: bigint; entries: { cookie: number; name: string }[] }
  >();
  private readonly verifier = crypto.randomBytes(8);
  private readonly notFound = new Map<string, number>();

  private readonly handleKey?: Uint8Array;

  /**
   * `handleKey` (optional, any length; keep it from clients and the same across restarts):
   * handles then carry a keyed hash of the inode number and birth time instead of the bare
   * birth time, so they cannot be forged even where the file system keeps no birth time (the
   * tag is then 0 and a handle is guessable from the inode number). Changing or adding the key
   * makes every earlier handle STALE.
   */
  private readonly ownNewObjects: boolean;

  constructor(rootPath: string, opts: { handleKey?: Uint8Array; ownNewObjects?: boolean } = {}) {
    this.handleKey = opts.handleKey;
    this.ownNewObjects = opts.ownNewObjects ?? false;
    this.rootPath = path.resolve(rootPath);
    const st = nodefs.statSync(this.rootPath, { bigint: true });
    if (!st.isDirectory()) throw new Error(`${rootPath} is not a directory`);
    this.rootIno = st.ino;
    this.fsidTag = Number(st.dev & 0xffffffffn);
    this.cachePath(st.ino, this.rootPath);
  }

  root(): FileHandle {
    return this.handleOf(nodefs.lstatSync(this.rootPath, { bigint: true }));
  }

  limits(): FsLimits {
    return {
      maxFileSize: Number.MAX_SAFE_INTEGER,
      maxNameLength: LOCALFS_MAX_NAME,
      maxLinks: 65000,
      timeDelta: { seconds: 0, nseconds: 1 },
      supportsHardLinks: true,
      supportsSymlinks: true,
    };
  }

  /** Random per process: unstable writes not yet committed may be lost when it restarts. */
  writeVerifier(): Uint8Array {
    return this.verifier;
  }

  private handleOf(st: BigStats): FileHandle {
    const h = Buffer.alloc(HANDLE_SIZE);
    h.writeUInt32BE(HANDLE_MAGIC, 0);
    h.writeUInt32BE(this.fsidTag >>> 0, 4);
    h.writeBigUInt64BE(st.ino, 8);
    h.writeUInt32BE(this.tagOf(st), 16);
    return new Uint8Array(h.buffer, h.byteOffset, HANDLE_SIZE);
  }

  /** The handle's last 4 bytes: the birth time's, or a keyed hash of inode and birth time. */
  private tagOf(st: BigStats): number {
    if (!this.handleKey) return birthTag(st);
    const b = Buffer.alloc(16);
    b.writeBigUInt64BE(st.ino, 0);
    b.writeBigUInt64BE(st.birthtimeNs, 8);
    return crypto.createHmac('sha256', this.handleKey).update(b).digest().readUInt32BE(0);
  }

  /** The path of a handle, checked against the inode it names. */
  private resolve(fh: FileHandle): { p: string; st: BigStats } {
    if (fh.length !== HANDLE_SIZE) throw new NfsError(NfsStatus.BADHANDLE);
    const b = Buffer.from(fh.buffer, fh.byteOffset, fh.byteLength);
    if (b.readUInt32BE(0) !== HANDLE_MAGIC || b.readUInt32BE(4) !== this.fsidTag >>> 0) {
      throw new NfsError(NfsStatus.BADHANDLE);
    }
    const ino = b.readBigUInt64BE(8);
    const tag = b.readUInt32BE(16);
    const cached = this.paths.get(ino);
    if (cached !== undefined) {
      const st = tryLstat(cached);
      if (st && st.ino === ino && this.tagOf(st) === tag) return { p: cached, st };
      this.paths.delete(ino);
    }
    const key = `${ino}:${tag}`;
    const missedAt = this.notFound.get(key);
    if (missedAt !== undefined && Date.now() - missedAt < NEGATIVE_CACHE_MS) {
      throw new NfsError(NfsStatus.STALE);
    }
    const found = this.search(ino, tag);
    if (!found) {
      this.notFound.delete(key);
      this.notFound.set(key, Date.now());
      if (this.notFound.size > NEGATIVE_CACHE_ENTRIES) {
        this.notFound.delete(this.notFound.keys().next().value as string);
      }
      throw new NfsError(NfsStatus.STALE);
    }
    this.notFound.delete(key);
    return found;
  }

  /** Breadth-first walk from the root for an inode not in the cache (after a restart). */
  private search(ino: bigint, tag: number): { p: string; st: BigStats } | undefined {
    const queue = [this.rootPath];
    let visited = 0;
    while (queue.length > 0 && visited < MAX_HANDLE_SEARCH_ENTRIES) {
      const dir = queue.shift()!;
      let names: string[];
      try {
        names = nodefs.readdirSync(dir);
      } catch {
        continue;
      }
      for (const name of names) {
        visited++;
        const p = path.join(dir, name);
        const st = tryLstat(p);
        if (!st) continue;
        if (st.isDirectory()) {
          this.cachePath(st.ino, p);
          queue.push(p);
        }
        if (st.ino === ino && this.tagOf(st) === tag) {
          this.cachePath(ino, p);
          return { p, st };
        }
      }
    }
    return undefined;
  }

  private dir(fh: FileHandle): string {
    const { p, st } = this.resolve(fh);
    if (!st.isDirectory()) throw new NfsError(NfsStatus.NOTDIR);
    return p;
  }

  private child(dirPath: string, name: string): string {
    const p = path.join(dirPath, name);
    if (path.dirname(p) !== dirPath) throw new NfsError(NfsStatus.INVAL);
    return p;
  }

  /** With `ownNewObjects`: the caller's uid, and the directory's group where it is setgid. */
  private own(dirPath: string, p: string, ctx: CallContext): void {
    if (!this.ownNewObjects) return;
    const d = sys(() => nodefs.statSync(dirPath));
    const { gid } = newObjectOwnership({ mode: d.mode, gid: d.gid }, ctx.cred, FileType.REG, 0);
    sys(() => nodefs.lchownSync(p, ctx.cred.uid, gid));
  }

  private remember(p: string): FileHandle {
    const st = sys(() => nodefs.lstatSync(p, { bigint: true }));
    this.cachePath(st.ino, p);
    return this.handleOf(st);
  }

  private cachePath(ino: bigint, p: string): void {
    this.paths.delete(ino);
    this.paths.set(ino, p);
    if (this.paths.size > PATH_CACHE_ENTRIES) {
      const oldest = this.paths.keys().next().value as bigint;
      // The root's path is never forgotten.
      if (oldest !== this.rootIno) this.paths.delete(oldest);
    }
  }

  getattr(fh: FileHandle): Attributes {
    return toAttributes(this.resolve(fh).st);
  }

  setattr(fh: FileHandle, s: SetAttributes, ctx: CallContext): Attributes {
    const { p, st } = this.resolve(fh);
    const isLink = st.isSymbolicLink();
    sys(() => {
      if (s.size !== undefined) {
        if (st.isDirectory()) throw new NfsError(NfsStatus.ISDIR);
        if (!st.isFile()) throw new NfsError(NfsStatus.INVAL);
        nodefs.truncateSync(p, s.size);
      }
      if (s.mode !== undefined && !isLink) nodefs.chmodSync(p, s.mode & 0o7777);
      if (s.uid !== undefined || s.gid !== undefined) {
        nodefs.lchownSync(p, s.uid ?? Number(st.uid), s.gid ?? Number(st.gid));
      }
      if (s.atime !== undefined || s.mtime !== undefined) {
        const pick = (t: SetAttributes['atime'], cur: bigint) =>
          t === undefined ? Number(cur) / 1e9 : seconds(t === 'server' ? ctx.time : t);
        nodefs.lutimesSync(p, pick(s.atime, st.atimeNs), pick(s.mtime, st.mtimeNs));
      }
    });
    return toAttributes(sys(() => nodefs.lstatSync(p, { bigint: true })));
  }

  lookup(dirFh: FileHandle, name: string): FileHandle {
    const d = this.dir(dirFh);
    if (name === '.') return this.remember(d);
    if (name === '..') return this.remember(d === this.rootPath ? d : path.dirname(d));
    return this.remember(this.child(d, name));
  }

  readlink(fh: FileHandle): string {
    const { p, st } = this.resolve(fh);
    if (!st.isSymbolicLink()) throw new NfsError(NfsStatus.INVAL);
    return sys(() => nodefs.readlinkSync(p));
  }

  read(fh: FileHandle, offset: number, count: number): { data: Uint8Array; eof: boolean } {
    const { p, st } = this.resolve(fh);
    if (st.isDirectory()) throw new NfsError(NfsStatus.ISDIR);
    if (!st.isFile()) throw new NfsError(NfsStatus.INVAL);
    const size = Number(st.size);
    const n = Math.max(0, Math.min(count, size - offset));
    const buf = Buffer.alloc(n);
    let got = 0;
    if (n > 0) {
      const fd = sys(() => nodefs.openSync(p, C.O_RDONLY | C.O_NOFOLLOW));
      try {
        got = sys(() => nodefs.readSync(fd, buf, 0, n, offset));
      } finally {
        nodefs.closeSync(fd);
      }
    }
    return { data: buf.subarray(0, got), eof: offset + got >= size };
  }

  write(
    fh: FileHandle,
    offset: number,
    data: Uint8Array,
    stable: StableHow,
    _ctx: CallContext,
  ): { count: number; committed: StableHow } {
    const { p, st } = this.resolve(fh);
    if (st.isDirectory()) throw new NfsError(NfsStatus.ISDIR);
    if (!st.isFile()) throw new NfsError(NfsStatus.INVAL);
    const fd = sys(() => nodefs.openSync(p, C.O_WRONLY | C.O_NOFOLLOW));
    try {
      let done = 0;
      while (done < data.length) {
        done += sys(() => nodefs.writeSync(fd, data, done, data.length - done, offset + done));
      }
      if (stable === 'file_sync') nodefs.fsyncSync(fd);
      else if (stable === 'data_sync') nodefs.fdatasyncSync(fd);
    } finally {
      nodefs.closeSync(fd);
    }
    return { count: data.length, committed: stable };
  }

  create(dirFh: FileHandle, name: string, how: CreateMode, ctx: CallContext): FileHandle {
    const dirPath = this.dir(dirFh);
    const p = this.child(dirPath, name);
    if (how.mode === 'exclusive') {
      // As knfsd: the verifier lives in atime/mtime until the client's follow-up SETATTR.
      const v = Buffer.from(how.verifier);
      const at = v.readUInt32BE(0);
      const mt = v.readUInt32BE(4);
      try {
        nodefs.closeSync(nodefs.openSync(p, C.O_CREAT | C.O_EXCL | C.O_WRONLY, 0o600));
      } catch (e) {
        if ((e as NodeJS.ErrnoException).code !== 'EEXIST') throw errnoToNfs(e);
        const st = sys(() => nodefs.lstatSync(p, { bigint: true }));
        if (
          st.isFile() &&
          Number(st.atimeNs / 1_000_000_000n) === at &&
          Number(st.mtimeNs / 1_000_000_000n) === mt
        ) {
          return this.remember(p);
        }
        throw new NfsError(NfsStatus.EXIST);
      }
      sys(() => nodefs.utimesSync(p, at, mt));
      this.own(dirPath, p, ctx);
      return this.remember(p);
    }
    const flags = C.O_CREAT | C.O_WRONLY | C.O_NOFOLLOW | (how.mode === 'guarded' ? C.O_EXCL : 0);
    const before = tryLstat(p);
    // UNCHECKED of a name that is no regular file makes nothing and fails EXIST, as knfsd
    // (open(2) would say EISDIR for a directory, ELOOP for a symlink).
    if (before && !before.isFile()) throw new NfsError(NfsStatus.EXIST);
    const existed = before !== undefined;
    sys(() => nodefs.closeSync(nodefs.openSync(p, flags, how.attributes.mode ?? 0o644)));
    if (!existed) this.own(dirPath, p, ctx);
    const fh = this.remember(p);
    const attrs = existed ? { size: how.attributes.size } : { ...how.attributes, mode: undefined };
    if (Object.values(attrs).some((v) => v !== undefined)) this.setattr(fh, attrs, ctx);
    return fh;
  }

  mkdir(dirFh: FileHandle, name: string, s: SetAttributes, ctx: CallContext): FileHandle {
    const dirPath = this.dir(dirFh);
    const p = this.child(dirPath, name);
    sys(() => nodefs.mkdirSync(p, s.mode ?? 0o755));
    this.own(dirPath, p, ctx);
    const fh = this.remember(p);
    const rest = { ...s, mode: undefined };
    if (Object.values(rest).some((v) => v !== undefined)) this.setattr(fh, rest, ctx);
    return fh;
  }

  symlink(
    dirFh: FileHandle,
    name: string,
    target: string,
    _s: SetAttributes,
    ctx: CallContext,
  ): FileHandle {
    const dirPath = this.dir(dirFh);
    const p = this.child(dirPath, name);
    sys(() => nodefs.symlinkSync(target, p));
    this.own(dirPath, p, ctx);
    return this.remember(p);
  }

  /** Node has no mknod(2): devices, fifos and sockets are refused cleanly. */
  mknod(): FileHandle {
    throw new NfsError(NfsStatus.NOTSUPP, 'mknod is not available to a Node process');
  }

  remove(dirFh: FileHandle, name: string, _ctx: CallContext): void {
    const p = this.child(this.dir(dirFh), name);
    const st = sys(() => nodefs.lstatSync(p, { bigint: true }));
    if (st.isDirectory()) throw new NfsError(NfsStatus.ISDIR);
    sys(() => nodefs.unlinkSync(p));
  }

  rmdir(dirFh: FileHandle, name: string, _ctx: CallContext): void {
    const p = this.child(this.dir(dirFh), name);
    const st = sys(() => nodefs.lstatSync(p, { bigint: true }));
    if (!st.isDirectory()) throw new NfsError(NfsStatus.NOTDIR);
    sys(() => nodefs.rmdirSync(p));
    this.paths.delete(st.ino);
  }

  rename(
    fromFh: FileHandle,
    fromName: string,
    toFh: FileHandle,
    toName: string,
    _ctx: CallContext,
  ): void {
    const from = this.child(this.dir(fromFh), fromName);
    const to = this.child(this.dir(toFh), toName);
    sys(() => nodefs.renameSync(from, to));
    const st = tryLstat(to);
    // Cached paths under a moved directory are now wrong; they are re-found on demand.
    if (st?.isDirectory()) {
      for (const [ino, p] of this.paths)
        if (p === from || p.startsWith(from + '/')) this.paths.delete(ino);
    }
    if (st) this.cachePath(st.ino, to);
  }

  link(fh: FileHandle, dirFh: FileHandle, name: string, _ctx: CallContext): void {
    const { p, st } = this.resolve(fh);
    // The target directory is checked first (NOTDIR before ISDIR), as the other backends do.
    const target = this.child(this.dir(dirFh), name);
    if (st.isDirectory()) throw new NfsError(NfsStatus.ISDIR);
    sys(() => nodefs.linkSync(p, target));
  }

  readdir(
    dirFh: FileHandle,
    cookie: number,
    _verifier: Uint8Array,
    maxEntries: number,
  ): ReadDirResult {
    const d = this.dir(dirFh);
    const listing = this.listing(d);
    const out: DirEntry[] = [];
    const entry = (name: string, p: string, c: number): DirEntry | undefined => {
      const st = tryLstat(p);
      if (!st) return undefined;
      // Cache every entry: READDIRPLUS clients come back with these handles at once.
      this.cachePath(st.ino, p);
      return { fileid: Number(st.ino), name, cookie: c, handle: this.handleOf(st) };
    };
    const limit = Math.max(1, maxEntries);
    if (cookie === 0) out.push(entry('.', d, 1)!);
    if (cookie <= 1 && out.length < limit) {
      out.push(entry('..', d === this.rootPath ? d : path.dirname(d), 2)!);
    }
    if (cookie <= 1 && out[out.length - 1]?.name !== '..') {
      return { entries: out, eof: false, verifier: new Uint8Array(8) };
    }
    let i = firstAfter(listing, cookie);
    let lastCookie = -1;
    // Names whose hashes collide share a cookie: a page never ends inside such a group, so
    // resuming "after the cookie" loses nothing.
    while (i < listing.length && (out.length < limit || listing[i].cookie === lastCookie)) {
      const e = listing[i++];
      lastCookie = e.cookie;
      const x = entry(e.name, path.join(d, e.name), e.cookie);
      if (x) out.push(x);
    }
    const eof = i >= listing.length;
    // Cookies are name hashes, valid across changes: the verifier stays zero.
    return { entries: out, eof, verifier: new Uint8Array(8) };
  }

  private listing(d: string): { cookie: number; name: string }[] {
    const st = sys(() => nodefs.statSync(d, { bigint: true }));
    const hit = this.listings.get(d);
    if (hit && hit.mtime === st.mtimeNs) return hit.entries;
    const entries = sys(() => nodefs.readdirSync(d))
      .map((name) => ({ cookie: nameCookie(name), name }))
      .sort((a, b) => a.cookie - b.cookie);
    this.listings.delete(d);
    this.listings.set(d, { mtime: st.mtimeNs, entries });
    if (this.listings.size > READDIR_CACHE_DIRS) {
      this.listings.delete(this.listings.keys().next().value as string);
    }
    return entries;
  }

  commit(fh: FileHandle, _offset: number, _count: number): Uint8Array {
    const { p, st } = this.resolve(fh);
    if (st.isFile()) {
      const fd = sys(() => nodefs.openSync(p, C.O_RDONLY | C.O_NOFOLLOW));
      try {
        nodefs.fsyncSync(fd);
      } finally {
        nodefs.closeSync(fd);
      }
    }
    return this.verifier;
  }

  fsstat(fh: FileHandle): FsStat {
    const { p } = this.resolve(fh);
    const s = sys(() => nodefs.statfsSync(p));
    return {
      totalBytes: s.blocks * s.bsize,
      freeBytes: s.bfree * s.bsize,
      availBytes: s.bavail * s.bsize,
      totalFiles: s.files,
      freeFiles: s.ffree,
      availFiles: s.ffree,
      invarsec: 0,
    };
  }

  /** Whether `fh` names the export root (for tests and tools). */
  isRoot(fh: FileHandle): boolean {
    return this.resolve(fh).st.ino === this.rootIno;
  }
}

function tryLstat(p: string): BigStats | undefined {
  try {
    return nodefs.lstatSync(p, { bigint: true });
  } catch {
    return undefined;
  }
}

function birthTag(st: BigStats): number {
  // Birth time where the file system keeps it; otherwise 0 (inode reuse then goes undetected).
  return Number(st.birthtimeNs % 0x1_0000_0000n);
}

function nameCookie(name: string): number {
  const d = crypto.createHash('sha1').update(name).digest();
  return 3 + (d.readUInt32BE(0) % (COOKIE_SPACE - 3));
}

function firstAfter(list: { cookie: number }[], cookie: number): number {
  let lo = 0;
  let hi = list.length;
  while (lo < hi) {
    const mid = (lo + hi) >>> 1;
    if (list[mid].cookie <= cookie) lo = mid + 1;
    else hi = mid;
  }
  return lo;
}

function seconds(t: NfsTime): number {
  return t.seconds + t.nseconds / 1e9;
}

function nsTime(ns: bigint): NfsTime {
  return { seconds: Number(ns / 1_000_000_000n), nseconds: Number(ns % 1_000_000_000n) };
}

function toAttributes(st: BigStats): Attributes {
  const type = st.isFile()
    ? FileType.REG
    : st.isDirectory()
      ? FileType.DIR
      : st.isSymbolicLink()
        ? FileType.LNK
        : st.isCharacterDevice()
          ? FileType.CHR
          : st.isBlockDevice()
            ? FileType.BLK
            : st.isFIFO()
              ? FileType.FIFO
              : FileType.SOCK;
  const rdev = Number(st.rdev);
  return {
    type,
    mode: Number(st.mode) & 0o7777,
    nlink: Number(st.nlink),
    uid: Number(st.uid),
    gid: Number(st.gid),
    size: Number(st.size),
    used: Number(st.blocks) * 512,
    rdev: {
      major: ((rdev >>> 8) & 0xfff) | ((rdev / 2 ** 32) & ~0xfff),
      minor: (rdev & 0xff) | ((rdev >>> 12) & 0xfff00),
    },
    fsid: Number(st.dev & 0xffffffffn),
    fileid: Number(st.ino),
    atime: nsTime(st.atimeNs),
    mtime: nsTime(st.mtimeNs),
    ctime: nsTime(st.ctimeNs),
  };
}

const ERRNO: Record<string, NfsStatus> = {
  EPERM: NfsStatus.PERM,
  ENOENT: NfsStatus.NOENT,
  EIO: NfsStatus.IO,
  ENXIO: NfsStatus.NXIO,
  EACCES: NfsStatus.ACCES,
  EEXIST: NfsStatus.EXIST,
  EXDEV: NfsStatus.XDEV,
  ENODEV: NfsStatus.NODEV,
  ENOTDIR: NfsStatus.NOTDIR,
  EISDIR: NfsStatus.ISDIR,
  EINVAL: NfsStatus.INVAL,
  EFBIG: NfsStatus.FBIG,
  ENOSPC: NfsStatus.NOSPC,
  EROFS: NfsStatus.ROFS,
  EMLINK: NfsStatus.MLINK,
  ENAMETOOLONG: NfsStatus.NAMETOOLONG,
  ENOTEMPTY: NfsStatus.NOTEMPTY,
  EDQUOT: NfsStatus.DQUOT,
  ELOOP: NfsStatus.INVAL,
  EBUSY: NfsStatus.ACCES,
};

function errnoToNfs(e: unknown): NfsError {
  if (e instanceof NfsError) return e;
  const code = (e as NodeJS.ErrnoException).code ?? '';
  return new NfsError(ERRNO[code] ?? NfsStatus.IO, (e as Error).message);
}

/** Runs a system call, turning its errno into the NFS status. */
function sys<T>(f: () => T): T {
  try {
    return f();
  } catch (e) {
    throw errnoToNfs(e);
  }
}
