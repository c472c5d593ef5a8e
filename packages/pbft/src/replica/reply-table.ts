/** The last-reply table: one record per client, hashed into every checkpoint digest. */
import { MAX_RESTORED_RESULT_BYTES } from '../constants';

/** A client's last executed request and its reply (the last-reply table of the paper). */
export interface ClientRecord {
  lastTimestamp: number;
  /** Unknown after a state transfer (the table carries digests only): replies send the digest. */
  result: Uint8Array | undefined;
  resultDigest: Buffer;
  view: number;
  tentative: boolean;
}

/** Bytes of one reply-table entry: client id u32, timestamp u64, result digest. */
const TABLE_ENTRY_BYTES = 4 + 8 + 32;

/**
 * The last-reply table as it is hashed into the checkpoint digest and carried by state transfer
 * and restore points: entries ascending by client id.
 */
export function encodeReplyTable(
  clients: Map<number, { lastTimestamp: number; resultDigest: Buffer }>,
): Buffer {
  const ids = [...clients.keys()].sort((a, b) => a - b);
  const table = Buffer.allocUnsafe(ids.length * TABLE_ENTRY_BYTES);
  let p = 0;
  for (const id of ids) {
    const r = clients.get(id)!;
    table.writeUInt32BE(id, p);
    table.writeUInt32BE(Math.floor(r.lastTimestamp / 0x100000000), p + 4);
    table.writeUInt32BE(r.lastTimestamp >>> 0, p + 8);
    r.resultDigest.copy(table, p + 12);
    p += TABLE_ENTRY_BYTES;
  }
  return table;
}

/** Parses a reply table (committed state: results unknown, replies carry digests); undefined if malformed. */
export function decodeReplyTable(
  bytes: Uint8Array,
  view: number,
): Map<number, ClientRecord> | undefined {
  if (bytes.length % TABLE_ENTRY_BYTES !== 0) return undefined;
  const b = Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const out = new Map<number, ClientRecord>();
  let prev = -1;
  for (let p = 0; p < b.length; p += TABLE_ENTRY_BYTES) {
    const id = b.readUInt32BE(p);
    const hi = b.readUInt32BE(p + 4);
    if (id <= prev || hi > 0x1fffff) return undefined;
    prev = id;
    out.set(id, {
      lastTimestamp: hi * 0x100000000 + b.readUInt32BE(p + 8),
      result: undefined,
      resultDigest: Buffer.from(b.subarray(p + 12, p + TABLE_ENTRY_BYTES)),
      view,
      tentative: false,
    });
  }
  return out;
}

export function copyTable(clients: Map<number, ClientRecord>): Map<number, ClientRecord> {
  const snap = new Map<number, ClientRecord>();
  for (const [id, r] of clients) snap.set(id, { ...r });
  return snap;
}

/** See RestorePoint.results. */
export function keptResults(
  table: Map<number, ClientRecord>,
): { clientId: number; result: Uint8Array }[] {
  const out: { clientId: number; result: Uint8Array }[] = [];
  for (const [clientId, r] of table)
    if (r.result !== undefined && r.result.length <= MAX_RESTORED_RESULT_BYTES)
      out.push({ clientId, result: r.result });
  return out;
}
