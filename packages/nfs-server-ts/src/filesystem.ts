/**
 * The backend contract of the NFS server. Everything is in terms of opaque file handles and
 * attributes, never paths, and with NFSv3 semantics (RFC 1813); the procedure layer maps NFSv2
 * onto it. The interface is synchronous on purpose: the BFS replicas execute NFS calls inside the
 * PBFT state machine, which runs synchronously and must be deterministic given the call and the
 * agreed time in `CallContext.time`. A backend never reads the wall clock itself.
 */

/** nfsstat3 (RFC 1813 section 2.6). The procedure layer maps these to NFSv2's nfsstat. */
export enum NfsStatus {
  OK = 0,
  PERM = 1,
  NOENT = 2,
  IO = 5,
  NXIO = 6,
  ACCES = 13,
  EXIST = 17,
  XDEV = 18,
  NODEV = 19,
  NOTDIR = 20,
  ISDIR = 21,
  INVAL = 22,
  FBIG = 27,
  NOSPC = 28,
  ROFS = 30,
  MLINK = 31,
  NAMETOOLONG = 63,
  NOTEMPTY = 66,
  DQUOT = 69,
  STALE = 70,
  REMOTE = 71,
  BADHANDLE = 10001,
  NOT_SYNC = 10002,
  BAD_COOKIE = 10003,
  NOTSUPP = 10004,
  TOOSMALL = 10005,
  SERVERFAULT = 10006,
  BADTYPE = 10007,
  JUKEBOX = 10008,
}

/** A backend signals an NFS error by throwing this; anything else thrown becomes SERVERFAULT. */
export class NfsError extends Error {
  constructor(
    readonly status: NfsStatus,
    message?: string,
  ) {
    super(message ?? `NFS error ${NfsStatus[status] ?? status}`);
    this.name = 'NfsError';
  }
}

/** ftype3. */
export enum FileType {
  REG = 1,
  DIR = 2,
  BLK = 3,
  CHR = 4,
  LNK = 5,
  SOCK = 6,
  FIFO = 7,
}

/** nfstime3: seconds and nanoseconds since the epoch. */
export interface NfsTime {
  seconds: number;
  nseconds: number;
}

/**
 * Opaque handle; at most 64 bytes (NFSv3), and at most 31 for a backend that serves NFSv2 (the
 * last of NFSv2's fixed 32 bytes records the handle's length).
 */
export type FileHandle = Uint8Array;

/** fattr3. 64-bit quantities are JS numbers (exact up to 2^53, far past any size served here). */
export interface Attributes {
  type: FileType;
  /** Permission and set-id bits (07777), without the file type. */
  mode: number;
  nlink: number;
  uid: number;
  gid: number;
  size: number;
  /** Bytes of storage actually used (sparse files use less than `size`). */
  used: number;
  rdev: { major: number; minor: number };
  fsid: number;
  fileid: number;
  atime: NfsTime;
  mtime: NfsTime;
  ctime: NfsTime;
}

/** sattr3: only the fields present are set. `atime`/`mtime` of 'server' mean the call's time. */
export interface SetAttributes {
  mode?: number;
  uid?: number;
  gid?: number;
  size?: number;
  atime?: NfsTime | 'server';
  mtime?: NfsTime | 'server';
}

/** AUTH_SYS credentials after export policy (root squashing) has been applied. */
export interface Credentials {
  uid: number;
  gid: number;
  gids: number[];
}

/** What the procedure layer hands the backend with every call. */
export interface CallContext {
  cred: Credentials;
  /** The call's time: the agreed non-deterministic value under BFS, the clock otherwise. */
  time: NfsTime;
}

export type CreateMode =
  | { mode: 'unchecked'; attributes: SetAttributes }
  | { mode: 'guarded'; attributes: SetAttributes }
  /** EXCLUSIVE: a retry with the same 8-byte verifier must succeed and return the same file. */
  | { mode: 'exclusive'; verifier: Uint8Array };

export type StableHow = 'unstable' | 'data_sync' | 'file_sync';

export interface DirEntry {
  fileid: number;
  name: string;
  /** Cookie that resumes the listing after this entry; stable while the entry exists. */
  cookie: number;
  /** Handle of the entry, for READDIRPLUS. */
  handle: FileHandle;
}

export interface ReadDirResult {
  entries: DirEntry[];
  eof: boolean;
  /** cookieverf3 (8 bytes). A backend whose cookies survive changes may return all zeros. */
  verifier: Uint8Array;
}

export interface FsStat {
  totalBytes: number;
  freeBytes: number;
  availBytes: number;
  totalFiles: number;
  freeFiles: number;
  availFiles: number;
  /** Seconds for which these figures stay valid (0: may change any time). */
  invarsec: number;
}

/** Limits the backend imposes; the procedure layer reports them in FSINFO and PATHCONF. */
export interface FsLimits {
  maxFileSize: number;
  maxNameLength: number;
  maxLinks: number;
  /** Server time granularity. */
  timeDelta: NfsTime;
  /** FSF3_LINK / FSF3_SYMLINK / FSF3_HOMOGENEOUS / FSF3_CANSETTIME. */
  supportsHardLinks: boolean;
  supportsSymlinks: boolean;
  /**
   * Largest READ/WRITE payload and READDIR reply the backend wants (FSINFO rtmax/wtmax), when
   * smaller than the server's own MAX_IO_SIZE: a replicated backend bounds what one operation
   * and its result may carry.
   */
  maxIoSize?: number;
}

/**
 * A file-system backend. Names are single path components: the procedure layer rejects empty
 * names, names with '/' or NUL, and names over `limits().maxNameLength` before calling here, and
 * handles '.' and '..' in LOOKUP through `lookup` (a backend must support both).
 * Every mutating call takes the context so the backend can stamp times and owners.
 */
export interface FileSystem {
  /** Handle of the export root. */
  root(): FileHandle;
  limits(): FsLimits;
  /** Verifier for WRITE/COMMIT; changes only when unstable data may have been lost. */
  writeVerifier(): Uint8Array;

  getattr(fh: FileHandle): Attributes;
  setattr(fh: FileHandle, attrs: SetAttributes, ctx: CallContext): Attributes;
  lookup(dir: FileHandle, name: string): FileHandle;
  readlink(fh: FileHandle): string;
  read(fh: FileHandle, offset: number, count: number): { data: Uint8Array; eof: boolean };
  write(
    fh: FileHandle,
    offset: number,
    data: Uint8Array,
    stable: StableHow,
    ctx: CallContext,
  ): { count: number; committed: StableHow };
  create(dir: FileHandle, name: string, how: CreateMode, ctx: CallContext): FileHandle;
  mkdir(dir: FileHandle, name: string, attrs: SetAttributes, ctx: CallContext): FileHandle;
  symlink(
    dir: FileHandle,
    name: string,
    target: string,
    attrs: SetAttributes,
    ctx: CallContext,
  ): FileHandle;
  /** FIFO, SOCK, CHR or BLK; a backend that cannot throws NfsError(NOTSUPP). */
  mknod(
    dir: FileHandle,
    name: string,
    type: FileType,
    attrs: SetAttributes,
    rdev: { major: number; minor: number },
    ctx: CallContext,
  ): FileHandle;
  remove(dir: FileHandle, name: string, ctx: CallContext): void;
  rmdir(dir: FileHandle, name: string, ctx: CallContext): void;
  /** Replaces an existing target of a compatible type, as POSIX rename does. */
  rename(
    fromDir: FileHandle,
    fromName: string,
    toDir: FileHandle,
    toName: string,
    ctx: CallContext,
  ): void;
  link(fh: FileHandle, dir: FileHandle, name: string, ctx: CallContext): void;
  /**
   * Up to `maxEntries` entries after `cookie` (0: from the start, '.' and '..' included).
   * Throws NfsError(BAD_COOKIE) for a cookie it never issued or a stale verifier it cares about.
   */
  readdir(dir: FileHandle, cookie: number, verifier: Uint8Array, maxEntries: number): ReadDirResult;
  /** Makes unstable writes durable; returns the write verifier. */
  commit(fh: FileHandle, offset: number, count: number): Uint8Array;
  fsstat(fh: FileHandle): FsStat;
}
