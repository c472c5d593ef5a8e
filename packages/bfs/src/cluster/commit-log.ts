/**
 * A replica's log on disk, above its last persisted stable checkpoint:
 * - the prepared certificates it acted on (pbft's 'prepared' action): the durable point of an
 *   operation. Each is written with `sync` (fsync'd) before the replica sends its COMMIT or
 *   tentative replies for it; certificates asked for while a write is under way go together in
 *   the next one (group commit). After a restart they go back into the core, which quotes them
 *   in its VIEW-CHANGE, so what 2f + 1 replicas acknowledged survives every process dying at once.
 * - the batches it saw commit, so a restart re-runs them at once instead of waiting for a view
 *   change or a state transfer. Not fsync'd of their own (a later synced write or the OS takes
 *   them to disk): losing some only costs catching up. A batch whose large requests are those of
 *   the certificate this log holds for its sequence number does not hold them again (they are
 *   most of a bulk write's bytes): it names the certificate's instead (FROM_PREPARED). Written
 *   after the certificate, and the certificate of a committed sequence number is only ever
 *   replaced by one for the same batch, which holds the same requests.
 * - a marker saying from which stable checkpoint on the certificates are complete (see
 *   `completeFrom`): a log created beside an older store, or after a damaged one was moved
 *   aside, may lack what the replica acted on before.
 * Entries at or below the persisted checkpoint are deleted.
 *
 * A damaged log (LevelDB cannot open it, dropped records opening it, or a table that fails a
 * read) is never used: `openOrReplace` moves it aside and starts an empty one, which vouches for
 * nothing of before (the replica then counts as recovering, see ReplicaOptions.logIntact).
 *
 *   committed: key u64 seq (big-endian); value u32 length + pre-prepare frame,
 *              u16 count + count x (u32 length + request frame), or u16 FROM_PREPARED
 *   prepared:  key 'P' + u64 seq; value u32 view, u32 length + pre-prepare frame,
 *              u16 count + count x (u32 length + prepare frame), then the large requests as above
 *   marker:    key 'M'; value u64 seq
 */
import * as fs from 'node:fs';
import type { Level } from 'level';
import { LevelDamageError, isCorruption, openLevelChecked } from '@bfs/page-store';

export interface CommittedBatch {
  prePrepare: Uint8Array;
  large: Uint8Array[];
}

export interface PreparedRecord {
  seq: number;
  view: number;
  prePrepare: Uint8Array;
  prepares: Uint8Array[];
  large: Uint8Array[];
}

const PREPARED = 0x50;
/** Count of a committed batch's large requests meaning "those of the certificate at its seq". */
const FROM_PREPARED = 0xffff;
const MARKER = Uint8Array.of(0x4d);
/** Past every committed key (u64 seq < 2^53 starts with a byte below 0x20). */
const COMMITTED_END = Uint8Array.of(0x20);

function seqKey(seq: number): Uint8Array {
  const k = Buffer.alloc(8);
  k.writeUInt32BE(Math.floor(seq / 0x100000000), 0);
  k.writeUInt32BE(seq >>> 0, 4);
  return k;
}

function preparedKey(seq: number): Uint8Array {
  return Buffer.concat([Uint8Array.of(PREPARED), seqKey(seq)]);
}

function keySeq(k: Uint8Array, at = 0): number {
  const b = Buffer.from(k.buffer, k.byteOffset, k.byteLength);
  return b.readUInt32BE(at) * 0x100000000 + b.readUInt32BE(at + 4);
}

/** Appends u16 count + count x (u32 length + frame). */
function pushFrames(parts: Buffer[], frames: Uint8Array[]): void {
  const count = Buffer.alloc(2);
  count.writeUInt16BE(frames.length);
  parts.push(count);
  for (const f of frames) {
    const len = Buffer.alloc(4);
    len.writeUInt32BE(f.length);
    parts.push(len, view(f));
  }
}

/** Reads what pushFrames wrote at `at`; undefined if it runs past the end. */
function readFrames(b: Buffer, at: number): { frames: Uint8Array[]; at: number } | undefined {
  const count = b.readUInt16BE(at);
  at += 2;
  const frames: Uint8Array[] = [];
  for (let i = 0; i < count; i++) {
    const l = b.readUInt32BE(at);
    at += 4;
    if (at + l > b.length) return undefined;
    frames.push(new Uint8Array(b.subarray(at, at + l)));
    at += l;
  }
  return { frames, at };
}

/** The bytes as a Buffer without copying them (Buffer.from of a Uint8Array copies). */
function view(bytes: Uint8Array): Buffer {
  return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
}

function lengthPrefixed(bytes: Uint8Array): Buffer[] {
  const head = Buffer.alloc(4);
  head.writeUInt32BE(bytes.length);
  return [head, view(bytes)];
}

export function encodePrepared(r: Omit<PreparedRecord, 'seq'>): Buffer {
  const view = Buffer.alloc(4);
  view.writeUInt32BE(r.view);
  const parts: Buffer[] = [view, ...lengthPrefixed(r.prePrepare)];
  pushFrames(parts, r.prepares);
  pushFrames(parts, r.large);
  return Buffer.concat(parts);
}

/** Undefined when the bytes are not a whole record (a torn or foreign value). */
export function decodePrepared(seq: number, v: Uint8Array): PreparedRecord | undefined {
  const b = Buffer.from(v.buffer, v.byteOffset, v.byteLength);
  try {
    const view = b.readUInt32BE(0);
    const len = b.readUInt32BE(4);
    if (8 + len > b.length) return undefined;
    const prePrepare = new Uint8Array(b.subarray(8, 8 + len));
    const prepares = readFrames(b, 8 + len);
    const large = prepares && readFrames(b, prepares.at);
    if (!prepares || !large || large.at !== b.length) return undefined;
    return { seq, view, prePrepare, prepares: prepares.frames, large: large.frames };
  } catch (e) {
    if (e instanceof RangeError) return undefined;
    throw e;
  }
}

/** `fromPrepared`: the large requests are those of the certificate at the batch's seq. */
export function encodeBatch(b: CommittedBatch, fromPrepared = false): Buffer {
  const parts = lengthPrefixed(b.prePrepare);
  if (fromPrepared) {
    const mark = Buffer.alloc(2);
    mark.writeUInt16BE(FROM_PREPARED);
    parts.push(mark);
  } else pushFrames(parts, b.large);
  return Buffer.concat(parts);
}

/**
 * Undefined when the bytes are not a whole record (a torn or foreign value); `large` is
 * 'prepared' when the batch names its certificate's large requests.
 */
export function decodeBatch(
  v: Uint8Array,
): { prePrepare: Uint8Array; large: Uint8Array[] | 'prepared' } | undefined {
  const b = Buffer.from(v.buffer, v.byteOffset, v.byteLength);
  try {
    const len = b.readUInt32BE(0);
    if (4 + len > b.length) return undefined;
    const prePrepare = new Uint8Array(b.subarray(4, 4 + len));
    if (b.length === 4 + len + 2 && b.readUInt16BE(4 + len) === FROM_PREPARED)
      return { prePrepare, large: 'prepared' };
    const large = readFrames(b, 4 + len);
    return large && large.at === b.length ? { prePrepare, large: large.frames } : undefined;
  } catch (e) {
    if (e instanceof RangeError) return undefined;
    throw e;
  }
}

/** The same frames in the same order (the same objects, as a rule: the slot's requests). */
function sameFrames(a: Uint8Array[], b: Uint8Array[]): boolean {
  return a.length === b.length && a.every((f, i) => f === b[i] || view(f).equals(b[i]!));
}

export class CommitLog {
  private queue: Promise<unknown> = Promise.resolve();
  /** Entries not yet handed to LevelDB, and the queued write that will take them. */
  private unwritten: { key: Uint8Array; value: Uint8Array }[] = [];
  /**
   * The large requests of the last certificate queued for each sequence number not yet
   * appended: a batch that has the same need not hold them again.
   */
  private readonly preparedLarge = new Map<number, Uint8Array[]>();
  /** Whether that write must be fsync'd (it carries a prepared certificate). */
  private syncWanted = false;
  private nextWrite: Promise<void> | undefined;
  /** Writes that failed (logged by the caller); the log is then only as good as the checkpoints. */
  failures = 0;
  /** LevelDB writes made for appends (each carries one or more entries), and how many synced. */
  writes = 0;
  syncedWrites = 0;
  /** Batches appended naming their certificate's large requests instead of holding them. */
  namedCertified = 0;

  private constructor(private readonly db: Level<Uint8Array, Uint8Array>) {}

  /**
   * Opens the log at `dir`, reading every entry once: throws LevelDamageError when LevelDB
   * reports damage (entries that do not parse are not damage of LevelDB's: see `preparedAfter`).
   */
  static async open(dir: string): Promise<CommitLog> {
    // Uncompressed: entries live one checkpoint interval, and Snappy cost 15-20% of LevelDB's
    // CPU on 1 MiB requests that rarely compress (scripts/bench-bulk.sh, docs/benchmarks.md).
    const db = await openLevelChecked(dir, { compression: false });
    try {
      for await (const entry of db.iterator()) void entry;
    } catch (e) {
      await db.close();
      if (isCorruption(e))
        throw new LevelDamageError(dir, 'a table of the log fails to read', { cause: e });
      throw e;
    }
    return new CommitLog(db);
  }

  /**
   * Opens the log at `dir`; when it is damaged, or `discard` says so (damage found while it
   * ran), moves it to `<dir>.corrupt-<ms>` and opens an empty one. `movedTo` names where.
   */
  static async openOrReplace(
    dir: string,
    discard = false,
  ): Promise<{ log: CommitLog; movedTo?: string; damage?: string }> {
    let damage = discard ? 'damage found while the replica ran' : undefined;
    if (!discard) {
      try {
        return { log: await CommitLog.open(dir) };
      } catch (e) {
        if (!(e instanceof LevelDamageError)) throw e;
        damage = e.message;
      }
    }
    let movedTo: string | undefined;
    if (fs.existsSync(dir)) {
      movedTo = `${dir}.corrupt-${Date.now()}`;
      fs.renameSync(dir, movedTo);
    }
    return { log: await CommitLog.open(dir), movedTo, damage };
  }

  /**
   * The stable checkpoint from which on this log holds every prepared certificate the replica
   * acted on; undefined for a log written before certificates were kept.
   */
  async completeFrom(): Promise<number | undefined> {
    const v = await this.db.get(MARKER);
    return v && v.length === 8 ? keySeq(v) : undefined;
  }

  setCompleteFrom(seq: number): Promise<void> {
    return this.enqueue(() => this.db.put(MARKER, seqKey(seq), { sync: true }));
  }

  /** The batches after `seq`, in order, up to the first gap or unreadable entry. */
  async after(seq: number): Promise<CommittedBatch[]> {
    const out: CommittedBatch[] = [];
    let next = seq + 1;
    for await (const [k, v] of this.db.iterator({ gt: seqKey(seq), lt: COMMITTED_END })) {
      const b = keySeq(k) === next ? await this.resolve(next, decodeBatch(v)) : undefined;
      if (!b) break;
      out.push(b);
      next++;
    }
    return out;
  }

  /** The batch with its large requests, read from its certificate if it names them there. */
  private async resolve(
    seq: number,
    b: ReturnType<typeof decodeBatch>,
  ): Promise<CommittedBatch | undefined> {
    if (!b) return undefined;
    if (b.large !== 'prepared') return { prePrepare: b.prePrepare, large: b.large };
    const v = await this.db.get(preparedKey(seq));
    const cert = v === undefined ? undefined : decodePrepared(seq, v);
    return cert && { prePrepare: b.prePrepare, large: cert.large };
  }

  /** Every readable committed batch with its sequence number, gaps and all (diagnostics). */
  async committed(): Promise<[number, CommittedBatch][]> {
    const out: [number, CommittedBatch][] = [];
    for await (const [k, v] of this.db.iterator({ lt: COMMITTED_END })) {
      const seq = k.length === 8 ? keySeq(k) : -1;
      const b = seq >= 0 ? await this.resolve(seq, decodeBatch(v)) : undefined;
      if (b) out.push([seq, b]);
    }
    return out;
  }

  /** The prepared certificates above `seq`; `bad` counts records that do not parse. */
  async preparedAfter(seq: number): Promise<{ records: PreparedRecord[]; bad: number }> {
    const records: PreparedRecord[] = [];
    let bad = 0;
    const it = this.db.iterator({ gt: preparedKey(seq), lt: Uint8Array.of(PREPARED + 1) });
    for await (const [k, v] of it) {
      const r = k.length === 9 ? decodePrepared(keySeq(k, 1), v) : undefined;
      if (r) records.push(r);
      else bad++;
    }
    return { records, bad };
  }

  /** Resolves once the entry is written (with whatever else was appended meanwhile). */
  append(seq: number, batch: CommittedBatch): Promise<void> {
    const certified = this.preparedLarge.get(seq);
    this.preparedLarge.delete(seq);
    const fromPrepared =
      certified !== undefined && batch.large.length > 0 && sameFrames(certified, batch.large);
    if (fromPrepared) this.namedCertified++;
    return this.put({ key: seqKey(seq), value: encodeBatch(batch, fromPrepared) }, false);
  }

  /** Resolves once the certificate is on stable storage (fsync'd, with what else was queued). */
  prepare(r: PreparedRecord): Promise<void> {
    this.preparedLarge.set(r.seq, r.large);
    return this.put({ key: preparedKey(r.seq), value: encodePrepared(r) }, true);
  }

  private put(entry: { key: Uint8Array; value: Uint8Array }, sync: boolean): Promise<void> {
    this.unwritten.push(entry);
    this.syncWanted ||= sync;
    this.nextWrite ??= this.enqueue(() => {
      const entries = this.unwritten;
      const synced = this.syncWanted;
      this.unwritten = [];
      this.syncWanted = false;
      this.nextWrite = undefined;
      this.writes++;
      if (synced) this.syncedWrites++;
      const ops = entries.map((e) => ({ type: 'put' as const, ...e }));
      return this.db.batch(ops, { sync: synced });
    });
    return this.nextWrite;
  }

  /** Forgets everything at or below `seq` (a checkpoint that is now on disk). */
  truncateThrough(seq: number): Promise<void> {
    for (const s of this.preparedLarge.keys()) if (s <= seq) this.preparedLarge.delete(s);
    return this.enqueue(async () => {
      await this.db.clear({ lte: seqKey(seq) });
      await this.db.clear({ gte: preparedKey(0), lte: preparedKey(seq) });
    });
  }

  private enqueue(op: () => Promise<void>): Promise<void> {
    const done = this.queue.then(op);
    this.queue = done.catch(() => {
      this.failures++;
    });
    return done;
  }

  async close(): Promise<void> {
    await this.queue;
    await this.db.close();
  }
}
