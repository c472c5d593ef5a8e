/**
 * The relay's cache of NFSv3 LOOKUP replies, positive and negative (NOENT), as the replicas
 * agreed them. Clients repeat LOOKUPs (a compiler's include path search, a path-based client
 * such as libnfs resolving every component on every call), and each costs a read-only round
 * through 2f + 1 replicas.
 *
 * Exact for changes made through this relay: the relay drops the entries a call can change
 * before it answers that call (Relay.forgetChanged). Bounded in time (the TTL) for changes made
 * through other relays, which never reach it, as a client's own attribute cache is. Keyed by the
 * call's exact arguments and the caller's (squashed) credential, so a reply is only ever replayed
 * to a caller the replicas gave it to: a uid without search permission on the directory never
 * sees what another uid looked up, and malformed arguments hit only their own replies.
 */
import {
  type Credentials,
  FileType,
  MAX_PATH,
  NFS3_FHSIZE,
  NfsStatus,
  XdrReader,
} from 'nfs-server-ts';

/**
 * How long a LOOKUP reply is served from the relay (ms; 0 turns the cache off). The bound on how
 * late this relay's clients see a name made or removed through another relay, on top of their
 * own client cache. 10 s measured no faster than 1 s through fuse-nfs (docs/benchmarks.md).
 */
export const LOOKUP_CACHE_MS = 1000;

/**
 * Entries at most (the oldest is evicted first). An entry holds its key (the arguments in hex,
 * at most about 0.7 KB for a 255-byte name) and the reply (about 0.3 KB): tens of MB at worst.
 */
export const LOOKUP_CACHE_ENTRIES = 16_384;

/** Offsets in a fattr3 (RFC 1813 2.5): ftype3 type, then mode, then nlink. */
const FATTR3_BYTES = 84;
const NLINK_AT = 8;

/** The credential as the cache and the relay's permission memo key it. */
export function credentialKey(cred: Credentials): string {
  return `${cred.uid}:${cred.gid}:${cred.gids.join(',')}`;
}

const hex = (b: Uint8Array) => Buffer.from(b).toString('hex');

interface Entry {
  body: Uint8Array;
  expiresMs: number;
  dir: string;
  name: string;
  /** The handle the reply names (positive replies only). */
  child?: Uint8Array;
  /** A non-directory with other names: its nlink changes when one of them goes. */
  linked: boolean;
}

export interface LookupCacheStats {
  hits: number;
  misses: number;
  stored: number;
  evicted: number;
}

export interface LookupCacheOptions {
  ttlMs: number;
  maxEntries?: number;
  /** Milliseconds on a monotonic clock (default performance.now; tests pass their own). */
  now?: () => number;
}

export class LookupCache {
  readonly stats: LookupCacheStats = { hits: 0, misses: 0, stored: 0, evicted: 0 };
  private readonly entries = new Map<string, Entry>();
  /** Keys of the entries that are in a directory or name a file, by that handle (hex). */
  private readonly byHandle = new Map<string, Set<string>>();
  private readonly ttlMs: number;
  private readonly maxEntries: number;
  private readonly now: () => number;
  private changes = 0;

  constructor(o: LookupCacheOptions) {
    this.ttlMs = o.ttlMs;
    this.maxEntries = o.maxEntries ?? LOOKUP_CACHE_ENTRIES;
    this.now = o.now ?? (() => performance.now());
  }

  get size(): number {
    return this.entries.size;
  }

  /**
   * Counts invalidations: a reply is stored only if none happened while it was being asked for,
   * since a change answered meanwhile may have come after the replicas ran the LOOKUP.
   */
  get generation(): number {
    return this.changes;
  }

  /**
   * The cached reply to these arguments for this caller, if one is within its time bound and
   * `usable` takes the file it names.
   */
  get(
    args: Uint8Array,
    cred: Credentials,
    usable: (child: Uint8Array) => boolean = () => true,
  ): Uint8Array | undefined {
    const key = `${credentialKey(cred)}|${hex(args)}`;
    const e = this.entries.get(key);
    if (e && e.expiresMs > this.now() && (!e.child || usable(e.child))) {
      this.stats.hits++;
      return e.body;
    }
    if (e) this.delete(key);
    this.stats.misses++;
    return undefined;
  }

  /** Keeps an OK or NOENT reply asked for at `since` (generation), if nothing changed since. */
  store(args: Uint8Array, cred: Credentials, body: Uint8Array, since: number): void {
    if (since !== this.changes) return;
    const parsed = parseLookup(args, body);
    if (!parsed) return;
    const key = `${credentialKey(cred)}|${hex(args)}`;
    this.delete(key);
    // A copy: the reply may be a view of a larger buffer, which the entry would keep alive.
    const kept = Uint8Array.from(body);
    this.entries.set(key, { ...parsed, body: kept, expiresMs: this.now() + this.ttlMs });
    this.index(parsed.dir, key);
    if (parsed.child) this.index(hex(parsed.child), key);
    this.stats.stored++;
    for (const oldest of this.entries.keys()) {
      if (this.entries.size <= this.maxEntries) break;
      this.delete(oldest);
      this.stats.evicted++;
    }
  }

  /** Drops every entry in directory `fh` or naming `fh` (its attributes changed). */
  forget(fh: Uint8Array): void {
    this.changes++;
    this.forgetHex(hex(fh));
  }

  /**
   * Drops the entries of directory `dir`, and of every file its `names` named: true when each
   * name had an entry (so the caller knows every file the change touched).
   */
  forgetNames(dir: Uint8Array, names: string[]): boolean {
    this.changes++;
    const d = hex(dir);
    const known = new Set<string>();
    const children: string[] = [];
    for (const key of this.byHandle.get(d) ?? []) {
      const e = this.entries.get(key)!;
      if (e.dir !== d || !names.includes(e.name)) continue;
      known.add(e.name);
      if (e.child) children.push(hex(e.child));
    }
    this.forgetHex(d);
    for (const c of children) this.forgetHex(c);
    return known.size === new Set(names).size;
  }

  /** Drops entries of files with several names: one of them went, and which is not known. */
  forgetLinked(): void {
    this.changes++;
    for (const [key, e] of this.entries) if (e.linked) this.delete(key);
  }

  clear(): void {
    this.changes++;
    this.entries.clear();
    this.byHandle.clear();
  }

  private forgetHex(h: string): void {
    const keys = this.byHandle.get(h);
    if (!keys) return;
    for (const key of [...keys]) this.delete(key);
  }

  private index(h: string, key: string): void {
    let keys = this.byHandle.get(h);
    if (!keys) this.byHandle.set(h, (keys = new Set()));
    keys.add(key);
  }

  private unindex(h: string, key: string): void {
    const keys = this.byHandle.get(h);
    if (!keys) return;
    keys.delete(key);
    if (keys.size === 0) this.byHandle.delete(h);
  }

  private delete(key: string): void {
    const e = this.entries.get(key);
    if (!e) return;
    this.entries.delete(key);
    this.unindex(e.dir, key);
    if (e.child) this.unindex(hex(e.child), key);
  }
}

/** The directory and name of a LOOKUP and what its reply names; undefined if not cacheable. */
function parseLookup(
  args: Uint8Array,
  body: Uint8Array,
): { dir: string; name: string; child?: Uint8Array; linked: boolean } | undefined {
  try {
    const a = new XdrReader(args);
    const dir = hex(a.opaque(NFS3_FHSIZE));
    const name = a.string(MAX_PATH);
    a.end();
    const r = new XdrReader(body);
    const status = r.u32();
    if (status === NfsStatus.NOENT) return { dir, name, linked: false };
    if (status !== NfsStatus.OK) return undefined;
    const child = Uint8Array.from(r.opaque(NFS3_FHSIZE));
    let linked = false;
    if (r.bool()) {
      const attr = r.fixed(FATTR3_BYTES);
      const view = new DataView(attr.buffer, attr.byteOffset, FATTR3_BYTES);
      linked = view.getUint32(0) !== FileType.DIR && view.getUint32(NLINK_AT) > 1;
    }
    return { dir, name, child, linked };
  } catch {
    return undefined;
  }
}
