import type { PagedState } from '@bfs/page-store';
import {
  FileType,
  NfsError,
  NfsStatus,
  type Attributes,
  type CallContext,
  type CreateMode,
  type DirEntry,
  type FileHandle,
  type FileSystem,
  type FsLimits,
  type FsStat,
  type NfsTime,
  type ReadDirResult,
  type SetAttributes,
  type StableHow,
  newObjectOwnership,
} from 'nfs-server-ts';
import {
  BLOCK_SIZE,
  COOKIE_DOT,
  COOKIE_DOTDOT,
  COOKIE_SLOT_BASE,
  DEFAULT_DIR_MODE,
  DEFAULT_FILE_MODE,
  DEFAULT_SYMLINK_MODE,
  MAX_FILE_SIZE,
  MAX_IO_SIZE,
  MAX_LINKS,
  MAX_NAME_LENGTH,
  MAX_READ_SIZE,
  MAX_SYMLINK_LENGTH,
  ROOT_INO,
} from './constants';
import { checkName, Directory, encodeName } from './directory';
import { decodeHandle, encodeHandle } from './handle';
import { INODE_FLAG_VERIFIER, Volume, type Inode } from './volume';

const ZERO_VERIFIER = new Uint8Array(8);
const NODE_TYPES = new Set([FileType.FIFO, FileType.SOCK, FileType.CHR, FileType.BLK]);

function err(status: NfsStatus, message?: string): NfsError {
  return new NfsError(status, message);
}

function isDotName(name: string): boolean {
  return name === '.' || name === '..';
}

function checkU32(v: number, what: string): number {
  if (!Number.isInteger(v) || v < 0 || v > 0xffffffff) throw err(NfsStatus.INVAL, `bad ${what}`);
  return v;
}

function checkTime(t: NfsTime): NfsTime {
  checkU32(t.seconds, 'time');
  if (!Number.isInteger(t.nseconds) || t.nseconds < 0 || t.nseconds >= 1e9) {
    throw err(NfsStatus.INVAL, 'bad time');
  }
  return { seconds: t.seconds, nseconds: t.nseconds };
}

/**
 * The BFS file system: the NFS backend whose whole state is the pages of a PagedState formatted
 * by mkfs. Deterministic: the result of every call depends only on the pages, the arguments and
 * `ctx`. Every error is detected before the first page write, so a failed call changes nothing.
 * Permission checks are the procedure layer's (nfs-server-ts's permissions.ts, which the replicas
 * always apply); `ctx.cred` supplies the owner of new objects, and the same module their group.
 */
export class BfsFileSystem implements FileSystem {
  private vol: Volume;

  constructor(readonly state: PagedState) {
    this.vol = new Volume(state);
  }

  /** Forgets everything derived from the pages; call after a rollback or state transfer. */
  dropCaches(): void {
    this.vol = new Volume(this.state);
  }

  get fsid(): number {
    return this.vol.geo.fsid;
  }

  // ---- handles and inodes ----

  private handleOf(n: Inode): FileHandle {
    return encodeHandle({ fsid: this.vol.geo.fsid, ino: n.ino, generation: n.generation });
  }

  private inodeOf(fh: FileHandle): Inode {
    const h = decodeHandle(fh);
    if (h.fsid !== this.vol.geo.fsid) throw err(NfsStatus.STALE, 'handle of another file system');
    if (h.ino === 0 || h.ino >= this.vol.geo.inodeCount) {
      throw err(NfsStatus.BADHANDLE, 'inode number out of range');
    }
    if (h.ino >= this.vol.sbGet('inodeHighWater')) throw err(NfsStatus.STALE);
    const n = this.vol.readInode(h.ino);
    if (n.type === 0 || n.generation !== h.generation) throw err(NfsStatus.STALE);
    return n;
  }

  private dirOf(fh: FileHandle): Directory {
    const n = this.inodeOf(fh);
    if (n.type !== FileType.DIR) throw err(NfsStatus.NOTDIR);
    return new Directory(this.vol, n);
  }

  private attrsOf(n: Inode): Attributes {
    const used = n.usedBlocks * BLOCK_SIZE;
    return {
      type: n.type as FileType,
      mode: n.mode & 0o7777,
      nlink: n.nlink,
      uid: n.uid,
      gid: n.gid,
      size: n.type === FileType.DIR ? used : n.size,
      used,
      rdev: { major: n.rdevMajor, minor: n.rdevMinor },
      fsid: this.vol.geo.fsid,
      fileid: n.ino,
      atime: n.atime,
      mtime: n.mtime,
      ctime: n.ctime,
    };
  }

  private touch(n: Inode, t: NfsTime, modified: boolean): void {
    n.ctime = { ...t };
    if (modified) n.mtime = { ...t };
  }

  // ---- FileSystem ----

  root(): FileHandle {
    return this.handleOf(this.vol.readInode(ROOT_INO));
  }

  limits(): FsLimits {
    return {
      maxFileSize: MAX_FILE_SIZE,
      maxNameLength: MAX_NAME_LENGTH,
      maxLinks: MAX_LINKS,
      timeDelta: { seconds: 0, nseconds: 1 },
      supportsHardLinks: true,
      supportsSymlinks: true,
      maxIoSize: MAX_IO_SIZE,
    };
  }

  writeVerifier(): Uint8Array {
    return this.vol.geo.writeVerifier.slice();
  }

  getattr(fh: FileHandle): Attributes {
    return this.attrsOf(this.inodeOf(fh));
  }

  setattr(fh: FileHandle, attrs: SetAttributes, ctx: CallContext): Attributes {
    const n = this.inodeOf(fh);
    const mode = attrs.mode === undefined ? undefined : checkU32(attrs.mode, 'mode') & 0o7777;
    const uid = attrs.uid === undefined ? undefined : checkU32(attrs.uid, 'uid');
    const gid = attrs.gid === undefined ? undefined : checkU32(attrs.gid, 'gid');
    const atime =
      attrs.atime === undefined || attrs.atime === 'server' ? attrs.atime : checkTime(attrs.atime);
    const mtime =
      attrs.mtime === undefined || attrs.mtime === 'server' ? attrs.mtime : checkTime(attrs.mtime);
    const size = attrs.size;
    if (size !== undefined) {
      if (n.type === FileType.DIR) throw err(NfsStatus.ISDIR);
      if (n.type !== FileType.REG) throw err(NfsStatus.INVAL, 'size of a non-regular file');
      if (!Number.isSafeInteger(size) || size < 0) throw err(NfsStatus.INVAL, 'bad size');
      if (size > MAX_FILE_SIZE) throw err(NfsStatus.FBIG);
    }
    if (mode !== undefined) n.mode = mode;
    if (uid !== undefined) n.uid = uid;
    if (gid !== undefined) n.gid = gid;
    if (size !== undefined && size !== n.size) {
      if (size < n.size) this.vol.truncateBlocks(n, size);
      n.size = size;
      n.mtime = { ...ctx.time };
    }
    if (atime !== undefined) n.atime = atime === 'server' ? { ...ctx.time } : atime;
    if (mtime !== undefined) n.mtime = mtime === 'server' ? { ...ctx.time } : mtime;
    n.ctime = { ...ctx.time };
    this.vol.writeInode(n);
    return this.attrsOf(n);
  }

  lookup(dirFh: FileHandle, name: string): FileHandle {
    const dir = this.dirOf(dirFh);
    if (name === '.') return this.handleOf(dir.inode);
    if (name === '..') return this.handleOf(this.vol.readInode(dir.inode.parent));
    const ino = dir.lookup(checkName(name));
    if (ino === 0) throw err(NfsStatus.NOENT);
    return this.handleOf(this.vol.readInode(ino));
  }

  readlink(fh: FileHandle): string {
    const n = this.inodeOf(fh);
    if (n.type !== FileType.LNK) throw err(NfsStatus.INVAL, 'not a symbolic link');
    return Buffer.from(this.vol.readData(n, 0, Math.min(n.size, MAX_SYMLINK_LENGTH))).toString(
      'utf8',
    );
  }

  read(fh: FileHandle, offset: number, count: number): { data: Uint8Array; eof: boolean } {
    const n = this.inodeOf(fh);
    if (n.type === FileType.DIR) throw err(NfsStatus.ISDIR);
    if (n.type !== FileType.REG) throw err(NfsStatus.INVAL, 'not a regular file');
    if (!Number.isSafeInteger(offset) || offset < 0 || !Number.isSafeInteger(count) || count < 0) {
      throw err(NfsStatus.INVAL, 'bad offset or count');
    }
    if (offset >= n.size) return { data: new Uint8Array(0), eof: true };
    const len = Math.min(count, MAX_READ_SIZE, n.size - offset);
    return { data: this.vol.readData(n, offset, len), eof: offset + len >= n.size };
  }

  write(
    fh: FileHandle,
    offset: number,
    data: Uint8Array,
    _stable: StableHow,
    ctx: CallContext,
  ): { count: number; committed: StableHow } {
    const n = this.inodeOf(fh);
    if (n.type === FileType.DIR) throw err(NfsStatus.ISDIR);
    if (n.type !== FileType.REG) throw err(NfsStatus.INVAL, 'not a regular file');
    if (!Number.isSafeInteger(offset) || offset < 0) throw err(NfsStatus.INVAL, 'bad offset');
    if (offset + data.length > MAX_FILE_SIZE) throw err(NfsStatus.FBIG);
    if (data.length > 0) {
      const first = Math.floor(offset / BLOCK_SIZE);
      const last = Math.floor((offset + data.length - 1) / BLOCK_SIZE);
      this.vol.requireBlocks(this.vol.blocksNeeded(n, first, last));
      this.vol.writeData(n, offset, data);
      n.size = Math.max(n.size, offset + data.length);
    }
    this.touch(n, ctx.time, true);
    this.vol.writeInode(n);
    // Replicated state is stable once the operation commits: every write is FILE_SYNC.
    return { count: data.length, committed: 'file_sync' };
  }

  /** Checks a name for a new entry and that it is free; returns its bytes. */
  private newEntryName(dir: Directory, name: string): Uint8Array {
    if (isDotName(name)) throw err(NfsStatus.EXIST);
    const b = checkName(name);
    if (dir.lookup(b) !== 0) throw err(NfsStatus.EXIST);
    return b;
  }

  /** Allocates and links a new inode; all checks are done, space is reserved by the caller. */
  private makeNode(
    dir: Directory,
    name: Uint8Array,
    type: FileType,
    mode: number,
    ctx: CallContext,
    attrs: SetAttributes,
    extraBlocks: number,
  ): Inode {
    if (this.vol.sbGet('freeInodes') === 0) throw err(NfsStatus.NOSPC, 'no free inodes');
    this.vol.requireBlocks(dir.blocksForInsert() + extraBlocks);
    const asked = attrs.mode === undefined ? mode : checkU32(attrs.mode, 'mode') & 0o7777;
    const uid = attrs.uid === undefined ? ctx.cred.uid : checkU32(attrs.uid, 'uid');
    // A set-group-id directory passes on its group, and to subdirectories the bit itself.
    const inherited = newObjectOwnership(dir.inode, ctx.cred, type, asked);
    const gid = attrs.gid === undefined ? inherited.gid : checkU32(attrs.gid, 'gid');
    const setMode = inherited.mode;
    const atime =
      attrs.atime === undefined || attrs.atime === 'server' ? ctx.time : checkTime(attrs.atime);
    const mtime =
      attrs.mtime === undefined || attrs.mtime === 'server' ? ctx.time : checkTime(attrs.mtime);
    if (attrs.size !== undefined && (!Number.isSafeInteger(attrs.size) || attrs.size < 0)) {
      throw err(NfsStatus.INVAL, 'bad size');
    }
    if (attrs.size !== undefined && attrs.size > MAX_FILE_SIZE) throw err(NfsStatus.FBIG);
    const n = this.vol.allocInode();
    n.type = type;
    n.mode = setMode;
    n.nlink = 1;
    n.uid = uid;
    n.gid = gid;
    n.atime = { ...atime };
    n.mtime = { ...mtime };
    n.ctime = { ...ctx.time };
    if (type === FileType.REG && attrs.size !== undefined) n.size = attrs.size;
    dir.insert(name, n.ino);
    this.touch(dir.inode, ctx.time, true);
    return n;
  }

  create(dirFh: FileHandle, name: string, how: CreateMode, ctx: CallContext): FileHandle {
    const dir = this.dirOf(dirFh);
    if (isDotName(name)) throw err(NfsStatus.EXIST);
    const b = checkName(name);
    const existing = dir.lookup(b);
    if (existing !== 0) {
      const n = this.vol.readInode(existing);
      if (how.mode === 'guarded') throw err(NfsStatus.EXIST);
      if (how.mode === 'exclusive') {
        const same =
          n.type === FileType.REG &&
          (n.flags & INODE_FLAG_VERIFIER) !== 0 &&
          Buffer.compare(n.verifier, how.verifier.subarray(0, 8)) === 0;
        if (!same) throw err(NfsStatus.EXIST);
        return this.handleOf(n);
      }
      if (n.type !== FileType.REG) throw err(NfsStatus.EXIST);
      const fh = this.handleOf(n);
      // Like Linux nfsd and the memory backend: an existing file only takes the attributes
      // when the call truncates it (the usual O_CREAT|O_TRUNC retry).
      if (how.attributes.size !== undefined) this.setattr(fh, how.attributes, ctx);
      return fh;
    }
    if (how.mode === 'exclusive' && how.verifier.length !== 8) {
      throw err(NfsStatus.INVAL, 'bad create verifier');
    }
    const attrs = how.mode === 'exclusive' ? {} : how.attributes;
    const n = this.makeNode(dir, b, FileType.REG, DEFAULT_FILE_MODE, ctx, attrs, 0);
    if (how.mode === 'exclusive') {
      n.flags |= INODE_FLAG_VERIFIER;
      n.verifier = how.verifier.slice(0, 8);
    }
    this.vol.writeInode(n);
    this.vol.writeInode(dir.inode);
    return this.handleOf(n);
  }

  mkdir(dirFh: FileHandle, name: string, attrs: SetAttributes, ctx: CallContext): FileHandle {
    const dir = this.dirOf(dirFh);
    const b = this.newEntryName(dir, name);
    if (dir.inode.nlink >= MAX_LINKS) throw err(NfsStatus.MLINK);
    const n = this.makeNode(
      dir,
      b,
      FileType.DIR,
      DEFAULT_DIR_MODE,
      ctx,
      { ...attrs, size: undefined },
      1,
    );
    n.nlink = 2;
    n.parent = dir.inode.ino;
    Directory.init(this.vol, n);
    dir.inode.nlink++;
    this.vol.writeInode(n);
    this.vol.writeInode(dir.inode);
    return this.handleOf(n);
  }

  symlink(
    dirFh: FileHandle,
    name: string,
    target: string,
    attrs: SetAttributes,
    ctx: CallContext,
  ): FileHandle {
    const dir = this.dirOf(dirFh);
    const b = this.newEntryName(dir, name);
    const t = encodeName(target);
    if (t.length > MAX_SYMLINK_LENGTH) throw err(NfsStatus.NAMETOOLONG, 'symlink target too long');
    const blocks = Math.ceil(t.length / BLOCK_SIZE);
    const n = this.makeNode(
      dir,
      b,
      FileType.LNK,
      DEFAULT_SYMLINK_MODE,
      ctx,
      { ...attrs, size: undefined },
      blocks,
    );
    this.vol.writeData(n, 0, t);
    n.size = t.length;
    this.vol.writeInode(n);
    this.vol.writeInode(dir.inode);
    return this.handleOf(n);
  }

  mknod(
    dirFh: FileHandle,
    name: string,
    type: FileType,
    attrs: SetAttributes,
    rdev: { major: number; minor: number },
    ctx: CallContext,
  ): FileHandle {
    const dir = this.dirOf(dirFh);
    if (!NODE_TYPES.has(type)) throw err(NfsStatus.BADTYPE);
    const b = this.newEntryName(dir, name);
    const device = type === FileType.CHR || type === FileType.BLK;
    const major = device ? checkU32(rdev.major, 'rdev') : 0;
    const minor = device ? checkU32(rdev.minor, 'rdev') : 0;
    const n = this.makeNode(dir, b, type, DEFAULT_FILE_MODE, ctx, { ...attrs, size: undefined }, 0);
    n.rdevMajor = major;
    n.rdevMinor = minor;
    this.vol.writeInode(n);
    this.vol.writeInode(dir.inode);
    return this.handleOf(n);
  }

  /** Drops one link to `n` (already unlinked from its directory), freeing it at zero. */
  private dropLink(n: Inode, t: NfsTime): void {
    if (n.type === FileType.DIR) {
      n.nlink = 0;
    } else {
      n.nlink = Math.max(0, n.nlink - 1);
    }
    if (n.nlink === 0) this.vol.freeInode(n);
    else {
      n.ctime = { ...t };
      this.vol.writeInode(n);
    }
  }

  remove(dirFh: FileHandle, name: string, ctx: CallContext): void {
    const dir = this.dirOf(dirFh);
    if (isDotName(name)) throw err(NfsStatus.INVAL, 'cannot remove . or ..');
    const b = checkName(name);
    const ino = dir.lookup(b);
    if (ino === 0) throw err(NfsStatus.NOENT);
    const n = this.vol.readInode(ino);
    if (n.type === FileType.DIR) throw err(NfsStatus.ISDIR);
    dir.remove(b);
    this.touch(dir.inode, ctx.time, true);
    this.vol.writeInode(dir.inode);
    this.dropLink(n, ctx.time);
  }

  rmdir(dirFh: FileHandle, name: string, ctx: CallContext): void {
    const dir = this.dirOf(dirFh);
    if (name === '.') throw err(NfsStatus.INVAL, 'cannot remove .');
    if (name === '..') throw err(NfsStatus.NOTEMPTY);
    const b = checkName(name);
    const ino = dir.lookup(b);
    if (ino === 0) throw err(NfsStatus.NOENT);
    const n = this.vol.readInode(ino);
    if (n.type !== FileType.DIR) throw err(NfsStatus.NOTDIR);
    if (!new Directory(this.vol, n).isEmpty()) throw err(NfsStatus.NOTEMPTY);
    dir.remove(b);
    dir.inode.nlink--;
    this.touch(dir.inode, ctx.time, true);
    this.vol.writeInode(dir.inode);
    this.dropLink(n, ctx.time);
  }

  /** True when directory `ino` is `ancestor` or lies below it. */
  private isWithin(ino: number, ancestor: number): boolean {
    let cur = ino;
    for (let steps = 0; steps <= this.vol.geo.inodeCount; steps++) {
      if (cur === ancestor) return true;
      if (cur === ROOT_INO) return false;
      cur = this.vol.readInode(cur).parent;
    }
    throw err(NfsStatus.IO, 'directory parent chain loops');
  }

  rename(
    fromDirFh: FileHandle,
    fromName: string,
    toDirFh: FileHandle,
    toName: string,
    ctx: CallContext,
  ): void {
    const from = this.dirOf(fromDirFh);
    const sameDir = from.inode.ino === this.dirOf(toDirFh).inode.ino;
    const to = sameDir ? from : this.dirOf(toDirFh);
    if (isDotName(fromName) || isDotName(toName))
      throw err(NfsStatus.INVAL, 'cannot rename . or ..');
    const fb = checkName(fromName);
    const tb = checkName(toName);
    const srcIno = from.lookup(fb);
    if (srcIno === 0) throw err(NfsStatus.NOENT);
    const src = this.vol.readInode(srcIno);
    const srcIsDir = src.type === FileType.DIR;
    if (srcIsDir && !sameDir && this.isWithin(to.inode.ino, src.ino)) {
      throw err(NfsStatus.INVAL, 'cannot move a directory into its own subtree');
    }
    const tgtIno = to.lookup(tb);
    if (tgtIno === src.ino) return; // POSIX: renaming a name onto a link of the same file is a no-op
    let tgt: Inode | undefined;
    if (tgtIno !== 0) {
      tgt = this.vol.readInode(tgtIno);
      const tgtIsDir = tgt.type === FileType.DIR;
      // rename(2) refuses a target that holds the source (ENOTEMPTY) before it compares types.
      if (tgtIsDir && this.isWithin(from.inode.ino, tgt.ino)) throw err(NfsStatus.NOTEMPTY);
      if (srcIsDir && !tgtIsDir) throw err(NfsStatus.NOTDIR);
      if (!srcIsDir && tgtIsDir) throw err(NfsStatus.ISDIR);
      if (tgtIsDir && !new Directory(this.vol, tgt).isEmpty()) throw err(NfsStatus.NOTEMPTY);
    } else {
      if (srcIsDir && !sameDir && to.inode.nlink >= MAX_LINKS) throw err(NfsStatus.MLINK);
      this.vol.requireBlocks(to.blocksForInsert());
    }
    from.remove(fb);
    if (tgt) to.replace(tb, src.ino);
    else to.insert(tb, src.ino);
    if (srcIsDir) {
      if (!sameDir) {
        from.inode.nlink--;
        to.inode.nlink++;
        src.parent = to.inode.ino;
      }
      // A directory replaced by the move loses the link its '..' gave the target directory.
      if (tgt) to.inode.nlink--;
    }
    src.ctime = { ...ctx.time };
    this.vol.writeInode(src);
    this.touch(from.inode, ctx.time, true);
    if (!sameDir) this.touch(to.inode, ctx.time, true);
    this.vol.writeInode(from.inode);
    if (!sameDir) this.vol.writeInode(to.inode);
    if (tgt) this.dropLink(tgt, ctx.time);
  }

  link(fh: FileHandle, dirFh: FileHandle, name: string, ctx: CallContext): void {
    const n = this.inodeOf(fh);
    const dir = this.dirOf(dirFh);
    if (n.type === FileType.DIR) throw err(NfsStatus.ISDIR, 'hard links to directories');
    const b = this.newEntryName(dir, name);
    if (n.nlink >= MAX_LINKS) throw err(NfsStatus.MLINK);
    this.vol.requireBlocks(dir.blocksForInsert());
    dir.insert(b, n.ino);
    this.touch(dir.inode, ctx.time, true);
    this.vol.writeInode(dir.inode);
    n.nlink++;
    n.ctime = { ...ctx.time };
    this.vol.writeInode(n);
  }

  readdir(
    dirFh: FileHandle,
    cookie: number,
    _verifier: Uint8Array,
    maxEntries: number,
  ): ReadDirResult {
    const dir = this.dirOf(dirFh);
    if (!Number.isSafeInteger(maxEntries) || maxEntries < 1) throw err(NfsStatus.TOOSMALL);
    if (!Number.isSafeInteger(cookie) || cookie < 0) throw err(NfsStatus.BAD_COOKIE);
    const start = cookie < COOKIE_SLOT_BASE ? 0 : cookie - COOKIE_SLOT_BASE + 1;
    if (start > dir.header().slotHighWater) throw err(NfsStatus.BAD_COOKIE);
    // Cookies are slot positions and survive every change, so the verifier is constant.
    const verifier = ZERO_VERIFIER.slice();
    const entries: DirEntry[] = [];
    const me = dir.inode;
    if (cookie === 0) {
      entries.push({ fileid: me.ino, name: '.', cookie: COOKIE_DOT, handle: this.handleOf(me) });
    }
    if (cookie <= COOKIE_DOT) {
      if (entries.length >= maxEntries) return { entries, eof: false, verifier };
      const parent = this.vol.readInode(me.parent);
      entries.push({
        fileid: parent.ino,
        name: '..',
        cookie: COOKIE_DOTDOT,
        handle: this.handleOf(parent),
      });
    }
    const listing = dir.list(start, maxEntries - entries.length);
    for (const s of listing.slots) {
      const child = this.vol.readInode(s.ino);
      entries.push({
        fileid: s.ino,
        name: Buffer.from(s.name).toString('utf8'),
        cookie: s.index + COOKIE_SLOT_BASE,
        handle: this.handleOf(child),
      });
    }
    return { entries, eof: listing.next >= listing.highWater, verifier };
  }

  commit(fh: FileHandle, _offset: number, _count: number): Uint8Array {
    this.inodeOf(fh);
    return this.writeVerifier();
  }

  fsstat(fh: FileHandle): FsStat {
    this.inodeOf(fh);
    const g = this.vol.geo;
    const freeBytes = this.vol.freeBlockCount() * BLOCK_SIZE;
    const freeFiles = this.vol.sbGet('freeInodes');
    return {
      totalBytes: (g.totalBlocks - g.dataStart) * BLOCK_SIZE,
      freeBytes,
      availBytes: freeBytes,
      totalFiles: g.inodeCount - 1,
      freeFiles,
      availFiles: freeFiles,
      invarsec: 0,
    };
  }
}
