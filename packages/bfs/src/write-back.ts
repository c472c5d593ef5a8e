/**
 * The relay's write-back buffer (RFC 1813 sections 3.3.7 and 3.3.21): UNSTABLE WRITEs are
 * answered from here at once, with the relay's write verifier, and their data goes through PBFT
 * behind the client's back as flush operations (service/flush.ts), several extents to one
 * operation. A COMMIT, and every call that could observe the data, waits for its flush; a flush
 * that failed is answered on the file's next COMMIT and later WRITEs.
 *
 * Ordering: one flush of a file at a time, so what the replicas write for a file comes in the
 * order of the client's writes (later bytes win); files flush side by side, FLUSH_MAX_IN_FLIGHT
 * operations and FLUSH_MAX_IN_FLIGHT_BYTES at most. Memory: WRITE_BACK_MAX_DIRTY_BYTES of data waiting at most; a WRITE that
 * would pass it waits for flushes to make room.
 */
import { randomBytes } from 'node:crypto';
import { type Credentials, backendHandleOf } from 'nfs-server-ts';
import { MAX_OP_BYTES } from '@bfs/pbft';
import { MAX_IO_SIZE } from './fs/constants';
import {
  type FlushExtent,
  MAX_FLUSH_EXTENTS,
  decodeFlushResult,
  encodeFlushArgs,
} from './service/flush';

/** Bytes of UNSTABLE data a relay holds that are not yet on the replicas, at most. */
export const WRITE_BACK_MAX_DIRTY_BYTES = 32 * 2 ** 20;
/**
 * What each buffered extent costs beyond its data, counted against WRITE_BACK_MAX_DIRTY_BYTES
 * (so a client writing single bytes far apart cannot hold millions of extents).
 */
export const EXTENT_COST_BYTES = 128;
/** Files with buffered data at most; a WRITE to one more waits, as for bytes. */
export const MAX_DIRTY_FILES = 16_384;

/** Flush operations on their way through PBFT at once (the primary batches them together). */
export const FLUSH_MAX_IN_FLIGHT = 8;
/**
 * Data bytes of the flush operations on their way at once, at most (one more starts when any
 * are below it): each waits behind the others' bytes at every replica, and eight flushes of
 * 1 MiB took longer than the client's retransmission timeout, whose retransmissions sent their
 * bytes to every replica again. Two operations keep the primary's pipeline full.
 */
export const FLUSH_MAX_IN_FLIGHT_BYTES = 2 * 2 ** 20;
/** Data bytes in one flush operation at most (its headers stay under MAX_OP_BYTES). */
export const FLUSH_OP_BYTES = MAX_OP_BYTES - 32 * 1024;
/**
 * How long writes of less than an extent wait for more before their flush starts (a call that
 * could observe them, a COMMIT for one, starts it at once): a client writing 4 KiB at a time
 * then sends one flush where it would send one per write.
 */
export const FLUSH_GATHER_MS = 5;
/** One extent holds at most one WRITE's worth (what a replica's WRITE accepts). */
export const FLUSH_EXTENT_BYTES = MAX_IO_SIZE;

/**
 * Files whose failed flush waits for a COMMIT to report it, and files whose COMMIT can be
 * answered by the relay, at most: beyond it the oldest are forgotten (a client that never
 * commits cannot grow the relay's memory; a forgotten COMMIT goes to the replicas).
 */
export const MAX_FAILED_FILES = 4096;

/** NFS3ERR_SERVERFAULT: a flush that got no agreed answer. */
const SERVERFAULT = 10006;

interface Extent {
  offset: number;
  data: Uint8Array;
}

class DirtyFile {
  /** Sorted by offset, no two overlapping. */
  extents: Extent[] = [];
  /** What its extents count against the dirty limit (data and EXTENT_COST_BYTES each). */
  bytes = 0;
  /** Their data bytes alone. */
  dataBytes = 0;
  /** Set while small writes gather before their flush (FLUSH_GATHER_MS). */
  gather: NodeJS.Timeout | undefined;
  /** Flush operations of this file on their way, with the byte ranges each carries. */
  readonly flights = new Map<Promise<void>, { offset: number; end: number }[]>();
  get busy(): boolean {
    return this.flights.size > 0;
  }
  /** The first failure of a flush not yet reported by a COMMIT (an nfsstat3), or 0. */
  error = 0;
  constructor(
    readonly fh: Uint8Array,
    public cred: Credentials,
  ) {}
}

export interface WriteBackStats {
  /** UNSTABLE WRITEs answered from the buffer. */
  buffered: number;
  flushOps: number;
  flushedExtents: number;
  flushedBytes: number;
  /** Extents a replica refused (the status is kept for the file's COMMIT). */
  flushErrors: number;
  /** WRITEs that waited for room (WRITE_BACK_MAX_DIRTY_BYTES). */
  waitedForRoom: number;
  /** Calls that waited for a flush before they went on (they could observe buffered data). */
  barriers: number;
}

/** What a write-back buffer holds at one moment. */
export interface WriteBackGauges {
  /** Bytes buffered or in flight, with EXTENT_COST_BYTES per extent (WriteBack.dirtyBytes). */
  dirtyBytes: number;
  /** Files with data buffered or in flight. */
  dirtyFiles: number;
  /** Flush operations on their way through PBFT (FLUSH_MAX_IN_FLIGHT at most). */
  flushesInFlight: number;
}

function sameCred(a: Credentials, b: Credentials): boolean {
  return a.uid === b.uid && a.gid === b.gid && a.gids.join() === b.gids.join();
}

/** A file's key: its backend handle, so a file written through two exports is one file. */
function key(fh: Uint8Array): string {
  return Buffer.from(backendHandleOf(fh)).toString('hex');
}

/**
 * Puts `data` at `offset` into `extents` (sorted, disjoint): later bytes win; neighbours merge.
 * Returns how many extents and data bytes it added (negative when it merged or covered some).
 */
export function insertExtent(
  extents: Extent[],
  offset: number,
  data: Uint8Array,
): { extents: number; bytes: number } {
  const end = offset + data.length;
  // Extents touching [offset, end] (overlapping or adjacent).
  let first = 0;
  while (first < extents.length && extents[first].offset + extents[first].data.length < offset)
    first++;
  let last = first;
  while (last < extents.length && extents[last].offset <= end) last++;
  const touched = extents.slice(first, last);
  const lo = Math.min(offset, ...touched.map((e) => e.offset));
  const hi = Math.max(end, ...touched.map((e) => e.offset + e.data.length));
  let replacement: Extent[];
  if (hi - lo <= FLUSH_EXTENT_BYTES) {
    const merged = new Uint8Array(hi - lo);
    for (const e of touched) merged.set(e.data, e.offset - lo);
    merged.set(data, offset - lo);
    replacement = [{ offset: lo, data: merged }];
  } else {
    // Too large for one extent: keep the neighbours apart, cut what the new bytes cover.
    replacement = [];
    for (const e of touched) {
      const eEnd = e.offset + e.data.length;
      if (e.offset < offset)
        replacement.push({ offset: e.offset, data: e.data.subarray(0, offset - e.offset) });
      if (eEnd > end) replacement.push({ offset: end, data: e.data.subarray(end - e.offset) });
    }
    replacement.push({ offset, data: Uint8Array.from(data) });
    replacement.sort((a, b) => a.offset - b.offset);
  }
  extents.splice(first, last - first, ...replacement);
  const size = (list: Extent[]) => list.reduce((n, e) => n + e.data.length, 0);
  return {
    extents: replacement.length - touched.length,
    bytes: size(replacement) - size(touched),
  };
}

export class WriteBack {
  /** The relay's write verifier: new at every start, so clients re-send what was not committed. */
  readonly verifier = new Uint8Array(randomBytes(8));
  readonly stats: WriteBackStats = {
    buffered: 0,
    flushOps: 0,
    flushedExtents: 0,
    flushedBytes: 0,
    flushErrors: 0,
    waitedForRoom: 0,
    barriers: 0,
  };
  private readonly files = new Map<string, DirtyFile>();
  /**
   * Files whose buffered writes all reached the replicas since their last COMMIT (insertion
   * order, MAX_FAILED_FILES at most): a flush is an agreed FILE_SYNC write, so their COMMIT
   * needs no agreement of its own.
   */
  private readonly flushed = new Set<string>();
  /** Buffered or in-flight data bytes, with EXTENT_COST_BYTES per extent. */
  dirtyBytes = 0;
  private inFlight = 0;
  private inFlightBytes = 0;
  private readonly slotWaiters: (() => void)[] = [];
  /** Files with extents that found every slot taken. */
  private readonly waiting = new Set<DirtyFile>();
  private roomWaiters: (() => void)[] = [];

  constructor(
    /** Runs one flush operation (its args) through PBFT; resolves with the agreed result body. */
    private readonly flushOp: (cred: Credentials, args: Uint8Array) => Promise<Uint8Array>,
    private readonly maxDirtyBytes = WRITE_BACK_MAX_DIRTY_BYTES,
  ) {}

  /** What the buffer holds now (metrics and the status page read it once a second or scrape). */
  gauges(): WriteBackGauges {
    let files = 0;
    for (const f of this.files.values()) if (f.busy || f.extents.length > 0) files++;
    return { dirtyBytes: this.dirtyBytes, dirtyFiles: files, flushesInFlight: this.inFlight };
  }

  /** Whether any data waits or flies: when not, no call needs to wait for anything. */
  get idle(): boolean {
    return this.files.size === 0;
  }

  /**
   * Buffers an UNSTABLE WRITE. Resolves with 0 once the data is held, or with the nfsstat3 of
   * an earlier failed flush of this file (the WRITE then fails with it; nothing is buffered).
   */
  async write(
    fh: Uint8Array,
    cred: Credentials,
    offset: number,
    data: Uint8Array,
  ): Promise<number> {
    const k = key(fh);
    let f = this.files.get(k);
    if (f?.error) return f.error;
    if (f && !sameCred(f.cred, cred)) {
      // One flush operation carries one credential: what another user wrote goes first.
      await this.flushFile(fh);
      f = this.files.get(k);
      if (f?.error) return f.error;
    }
    const full = (): boolean =>
      this.dirtyBytes > 0 &&
      (this.dirtyBytes + data.length + EXTENT_COST_BYTES > this.maxDirtyBytes ||
        (!this.files.has(k) && this.files.size >= MAX_DIRTY_FILES));
    if (full()) {
      this.stats.waitedForRoom++;
      while (full()) await new Promise<void>((r) => this.roomWaiters.push(r));
      f = this.files.get(k);
      if (f?.error) return f.error;
    }
    if (!f) {
      f = new DirtyFile(Uint8Array.from(fh), cred);
      this.files.set(k, f);
    }
    f.cred = cred;
    for (let at = 0; at < data.length; at += FLUSH_EXTENT_BYTES) {
      const part = data.subarray(at, at + FLUSH_EXTENT_BYTES);
      const added = insertExtent(f.extents, offset + at, part);
      const charge = added.bytes + added.extents * EXTENT_COST_BYTES;
      f.bytes += charge;
      f.dataBytes += added.bytes;
      this.dirtyBytes += charge;
    }
    this.stats.buffered++;
    this.kick(f);
    return 0;
  }

  /** Waits until nothing of this file is buffered or in flight. */
  async flushFile(fh: Uint8Array | string): Promise<void> {
    const f = this.files.get(typeof fh === 'string' ? fh : key(fh));
    if (!f) return;
    this.stats.barriers++;
    while (f.busy || f.extents.length > 0) {
      this.kick(f, true);
      if (f.busy) await Promise.race(f.flights.keys());
      // Every slot carries other files' data: wait for one to land.
      else await new Promise<void>((r) => this.slotWaiters.push(r));
    }
  }

  /** Whether the file (handle or its hex key) has data buffered or in flight. */
  isDirty(fh: Uint8Array | string): boolean {
    const f = this.files.get(typeof fh === 'string' ? fh : key(fh));
    return f !== undefined && (f.busy || f.extents.length > 0);
  }

  /** The hex keys of the files with data buffered or in flight. */
  *dirtyKeys(): IterableIterator<string> {
    for (const [k, f] of this.files) if (f.busy || f.extents.length > 0) yield k;
  }

  /** Waits until nothing of any file is buffered or in flight. */
  async flushAll(): Promise<void> {
    if (this.files.size === 0) return;
    await Promise.all([...this.files.values()].map((f) => this.flushFile(f.fh)));
  }

  /** The failure of a flush of this file, now reported (COMMIT): forgotten after this. */
  takeError(fh: Uint8Array): number {
    const k = key(fh);
    const f = this.files.get(k);
    if (!f?.error) return 0;
    const error = f.error;
    f.error = 0;
    if (!f.busy && f.extents.length === 0) this.files.delete(k);
    return error;
  }

  /**
   * Whether everything this relay buffered for the file since its last COMMIT is on the
   * replicas (flushed without error, nothing pending): the COMMIT can be answered here. Forgets
   * the file, so a second COMMIT goes to the replicas.
   */
  takeFlushed(fh: Uint8Array): boolean {
    const k = key(fh);
    if (this.files.has(k)) return false;
    return this.flushed.delete(k);
  }

  /** The failure of a flush of this file not yet reported by a COMMIT, or 0. */
  errorOf(fh: Uint8Array): number {
    return this.files.get(key(fh))?.error ?? 0;
  }

  /**
   * Starts flush operations for the file's extents while slots are free. Extents that overlap
   * one in flight wait for it (the replicas must apply them in the client's order); others go
   * in parallel, writes to disjoint bytes commute, once they fill an extent (FLUSH_EXTENT_BYTES)
   * or nothing of the file is in flight, or at once when `force`d (a call waits for them).
   */
  private kick(f: DirtyFile, force = false): void {
    while (f.extents.length > 0) {
      if (!force && f.dataBytes < FLUSH_EXTENT_BYTES) {
        this.gather(f);
        return;
      }
      if (this.inFlight >= FLUSH_MAX_IN_FLIGHT || this.inFlightBytes >= FLUSH_MAX_IN_FLIGHT_BYTES) {
        this.waiting.add(f);
        return;
      }
      const flying = [...f.flights.values()].flat();
      const overlaps = (e: Extent) =>
        flying.some((r) => e.offset < r.end && r.offset < e.offset + e.data.length);
      const taken: FlushExtent[] = [];
      let bytes = 0;
      for (let i = 0; i < f.extents.length && taken.length < MAX_FLUSH_EXTENTS;) {
        const e = f.extents[i];
        if (overlaps(e) || (taken.length > 0 && bytes + e.data.length > FLUSH_OP_BYTES)) {
          i++;
          continue;
        }
        f.extents.splice(i, 1);
        taken.push({ fh: f.fh, offset: e.offset, data: e.data });
        bytes += e.data.length;
      }
      if (taken.length === 0) return;
      if (!force && bytes < FLUSH_EXTENT_BYTES) {
        // Less than an extent: let small writes gather, until a call waits for them, or
        // FLUSH_GATHER_MS pass with none of the file's flushes out.
        f.extents.push(...taken.map((e) => ({ offset: e.offset, data: e.data })));
        f.extents.sort((a, b) => a.offset - b.offset);
        this.gather(f);
        return;
      }
      // Still counted in dirtyBytes until the replicas have them.
      const charge = bytes + taken.length * EXTENT_COST_BYTES;
      f.bytes -= charge;
      f.dataBytes -= bytes;
      this.inFlight++;
      this.inFlightBytes += bytes;
      const flight = this.fly(f, taken, bytes, charge).finally(() => {
        f.flights.delete(flight);
        this.inFlight--;
        this.inFlightBytes -= bytes;
        const wake = this.slotWaiters.splice(0);
        for (const w of wake) w();
        const waiting = [...this.waiting];
        this.waiting.clear();
        for (const g of waiting) this.kick(g);
        this.kick(f);
        const k = key(f.fh);
        if (!f.busy && f.extents.length === 0 && !f.error && this.files.get(k) === f)
          this.files.delete(k);
      });
      f.flights.set(
        flight,
        taken.map((e) => ({ offset: e.offset, end: e.offset + e.data.length })),
      );
    }
  }

  /** Flushes the file's small writes FLUSH_GATHER_MS from now, unless one of its flushes is out. */
  private gather(f: DirtyFile): void {
    f.gather ??= setTimeout(() => {
      f.gather = undefined;
      // While one of its flushes is out, the next gathers until it lands (which kicks).
      if (!f.busy) this.kick(f, true);
    }, FLUSH_GATHER_MS);
  }

  private async fly(
    f: DirtyFile,
    taken: FlushExtent[],
    bytes: number,
    charge: number,
  ): Promise<void> {
    let statuses: number[] | undefined;
    try {
      statuses = decodeFlushResult(
        await this.flushOp(f.cred, encodeFlushArgs(taken)),
        taken.length,
      );
    } catch {
      statuses = undefined;
    }
    this.stats.flushOps++;
    this.stats.flushedExtents += taken.length;
    this.stats.flushedBytes += bytes;
    const failed = statuses ? statuses.find((s) => s !== 0) : SERVERFAULT;
    const k = key(f.fh);
    this.flushed.delete(k);
    if (failed === undefined && !f.error) {
      this.flushed.add(k);
      if (this.flushed.size > MAX_FAILED_FILES)
        this.flushed.delete(this.flushed.values().next().value!);
    }
    if (failed !== undefined) {
      this.stats.flushErrors += statuses ? statuses.filter((s) => s !== 0).length : taken.length;
      if (!f.error) {
        f.error = failed;
        this.forgetOldFailures();
      }
    }
    this.dirtyBytes -= charge;
    const waiters = this.roomWaiters;
    this.roomWaiters = [];
    for (const w of waiters) w();
  }

  private forgetOldFailures(): void {
    let failed = 0;
    for (const f of this.files.values()) if (f.error) failed++;
    for (const [k, f] of this.files) {
      if (failed <= MAX_FAILED_FILES) return;
      if (f.error && !f.busy && f.extents.length === 0) {
        this.files.delete(k);
        failed--;
      }
    }
  }
}
