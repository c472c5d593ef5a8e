/** The bytes a host persists beside the page store's checkpoint to restart from its own disk. */
import { MAX_RESTORED_RESULT_BYTES } from '../constants';
import type { RestorePoint } from './api';

/**
 * A restore point without its view, as the host persists it next to the page store's checkpoint:
 *   u64 seq, u32 length + reply table, u16 count + count x (u32 length + proof frame), digest[32],
 *   then, if there are results, u32 count + count x (u32 client id, u32 length + result).
 */
export function encodeRestorePoint(p: Omit<RestorePoint, 'view'>): Buffer {
  const parts: Buffer[] = [];
  const head = Buffer.alloc(12);
  head.writeUInt32BE(Math.floor(p.seq / 0x100000000), 0);
  head.writeUInt32BE(p.seq >>> 0, 4);
  head.writeUInt32BE(p.replyTable.length, 8);
  parts.push(head, Buffer.from(p.replyTable));
  const count = Buffer.alloc(2);
  count.writeUInt16BE(p.proof.length);
  parts.push(count);
  for (const f of p.proof) {
    const len = Buffer.alloc(4);
    len.writeUInt32BE(f.length);
    parts.push(len, Buffer.from(f));
  }
  parts.push(Buffer.from(p.initialDigest));
  if (p.results && p.results.length > 0) {
    const n = Buffer.alloc(4);
    n.writeUInt32BE(p.results.length);
    parts.push(n);
    for (const r of p.results) {
      const h = Buffer.alloc(8);
      h.writeUInt32BE(r.clientId, 0);
      h.writeUInt32BE(r.result.length, 4);
      parts.push(h, Buffer.from(r.result));
    }
  }
  return Buffer.concat(parts);
}

/** Parses `encodeRestorePoint`'s bytes; undefined if they are malformed. */
export function decodeRestorePoint(bytes: Uint8Array): Omit<RestorePoint, 'view'> | undefined {
  const b = Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  try {
    let at = 0;
    const hi = b.readUInt32BE(at);
    const seq = hi * 0x100000000 + b.readUInt32BE(at + 4);
    const tableLen = b.readUInt32BE(at + 8);
    at += 12;
    if (hi > 0x1fffff || at + tableLen > b.length) return undefined;
    const replyTable = new Uint8Array(b.subarray(at, at + tableLen));
    at += tableLen;
    const count = b.readUInt16BE(at);
    at += 2;
    const proof: Uint8Array[] = [];
    for (let i = 0; i < count; i++) {
      const len = b.readUInt32BE(at);
      at += 4;
      if (at + len > b.length) return undefined;
      proof.push(new Uint8Array(b.subarray(at, at + len)));
      at += len;
    }
    if (at + 32 > b.length) return undefined;
    const initialDigest = new Uint8Array(b.subarray(at, at + 32));
    at += 32;
    // Written before results were kept: nothing follows the digest.
    if (at === b.length) return { seq, replyTable, proof, initialDigest };
    const n = b.readUInt32BE(at);
    at += 4;
    const results: { clientId: number; result: Uint8Array }[] = [];
    for (let i = 0; i < n; i++) {
      const clientId = b.readUInt32BE(at);
      const len = b.readUInt32BE(at + 4);
      at += 8;
      if (len > MAX_RESTORED_RESULT_BYTES || at + len > b.length) return undefined;
      results.push({ clientId, result: new Uint8Array(b.subarray(at, at + len)) });
      at += len;
    }
    if (at !== b.length) return undefined;
    return { seq, replyTable, proof, initialDigest, results };
  } catch (e) {
    if (e instanceof RangeError) return undefined;
    throw e;
  }
}
