/**
 * A replica's record of the batches it saw commit since its last persisted stable checkpoint, so
 * that a restart (or a restart of the whole cluster) re-runs them instead of losing up to a
 * checkpoint interval of acknowledged operations. LevelDB, one key per sequence number; writes
 * are ordered and not fsync'd each (they survive the process being killed, not power loss; the
 * page store's checkpoints are fsync'd). Entries at or below the persisted checkpoint are deleted.
 * Batches appended while a write is under way go together in the next LevelDB batch: under load
 * one write carries many, where a put each cost the replica about 2% of its CPU.
 *
 *   key:   u64 seq (big-endian)
 *   value: u32 length + pre-prepare frame, u16 count + count x (u32 length + request frame)
 */
import { Level } from 'level';

export interface CommittedBatch {
  prePrepare: Uint8Array;
  large: Uint8Array[];
}

function seqKey(seq: number): Uint8Array {
  const k = Buffer.alloc(8);
  k.writeUInt32BE(Math.floor(seq / 0x100000000), 0);
  k.writeUInt32BE(seq >>> 0, 4);
  return k;
}

function keySeq(k: Uint8Array): number {
  const b = Buffer.from(k.buffer, k.byteOffset, k.byteLength);
  return b.readUInt32BE(0) * 0x100000000 + b.readUInt32BE(4);
}

export function encodeBatch(b: CommittedBatch): Buffer {
  const parts: Buffer[] = [];
  const head = Buffer.alloc(4);
  head.writeUInt32BE(b.prePrepare.length);
  parts.push(head, Buffer.from(b.prePrepare));
  const count = Buffer.alloc(2);
  count.writeUInt16BE(b.large.length);
  parts.push(count);
  for (const f of b.large) {
    const len = Buffer.alloc(4);
    len.writeUInt32BE(f.length);
    parts.push(len, Buffer.from(f));
  }
  return Buffer.concat(parts);
}

/** Undefined when the bytes are not a whole record (a torn or foreign value). */
export function decodeBatch(v: Uint8Array): CommittedBatch | undefined {
  const b = Buffer.from(v.buffer, v.byteOffset, v.byteLength);
  try {
    let at = 0;
    const len = b.readUInt32BE(at);
    at += 4;
    if (at + len > b.length) return undefined;
    const prePrepare = new Uint8Array(b.subarray(at, at + len));
    at += len;
    const count = b.readUInt16BE(at);
    at += 2;
    const large: Uint8Array[] = [];
    for (let i = 0; i < count; i++) {
      const l = b.readUInt32BE(at);
      at += 4;
      if (at + l > b.length) return undefined;
      large.push(new Uint8Array(b.subarray(at, at + l)));
      at += l;
    }
    return at === b.length ? { prePrepare, large } : undefined;
  } catch (e) {
    if (e instanceof RangeError) return undefined;
    throw e;
  }
}

export class CommitLog {
  private queue: Promise<unknown> = Promise.resolve();
  /** Appended entries not yet handed to LevelDB, and the queued write that will take them. */
  private unwritten: { key: Uint8Array; value: Uint8Array }[] = [];
  private nextWrite: Promise<void> | undefined;
  /** Writes that failed (logged by the caller); the log is then only as good as the checkpoints. */
  failures = 0;
  /** LevelDB writes made for appends (each carries one or more entries). */
  writes = 0;

  private constructor(private readonly db: Level<Uint8Array, Uint8Array>) {}

  static async open(dir: string): Promise<CommitLog> {
    const db = new Level<Uint8Array, Uint8Array>(dir, {
      keyEncoding: 'view',
      valueEncoding: 'view',
    });
    await db.open();
    return new CommitLog(db);
  }

  /** The batches after `seq`, in order, up to the first gap or unreadable entry. */
  async after(seq: number): Promise<CommittedBatch[]> {
    const out: CommittedBatch[] = [];
    let next = seq + 1;
    for await (const [k, v] of this.db.iterator({ gt: seqKey(seq) })) {
      const b = keySeq(k) === next ? decodeBatch(v) : undefined;
      if (!b) break;
      out.push(b);
      next++;
    }
    return out;
  }

  /** Resolves once the entry is written (with whatever else was appended meanwhile). */
  append(seq: number, batch: CommittedBatch): Promise<void> {
    this.unwritten.push({ key: seqKey(seq), value: encodeBatch(batch) });
    this.nextWrite ??= this.enqueue(() => {
      const entries = this.unwritten;
      this.unwritten = [];
      this.nextWrite = undefined;
      this.writes++;
      return this.db.batch(entries.map((e) => ({ type: 'put' as const, ...e })));
    });
    return this.nextWrite;
  }

  /** Forgets everything at or below `seq` (a checkpoint that is now on disk). */
  truncateThrough(seq: number): Promise<void> {
    return this.enqueue(() => this.db.clear({ lte: seqKey(seq) }));
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
