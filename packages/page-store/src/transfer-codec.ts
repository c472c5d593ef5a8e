import { DIGEST_BYTES } from './hash';
import { MAX_FANOUT, MAX_PAGE_SIZE } from './page-store';
import type { ChildDigest, FetchRequest, PageReply, PartitionReply } from './transfer';

/**
 * A compact binary encoding of state-transfer messages, for a transport that wants one (the PBFT
 * library may use it or its own). Integers are big-endian; checkpoint numbers that may be -1
 * (`since`, `lm`) travel as value + 1.
 *
 *   partition request  0x01 u64 seq  u8 level  u64 index  u64 since+1
 *   page request       0x02 u64 seq  u64 index
 *   partition reply    0x03 u64 seq  u8 level  u64 index  u64 lm+1  u32 n  n x (u64 index  u64 lm+1  digest[32])
 *   page reply         0x04 u64 seq  u64 index  u64 lm+1  u32 length  bytes[length]
 *
 * `decodeTransferMessage` never throws: malformed input gives a reason. Shapes it accepts are
 * still checked against the tree by `StateTransfer`.
 */

export type TransferMessage = FetchRequest | PartitionReply | PageReply;

export type DecodeResult = { ok: true; message: TransferMessage } | { ok: false; reason: string };

/** Most children a partition reply may list (the largest fanout accepted). */
export const MAX_REPLY_CHILDREN = MAX_FANOUT;
/** Largest page a page reply may carry. */
export const MAX_REPLY_PAGE_BYTES = MAX_PAGE_SIZE;

const PARTITION_REQUEST = 0x01;
const PAGE_REQUEST = 0x02;
const PARTITION_REPLY = 0x03;
const PAGE_REPLY = 0x04;
const CHILD_BYTES = 8 + 8 + DIGEST_BYTES;

class Writer {
  readonly bytes: Uint8Array;
  private readonly view: DataView;
  private at = 0;
  constructor(length: number) {
    this.bytes = new Uint8Array(length);
    this.view = new DataView(this.bytes.buffer);
  }
  u8(v: number): void {
    this.view.setUint8(this.at, v);
    this.at += 1;
  }
  u32(v: number): void {
    this.view.setUint32(this.at, v);
    this.at += 4;
  }
  u64(v: number): void {
    if (!Number.isSafeInteger(v) || v < 0) throw new RangeError(`cannot encode ${v} as u64`);
    this.view.setUint32(this.at, Math.floor(v / 2 ** 32));
    this.view.setUint32(this.at + 4, v >>> 0);
    this.at += 8;
  }
  raw(b: Uint8Array): void {
    this.bytes.set(b, this.at);
    this.at += b.byteLength;
  }
}

class Reader {
  private readonly view: DataView;
  private at = 0;
  constructor(private readonly bytes: Uint8Array) {
    this.view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  }
  get left(): number {
    return this.bytes.byteLength - this.at;
  }
  u8(): number {
    const v = this.view.getUint8(this.at);
    this.at += 1;
    return v;
  }
  u32(): number {
    const v = this.view.getUint32(this.at);
    this.at += 4;
    return v;
  }
  /** A u64 that must fit a safe integer; undefined otherwise. */
  u64(): number | undefined {
    const hi = this.view.getUint32(this.at);
    const lo = this.view.getUint32(this.at + 4);
    this.at += 8;
    return hi < 2 ** 21 ? hi * 2 ** 32 + lo : undefined;
  }
  raw(n: number): Uint8Array {
    const out = new Uint8Array(this.bytes.subarray(this.at, this.at + n));
    this.at += n;
    return out;
  }
}

/** Encodes a request or reply. Throws RangeError on values that cannot be encoded (local bugs). */
export function encodeTransferMessage(m: TransferMessage): Uint8Array {
  switch (m.kind) {
    case 'partition':
      if ('children' in m) {
        if (m.children.length > MAX_REPLY_CHILDREN) throw new RangeError('too many children');
        const w = new Writer(1 + 8 + 1 + 8 + 8 + 4 + m.children.length * CHILD_BYTES);
        w.u8(PARTITION_REPLY);
        w.u64(m.seq);
        w.u8(m.level);
        w.u64(m.index);
        w.u64(m.lm + 1);
        w.u32(m.children.length);
        for (const c of m.children) {
          if (c.digest.byteLength !== DIGEST_BYTES) throw new RangeError('digest must be 32 bytes');
          w.u64(c.index);
          w.u64(c.lm + 1);
          w.raw(c.digest);
        }
        return w.bytes;
      } else {
        const w = new Writer(1 + 8 + 1 + 8 + 8);
        w.u8(PARTITION_REQUEST);
        w.u64(m.seq);
        w.u8(m.level);
        w.u64(m.index);
        w.u64(m.since + 1);
        return w.bytes;
      }
    case 'page':
      if ('data' in m) {
        if (m.data.byteLength > MAX_REPLY_PAGE_BYTES) throw new RangeError('page too large');
        const w = new Writer(1 + 8 + 8 + 8 + 4 + m.data.byteLength);
        w.u8(PAGE_REPLY);
        w.u64(m.seq);
        w.u64(m.index);
        w.u64(m.lm + 1);
        w.u32(m.data.byteLength);
        w.raw(m.data);
        return w.bytes;
      } else {
        const w = new Writer(1 + 8 + 8);
        w.u8(PAGE_REQUEST);
        w.u64(m.seq);
        w.u64(m.index);
        return w.bytes;
      }
  }
}

/** Decodes one message that fills `bytes` exactly; never throws. */
export function decodeTransferMessage(bytes: Uint8Array): DecodeResult {
  if (!(bytes instanceof Uint8Array) || bytes.byteLength < 1)
    return { ok: false, reason: 'empty message' };
  const r = new Reader(bytes);
  const fail = (reason: string): DecodeResult => ({ ok: false, reason });
  const tag = r.u8();
  const done = (message: TransferMessage): DecodeResult =>
    r.left === 0 ? { ok: true, message } : fail('trailing bytes');
  switch (tag) {
    case PARTITION_REQUEST: {
      if (r.left !== 25) return fail('partition request of the wrong length');
      const seq = r.u64();
      const level = r.u8();
      const index = r.u64();
      const since = r.u64();
      if (seq === undefined || index === undefined || since === undefined)
        return fail('number too large');
      return done({ kind: 'partition', seq, level, index, since: since - 1 });
    }
    case PAGE_REQUEST: {
      if (r.left !== 16) return fail('page request of the wrong length');
      const seq = r.u64();
      const index = r.u64();
      if (seq === undefined || index === undefined) return fail('number too large');
      return done({ kind: 'page', seq, index });
    }
    case PARTITION_REPLY: {
      if (r.left < 29) return fail('partition reply too short');
      const seq = r.u64();
      const level = r.u8();
      const index = r.u64();
      const lm = r.u64();
      const n = r.u32();
      if (seq === undefined || index === undefined || lm === undefined)
        return fail('number too large');
      if (n > MAX_REPLY_CHILDREN) return fail('too many children');
      if (r.left !== n * CHILD_BYTES) return fail('partition reply of the wrong length');
      const children: ChildDigest[] = [];
      for (let i = 0; i < n; i++) {
        const ci = r.u64();
        const clm = r.u64();
        const digest = r.raw(DIGEST_BYTES);
        if (ci === undefined || clm === undefined) return fail('number too large');
        children.push({ index: ci, lm: clm - 1, digest });
      }
      return done({ kind: 'partition', seq, level, index, lm: lm - 1, children });
    }
    case PAGE_REPLY: {
      if (r.left < 28) return fail('page reply too short');
      const seq = r.u64();
      const index = r.u64();
      const lm = r.u64();
      const length = r.u32();
      if (seq === undefined || index === undefined || lm === undefined)
        return fail('number too large');
      if (length > MAX_REPLY_PAGE_BYTES) return fail('page too large');
      if (r.left !== length) return fail('page reply of the wrong length');
      return done({ kind: 'page', seq, index, lm: lm - 1, data: r.raw(length) });
    }
    default:
      return fail(`unknown message tag ${tag}`);
  }
}
