/**
 * Several exports of one backend, each a subtree with its own access, enforced by the server
 * that holds the data rather than by whoever forwards the calls. Every handle names the export
 * it was reached through and carries a MAC of that binding under a key the forwarder does not
 * know, so a forwarder can neither move a handle to another export nor make one up: a handle
 * is reached from its export's root by LOOKUP and friends, which keep the binding, and '..'
 * stops at the export's root. Writes through a read-only export answer ROFS, and RENAME or LINK
 * between exports XDEV, whatever the call's context says.
 */
import { createHmac } from 'node:crypto';
import {
  type Attributes,
  type CallContext,
  type CreateMode,
  type FileHandle,
  type FileSystem,
  type FileType,
  type FsLimits,
  type FsStat,
  type ReadDirResult,
  type SetAttributes,
  type StableHow,
  NfsError,
  NfsStatus,
} from './filesystem';

/** Bytes of the MAC that binds a handle to its export (a forgery is one agreed call per try). */
export const EXPORT_TAG_BYTES = 8;
/** What an exported handle adds to the backend's: the export's index (u16) and the MAC. */
export const EXPORT_SUFFIX_BYTES = 2 + EXPORT_TAG_BYTES;
/** Most exports one backend serves (the index travels in two bytes; lists stay short). */
export const MAX_EXPORTS = 256;
/**
 * MACs remembered (a bounded memo: a MAC is a function of the key, the export and the handle,
 * so a remembered one is never stale). A call checks or makes several, mostly of the same few
 * handles; the memo saves the HMAC on all but the first (see bench/exports.ts in @bfs/bfs).
 */
export const EXPORT_MAC_MEMO = 4096;
/** Length of the key of export MACs. */
export const EXPORT_KEY_BYTES = 32;

/** One export as the data's server enforces it: which subtree and whether it may change. */
export interface ExportedTree {
  /** Absolute path of the export's root directory inside the backend ('/' for all of it). */
  path: string;
  readOnly: boolean;
}

/** The export index a handle claims (unverified: only the key's holder can check the MAC). */
export function exportIndexOf(fh: Uint8Array): number | undefined {
  if (fh.length <= EXPORT_SUFFIX_BYTES) return undefined;
  const at = fh.length - EXPORT_SUFFIX_BYTES;
  return (fh[at] << 8) | fh[at + 1];
}

/**
 * The backend's part of an exported handle, unverified: one file reached through two exports
 * has two handles and one backend handle (what a cache of per-file state keys by).
 */
export function backendHandleOf(fh: Uint8Array): Uint8Array {
  return fh.length > EXPORT_SUFFIX_BYTES ? fh.subarray(0, fh.length - EXPORT_SUFFIX_BYTES) : fh;
}

/** The path's components below '/', refusing '.', '..' and empty names in the middle. */
export function exportPathParts(p: string): string[] {
  if (!p.startsWith('/')) throw new Error(`export path must be absolute: ${p}`);
  const parts = p.split('/').filter((x) => x !== '');
  for (const x of parts) {
    if (x === '.' || x === '..' || x.includes('\0')) throw new Error(`bad export path: ${p}`);
  }
  return parts;
}

interface Unwrapped {
  inner: FileHandle;
  index: number;
}

/** The backend as seen through its exports; `view(i)` has export i's root as its root. */
export class ExportedFileSystem implements FileSystem {
  private readonly views: ExportedFileSystem[];
  private readonly parts: string[][];
  private readonly identities: Buffer[];
  private readonly memo: Map<string, Buffer>;

  constructor(
    readonly inner: FileSystem,
    readonly trees: readonly ExportedTree[],
    private readonly key: Uint8Array,
    /** The export whose root `root()` answers (MOUNT resolves paths from there). */
    readonly rootExport = 0,
    shared?: ExportedFileSystem[],
  ) {
    if (trees.length === 0 || trees.length > MAX_EXPORTS)
      throw new Error(`1 to ${MAX_EXPORTS} exports, not ${trees.length}`);
    if (key.length < 16) throw new Error('export key too short');
    this.parts = trees.map((e) => exportPathParts(e.path));
    this.identities = trees.map((e, i) =>
      Buffer.from(`${i}\0${this.parts[i].join('/')}\0${e.readOnly ? 'ro' : 'rw'}\0`),
    );
    this.views = shared ?? [];
    this.memo = this.views.find((v) => v !== undefined)?.memo ?? new Map();
    this.views[rootExport] = this;
  }

  /** The same exports with export `index`'s root as root(). */
  view(index: number): ExportedFileSystem {
    if (!(index >= 0 && index < this.trees.length)) throw new NfsError(NfsStatus.STALE);
    return (
      this.views[index] ??
      new ExportedFileSystem(this.inner, this.trees, this.key, index, this.views)
    );
  }

  /**
   * The MAC covers the export's index, path and access, so that a handle made before the
   * exports changed (one removed, reordered, made read-write) is STALE instead of rebound.
   */
  private tag(inner: FileHandle, index: number): Buffer {
    const k =
      String.fromCharCode(index) +
      Buffer.from(inner.buffer, inner.byteOffset, inner.length).toString('latin1');
    let tag = this.memo.get(k);
    if (tag === undefined) {
      tag = createHmac('sha256', this.key)
        .update(this.identities[index])
        .update(inner)
        .digest()
        .subarray(0, EXPORT_TAG_BYTES);
      this.memo.set(k, tag);
      if (this.memo.size > EXPORT_MAC_MEMO) this.memo.delete(this.memo.keys().next().value!);
    }
    return tag;
  }

  wrap(inner: FileHandle, index: number): FileHandle {
    const out = new Uint8Array(inner.length + EXPORT_SUFFIX_BYTES);
    out.set(inner, 0);
    out[inner.length] = index >> 8;
    out[inner.length + 1] = index & 0xff;
    out.set(this.tag(inner, index), inner.length + 2);
    return out;
  }

  /** The backend's handle and the export; STALE for a handle no export of ours made. */
  unwrap(fh: FileHandle): Unwrapped {
    const index = exportIndexOf(fh);
    if (index === undefined) throw new NfsError(NfsStatus.BADHANDLE, 'not an exported handle');
    if (index >= this.trees.length) throw new NfsError(NfsStatus.STALE, 'unknown export');
    const inner = fh.subarray(0, fh.length - EXPORT_SUFFIX_BYTES);
    const want = this.tag(inner, index);
    const got = fh.subarray(fh.length - EXPORT_TAG_BYTES);
    if (!want.equals(got)) throw new NfsError(NfsStatus.STALE, 'handle not bound to its export');
    return { inner, index };
  }

  private writable(fh: FileHandle): Unwrapped {
    const u = this.unwrap(fh);
    if (this.trees[u.index].readOnly) throw new NfsError(NfsStatus.ROFS);
    return u;
  }

  /** The backend's handle of export `index`'s root directory (NOENT once it is gone). */
  private innerRoot(index: number): FileHandle {
    let fh = this.inner.root();
    for (const part of this.parts[index]) fh = this.inner.lookup(fh, part);
    return fh;
  }

  private isExportRoot(u: Unwrapped): boolean {
    if (this.parts[u.index].length === 0) return sameBytes(u.inner, this.inner.root());
    try {
      return sameBytes(u.inner, this.innerRoot(u.index));
    } catch {
      return false;
    }
  }

  root(): FileHandle {
    return this.wrap(this.innerRoot(this.rootExport), this.rootExport);
  }

  limits(): FsLimits {
    return this.inner.limits();
  }

  writeVerifier(): Uint8Array {
    return this.inner.writeVerifier();
  }

  getattr(fh: FileHandle): Attributes {
    return this.inner.getattr(this.unwrap(fh).inner);
  }

  setattr(fh: FileHandle, attrs: SetAttributes, ctx: CallContext): Attributes {
    return this.inner.setattr(this.writable(fh).inner, attrs, ctx);
  }

  lookup(dir: FileHandle, name: string): FileHandle {
    const u = this.unwrap(dir);
    // '..' of an export's root is the root itself, as on a server's own root.
    if (name === '..' && this.isExportRoot(u)) {
      this.inner.getattr(u.inner);
      return dir;
    }
    return this.wrap(this.inner.lookup(u.inner, name), u.index);
  }

  readlink(fh: FileHandle): string {
    return this.inner.readlink(this.unwrap(fh).inner);
  }

  read(fh: FileHandle, offset: number, count: number): { data: Uint8Array; eof: boolean } {
    return this.inner.read(this.unwrap(fh).inner, offset, count);
  }

  write(
    fh: FileHandle,
    offset: number,
    data: Uint8Array,
    stable: StableHow,
    ctx: CallContext,
  ): { count: number; committed: StableHow } {
    return this.inner.write(this.writable(fh).inner, offset, data, stable, ctx);
  }

  create(dir: FileHandle, name: string, how: CreateMode, ctx: CallContext): FileHandle {
    const u = this.writable(dir);
    return this.wrap(this.inner.create(u.inner, name, how, ctx), u.index);
  }

  mkdir(dir: FileHandle, name: string, attrs: SetAttributes, ctx: CallContext): FileHandle {
    const u = this.writable(dir);
    return this.wrap(this.inner.mkdir(u.inner, name, attrs, ctx), u.index);
  }

  symlink(
    dir: FileHandle,
    name: string,
    target: string,
    attrs: SetAttributes,
    ctx: CallContext,
  ): FileHandle {
    const u = this.writable(dir);
    return this.wrap(this.inner.symlink(u.inner, name, target, attrs, ctx), u.index);
  }

  mknod(
    dir: FileHandle,
    name: string,
    type: FileType,
    attrs: SetAttributes,
    rdev: { major: number; minor: number },
    ctx: CallContext,
  ): FileHandle {
    const u = this.writable(dir);
    return this.wrap(this.inner.mknod(u.inner, name, type, attrs, rdev, ctx), u.index);
  }

  remove(dir: FileHandle, name: string, ctx: CallContext): void {
    this.inner.remove(this.writable(dir).inner, name, ctx);
  }

  rmdir(dir: FileHandle, name: string, ctx: CallContext): void {
    this.inner.rmdir(this.writable(dir).inner, name, ctx);
  }

  rename(
    fromDir: FileHandle,
    fromName: string,
    toDir: FileHandle,
    toName: string,
    ctx: CallContext,
  ): void {
    const from = this.writable(fromDir);
    const to = this.writable(toDir);
    if (from.index !== to.index) throw new NfsError(NfsStatus.XDEV, 'rename between exports');
    this.inner.rename(from.inner, fromName, to.inner, toName, ctx);
  }

  link(fh: FileHandle, dir: FileHandle, name: string, ctx: CallContext): void {
    const file = this.unwrap(fh);
    const d = this.writable(dir);
    if (file.index !== d.index) throw new NfsError(NfsStatus.XDEV, 'link between exports');
    this.inner.link(file.inner, d.inner, name, ctx);
  }

  readdir(
    dir: FileHandle,
    cookie: number,
    verifier: Uint8Array,
    maxEntries: number,
  ): ReadDirResult {
    const u = this.unwrap(dir);
    const r = this.inner.readdir(u.inner, cookie, verifier, maxEntries);
    let atRoot: boolean | undefined;
    const entries = r.entries.map((e) => {
      if (e.name === '..' && (atRoot ??= this.isExportRoot(u))) {
        return { ...e, fileid: this.inner.getattr(u.inner).fileid, handle: dir };
      }
      return { ...e, handle: this.wrap(e.handle, u.index) };
    });
    return { ...r, entries };
  }

  commit(fh: FileHandle, offset: number, count: number): Uint8Array {
    return this.inner.commit(this.unwrap(fh).inner, offset, count);
  }

  fsstat(fh: FileHandle): FsStat {
    return this.inner.fsstat(this.unwrap(fh).inner);
  }
}

function sameBytes(a: Uint8Array, b: Uint8Array): boolean {
  return a.length === b.length && Buffer.from(a.buffer, a.byteOffset, a.length).equals(b);
}
