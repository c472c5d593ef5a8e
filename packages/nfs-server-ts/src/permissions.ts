/**
 * The Unix permission rules of the NFS server, as pure functions of an object's attributes and
 * the caller's AUTH_SYS credentials: no file system, no clock, no I/O. The procedure layer
 * (nfs3.ts, nfs2.ts) applies them to every call when the export checks permissions, so the BFS
 * replicas, the memory backend and the local-directory backend all answer from one rule set,
 * and every BFS replica reaches the same verdict from the same state and operation.
 *
 * POSIX semantics, as Linux implements them, with knfsd's choices where NFS needs one:
 * - uid 0 may do anything, except execute a file that has no execute bit at all;
 * - the owner of a regular file may always READ and WRITE it, whatever its mode (knfsd's owner
 *   override): NFS is stateless, so the server cannot tell a WRITE to a file the owner created
 *   with mode 0444 and still holds open, which POSIX allows, from any other WRITE. ACCESS still
 *   reports the mode bits, so the owner's own client refuses a new open() as a local kernel would;
 * - errors are ACCES for a missing permission bit and PERM for an ownership rule (chown, chmod,
 *   explicit times, the sticky bit, device nodes), the statuses knfsd returns for EACCES/EPERM.
 */
import {
  type Attributes,
  type Credentials,
  FileType,
  NfsError,
  NfsStatus,
  type SetAttributes,
} from './filesystem';

export const S_ISUID = 0o4000;
export const S_ISGID = 0o2000;
/** The sticky bit: in a directory, only the owner of an entry or of the directory removes it. */
export const S_ISVTX = 0o1000;
const S_IXGRP = 0o010;
const ANY_EXEC = 0o111;

/** Permission bits of one class (owner, group or other). */
export const R_OK = 4;
export const W_OK = 2;
export const X_OK = 1;

/** ACCESS3 bits (RFC 1813 section 3.3.4). */
export const ACCESS3 = {
  READ: 0x1,
  LOOKUP: 0x2,
  MODIFY: 0x4,
  EXTEND: 0x8,
  DELETE: 0x10,
  EXECUTE: 0x20,
} as const;

export function isRoot(cred: Credentials): boolean {
  return cred.uid === 0;
}

/** The primary gid and the supplementary gids (at most MAX_AUTH_SYS_GIDS, as AUTH_SYS carries). */
export function inGroup(cred: Credentials, gid: number): boolean {
  return cred.gid === gid || cred.gids.includes(gid);
}

/** The rwx bits (R_OK | W_OK | X_OK) of the class the caller falls in; uid 0 holds all three. */
export function classBits(a: Attributes, cred: Credentials): number {
  if (isRoot(cred)) return 7;
  if (cred.uid === a.uid) return (a.mode >> 6) & 7;
  if (inGroup(cred, a.gid)) return (a.mode >> 3) & 7;
  return a.mode & 7;
}

/** True when the caller holds every bit of `want` (R_OK | W_OK | X_OK) on the object. */
export function holds(a: Attributes, cred: Credentials, want: number): boolean {
  if (isRoot(cred)) {
    // Root searches every directory but executes only what someone may execute.
    return (want & X_OK) === 0 || a.type === FileType.DIR || (a.mode & ANY_EXEC) !== 0;
  }
  return (classBits(a, cred) & want) === want;
}

/** The ACCESS answer: the bits of `requested` the mode grants (a read-only export drops writes). */
export function accessBits(
  a: Attributes,
  cred: Credentials,
  requested: number,
  readOnly = false,
): number {
  const isDir = a.type === FileType.DIR;
  let granted = 0;
  if (holds(a, cred, R_OK)) granted |= ACCESS3.READ;
  if (holds(a, cred, W_OK) && !readOnly) {
    granted |= ACCESS3.MODIFY | ACCESS3.EXTEND;
    if (isDir) granted |= ACCESS3.DELETE;
  }
  if (holds(a, cred, X_OK)) granted |= isDir ? ACCESS3.LOOKUP : ACCESS3.EXECUTE;
  return granted & requested;
}

function need(ok: boolean, status: NfsStatus, why: string): void {
  if (!ok) throw new NfsError(status, why);
}

/** LOOKUP (every directory a path walks): search permission. */
export function checkSearch(dir: Attributes, cred: Credentials): void {
  need(holds(dir, cred, X_OK), NfsStatus.ACCES, 'no search permission on the directory');
}

/** READDIR and READDIRPLUS: read permission on the directory. */
export function checkList(dir: Attributes, cred: Credentials): void {
  need(holds(dir, cred, R_OK), NfsStatus.ACCES, 'no read permission on the directory');
}

/** A new entry (CREATE, MKDIR, SYMLINK, MKNOD, LINK, RENAME's target): write and search. */
export function checkAddEntry(dir: Attributes, cred: Credentials): void {
  need(holds(dir, cred, W_OK | X_OK), NfsStatus.ACCES, 'no write permission on the directory');
}

/**
 * Removing the entry for `victim` (REMOVE, RMDIR, RENAME's source and replaced target): write
 * and search on the directory, and in a sticky directory ownership of the entry or the directory.
 */
export function checkRemoveEntry(
  dir: Attributes,
  victim: Attributes | undefined,
  cred: Credentials,
): void {
  checkAddEntry(dir, cred);
  if (!victim || isRoot(cred) || (dir.mode & S_ISVTX) === 0) return;
  need(
    cred.uid === victim.uid || cred.uid === dir.uid,
    NfsStatus.PERM,
    'sticky directory: only the owner of the entry or of the directory removes it',
  );
}

/**
 * RENAME: remove from `fromDir`, add to `toDir` (removing a target that exists), and a directory
 * moved to another parent needs write permission on itself, since its '..' changes (as Linux).
 */
export function checkRename(
  fromDir: Attributes,
  src: Attributes | undefined,
  toDir: Attributes,
  target: Attributes | undefined,
  cred: Credentials,
): void {
  checkRemoveEntry(fromDir, src, cred);
  if (target) checkRemoveEntry(toDir, target, cred);
  else checkAddEntry(toDir, cred);
  if (src?.type === FileType.DIR && fromDir.fileid !== toDir.fileid) {
    need(holds(src, cred, W_OK), NfsStatus.ACCES, 'no write permission on the moved directory');
  }
}

/**
 * READ needs read permission (or execute: a client reads a program to run it, as knfsd allows),
 * WRITE and COMMIT need write permission; the owner of a regular file always may (module doc).
 * Other types are left to the backend, which answers ISDIR or INVAL.
 */
export function checkData(a: Attributes, cred: Credentials, write: boolean): void {
  if (a.type !== FileType.REG || cred.uid === a.uid) return;
  const ok = write ? holds(a, cred, W_OK) : holds(a, cred, R_OK) || holds(a, cred, X_OK);
  need(ok, NfsStatus.ACCES, write ? 'no write permission' : 'no read permission');
}

/** Drops set-user-id, and set-group-id where group execute makes it one (as Linux). */
function withoutSetId(mode: number): number {
  return mode & ~(S_ISUID | ((mode & S_IXGRP) !== 0 ? S_ISGID : 0));
}

/**
 * The mode a regular file must take after a WRITE by this caller: a write by anyone but root
 * clears set-user-id and set-group-id, so a program cannot be changed and keep its privileges.
 * Undefined when nothing changes.
 */
export function modeAfterWrite(a: Attributes, cred: Credentials): number | undefined {
  if (a.type !== FileType.REG || isRoot(cred)) return undefined;
  const mode = withoutSetId(a.mode);
  return mode === a.mode ? undefined : mode;
}

function hasExplicitTime(s: SetAttributes): boolean {
  return (
    (s.atime !== undefined && s.atime !== 'server') ||
    (s.mtime !== undefined && s.mtime !== 'server')
  );
}

/**
 * SETATTR: checks who may change what and returns the attributes to apply, which may carry a
 * mode the caller did not ask for (set-id bits dropped). The rules (POSIX, as Linux and knfsd):
 * - uid: root only (the owner may "change" it to itself); gid: root, or the owner to a group it
 *   is in; a chown or chgrp of anything but a directory clears set-user-id and set-group-id,
 *   whoever makes it (POSIX requires it of non-root callers and leaves root's to the system;
 *   Linux and knfsd clear them for root too, and the local-directory backend cannot do otherwise);
 * - mode: the owner or root; a caller outside the file's group cannot set set-group-id (the bit
 *   is dropped silently, as chmod(2) does);
 * - size, and times set to the server's time: write permission (the owner always may);
 *   a size change by anyone but root clears set-id bits, as a write does;
 * - explicit times: the owner or root.
 */
export function permittedSetattr(
  a: Attributes,
  s: SetAttributes,
  cred: Credentials,
): SetAttributes {
  const root = isRoot(cred);
  if (!root) checkSetattrRules(a, s, cred);
  let mode = s.mode;
  if (!root && mode !== undefined && (mode & S_ISGID) !== 0 && !inGroup(cred, s.gid ?? a.gid)) {
    mode &= ~S_ISGID;
  }
  const chown = (s.uid !== undefined || s.gid !== undefined) && a.type !== FileType.DIR;
  const truncate = s.size !== undefined && a.type === FileType.REG && !root;
  if (chown || truncate) mode = withoutSetId(mode ?? a.mode);
  if (mode === s.mode || (s.mode === undefined && mode === a.mode)) return s;
  return { ...s, mode };
}

/** The ownership and permission rules of permittedSetattr, for a caller other than root. */
function checkSetattrRules(a: Attributes, s: SetAttributes, cred: Credentials): void {
  const owner = cred.uid === a.uid;
  if (s.uid !== undefined) need(owner && s.uid === a.uid, NfsStatus.PERM, 'only root chowns');
  if (s.gid !== undefined) {
    const ok = owner && (s.gid === a.gid || inGroup(cred, s.gid));
    need(ok, NfsStatus.PERM, "chgrp needs the owner and a group it's in");
  }
  if (s.mode !== undefined || hasExplicitTime(s)) {
    need(owner, NfsStatus.PERM, 'only the owner sets the mode or explicit times');
  }
  if (s.size !== undefined || s.atime === 'server' || s.mtime === 'server') {
    need(owner || holds(a, cred, W_OK), NfsStatus.ACCES, 'no write permission');
  }
}

/**
 * The group and mode of a new object in `dir` (every backend uses this, checked or not): in a
 * set-group-id directory new entries take the directory's group and new subdirectories the bit
 * itself; elsewhere the caller's primary group. A non-directory asking for set-group-id with a
 * group the caller is not in loses the bit (as Linux's inode_init_owner).
 */
export function newObjectOwnership(
  dir: Attributes | { mode: number; gid: number },
  cred: Credentials,
  type: FileType,
  mode: number,
): { gid: number; mode: number } {
  const sgidDir = (dir.mode & S_ISGID) !== 0;
  const gid = sgidDir ? dir.gid : cred.gid;
  if (type === FileType.DIR) return { gid, mode: sgidDir ? mode | S_ISGID : mode };
  if ((mode & S_ISGID) !== 0 && !isRoot(cred) && !inGroup(cred, gid)) {
    return { gid, mode: mode & ~S_ISGID };
  }
  return { gid, mode };
}

/**
 * Attributes a non-root caller gives a new object (CREATE, MKDIR, SYMLINK, MKNOD): it cannot
 * give it away (uid other than its own) or to a group it is not in (other than the one the
 * directory hands down).
 */
export function checkNewObjectAttributes(
  dir: Attributes,
  s: SetAttributes,
  cred: Credentials,
): void {
  if (isRoot(cred)) return;
  if (s.uid !== undefined) need(s.uid === cred.uid, NfsStatus.PERM, 'only root chowns');
  if (s.gid !== undefined) {
    const inherited = newObjectOwnership(dir, cred, FileType.REG, 0).gid;
    need(s.gid === inherited || inGroup(cred, s.gid), NfsStatus.PERM, 'not in that group');
  }
}

/** MKNOD: only root makes device nodes (FIFOs and sockets are anyone's). */
export function checkMknod(type: FileType, cred: Credentials): void {
  if (type !== FileType.CHR && type !== FileType.BLK) return;
  need(isRoot(cred), NfsStatus.PERM, 'only root makes device nodes');
}
