import type { Level } from 'level';
import { LevelDamageError, openLevelChecked } from './level-open';
import { UNTOUCHED, bytesEqual } from './hash';
import { PageStore } from './page-store';
import type { PageStoreOptions } from './page-store';

/**
 * LevelDB persistence of stable checkpoints. The replication core stays synchronous: `persist(seq)`
 * takes its snapshot of checkpoint `seq` synchronously (so the core may discard or overwrite
 * anything right after the call) and writes it in one LevelDB batch in the background. A batch is
 * atomic, so a process killed at any moment restarts from the last checkpoint whose batch landed.
 *
 * Layout (keys are bytes):
 *   META_KEY                  -> JSON { format, size, pageSize, fanout, seq, digest (hex) }
 *   PAGE_PREFIX + u64 index   -> u64 (lm + 1) ++ page bytes, for every page modified at least once
 *   EXTRA_KEY                 -> the caller's bytes for that checkpoint (PBFT: its restore point)
 * Interior partitions are not stored: start-up re-hashes every page and compares the root with the
 * stored digest, which is how flipped bytes anywhere in the store are detected.
 */

/** Version of the on-disk layout, checked at start-up. */
export const STORE_FORMAT = 1;
const META_KEY = Uint8Array.of(0x00, 0x6d);
const EXTRA_KEY = Uint8Array.of(0x00, 0x78);
const PAGE_PREFIX = 0x01;
const PAGE_KEY_BYTES = 9;
const LM_BYTES = 8;
/** Bytes LevelDB reads ahead per native call while loading (its default, 16 KiB, is 4 pages). */
export const LOAD_BATCH_BYTES = 4 * 2 ** 20;

/** The store on disk is damaged or does not belong to these options; it is never used silently. */
export class CorruptStoreError extends Error {
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'CorruptStoreError';
  }
}

export interface PersistentPageStoreOptions extends PageStoreOptions {
  /** fsync every checkpoint batch (survives power loss, not only process death). Default true. */
  sync?: boolean;
}

/** What one `persist()` wrote. */
export interface PersistStats {
  seq: number;
  pagesWritten: number;
  pagesDeleted: number;
  /** Keys plus values handed to LevelDB (its log and compactions add to this on disk). */
  bytesWritten: number;
  /** Whether every page was rewritten (the previous persisted checkpoint was no longer kept). */
  fullRewrite: boolean;
}

interface Meta {
  format: number;
  size: number;
  pageSize: number;
  fanout: number;
  seq: number;
  digest: string;
}

type Batch = { type: 'put'; key: Uint8Array; value: Uint8Array } | { type: 'del'; key: Uint8Array };

function pageKey(index: number): Uint8Array {
  const k = new Uint8Array(PAGE_KEY_BYTES);
  const v = new DataView(k.buffer);
  k[0] = PAGE_PREFIX;
  v.setUint32(1, Math.floor(index / 2 ** 32));
  v.setUint32(5, index >>> 0);
  return k;
}

function readU64(bytes: Uint8Array, at: number): number {
  const v = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  return v.getUint32(at) * 2 ** 32 + v.getUint32(at + 4);
}

function pageValue(lm: number, data: Uint8Array): Uint8Array {
  const out = new Uint8Array(LM_BYTES + data.byteLength);
  const v = new DataView(out.buffer);
  v.setUint32(0, Math.floor((lm + 1) / 2 ** 32));
  v.setUint32(4, (lm + 1) >>> 0);
  out.set(data, LM_BYTES);
  return out;
}

/** A `PageStore` whose stable checkpoints are kept in a LevelDB directory. */
export class PersistentPageStore {
  /** The in-memory state the replication core drives; persistence only reads it. */
  readonly state: PageStore;
  private durableSeq: number;
  /** The checkpoint the last queued batch brings the disk to, and its record id. */
  private queuedSeq: number;
  private queuedId: number | undefined;
  /** Pages present on disk once every queued batch has landed. */
  private readonly onDisk: Set<number>;
  /** Lowest checkpoint the state was rewound to since the last batch was queued. */
  private rewoundTo = Infinity;
  private queue: Promise<unknown> = Promise.resolve();
  private failure: unknown = undefined;
  private closed = false;
  /** What the caller persisted with the checkpoint it was loaded from (see `persist`). */
  readonly persistedExtra: Uint8Array | undefined;

  private constructor(
    private readonly db: Level<Uint8Array, Uint8Array>,
    state: PageStore,
    seq: number,
    onDisk: Set<number>,
    private readonly sync: boolean,
    extra: Uint8Array | undefined,
  ) {
    this.persistedExtra = extra;
    this.state = state;
    this.durableSeq = seq;
    this.queuedSeq = seq;
    this.queuedId = seq === UNTOUCHED ? undefined : state.checkpointId(seq);
    this.onDisk = onDisk;
  }

  /**
   * Opens (creating if needed) the store at `path`. An existing store must have been made with
   * the same size, page size and fanout; it is loaded, fully re-hashed and checked against its
   * stored root digest. Throws CorruptStoreError if anything does not match.
   */
  static async open(
    path: string,
    options: PersistentPageStoreOptions,
  ): Promise<PersistentPageStore> {
    const probe = new PageStore(options); // validates the options
    let db: Level<Uint8Array, Uint8Array>;
    try {
      db = await openLevelChecked(path);
    } catch (err) {
      if (err instanceof LevelDamageError) throw new CorruptStoreError(err.message, { cause: err });
      throw err;
    }
    try {
      const loaded = await PersistentPageStore.load(db, options, probe);
      return new PersistentPageStore(
        db,
        loaded.state,
        loaded.seq,
        loaded.onDisk,
        options.sync ?? true,
        loaded.extra,
      );
    } catch (err) {
      await db.close();
      if (err instanceof CorruptStoreError) throw err;
      throw new CorruptStoreError(`cannot read page store at ${path}: ${(err as Error).message}`, {
        cause: err,
      });
    }
  }

  private static async load(
    db: Level<Uint8Array, Uint8Array>,
    options: PersistentPageStoreOptions,
    probe: PageStore,
  ): Promise<{ state: PageStore; seq: number; onDisk: Set<number>; extra?: Uint8Array }> {
    const raw = await db.get(META_KEY);
    if (raw === undefined) {
      const any = await db.keys({ limit: 1 }).all();
      if (any.length > 0) throw new CorruptStoreError('pages without a checkpoint record');
      return { state: probe, seq: UNTOUCHED, onDisk: new Set() };
    }
    const extra = await db.get(EXTRA_KEY);
    let meta: Meta;
    try {
      meta = JSON.parse(Buffer.from(raw).toString('utf8')) as Meta;
    } catch (err) {
      throw new CorruptStoreError('unreadable checkpoint record', { cause: err });
    }
    if (meta.format !== STORE_FORMAT)
      throw new CorruptStoreError(`unknown store format ${String(meta.format)}`);
    if (
      meta.size !== probe.size ||
      meta.pageSize !== probe.pageSize ||
      meta.fanout !== probe.fanout
    ) {
      throw new CorruptStoreError(
        `store made for size ${meta.size}, page size ${meta.pageSize}, fanout ${meta.fanout}; ` +
          `opened with ${probe.size}, ${probe.pageSize}, ${probe.fanout}`,
      );
    }
    if (!Number.isSafeInteger(meta.seq) || meta.seq < 0)
      throw new CorruptStoreError('bad checkpoint number');
    const state = new PageStore(options);
    const onDisk = new Set<number>();
    // Pages go into the store as they stream in, so loading holds each page once.
    for await (const [key, value] of db.iterator({
      gte: Uint8Array.of(PAGE_PREFIX),
      lt: Uint8Array.of(PAGE_PREFIX + 1),
      highWaterMarkBytes: LOAD_BATCH_BYTES,
    })) {
      if (key.byteLength !== PAGE_KEY_BYTES) throw new CorruptStoreError('malformed page key');
      if (value.byteLength !== LM_BYTES + probe.pageSize)
        throw new CorruptStoreError('page record of the wrong size');
      const index = readU64(key, 1);
      if (index >= probe.pageCount) throw new CorruptStoreError(`page ${index} beyond the state`);
      try {
        state.loadPage(meta.seq, index, readU64(value, 0) - 1, value.subarray(LM_BYTES));
      } catch (err) {
        throw new CorruptStoreError(`inconsistent page ${index}: ${(err as Error).message}`, {
          cause: err,
        });
      }
      onDisk.add(index);
    }
    state.finishLoad(meta.seq);
    const want =
      typeof meta.digest === 'string' ? Buffer.from(meta.digest, 'hex') : Buffer.alloc(0);
    if (!bytesEqual(state.currentRoot(), want)) {
      throw new CorruptStoreError(`checkpoint ${meta.seq}: pages do not hash to the stored digest`);
    }
    return {
      state,
      seq: meta.seq,
      onDisk,
      extra: extra === undefined ? undefined : new Uint8Array(extra),
    };
  }

  /** The last checkpoint known to be on disk (UNTOUCHED if none). */
  get persistedSeq(): number {
    return this.durableSeq;
  }

  /**
   * Writes kept checkpoint `seq` (normally the new stable checkpoint) in one batch: the pages
   * modified since the previously persisted checkpoint and the checkpoint record. The snapshot is
   * taken before this returns; the promise settles when the batch is on disk. Calls are applied
   * in order; a call at or below the last queued checkpoint does nothing, unless the state was
   * rolled back below that checkpoint since (then `seq` replaces what is on disk). `extra`, if
   * given, is written in the same batch and comes back as `persistedExtra` after a restart.
   */
  persist(seq: number, extra?: Uint8Array): Promise<PersistStats> {
    if (this.closed) return Promise.reject(new Error('page store closed'));
    if (this.failure !== undefined) return Promise.reject(this.failure);
    const digest = this.state.digestAt(seq);
    if (digest === undefined)
      return Promise.reject(new RangeError(`checkpoint ${seq} is not kept`));
    this.rewoundTo = Math.min(this.rewoundTo, this.state.takeRewindFloor());
    // Nothing to do if the disk already holds this checkpoint or a later one of the same history.
    const same = seq === this.queuedSeq && this.state.checkpointId(seq) === this.queuedId;
    const older = seq < this.queuedSeq && this.rewoundTo >= this.queuedSeq;
    if (same || older) {
      const nothing: PersistStats = {
        seq,
        pagesWritten: 0,
        pagesDeleted: 0,
        bytesWritten: 0,
        fullRewrite: false,
      };
      return this.queue.then(() => nothing);
    }
    let incremental: number[] | undefined;
    if (this.queuedSeq === UNTOUCHED) {
      if (this.onDisk.size === 0) incremental = this.state.populatedPagesAt(seq);
    } else if (this.queuedSeq < seq && this.rewoundTo >= this.queuedSeq) {
      // The history up to the disk's checkpoint still stands: write what changed after it, from
      // the checkpoint records if the disk's checkpoint is still kept, else from the tree.
      incremental =
        this.state.checkpointId(this.queuedSeq) === this.queuedId
          ? this.state.pagesChangedBetween(this.queuedSeq, seq)
          : this.state.pagesModifiedAfter(seq, this.queuedSeq);
    }
    const fullRewrite = incremental === undefined;
    const candidates = incremental ?? this.state.populatedPagesAt(seq);
    const ops: Batch[] = [];
    let bytesWritten = 0;
    let pagesWritten = 0;
    let pagesDeleted = 0;
    const present = new Set<number>();
    for (const p of candidates) {
      const page = this.state.pageViewAt(seq, p);
      const key = pageKey(p);
      if (page.lm === UNTOUCHED) {
        if (this.onDisk.delete(p)) {
          ops.push({ type: 'del', key });
          pagesDeleted++;
          bytesWritten += key.byteLength;
        }
        continue;
      }
      const value = pageValue(page.lm, page.data);
      ops.push({ type: 'put', key, value });
      present.add(p);
      this.onDisk.add(p);
      pagesWritten++;
      bytesWritten += key.byteLength + value.byteLength;
    }
    if (fullRewrite) {
      for (const p of [...this.onDisk]) {
        if (present.has(p)) continue;
        ops.push({ type: 'del', key: pageKey(p) });
        this.onDisk.delete(p);
        pagesDeleted++;
        bytesWritten += PAGE_KEY_BYTES;
      }
    }
    const meta: Meta = {
      format: STORE_FORMAT,
      size: this.state.size,
      pageSize: this.state.pageSize,
      fanout: this.state.fanout,
      seq,
      digest: Buffer.from(digest).toString('hex'),
    };
    const metaValue = new Uint8Array(Buffer.from(JSON.stringify(meta), 'utf8'));
    ops.push({ type: 'put', key: META_KEY, value: metaValue });
    if (extra) ops.push({ type: 'put', key: EXTRA_KEY, value: new Uint8Array(extra) });
    else ops.push({ type: 'del', key: EXTRA_KEY });
    bytesWritten += META_KEY.byteLength + metaValue.byteLength;
    this.queuedSeq = seq;
    this.queuedId = this.state.checkpointId(seq);
    this.rewoundTo = Infinity;
    const stats: PersistStats = { seq, pagesWritten, pagesDeleted, bytesWritten, fullRewrite };
    const done = this.queue.then(async () => {
      try {
        await this.db.batch(ops, { sync: this.sync });
      } catch (err) {
        // The disk no longer matches what later batches assume: refuse further persists.
        this.failure = err;
        throw err;
      }
      this.durableSeq = seq;
      return stats;
    });
    this.queue = done.catch(() => undefined);
    return done;
  }

  /** Settles once every queued batch has been written (or has failed). */
  async flush(): Promise<void> {
    await this.queue;
    if (this.failure !== undefined) throw this.failure;
  }

  /** Flushes, then closes the database. The in-memory state stays usable. */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    try {
      await this.queue;
    } finally {
      await this.db.close();
    }
  }
}
