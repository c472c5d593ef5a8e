/**
 * The names under which the relay saw files, from the replies to its clients' CREATE and LOOKUP
 * calls and the LINK, REMOVE and RENAME calls it forwarded. The write-back buffer uses it to let a
 * CREATE go on while other files' writes are still being flushed: a CREATE can only touch buffered
 * data by naming such a file, and for a file of which the relay knows every name (one link when
 * first seen, every later link seen) it can tell whether it does. A file it knows less of makes a
 * CREATE wait for every flush, as before.
 *
 * Names changed through another relay are not seen here (NFS promises other relays' clients
 * close-to-open consistency only); see docs/operations.md.
 */
import { XdrReader, backendHandleOf } from 'nfs-server-ts';

/** Names kept at most; the oldest are forgotten first (their files become not fully known). */
export const MAX_KNOWN_NAMES = 65_536;

/** Files and directories by their backend handle, as the write-back buffer keys them. */
function hex(b: Uint8Array): string {
  return Buffer.from(backendHandleOf(b)).toString('hex');
}

export class KnownNames {
  /** dir handle (hex) + '/' + name -> file handle (hex). */
  private readonly byName = new Map<string, string>();
  private readonly namesOf = new Map<string, Set<string>>();
  /** Files whose every name is in byName. */
  private readonly complete = new Set<string>();

  private static slot(dir: Uint8Array, name: string): string {
    return `${hex(dir)}/${name}`;
  }

  /** The file named `name` in `dir`, as last seen. */
  at(dir: Uint8Array, name: string): string | undefined {
    return this.byName.get(KnownNames.slot(dir, name));
  }

  /** Whether every name of the file is known. */
  fullyKnown(fhKey: string): boolean {
    return this.complete.has(fhKey);
  }

  /** A reply named the file `fh` as `name` in `dir`, with `nlink` links (undefined: unknown). */
  saw(dir: Uint8Array, name: string, fh: Uint8Array, nlink: number | undefined): void {
    const f = hex(fh);
    const slot = KnownNames.slot(dir, name);
    this.drop(slot);
    if (nlink === 1)
      // Its one name is this one: any other we had is gone.
      for (const s of [...(this.namesOf.get(f) ?? [])]) this.drop(s);
    this.add(slot, f);
    if (nlink !== undefined && nlink === this.namesOf.get(f)!.size) this.complete.add(f);
    else if (nlink === undefined || nlink > this.namesOf.get(f)!.size) this.complete.delete(f);
  }

  linked(fh: Uint8Array, dir: Uint8Array, name: string): void {
    const slot = KnownNames.slot(dir, name);
    this.drop(slot);
    this.add(slot, hex(fh));
  }

  removed(dir: Uint8Array, name: string): void {
    this.drop(KnownNames.slot(dir, name));
  }

  renamed(fromDir: Uint8Array, from: string, toDir: Uint8Array, to: string): void {
    const f = this.byName.get(KnownNames.slot(fromDir, from));
    this.drop(KnownNames.slot(toDir, to));
    if (f !== undefined) this.add(KnownNames.slot(toDir, to), f);
    this.drop(KnownNames.slot(fromDir, from));
  }

  private add(slot: string, f: string): void {
    this.byName.set(slot, f);
    let set = this.namesOf.get(f);
    if (!set) this.namesOf.set(f, (set = new Set()));
    set.add(slot);
    while (this.byName.size > MAX_KNOWN_NAMES) {
      const oldest = this.byName.keys().next().value!;
      // A name of it is forgotten: it may have names we no longer know.
      this.complete.delete(this.byName.get(oldest)!);
      this.drop(oldest);
    }
  }

  private drop(slot: string): void {
    const f = this.byName.get(slot);
    if (f === undefined) return;
    this.byName.delete(slot);
    const set = this.namesOf.get(f)!;
    set.delete(slot);
    if (set.size === 0) {
      // No name reaches it any more (and complete stays bounded by the names kept).
      this.namesOf.delete(f);
      this.complete.delete(f);
    }
  }
}

/** The handles and link counts a READDIRPLUS3 reply carries; undefined if it does not parse. */
export function readdirplusHandles(body: Uint8Array): Uint8Array[] | undefined {
  try {
    const r = new XdrReader(body);
    if (r.u32() !== 0) return [];
    if (r.bool()) r.fixed(84);
    r.fixed(8);
    const out: Uint8Array[] = [];
    while (r.bool()) {
      r.u64();
      r.string();
      r.u64();
      if (r.bool()) r.fixed(84);
      if (r.bool()) out.push(r.opaque(64));
    }
    return out;
  } catch {
    return undefined;
  }
}

/**
 * The handle and link count of a LOOKUP3 or CREATE3 (MKDIR, SYMLINK, MKNOD) reply that
 * succeeded; undefined otherwise.
 */
export function replyHandle(
  body: Uint8Array,
  created: boolean,
): { fh: Uint8Array; nlink?: number } | undefined {
  try {
    const r = new XdrReader(body);
    if (r.u32() !== 0) return undefined;
    if (created && !r.bool()) return undefined;
    const fh = Uint8Array.from(r.opaque(64));
    if (!r.bool()) return { fh };
    const attr = r.fixed(84);
    return { fh, nlink: new DataView(attr.buffer, attr.byteOffset, 84).getUint32(8) };
  } catch {
    return undefined;
  }
}
