/**
 * The lock table in the page store: its deterministic encoding lives in a region of the
 * replicated state (LOCK_REGION_BYTES at the end), so checkpoints, digests and state transfer
 * cover the locks exactly as they cover the files. Each replica keeps the decoded table in
 * memory and writes back only the pages whose bytes changed.
 *
 *   region: u32 length, then `length` bytes of XDR:
 *     u32 format, u32 nextWaiterId,
 *     u32 n, n x lock,                       (files in handle order, locks by start)
 *     u32 n, n x (lock, u32 id, opaque cookie, string host, u32 version, opaque handle, bool granted),
 *     u32 n, n x (opaque fh, u32 relay, string caller, opaque oh, u32 mode, u32 access),
 *     u32 n, n x (u32 relay, u32 renewed)     (by relay)
 *   lock: opaque fh, u32 relay, string caller, i32 svid, opaque oh, bool exclusive,
 *         u64 start, u64 end - 1 (hi, lo u32 pairs; END_OF_FILE ends at 2^64 - 1)
 */
import type { PagedState } from '@bfs/page-store';
import { XdrError, XdrReader, XdrWriter } from 'nfs-server-ts';
import { type HeldLock, LockTable } from './lock-table';
import {
  MAX_CALLER_NAME_BYTES,
  MAX_COOKIE_BYTES,
  MAX_HOST_BYTES,
  MAX_LEASES,
  MAX_LOCKS,
  MAX_LOCK_FH_BYTES,
  MAX_OWNER_HANDLE_BYTES,
  MAX_SHARES,
  MAX_WAITERS,
} from './limits';

/** Version of the encoding above. */
export const LOCK_FORMAT = 2;
const U32 = 2n ** 32n;

function writeU64(w: XdrWriter, v: bigint): void {
  w.u32(Number(v / U32)).u32(Number(v % U32));
}

export function readU64(r: XdrReader): bigint {
  const hi = BigInt(r.u32());
  return hi * U32 + BigInt(r.u32());
}

function writeLock(w: XdrWriter, l: HeldLock): void {
  w.opaque(Buffer.from(l.fh, 'hex'))
    .u32(l.owner.relay)
    .string(l.owner.callerName)
    .i32(l.owner.svid)
    .opaque(l.owner.oh)
    .bool(l.exclusive);
  writeU64(w, l.start);
  writeU64(w, l.end - 1n);
}

function readLock(r: XdrReader): HeldLock {
  const fh = Buffer.from(r.opaque(MAX_LOCK_FH_BYTES)).toString('hex');
  const owner = {
    relay: r.u32(),
    callerName: r.string(MAX_CALLER_NAME_BYTES),
    svid: r.i32(),
    oh: Uint8Array.from(r.opaque(MAX_OWNER_HANDLE_BYTES)),
  };
  const exclusive = r.bool();
  const start = readU64(r);
  const end = readU64(r) + 1n;
  if (end <= start) throw new XdrError('empty lock range');
  return { fh, owner, exclusive, start, end };
}

function count(r: XdrReader, max: number): number {
  const n = r.u32();
  if (n > max) throw new XdrError(`${n} entries`);
  return n;
}

export function encodeLockTable(t: LockTable): Uint8Array {
  const w = new XdrWriter(4096).u32(0).u32(LOCK_FORMAT).u32(t.nextWaiterId);
  const locks = t.allLocks();
  w.u32(locks.length);
  for (const l of locks) writeLock(w, l);
  w.u32(t.waiters.length);
  for (const x of t.waiters) {
    writeLock(w, x);
    w.u32(x.id).opaque(x.cookie).string(x.host).u32(x.version).opaque(x.handle).bool(x.granted);
  }
  w.u32(t.shares.length);
  for (const s of t.shares) {
    w.opaque(Buffer.from(s.fh, 'hex')).u32(s.relay).string(s.callerName).opaque(s.oh);
    w.u32(s.mode).u32(s.access);
  }
  const leases = [...t.leases].sort((a, b) => a[0] - b[0]);
  w.u32(leases.length);
  for (const [relay, renewed] of leases) w.u32(relay).u32(renewed);
  const out = w.bytes();
  new DataView(out.buffer, out.byteOffset).setUint32(0, out.length - 4);
  return out;
}

/** Decodes a region's bytes; throws XdrError when they are not a table (a corrupt state). */
export function decodeLockTable(region: Uint8Array): LockTable {
  const t = new LockTable();
  const outer = new XdrReader(region);
  const length = outer.u32();
  if (length === 0) return t; // a region never written: the empty table
  const r = new XdrReader(outer.fixed(length));
  if (r.u32() !== LOCK_FORMAT) throw new XdrError('unknown lock table format');
  t.nextWaiterId = r.u32();
  for (let i = count(r, MAX_LOCKS); i > 0; i--) {
    const l = readLock(r);
    const file = t.files.get(l.fh);
    if (file) file.push(l);
    else t.files.set(l.fh, [l]);
  }
  for (let i = count(r, MAX_WAITERS); i > 0; i--) {
    const l = readLock(r);
    t.waiters.push({
      ...l,
      id: r.u32(),
      cookie: Uint8Array.from(r.opaque(MAX_COOKIE_BYTES)),
      host: r.string(MAX_HOST_BYTES),
      version: r.u32(),
      handle: Uint8Array.from(r.opaque(MAX_LOCK_FH_BYTES)),
      granted: r.bool(),
    });
  }
  for (let i = count(r, MAX_SHARES); i > 0; i--) {
    t.shares.push({
      fh: Buffer.from(r.opaque(MAX_LOCK_FH_BYTES)).toString('hex'),
      relay: r.u32(),
      callerName: r.string(MAX_CALLER_NAME_BYTES),
      oh: Uint8Array.from(r.opaque(MAX_OWNER_HANDLE_BYTES)),
      mode: r.u32(),
      access: r.u32(),
    });
  }
  for (let i = count(r, MAX_LEASES); i > 0; i--) t.leases.set(r.u32(), r.u32());
  r.end();
  t.recount();
  return t;
}

/** The table of one replica's state region, decoded once and written back page by page. */
export class LockStore {
  private cached: LockTable | undefined;
  /** The region's bytes as last read or written (what the pages hold). */
  private written: Uint8Array = new Uint8Array(0);

  constructor(private readonly region: PagedState) {}

  get table(): LockTable {
    if (!this.cached) {
      const length = new DataView(this.region.read(0, 4).buffer).getUint32(0);
      const bytes = this.region.read(0, Math.min(4 + length, this.region.size));
      try {
        this.cached = decodeLockTable(bytes);
        this.written = Uint8Array.from(bytes);
      } catch (e) {
        if (!(e instanceof XdrError || e instanceof RangeError)) throw e;
        // A corrupt region is this replica's fault: its checkpoint digest will differ and state
        // transfer fetch the right pages. Until then it answers from an empty table.
        this.cached = new LockTable();
        this.written = new Uint8Array(0);
      }
    }
    return this.cached;
  }

  /** Writes the table back: only the pages whose bytes changed. */
  save(): void {
    const bytes = encodeLockTable(this.table);
    if (bytes.length > this.region.size) {
      // The limits make this impossible (a unit test checks the worst case fits).
      throw new Error(`lock table of ${bytes.length} bytes exceeds its region`);
    }
    const page = this.region.pageSize;
    const end = Math.max(bytes.length, this.written.length);
    for (let p = 0; p < end; p += page) {
      const next = padded(bytes, p, page);
      if (!Buffer.from(next).equals(Buffer.from(padded(this.written, p, page)))) {
        this.region.write(p, next.subarray(0, Math.min(page, this.region.size - p)));
      }
    }
    this.written = bytes;
  }

  /** Forget the decoded table (the pages were replaced: rollback or state transfer). */
  drop(): void {
    this.cached = undefined;
    this.written = new Uint8Array(0);
  }
}

function padded(bytes: Uint8Array, at: number, page: number): Uint8Array {
  const out = new Uint8Array(page);
  out.set(bytes.subarray(at, at + page));
  return out;
}
