/**
 * The procedure layer's side of permissions.ts (imported as `guards`, so calls read
 * `guards.remove(fs, dir, name, ctx)`): each guard fetches the attributes a rule needs
 * from the backend and applies the rule, when the call's context checks permissions; otherwise
 * it does nothing. NFSv3 and NFSv2 call the same guards, so both versions enforce one rule set.
 * A guard that cannot find an object lets the backend answer (STALE, NOENT, NOTDIR), so an error
 * a call would get without permission checks is not hidden, only preceded by ACCES or PERM.
 */
import {
  type Attributes,
  type FileHandle,
  type FileSystem,
  FileType,
  type SetAttributes,
} from './filesystem';
import type { NfsCallContext } from './nfs3';
import {
  checkAddEntry,
  checkData,
  checkList,
  checkMknod,
  checkNewObjectAttributes,
  checkRemoveEntry,
  checkRename,
  checkSearch,
  holds,
  modeAfterWrite,
  permittedSetattr,
  W_OK,
} from './permissions';

function attrsOrNone(fs: FileSystem, fh: FileHandle): Attributes | undefined {
  try {
    return fs.getattr(fh);
  } catch {
    return undefined;
  }
}

/** The directory's attributes when it is one and permissions are checked. */
function checkedDir(fs: FileSystem, dir: FileHandle, ctx: NfsCallContext): Attributes | undefined {
  if (!ctx.checkPermissions) return undefined;
  const a = fs.getattr(dir);
  return a.type === FileType.DIR ? a : undefined; // the backend answers NOTDIR
}

function entryAttrs(fs: FileSystem, dir: FileHandle, name: string): Attributes | undefined {
  try {
    return fs.getattr(fs.lookup(dir, name));
  } catch {
    return undefined;
  }
}

/**
 * LOOKUP: search permission on the directory. Returns the directory's attributes when it fetched
 * them (a LOOKUP changes nothing, so they serve as its post-op attributes too).
 */
export function lookup(
  fs: FileSystem,
  dir: FileHandle,
  ctx: NfsCallContext,
): Attributes | undefined {
  const d = checkedDir(fs, dir, ctx);
  if (d) checkSearch(d, ctx.cred);
  return d;
}

/** READDIR, READDIRPLUS: read permission on the directory. */
export function list(fs: FileSystem, dir: FileHandle, ctx: NfsCallContext): void {
  const d = checkedDir(fs, dir, ctx);
  if (d) checkList(d, ctx.cred);
}

/** LINK: write and search permission on the directory that gets the new name. */
export function addEntry(fs: FileSystem, dir: FileHandle, ctx: NfsCallContext): void {
  const d = checkedDir(fs, dir, ctx);
  if (d) checkAddEntry(d, ctx.cred);
}

/**
 * CREATE, MKDIR, SYMLINK, MKNOD: write and search permission on the directory, attributes the
 * caller may give (no uid but its own, no foreign group), root for device nodes. A CREATE of a
 * name that exists as a regular file makes nothing new, so it needs only search permission on
 * the directory (as knfsd): GUARDED then answers EXIST, UNCHECKED returns the file, and with a
 * size it truncates it, a SETATTR of the size alone that obeys its rules. Returns the
 * attributes to create with.
 */
export function newObject(
  fs: FileSystem,
  dir: FileHandle,
  name: string,
  type: FileType,
  s: SetAttributes,
  ctx: NfsCallContext,
): SetAttributes {
  const d = checkedDir(fs, dir, ctx);
  if (!d) return s;
  // The existing file is looked for only where it changes the verdict, to spare the lookup.
  if (type === FileType.REG && (s.size !== undefined || !holds(d, ctx.cred, W_OK))) {
    const existing = entryAttrs(fs, dir, name);
    if (existing?.type === FileType.REG) {
      checkSearch(d, ctx.cred);
      // Only the size applies to a file that exists (knfsd drops the rest, for v2 and v3).
      return s.size === undefined ? s : permittedSetattr(existing, { size: s.size }, ctx.cred);
    }
  }
  checkAddEntry(d, ctx.cred);
  checkMknod(type, ctx.cred);
  checkNewObjectAttributes(d, s, ctx.cred);
  return s;
}

/** REMOVE, RMDIR: write and search permission on the directory, and the sticky-bit rule. */
export function remove(fs: FileSystem, dir: FileHandle, name: string, ctx: NfsCallContext): void {
  const d = checkedDir(fs, dir, ctx);
  if (d) checkRemoveEntry(d, entryAttrs(fs, dir, name), ctx.cred);
}

/** RENAME: see permissions.checkRename. */
export function rename(
  fs: FileSystem,
  from: { dir: FileHandle; name: string },
  to: { dir: FileHandle; name: string },
  ctx: NfsCallContext,
): void {
  const fromDir = checkedDir(fs, from.dir, ctx);
  const toDir = checkedDir(fs, to.dir, ctx);
  if (!fromDir || !toDir) return;
  const src = entryAttrs(fs, from.dir, from.name);
  checkRename(fromDir, src, toDir, entryAttrs(fs, to.dir, to.name), ctx.cred);
}

/** READ: read (or execute) permission on the file; its owner always may. */
export function read(fs: FileSystem, fh: FileHandle, ctx: NfsCallContext): void {
  if (!ctx.checkPermissions) return;
  const a = attrsOrNone(fs, fh);
  if (a) checkData(a, ctx.cred, false);
}

/**
 * WRITE, given the file's attributes before it (which WRITE fetches anyway for its wcc data):
 * write permission on the file; its owner always may.
 */
export function write(before: Attributes | undefined, ctx: NfsCallContext): void {
  if (before && ctx.checkPermissions) checkData(before, ctx.cred, true);
}

/** After a WRITE by anyone but root: the file loses its set-user-id and set-group-id bits. */
export function afterWrite(
  fs: FileSystem,
  fh: FileHandle,
  before: Attributes | undefined,
  ctx: NfsCallContext,
): void {
  if (!before || !ctx.checkPermissions) return;
  const mode = modeAfterWrite(before, ctx.cred);
  if (mode !== undefined) fs.setattr(fh, { mode }, ctx);
}

/**
 * SETATTR, given the object's attributes before it: see permissions.permittedSetattr. Returns
 * the attributes to apply.
 */
export function setattr(before: Attributes, s: SetAttributes, ctx: NfsCallContext): SetAttributes {
  return ctx.checkPermissions ? permittedSetattr(before, s, ctx.cred) : s;
}
