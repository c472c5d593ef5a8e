/**
 * An in-memory FileSystem. Deterministic given its options (no clock: times come from the call
 * context), so it also serves as the reference backend in tests. Its fsid and generation key are
 * random per instance unless given, so a handle of one instance is BADHANDLE to another and the
 * root handle cannot be guessed; two instances built with the same `fsid` and `generationKey`
 * answer byte-identically. Permissions are not enforced here: the procedure layer checks them
 * (export option checkPermissions); owners and modes are stored and reported as set, new objects
 * taking their group as permissions.newObjectOwnership says (set-group-id directories).
 */
import { randomBytes } from 'node:crypto';
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
import { firstGeneration, newGenerationKey } from './generation';
import { newObjectOwnership } from './permissions';

/** Defaults; each can be overridden in MemoryFileSystemOptions. */
export const MEMFS_DEFAULT_CAPACITY = 1024 * 1024 * 1024;
export const MEMFS_DEFAULT_MAX_FILES = 1_000_000;
export const MEMFS_MAX_FILE_SIZE = 1024 * 1024 * 1024;
export const MEMFS_MAX_NAME = 255;
export const MEMFS_MAX_LINKS = 32000;
/** Block size used for `used` and FSSTAT. */
const BLOCK = 4096;
/** Handle layout: magic, fsid, inode number, generation (16 bytes: fits NFSv2's 32). */
const HANDLE_MAGIC = 0x4d454d46; // 'MEMF'
const HANDLE_SIZE = 16;
/** First cookie handed to a real entry; 1 and 2 are '.' and '..'. */
const FIRST_COOKIE = 3;

export interface MemoryFileSystemOptions {
  capacityBytes?: number;
  maxFiles?: number;
  /** File-system id in attributes and handles (default: random per instance). */
  fsid?: number;
  /**
   * Key of the inode generations in handles (GENERATION_KEY_BYTES; default: random per
   * instance). Inode numbers are never reused, so each inode has its first generation.
   */
  generationKey?: Uint8Array;
  /** Mode of the root directory (default 0777: a shared scratch export). */
  rootMode?: number;
  /** Time stamped on the root at creation (default the epoch; determinism). */
  createdAt?: NfsTime;
  /** Write verifier (8 bytes); never changes since nothing is ever lost short of the process. */
  writeVerifier?: Uint8Array;
}

interface DirData {
  entries: Map<string, { ino: number; cookie: number }>;
  /** Entries in cookie order; removed ones become null until compaction. */
  order: { cookie: number; name: string | null }[];
  tombstones: number;
  nextCookie: number;
  parent: number;
}

interface Inode {
  ino: number;
  gen: number;
  type: FileType;
  mode: number;
  uid: number;
  gid: number;
  nlink: number;
  size: number;
  data: Uint8Array;
  target: string;
  rdev: { major: number; minor: number };
  atime: NfsTime;
  mtime: NfsTime;
  ctime: NfsTime;
  dir?: DirData;
  createVerifier?: Uint8Array;
}

const EMPTY = new Uint8Array(0);

export class MemoryFileSystem implements FileSystem {
  private readonly inodes = new Map<number, Inode>();
  private nextIno = 2;
  private usedBytes = 0;
  private readonly capacity: number;
  private readonly maxFiles: number;
  private readonly fsid: number;
  private readonly generationKey: Uint8Array;
  private readonly verifier: Uint8Array;
  private readonly rootIno: number;

  constructor(opts: MemoryFileSystemOptions = {}) {
    this.capacity = opts.capacityBytes ?? MEMFS_DEFAULT_CAPACITY;
    this.maxFiles = opts.maxFiles ?? MEMFS_DEFAULT_MAX_FILES;
    this.fsid = (opts.fsid ?? randomBytes(4).readUInt32BE(0)) >>> 0;
    this.generationKey = opts.generationKey ?? newGenerationKey();
    this.verifier = opts.writeVerifier ?? Uint8Array.of(0x4d, 0x45, 0x4d, 0x46, 0, 0, 0, 1);
    const t = opts.createdAt ?? { seconds: 0, nseconds: 0 };
    const root = this.alloc(FileType.DIR, opts.rootMode ?? 0o777, { uid: 0, gid: 0, gids: [] }, t);
    root.dir = newDir(root.ino);
    root.nlink = 2;
    this.rootIno = root.ino;
  }

  root(): FileHandle {
    return this.handle(this.inodes.get(this.rootIno)!);
  }

  limits(): FsLimits {
    return {
      maxFileSize: MEMFS_MAX_FILE_SIZE,
      maxNameLength: MEMFS_MAX_NAME,
      maxLinks: MEMFS_MAX_LINKS,
      timeDelta: { seconds: 0, nseconds: 1 },
      supportsHardLinks: true,
      supportsSymlinks: true,
    };
  }

  writeVerifier(): Uint8Array {
    return this.verifier;
  }

  private handle(i: Inode): FileHandle {
    const h = new Uint8Array(HANDLE_SIZE);
    const v = new DataView(h.buffer);
    v.setUint32(0, HANDLE_MAGIC);
    v.setUint32(4, this.fsid);
    v.setUint32(8, i.ino);
    v.setUint32(12, i.gen);
    return h;
  }

  private get(fh: FileHandle): Inode {
    if (fh.length !== HANDLE_SIZE) throw new NfsError(NfsStatus.BADHANDLE);
    const v = new DataView(fh.buffer, fh.byteOffset, fh.byteLength);
    if (v.getUint32(0) !== HANDLE_MAGIC || v.getUint32(4) !== this.fsid) {
      throw new NfsError(NfsStatus.BADHANDLE);
    }
    const i = this.inodes.get(v.getUint32(8));
    if (!i || i.gen !== v.getUint32(12)) throw new NfsError(NfsStatus.STALE);
    return i;
  }

  private getDir(fh: FileHandle): Inode & { dir: DirData } {
    const i = this.get(fh);
    if (!i.dir) throw new NfsError(NfsStatus.NOTDIR);
    return i as Inode & { dir: DirData };
  }

  private alloc(type: FileType, mode: number, cred: CallContext['cred'], t: NfsTime): Inode {
    if (this.inodes.size >= this.maxFiles) throw new NfsError(NfsStatus.NOSPC);
    const i: Inode = {
      ino: this.nextIno,
      gen: firstGeneration(this.generationKey, this.nextIno++),
      type,
      mode: mode & 0o7777,
      uid: cred.uid,
      gid: cred.gid,
      nlink: 1,
      size: 0,
      data: EMPTY,
      target: '',
      rdev: { major: 0, minor: 0 },
      atime: t,
      mtime: t,
      ctime: t,
    };
    this.inodes.set(i.ino, i);
    return i;
  }

  private attrs(i: Inode): Attributes {
    return {
      type: i.type,
      mode: i.mode,
      nlink: i.nlink,
      uid: i.uid,
      gid: i.gid,
      size: i.size,
      used: Math.ceil(i.size / BLOCK) * BLOCK,
      rdev: { ...i.rdev },
      fsid: this.fsid,
      fileid: i.ino,
      atime: i.atime,
      mtime: i.mtime,
      ctime: i.ctime,
    };
  }

  getattr(fh: FileHandle): Attributes {
    return this.attrs(this.get(fh));
  }

  setattr(fh: FileHandle, s: SetAttributes, ctx: CallContext): Attributes {
    const i = this.get(fh);
    if (s.size !== undefined) {
      if (i.type === FileType.DIR) throw new NfsError(NfsStatus.ISDIR);
      if (i.type !== FileType.REG) throw new NfsError(NfsStatus.INVAL);
      this.resize(i, s.size);
      i.mtime = ctx.time;
    }
    if (s.mode !== undefined) i.mode = s.mode & 0o7777;
    if (s.uid !== undefined) i.uid = s.uid;
    if (s.gid !== undefined) i.gid = s.gid;
    if (s.atime !== undefined) i.atime = s.atime === 'server' ? ctx.time : s.atime;
    if (s.mtime !== undefined) i.mtime = s.mtime === 'server' ? ctx.time : s.mtime;
    i.ctime = ctx.time;
    return this.attrs(i);
  }

  private resize(i: Inode, size: number): void {
    if (size > MEMFS_MAX_FILE_SIZE) throw new NfsError(NfsStatus.FBIG);
    const delta = Math.ceil(size / BLOCK) - Math.ceil(i.size / BLOCK);
    if (delta > 0 && this.usedBytes + delta * BLOCK > this.capacity) {
      throw new NfsError(NfsStatus.NOSPC);
    }
    this.usedBytes += delta * BLOCK;
    if (size > i.data.length) {
      const grown = new Uint8Array(
        Math.max(size, Math.min(i.data.length * 2, MEMFS_MAX_FILE_SIZE)),
      );
      grown.set(i.data.subarray(0, i.size));
      i.data = grown;
    } else if (size < i.size) {
      i.data.fill(0, size, i.size);
    }
    i.size = size;
  }

  lookup(dirFh: FileHandle, name: string): FileHandle {
    const d = this.getDir(dirFh);
    if (name === '.') return this.handle(d);
    if (name === '..') return this.handle(this.inodes.get(d.dir.parent)!);
    const e = d.dir.entries.get(name);
    if (!e) throw new NfsError(NfsStatus.NOENT);
    return this.handle(this.inodes.get(e.ino)!);
  }

  readlink(fh: FileHandle): string {
    const i = this.get(fh);
    if (i.type !== FileType.LNK) throw new NfsError(NfsStatus.INVAL);
    return i.target;
  }

  read(fh: FileHandle, offset: number, count: number): { data: Uint8Array; eof: boolean } {
    const i = this.get(fh);
    if (i.type === FileType.DIR) throw new NfsError(NfsStatus.ISDIR);
    if (i.type !== FileType.REG) throw new NfsError(NfsStatus.INVAL);
    const start = Math.min(offset, i.size);
    const end = Math.min(i.size, start + count);
    return { data: i.data.subarray(start, end), eof: end >= i.size };
  }

  write(
    fh: FileHandle,
    offset: number,
    data: Uint8Array,
    _stable: StableHow,
    ctx: CallContext,
  ): { count: number; committed: StableHow } {
    const i = this.get(fh);
    if (i.type === FileType.DIR) throw new NfsError(NfsStatus.ISDIR);
    if (i.type !== FileType.REG) throw new NfsError(NfsStatus.INVAL);
    const end = offset + data.length;
    if (end > MEMFS_MAX_FILE_SIZE) throw new NfsError(NfsStatus.FBIG);
    // As pwrite(2): writing no bytes past the end leaves the size alone (and sets nothing).
    if (data.length > 0) {
      if (end > i.size) this.resize(i, end);
      i.data.set(data, offset);
    }
    i.mtime = ctx.time;
    i.ctime = ctx.time;
    // Memory is as stable as this backend gets: report FILE_SYNC so no COMMIT is needed.
    return { count: data.length, committed: 'file_sync' };
  }

  private link_(d: Inode & { dir: DirData }, name: string, child: Inode, ctx: CallContext): void {
    const cookie = d.dir.nextCookie++;
    d.dir.entries.set(name, { ino: child.ino, cookie });
    d.dir.order.push({ cookie, name });
    d.mtime = ctx.time;
    d.ctime = ctx.time;
  }

  private unlink_(d: Inode & { dir: DirData }, name: string, ctx: CallContext): void {
    const e = d.dir.entries.get(name)!;
    d.dir.entries.delete(name);
    const idx = findCookie(d.dir.order, e.cookie);
    if (idx >= 0) d.dir.order[idx].name = null;
    if (++d.dir.tombstones > 64 && d.dir.tombstones * 2 > d.dir.order.length) {
      d.dir.order = d.dir.order.filter((x) => x.name !== null);
      d.dir.tombstones = 0;
    }
    d.mtime = ctx.time;
    d.ctime = ctx.time;
  }

  private dropLink(i: Inode, ctx: CallContext): void {
    i.nlink--;
    i.ctime = ctx.time;
    if (i.nlink <= 0 || (i.type === FileType.DIR && i.nlink <= 1)) {
      this.usedBytes -= Math.ceil(i.size / BLOCK) * BLOCK;
      this.inodes.delete(i.ino);
    }
  }

  private newChild(
    dirFh: FileHandle,
    name: string,
    type: FileType,
    s: SetAttributes,
    ctx: CallContext,
  ): { d: Inode & { dir: DirData }; i: Inode } {
    const d = this.getDir(dirFh);
    if (d.dir.entries.has(name)) throw new NfsError(NfsStatus.EXIST);
    const asked = s.mode ?? (type === FileType.DIR ? 0o755 : 0o644);
    // A set-group-id directory passes on its group, and to subdirectories the bit itself.
    const inherited = newObjectOwnership(d, ctx.cred, type, asked & 0o7777);
    const i = this.alloc(type, inherited.mode, ctx.cred, ctx.time);
    i.gid = s.gid ?? inherited.gid;
    if (s.uid !== undefined) i.uid = s.uid;
    if (s.atime !== undefined && s.atime !== 'server') i.atime = s.atime;
    if (s.mtime !== undefined && s.mtime !== 'server') i.mtime = s.mtime;
    this.link_(d, name, i, ctx);
    return { d, i };
  }

  create(dirFh: FileHandle, name: string, how: CreateMode, ctx: CallContext): FileHandle {
    const d = this.getDir(dirFh);
    const existing = d.dir.entries.get(name);
    if (existing) {
      const i = this.inodes.get(existing.ino)!;
      if (how.mode === 'guarded') throw new NfsError(NfsStatus.EXIST);
      if (how.mode === 'exclusive') {
        if (i.createVerifier && equal(i.createVerifier, how.verifier)) return this.handle(i);
        throw new NfsError(NfsStatus.EXIST);
      }
      if (i.type !== FileType.REG) throw new NfsError(NfsStatus.EXIST);
      if (how.attributes.size !== undefined) this.setattr(this.handle(i), how.attributes, ctx);
      return this.handle(i);
    }
    const attrs = how.mode === 'exclusive' ? {} : how.attributes;
    const { i } = this.newChild(dirFh, name, FileType.REG, { ...attrs, size: undefined }, ctx);
    if (how.mode === 'exclusive') i.createVerifier = Uint8Array.from(how.verifier);
    else if (attrs.size) this.resize(i, attrs.size);
    return this.handle(i);
  }

  mkdir(dirFh: FileHandle, name: string, s: SetAttributes, ctx: CallContext): FileHandle {
    const { d, i } = this.newChild(dirFh, name, FileType.DIR, s, ctx);
    i.dir = newDir(d.ino);
    i.nlink = 2;
    d.nlink++;
    return this.handle(i);
  }

  symlink(
    dirFh: FileHandle,
    name: string,
    target: string,
    s: SetAttributes,
    ctx: CallContext,
  ): FileHandle {
    const { i } = this.newChild(dirFh, name, FileType.LNK, { ...s, mode: s.mode ?? 0o777 }, ctx);
    i.target = target;
    i.size = Buffer.byteLength(target);
    return this.handle(i);
  }

  mknod(
    dirFh: FileHandle,
    name: string,
    type: FileType,
    s: SetAttributes,
    rdev: { major: number; minor: number },
    ctx: CallContext,
  ): FileHandle {
    if (![FileType.FIFO, FileType.SOCK, FileType.CHR, FileType.BLK].includes(type)) {
      throw new NfsError(NfsStatus.BADTYPE);
    }
    const { i } = this.newChild(dirFh, name, type, s, ctx);
    i.rdev = { ...rdev };
    return this.handle(i);
  }

  remove(dirFh: FileHandle, name: string, ctx: CallContext): void {
    const d = this.getDir(dirFh);
    const e = d.dir.entries.get(name);
    if (!e) throw new NfsError(NfsStatus.NOENT);
    const i = this.inodes.get(e.ino)!;
    if (i.type === FileType.DIR) throw new NfsError(NfsStatus.ISDIR);
    this.unlink_(d, name, ctx);
    this.dropLink(i, ctx);
  }

  rmdir(dirFh: FileHandle, name: string, ctx: CallContext): void {
    const d = this.getDir(dirFh);
    const e = d.dir.entries.get(name);
    if (!e) throw new NfsError(NfsStatus.NOENT);
    const i = this.inodes.get(e.ino)!;
    if (!i.dir) throw new NfsError(NfsStatus.NOTDIR);
    if (i.dir.entries.size > 0) throw new NfsError(NfsStatus.NOTEMPTY);
    this.unlink_(d, name, ctx);
    d.nlink--;
    i.nlink = 0;
    this.inodes.delete(i.ino);
  }

  rename(
    fromFh: FileHandle,
    fromName: string,
    toFh: FileHandle,
    toName: string,
    ctx: CallContext,
  ): void {
    const from = this.getDir(fromFh);
    const to = this.getDir(toFh);
    const e = from.dir.entries.get(fromName);
    if (!e) throw new NfsError(NfsStatus.NOENT);
    const moving = this.inodes.get(e.ino)!;
    if (from === to && fromName === toName) return;
    // Refuse to move a directory into its own subtree.
    if (moving.dir && this.within(to, moving)) throw new NfsError(NfsStatus.INVAL);
    const target = to.dir.entries.get(toName);
    if (target) {
      // POSIX: renaming one link of a file onto another link of it does nothing.
      if (target.ino === moving.ino) return;
      const t = this.inodes.get(target.ino)!;
      // rename(2) refuses a target that holds the source (ENOTEMPTY) before it compares types.
      if (t.dir && this.within(from, t)) throw new NfsError(NfsStatus.NOTEMPTY);
      if (moving.dir && !t.dir) throw new NfsError(NfsStatus.NOTDIR);
      if (!moving.dir && t.dir) throw new NfsError(NfsStatus.ISDIR);
      if (t.dir) {
        if (t.dir.entries.size > 0) throw new NfsError(NfsStatus.NOTEMPTY);
        this.unlink_(to, toName, ctx);
        to.nlink--;
        this.inodes.delete(t.ino);
      } else {
        this.unlink_(to, toName, ctx);
        this.dropLink(t, ctx);
      }
    }
    this.unlink_(from, fromName, ctx);
    this.link_(to, toName, moving, ctx);
    if (moving.dir && from !== to) {
      moving.dir.parent = to.ino;
      from.nlink--;
      to.nlink++;
    }
    moving.ctime = ctx.time;
  }

  /** True when directory `d` is `ancestor` or lies below it. */
  private within(d: Inode, ancestor: Inode): boolean {
    for (let p: Inode = d; ; p = this.inodes.get(p.dir!.parent)!) {
      if (p.ino === ancestor.ino) return true;
      if (p.ino === this.rootIno) return false;
    }
  }

  link(fh: FileHandle, dirFh: FileHandle, name: string, ctx: CallContext): void {
    const i = this.get(fh);
    const d = this.getDir(dirFh);
    if (i.type === FileType.DIR) throw new NfsError(NfsStatus.ISDIR);
    if (d.dir.entries.has(name)) throw new NfsError(NfsStatus.EXIST);
    if (i.nlink >= MEMFS_MAX_LINKS) throw new NfsError(NfsStatus.MLINK);
    this.link_(d, name, i, ctx);
    i.nlink++;
    i.ctime = ctx.time;
  }

  readdir(
    dirFh: FileHandle,
    cookie: number,
    _verifier: Uint8Array,
    maxEntries: number,
  ): ReadDirResult {
    const d = this.getDir(dirFh);
    if (cookie !== 0 && cookie !== 1 && cookie !== 2 && cookie >= d.dir.nextCookie) {
      throw new NfsError(NfsStatus.BAD_COOKIE);
    }
    const entries: DirEntry[] = [];
    if (cookie === 0) entries.push({ fileid: d.ino, name: '.', cookie: 1, handle: this.handle(d) });
    if (cookie <= 1) {
      const p = this.inodes.get(d.dir.parent)!;
      entries.push({ fileid: p.ino, name: '..', cookie: 2, handle: this.handle(p) });
    }
    const order = d.dir.order;
    let idx = firstAfter(order, cookie);
    while (entries.length < maxEntries && idx < order.length) {
      const o = order[idx++];
      if (o.name === null) continue;
      const child = this.inodes.get(d.dir.entries.get(o.name)!.ino)!;
      entries.push({
        fileid: child.ino,
        name: o.name,
        cookie: o.cookie,
        handle: this.handle(child),
      });
    }
    while (idx < order.length && order[idx].name === null) idx++;
    let eof = idx >= order.length;
    if (entries.length > maxEntries) {
      entries.length = Math.max(1, maxEntries);
      eof = false;
    }
    // Cookies survive changes, so the verifier is constant (all zeros).
    return { entries, eof, verifier: new Uint8Array(8) };
  }

  commit(fh: FileHandle, _offset: number, _count: number): Uint8Array {
    this.get(fh);
    return this.verifier;
  }

  fsstat(fh: FileHandle): FsStat {
    this.get(fh);
    const free = Math.max(0, this.capacity - this.usedBytes);
    const freeFiles = Math.max(0, this.maxFiles - this.inodes.size);
    return {
      totalBytes: this.capacity,
      freeBytes: free,
      availBytes: free,
      totalFiles: this.maxFiles,
      freeFiles,
      availFiles: freeFiles,
      invarsec: 0,
    };
  }
}

function newDir(parent: number): DirData {
  return { entries: new Map(), order: [], tombstones: 0, nextCookie: FIRST_COOKIE, parent };
}

function equal(a: Uint8Array, b: Uint8Array): boolean {
  return a.length === b.length && a.every((x, k) => x === b[k]);
}

/** Index of the first entry whose cookie is greater than `cookie` (order is sorted). */
function firstAfter(order: { cookie: number }[], cookie: number): number {
  let lo = 0;
  let hi = order.length;
  while (lo < hi) {
    const mid = (lo + hi) >>> 1;
    if (order[mid].cookie <= cookie) lo = mid + 1;
    else hi = mid;
  }
  return lo;
}

function findCookie(order: { cookie: number }[], cookie: number): number {
  const i = firstAfter(order, cookie - 1);
  return i < order.length && order[i].cookie === cookie ? i : -1;
}
