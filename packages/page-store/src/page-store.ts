import { DEFAULT_FANOUT, DEFAULT_PAGE_SIZE, treeLevels } from './constants';
import { ADHASH_MODULUS, UNTOUCHED, addMod, digestTerm, leafDigest, nodeDigest } from './hash';
import type { CheckpointInfo, InstalledNode, InstalledPage, TransferableState } from './types';

/** Smallest page size accepted, in bytes. */
export const MIN_PAGE_SIZE = 64;
/** Largest page size accepted, in bytes (16 MiB). */
export const MAX_PAGE_SIZE = 16 * 2 ** 20;
/** Largest logical size accepted, in bytes (2^46 = 64 TiB; byte offsets stay exact in doubles). */
export const MAX_STATE_SIZE = 2 ** 46;
/** Largest partition-tree fanout accepted. */
export const MAX_FANOUT = 65536;
/** Most pages a state may have (indexes are hashed as u64 but kept exact as doubles). */
export const MAX_PAGES = 2 ** 40;
/**
 * Default cap, in bytes, on page buffers kept for reuse after checkpoints are discarded or rolled
 * back. Reusing them makes copy-on-write cheap in steady state: fresh memory costs page faults.
 */
export const DEFAULT_PAGE_POOL_BYTES = 64 * 2 ** 20;

export interface PageStoreOptions {
  /** Logical size in bytes, fixed for the life of the store. */
  size: number;
  /** Bytes per page; DEFAULT_PAGE_SIZE (4096) if omitted. */
  pageSize?: number;
  /** Children per partition; DEFAULT_FANOUT (256) if omitted. */
  fanout?: number;
  /** Cap on bytes of free page buffers kept for reuse; DEFAULT_PAGE_POOL_BYTES if omitted. */
  pagePoolBytes?: number;
}

/**
 * One page of the current state or one saved copy of it. Saved copies are never mutated; the
 * current entry of a page is mutated in place only while no checkpoint refers to it.
 */
interface PageEntry {
  /** Page bytes; null while the page is all zeros and was never written. */
  data: Uint8Array | null;
  /** Last checkpoint that modified the page (as of the last checkpoint for dirty pages). */
  lm: number;
  digest: Uint8Array;
  /** `digest` as an AdHash term. */
  term: bigint;
  /** `data` belongs to this entry alone and may be written in place. */
  owned: boolean;
}

/** Pages per slab (one ArrayBuffer) for pages populated for the first time or loaded. */
export const SLAB_PAGES = 64;

/** Digest slot of a page no checkpoint has hashed yet; shared, never mutated or handed out. */
const NO_DIGEST = new Uint8Array(32);

/** One interior node of the partition tree. Immutable: a change makes a new object. */
interface NodeEntry {
  lm: number;
  /** AdHash sum of the children's digests. */
  sum: bigint;
  digest: Uint8Array;
  term: bigint;
}

/**
 * A kept checkpoint. `pages` and `nodes` hold the values that pages and partitions had at this
 * checkpoint for those modified after it and before the next one (null: untouched); a read at
 * checkpoint s looks in the records from s upwards and falls back to the current state.
 */
interface CheckpointRecord {
  seq: number;
  /** Unique per record in this store, so a checkpoint number reused after a rollback is told apart. */
  id: number;
  digest: Uint8Array;
  dirtyPages: number;
  pages: Map<number, PageEntry | null>;
  /** Indexed by level (1 .. levels); slot 0 unused. */
  nodes: Map<number, NodeEntry | null>[];
}

/** A page or partition as of some checkpoint, as served to state transfer. */
export interface PartitionInfo {
  level: number;
  index: number;
  /** Last checkpoint that modified it, UNTOUCHED (-1) if none. */
  lm: number;
  digest: Uint8Array;
}

/**
 * The in-memory state of a replica: pages with copy-on-write checkpoints and an incrementally
 * maintained AdHash partition tree. Level 0 of the tree is the pages; level `levels` is the root.
 * Pages and partitions that nothing ever modified are absent and contribute 0 to their parent's
 * sum, so a 64 GiB state costs nothing until written.
 */
export class PageStore implements TransferableState {
  readonly size: number;
  readonly pageSize: number;
  readonly fanout: number;
  /** Interior levels of the partition tree; the root is at level `levels`. */
  readonly levels: number;
  /** Pages in the state (the last one may extend past `size`; those bytes stay zero). */
  readonly pageCount: number;

  private readonly pages = new Map<number, PageEntry>();
  /** Indexed by level (1 .. levels). */
  private readonly nodes: Map<number, NodeEntry>[] = [];
  private readonly counts: number[] = [];
  /** Pages modified since the last checkpoint. */
  private dirty = new Set<number>();
  /** Kept checkpoints, ascending. */
  private records: CheckpointRecord[] = [];
  /** The checkpoint the current state derives from, -1 before the first. */
  private lastSeq = -1;
  private nextRecordId = 1;
  /** Lowest checkpoint the state was rewound to (rollback, transfer) since takeRewindFloor(). */
  private rewindFloor = Infinity;
  /** Free page buffers (no entry refers to them), reused before allocating. */
  private readonly pool: Uint8Array[] = [];
  private readonly poolLimit: number;
  private slab: Uint8Array | null = null;
  private slabNext = 0;
  private readonly emptyRoot: Uint8Array;
  private readonly zeroPage: Uint8Array;

  constructor(options: PageStoreOptions) {
    const pageSize = options.pageSize ?? DEFAULT_PAGE_SIZE;
    const fanout = options.fanout ?? DEFAULT_FANOUT;
    const size = options.size;
    if (!Number.isSafeInteger(pageSize) || pageSize < MIN_PAGE_SIZE || pageSize > MAX_PAGE_SIZE) {
      throw new RangeError(`page size ${pageSize} outside [${MIN_PAGE_SIZE}, ${MAX_PAGE_SIZE}]`);
    }
    if (!Number.isSafeInteger(fanout) || fanout < 2 || fanout > MAX_FANOUT) {
      throw new RangeError(`fanout ${fanout} outside [2, ${MAX_FANOUT}]`);
    }
    if (!Number.isSafeInteger(size) || size < 1 || size > MAX_STATE_SIZE) {
      throw new RangeError(`state size ${size} outside [1, ${MAX_STATE_SIZE}]`);
    }
    this.size = size;
    this.pageSize = pageSize;
    this.fanout = fanout;
    this.pageCount = Math.ceil(size / pageSize);
    if (this.pageCount > MAX_PAGES)
      throw new RangeError(`${this.pageCount} pages exceed ${MAX_PAGES}`);
    this.levels = treeLevels(this.pageCount, fanout);
    this.counts.push(this.pageCount);
    this.nodes.push(new Map()); // level 0 is the pages map; slot kept for indexing
    for (let l = 1; l <= this.levels; l++) {
      this.counts.push(Math.ceil(this.counts[l - 1] / fanout));
      this.nodes.push(new Map());
    }
    const poolBytes = options.pagePoolBytes ?? DEFAULT_PAGE_POOL_BYTES;
    if (!Number.isSafeInteger(poolBytes) || poolBytes < 0)
      throw new RangeError(`bad page pool size ${poolBytes}`);
    this.poolLimit = Math.floor(poolBytes / pageSize);
    this.emptyRoot = nodeDigest(this.levels, 0, UNTOUCHED, 0n);
    this.zeroPage = new Uint8Array(pageSize);
  }

  // ---- PagedState -------------------------------------------------------------------------

  read(offset: number, length: number): Uint8Array {
    this.checkRange(offset, length);
    const out = new Uint8Array(length);
    this.copyOut(out, offset, (p) => this.pages.get(p)?.data ?? null);
    return out;
  }

  write(offset: number, data: Uint8Array): void {
    if (!(data instanceof Uint8Array)) throw new TypeError('write needs a Uint8Array');
    this.checkRange(offset, data.byteLength);
    let pos = offset;
    let done = 0;
    while (done < data.byteLength) {
      const p = Math.floor(pos / this.pageSize);
      const within = pos - p * this.pageSize;
      const n = Math.min(this.pageSize - within, data.byteLength - done);
      const e = this.touch(p);
      if (e.data === null) {
        e.data = this.allocPage(null);
        e.owned = true;
      } else if (!e.owned) {
        e.data = this.allocPage(e.data);
        e.owned = true;
      }
      e.data.set(data.subarray(done, done + n), within);
      pos += n;
      done += n;
    }
  }

  modify(offset: number, length: number): void {
    this.checkRange(offset, length);
    if (length === 0) return;
    const first = Math.floor(offset / this.pageSize);
    const last = Math.floor((offset + length - 1) / this.pageSize);
    for (let p = first; p <= last; p++) this.touch(p);
  }

  // ---- CheckpointedState ------------------------------------------------------------------

  checkpoint(seq: number): CheckpointInfo {
    if (!Number.isSafeInteger(seq) || seq < 0) throw new RangeError(`bad checkpoint number ${seq}`);
    if (seq <= this.lastSeq) {
      throw new RangeError(`checkpoint ${seq} not above the current one (${this.lastSeq})`);
    }
    const prev = this.records.length > 0 ? this.records[this.records.length - 1] : undefined;
    // Re-hash the dirty pages and collect the change of each parent's sum.
    let deltas = new Map<number, bigint>();
    for (const p of this.dirty) {
      const e = this.pages.get(p)!;
      const digest = leafDigest(p, seq, e.data ?? this.zeroPage);
      const term = digestTerm(digest);
      const parent = Math.floor(p / this.fanout);
      deltas.set(parent, addMod(deltas.get(parent) ?? 0n, term - e.term));
      e.lm = seq;
      e.digest = digest;
      e.term = term;
    }
    // Adjust each ancestor once: subtract the old child terms, add the new ones.
    for (let level = 1; level <= this.levels; level++) {
      const map = this.nodes[level];
      const next = new Map<number, bigint>();
      for (const [index, delta] of deltas) {
        const old = map.get(index);
        if (prev) prev.nodes[level].set(index, old ?? null);
        const sum = addMod(old?.sum ?? 0n, delta);
        const digest = nodeDigest(level, index, seq, sum);
        const node: NodeEntry = { lm: seq, sum, digest, term: digestTerm(digest) };
        map.set(index, node);
        const parent = Math.floor(index / this.fanout);
        next.set(parent, addMod(next.get(parent) ?? 0n, node.term - (old?.term ?? 0n)));
      }
      deltas = next;
    }
    const record: CheckpointRecord = {
      seq,
      id: this.nextRecordId++,
      digest: this.currentRoot(),
      dirtyPages: this.dirty.size,
      pages: new Map(),
      nodes: this.emptyNodeMaps(),
    };
    this.records.push(record);
    this.dirty = new Set();
    this.lastSeq = seq;
    return { seq, digest: new Uint8Array(record.digest), dirtyPages: record.dirtyPages };
  }

  checkpoints(): number[] {
    return this.records.map((r) => r.seq);
  }

  digestAt(seq: number): Uint8Array | undefined {
    const i = this.recordIndex(seq);
    return i < 0 ? undefined : new Uint8Array(this.records[i].digest);
  }

  readAt(seq: number, offset: number, length: number): Uint8Array {
    const i = this.requireRecord(seq);
    this.checkRange(offset, length);
    const out = new Uint8Array(length);
    this.copyOut(out, offset, (p) => this.pageEntryAt(i, p)?.data ?? null);
    return out;
  }

  rollback(seq: number): void {
    const i = this.requireRecord(seq);
    // Newest first, so that the oldest saved value (the one at `seq`) is the one that stays.
    for (let j = this.records.length - 1; j >= i; j--) {
      const r = this.records[j];
      for (const [p, e] of r.pages) {
        // The version being replaced is newer than `e`; adjacent versions may share a buffer.
        const newer = this.pages.get(p)?.data;
        if (newer && newer !== e?.data) this.release(newer);
        if (e === null) {
          this.pages.delete(p);
        } else {
          // Older checkpoints may share this buffer (a page marked by modify() alone).
          e.owned = false;
          this.pages.set(p, e);
        }
      }
      for (let level = 1; level <= this.levels; level++) {
        for (const [index, n] of r.nodes[level]) {
          if (n === null) this.nodes[level].delete(index);
          else this.nodes[level].set(index, n);
        }
      }
    }
    this.records.length = i + 1;
    this.rewindFloor = Math.min(this.rewindFloor, seq);
    this.records[i].pages = new Map();
    this.records[i].nodes = this.emptyNodeMaps();
    this.dirty = new Set();
    this.lastSeq = seq;
  }

  discardBelow(seq: number): void {
    let k = 0;
    while (k < this.records.length && this.records[k].seq < seq) k++;
    if (k === 0) return;
    // A dropped page version's buffer is free unless the next version shares it (modify() only).
    for (let j = 0; j < k; j++) {
      for (const [p, e] of this.records[j].pages) {
        if (e?.data && this.pageEntryAt(j + 1, p)?.data !== e.data) this.release(e.data);
      }
    }
    this.records.splice(0, k);
  }

  // ---- Extras -----------------------------------------------------------------------------

  /** The checkpoint the current state derives from (the last taken or rolled back to), or -1. */
  get currentCheckpoint(): number {
    return this.lastSeq;
  }

  /** Pages modified since the last checkpoint. */
  get dirtyPageCount(): number {
    return this.dirty.size;
  }

  /** Pages that hold an entry (written or marked at least once), a measure of memory use. */
  get populatedPages(): number {
    return this.pages.size;
  }

  /** Root digest of the last checkpoint's tree, or of the empty tree before any checkpoint. */
  currentRoot(): Uint8Array {
    return this.nodes[this.levels].get(0)?.digest ?? this.emptyRoot;
  }

  /** Number of partitions at a level (level 0: pages). */
  partitionCount(level: number): number {
    return this.counts[level] ?? 0;
  }

  /**
   * A partition (level >= 1) or page (level 0) as of kept checkpoint `seq`; `lm` is UNTOUCHED
   * and the digest all zeros for parts that nothing ever modified.
   */
  partitionAt(seq: number, level: number, index: number): PartitionInfo {
    const i = this.requireRecord(seq);
    this.checkPartition(level, index);
    if (level === 0) {
      const e = this.pageEntryAt(i, index);
      return {
        level,
        index,
        lm: e?.lm ?? UNTOUCHED,
        digest: e ? new Uint8Array(e.digest) : new Uint8Array(32),
      };
    }
    const n = this.nodeAt(i, level, index);
    if (!n) {
      const digest = level === this.levels ? new Uint8Array(this.emptyRoot) : new Uint8Array(32);
      return { level, index, lm: UNTOUCHED, digest };
    }
    return { level, index, lm: n.lm, digest: new Uint8Array(n.digest) };
  }

  /**
   * The children of partition (level >= 1, index) that were modified after checkpoint `since`,
   * as of kept checkpoint `seq`, in index order. Children of level-1 partitions are pages.
   */
  modifiedChildren(seq: number, level: number, index: number, since: number): PartitionInfo[] {
    const i = this.requireRecord(seq);
    this.checkPartition(level, index);
    if (level < 1) throw new RangeError('pages have no children');
    const out: PartitionInfo[] = [];
    const first = index * this.fanout;
    const end = Math.min(first + this.fanout, this.counts[level - 1]);
    // Nothing below an untouched or older partition can be newer.
    const self = this.nodeAt(i, level, index);
    if (!self || self.lm <= since) return out;
    for (let c = first; c < end; c++) {
      const part = level === 1 ? this.pageEntryAt(i, c) : this.nodeAt(i, level - 1, c);
      if (part && part.lm > since) {
        out.push({ level: level - 1, index: c, lm: part.lm, digest: new Uint8Array(part.digest) });
      }
    }
    return out;
  }

  /** A page's bytes and last-modified checkpoint as of kept checkpoint `seq`. */
  pageAt(seq: number, index: number): { index: number; lm: number; data: Uint8Array } {
    const page = this.pageViewAt(seq, index);
    return { ...page, data: new Uint8Array(page.data) };
  }

  /**
   * pageAt without the copy: `data` is the store's own buffer, to be copied before the state
   * changes (persistence copies it into its record at once, so one copy per page, not two).
   * @internal
   */
  pageViewAt(seq: number, index: number): { index: number; lm: number; data: Uint8Array } {
    const i = this.requireRecord(seq);
    this.checkPartition(0, index);
    const e = this.pageEntryAt(i, index);
    return { index, lm: e?.lm ?? UNTOUCHED, data: e?.data ?? this.zeroPage };
  }

  /**
   * Pages whose value at kept checkpoint `to` may differ from their value at kept checkpoint
   * `from` (from < to), or undefined when `from` is no longer kept. Cost ~ pages modified.
   */
  pagesChangedBetween(from: number, to: number): number[] | undefined {
    const i = this.recordIndex(from);
    const j = this.recordIndex(to);
    if (i < 0 || j < 0 || j < i) return undefined;
    const set = new Set<number>();
    for (let k = i; k < j; k++) for (const p of this.records[k].pages.keys()) set.add(p);
    return [...set].sort((a, b) => a - b);
  }

  /**
   * Pages whose last-modified checkpoint is above `since` as of kept checkpoint `seq`, ascending,
   * found by walking the partition tree down only where partitions changed after `since` (cost ~
   * modified pages x fanout x levels; `since` need not be kept). Exact as long as the history up
   * to `since` was not rewound meanwhile (see takeRewindFloor).
   */
  pagesModifiedAfter(seq: number, since: number): number[] {
    this.requireRecord(seq);
    const out: number[] = [];
    const root = this.partitionAt(seq, this.levels, 0);
    if (root.lm <= since) return out;
    let frontier = [0];
    for (let level = this.levels; level >= 1; level--) {
      const next: number[] = [];
      for (const index of frontier) {
        for (const c of this.modifiedChildren(seq, level, index, since)) next.push(c.index);
      }
      frontier = next;
    }
    for (const p of frontier) out.push(p);
    return out;
  }

  /**
   * The lowest checkpoint the state has been rewound to (by rollback or state transfer; -1 for a
   * transfer from nothing) since the previous call, or Infinity; resets it. For a single consumer
   * that must know whether history it already saw was rewritten (the persistent store). @internal
   */
  takeRewindFloor(): number {
    const floor = this.rewindFloor;
    this.rewindFloor = Infinity;
    return floor;
  }

  /**
   * An identifier of kept checkpoint `seq` that changes if the number is reused for another
   * state (after a rollback or a state transfer); undefined if `seq` is not kept.
   */
  checkpointId(seq: number): number | undefined {
    const i = this.recordIndex(seq);
    return i < 0 ? undefined : this.records[i].id;
  }

  /**
   * Builds a store whose only checkpoint is `seq`, holding `pages` (every other page untouched),
   * hashing the whole tree from scratch. The caller compares `currentRoot()` with the digest it
   * expects (persistence does, to detect corruption).
   */
  static restore(
    options: PageStoreOptions,
    seq: number,
    pages: Iterable<{ index: number; lm: number; data: Uint8Array }>,
  ): PageStore {
    const store = new PageStore(options);
    for (const pg of pages) store.loadPage(seq, pg.index, pg.lm, pg.data);
    store.finishLoad(seq);
    return store;
  }

  /**
   * Restoring piecewise (so that a loader need not hold every page twice): adds one page of the
   * checkpoint `seq` being loaded into a fresh store. Then `finishLoad(seq)`. @internal
   */
  loadPage(seq: number, index: number, lm: number, data: Uint8Array): void {
    if (this.records.length > 0 || this.dirty.size > 0)
      throw new Error('loadPage needs a fresh store');
    this.checkPartition(0, index);
    if (!Number.isSafeInteger(lm) || lm < 0 || lm > seq) throw new RangeError(`bad lm ${lm}`);
    if (data.byteLength !== this.pageSize) throw new RangeError('page of the wrong size');
    const digest = leafDigest(index, lm, data);
    this.pages.set(index, {
      data: this.loadedPage(data),
      lm,
      digest,
      term: digestTerm(digest),
      owned: true,
    });
  }

  /** Hashes the tree of the loaded pages from scratch and makes `seq` the only checkpoint. @internal */
  finishLoad(seq: number): void {
    if (!Number.isSafeInteger(seq) || seq < 0) throw new RangeError(`bad checkpoint number ${seq}`);
    if (this.records.length > 0) throw new Error('finishLoad needs a fresh store');
    this.buildTree();
    this.records.push({
      seq,
      id: this.nextRecordId++,
      digest: this.currentRoot(),
      dirtyPages: this.pages.size,
      pages: new Map(),
      nodes: this.emptyNodeMaps(),
    });
    this.lastSeq = seq;
  }

  /**
   * Hashes the tree of the current pages from scratch (every leaf digest recomputed, no cached
   * sums) and returns its root, changing nothing. Equals `currentRoot()` when no page is dirty.
   * Cost ~ populated pages: a self-check, and the baseline `checkpoint()` is measured against.
   */
  digestFromScratch(): Uint8Array {
    const lms = new Map<number, number>();
    for (const [p, e] of this.pages) if (e.lm !== UNTOUCHED) lms.set(p, e.lm);
    let below = new Map<number, { lm: number; term: bigint }>();
    for (const [p, lm] of lms) {
      const e = this.pages.get(p)!;
      below.set(p, { lm, term: digestTerm(leafDigest(p, lm, e.data ?? this.zeroPage)) });
    }
    let root: Uint8Array = this.emptyRoot;
    for (let level = 1; level <= this.levels; level++) {
      const agg = this.aggregate(below);
      below = new Map();
      for (const [index, a] of agg) {
        const digest = nodeDigest(level, index, a.lm, a.sum);
        below.set(index, { lm: a.lm, term: digestTerm(digest) });
        if (level === this.levels) root = digest;
      }
    }
    return root;
  }

  /** Every page that holds an entry at kept checkpoint `seq`, ascending (cost ~ populated pages). */
  populatedPagesAt(seq: number): number[] {
    const i = this.requireRecord(seq);
    const set = new Set<number>(this.pages.keys());
    for (let k = i; k < this.records.length; k++)
      for (const p of this.records[k].pages.keys()) set.add(p);
    return [...set].filter((p) => this.pageEntryAt(i, p) !== null).sort((a, b) => a - b);
  }

  // ---- Internals shared with state transfer and persistence --------------------------------

  /**
   * Installs verified pages and partitions as the content of a new checkpoint `seq`, on top of
   * kept checkpoint `base` (or an empty state when base is UNTOUCHED). Drops every checkpoint
   * and write after `base`. The caller has checked every piece against `digest`.
   * @internal
   */
  installCheckpoint(
    base: number,
    seq: number,
    digest: Uint8Array,
    pages: Iterable<InstalledPage>,
    nodes: Iterable<InstalledNode>,
  ): CheckpointInfo {
    if (base === UNTOUCHED) {
      this.rewindFloor = UNTOUCHED;
      this.pages.clear();
      for (let l = 1; l <= this.levels; l++) this.nodes[l].clear();
      this.records = [];
      this.dirty = new Set();
      this.lastSeq = UNTOUCHED;
    } else {
      this.rollback(base);
    }
    if (seq <= this.lastSeq) throw new RangeError(`checkpoint ${seq} not above ${this.lastSeq}`);
    const prev = this.records.length > 0 ? this.records[this.records.length - 1] : undefined;
    let count = 0;
    for (const pg of pages) {
      count++;
      if (prev && !prev.pages.has(pg.index))
        prev.pages.set(pg.index, this.pages.get(pg.index) ?? null);
      this.pages.set(pg.index, {
        data: new Uint8Array(pg.data),
        lm: pg.lm,
        digest: new Uint8Array(pg.digest),
        term: digestTerm(pg.digest),
        owned: true,
      });
    }
    for (const n of nodes) {
      const map = this.nodes[n.level];
      if (prev && !prev.nodes[n.level].has(n.index))
        prev.nodes[n.level].set(n.index, map.get(n.index) ?? null);
      map.set(n.index, {
        lm: n.lm,
        sum: n.sum,
        digest: new Uint8Array(n.digest),
        term: digestTerm(n.digest),
      });
    }
    const record: CheckpointRecord = {
      seq,
      id: this.nextRecordId++,
      digest: new Uint8Array(digest),
      dirtyPages: count,
      pages: new Map(),
      nodes: this.emptyNodeMaps(),
    };
    this.records.push(record);
    this.lastSeq = seq;
    return { seq, digest: new Uint8Array(digest), dirtyPages: count };
  }

  /** The AdHash sum of a partition as of kept checkpoint `seq` (0n when untouched). @internal */
  sumAt(seq: number, level: number, index: number): bigint {
    const i = this.requireRecord(seq);
    return this.nodeAt(i, level, index)?.sum ?? 0n;
  }

  /** The AdHash term of a page or partition as of kept checkpoint `seq`. @internal */
  termAt(seq: number, level: number, index: number): bigint {
    const i = this.requireRecord(seq);
    const part = level === 0 ? this.pageEntryAt(i, index) : this.nodeAt(i, level, index);
    return part?.term ?? 0n;
  }

  /** Sums children's terms per parent; a parent's lm is its newest child's. */
  private aggregate(
    below: Map<number, { lm: number; term: bigint }>,
  ): Map<number, { lm: number; sum: bigint }> {
    const out = new Map<number, { lm: number; sum: bigint }>();
    for (const [index, c] of below) {
      const parent = Math.floor(index / this.fanout);
      const a = out.get(parent);
      if (a) {
        a.sum += c.term;
        if (c.lm > a.lm) a.lm = c.lm;
      } else {
        out.set(parent, { lm: c.lm, sum: c.term });
      }
    }
    for (const a of out.values()) a.sum %= ADHASH_MODULUS;
    return out;
  }

  /** Rebuilds every interior node from the page entries. */
  private buildTree(): void {
    let below = new Map<number, { lm: number; term: bigint }>();
    for (const [p, e] of this.pages) below.set(p, { lm: e.lm, term: e.term });
    for (let level = 1; level <= this.levels; level++) {
      const map = this.nodes[level];
      map.clear();
      const agg = this.aggregate(below);
      below = new Map();
      for (const [index, a] of agg) {
        const digest = nodeDigest(level, index, a.lm, a.sum);
        const node: NodeEntry = { lm: a.lm, sum: a.sum, digest, term: digestTerm(digest) };
        map.set(index, node);
        below.set(index, node);
      }
    }
  }

  /** A page buffer holding a copy of `from`, or zeros. */
  private allocPage(from: Uint8Array | null): Uint8Array {
    const buf = this.pool.pop();
    // new Uint8Array(x) copies; x.slice() would not copy if x were a Buffer.
    // First population (zero pages, loading) comes from slabs: one ArrayBuffer per SLAB_PAGES
    // pages costs the garbage collector far less than one per page. Copies stay separate buffers
    // so that a slab is not kept alive by a single old version.
    if (buf === undefined) return from ? new Uint8Array(from) : this.freshPage();
    if (from) buf.set(from);
    else buf.fill(0);
    return buf;
  }

  /** A zeroed page carved from the current slab. */
  private freshPage(): Uint8Array {
    if (this.slab === null || this.slabNext === SLAB_PAGES) {
      this.slab = new Uint8Array(this.pageSize * SLAB_PAGES);
      this.slabNext = 0;
    }
    const at = this.slabNext++ * this.pageSize;
    return this.slab.subarray(at, at + this.pageSize);
  }

  private loadedPage(data: Uint8Array): Uint8Array {
    const page = this.freshPage();
    page.set(data);
    return page;
  }

  private release(buf: Uint8Array): void {
    if (this.pool.length < this.poolLimit) this.pool.push(buf);
  }

  private touch(p: number): PageEntry {
    let e = this.pages.get(p);
    if (!this.dirty.has(p)) {
      this.dirty.add(p);
      const last = this.records.length > 0 ? this.records[this.records.length - 1] : undefined;
      if (last) {
        // Copy-on-write: the old entry now belongs to the last checkpoint.
        last.pages.set(p, e ?? null);
        if (e) {
          e = { data: e.data, lm: e.lm, digest: e.digest, term: e.term, owned: false };
          this.pages.set(p, e);
        }
      }
    }
    if (!e) {
      e = { data: null, lm: UNTOUCHED, digest: NO_DIGEST, term: 0n, owned: true };
      this.pages.set(p, e);
    }
    return e;
  }

  private pageEntryAt(recordIndex: number, p: number): PageEntry | null {
    for (let k = recordIndex; k < this.records.length; k++) {
      const saved = this.records[k].pages.get(p);
      if (saved !== undefined) return saved;
    }
    return this.pages.get(p) ?? null;
  }

  private nodeAt(recordIndex: number, level: number, index: number): NodeEntry | null {
    for (let k = recordIndex; k < this.records.length; k++) {
      const saved = this.records[k].nodes[level].get(index);
      if (saved !== undefined) return saved;
    }
    return this.nodes[level].get(index) ?? null;
  }

  private copyOut(
    out: Uint8Array,
    offset: number,
    pageData: (p: number) => Uint8Array | null,
  ): void {
    let pos = offset;
    let done = 0;
    while (done < out.byteLength) {
      const p = Math.floor(pos / this.pageSize);
      const within = pos - p * this.pageSize;
      const n = Math.min(this.pageSize - within, out.byteLength - done);
      const data = pageData(p);
      if (data !== null) out.set(data.subarray(within, within + n), done);
      pos += n;
      done += n;
    }
  }

  private emptyNodeMaps(): Map<number, NodeEntry | null>[] {
    const maps: Map<number, NodeEntry | null>[] = [];
    for (let l = 0; l <= this.levels; l++) maps.push(new Map());
    return maps;
  }

  private recordIndex(seq: number): number {
    // Binary search: records are ascending by seq.
    let lo = 0;
    let hi = this.records.length - 1;
    while (lo <= hi) {
      const mid = (lo + hi) >> 1;
      const s = this.records[mid].seq;
      if (s === seq) return mid;
      if (s < seq) lo = mid + 1;
      else hi = mid - 1;
    }
    return -1;
  }

  private requireRecord(seq: number): number {
    const i = this.recordIndex(seq);
    if (i < 0) throw new RangeError(`checkpoint ${seq} is not kept`);
    return i;
  }

  private checkRange(offset: number, length: number): void {
    if (
      !Number.isSafeInteger(offset) ||
      !Number.isSafeInteger(length) ||
      offset < 0 ||
      length < 0
    ) {
      throw new RangeError(`bad range ${offset}+${length}`);
    }
    if (offset + length > this.size) {
      throw new RangeError(`range ${offset}+${length} past the state size ${this.size}`);
    }
  }

  private checkPartition(level: number, index: number): void {
    if (!Number.isSafeInteger(level) || level < 0 || level > this.levels) {
      throw new RangeError(`bad level ${level}`);
    }
    if (!Number.isSafeInteger(index) || index < 0 || index >= this.counts[level]) {
      throw new RangeError(`bad index ${index} at level ${level}`);
    }
  }
}
