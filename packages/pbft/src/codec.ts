/**
 * The wire format: a hand-written, bounds-checked binary codec (the hot path).
 *
 * Frame = header | body | authenticator
 *   header (10 bytes): u8 MAGIC, u8 type, u32 sender, u32 bodyLength
 *   authenticator: u8 count, count x MAC_BYTES; entry i is for replica i when count > 1 (a
 *   multicast authenticator, OSDI 1999 section 4.1), the single entry is for the receiver when
 *   count = 1 (point to point). The MACs cover header and body.
 * All integers are big-endian; sequence numbers and timestamps are u64 carried as safe integers.
 */
import {
  DIGEST_BYTES,
  MAC_BYTES,
  MAX_BATCH_REQUESTS,
  MAX_FRAME_BYTES,
  MAX_VIEW_CHANGE_FRAME_BYTES,
  MAX_NONDET_BYTES,
  MAX_VIEW_CHANGE_CERTS,
  MAX_FETCH_PIECES,
  MAX_OP_BYTES,
  MAX_REPLICAS,
  MAX_REQUEST_SIGNATURE_BYTES,
  MAX_RESULT_BYTES,
  MAX_REPLY_BATCH_BYTES,
} from './constants';

export const MAGIC = 0xb1;
export const HEADER_BYTES = 10;

export enum MsgType {
  Request = 1,
  Reply = 2,
  PrePrepare = 3,
  Prepare = 4,
  Commit = 5,
  Checkpoint = 6,
  Status = 7,
  ViewChange = 8,
  NewView = 9,
  Fetch = 10,
  FetchReply = 11,
  ReplyBatch = 12,
  BatchFetch = 13,
  ForwardedNewView = 14,
}

export interface RequestMsg {
  type: MsgType.Request;
  clientId: number;
  timestamp: number;
  readOnly: boolean;
  /** Replica designated to send the full result; -1 asks every replica for it. */
  replier: number;
  op: Uint8Array;
  /**
   * Another client id of the same client process whose key and connection carry this
   * request's reply, batched with the replies to the process's other ids (REPLY-BATCH); absent:
   * a REPLY of its own. Only the client names it, in its authenticated request.
   */
  replyTo?: number;
  /**
   * The client process's signature over the body before it (`requestSigningBytes`): every
   * replica can check it alike, unlike the MACs (docs/pbft.md, "Defenses"). Absent where
   * request signatures are off, and on read-only requests.
   */
  signature?: Uint8Array;
  /**
   * The client sent this request's first copy to every replica, so the first copy a replica
   * hears is the original, not a retransmission (it neither relays it nor re-sends a reply).
   * Only the client's own requests are affected by its setting it falsely.
   */
  toAll?: boolean;
}

/**
 * Request flags byte: bit 0 read-only, bit 1 a u32 replyTo follows the op, bit 2 a signature
 * (u8 length, 1..MAX_REQUEST_SIGNATURE_BYTES bytes) ends the body, bit 3 first sent to all.
 */
const REQUEST_READ_ONLY = 1;
const REQUEST_REPLY_TO = 2;
const REQUEST_SIGNED = 4;
const REQUEST_TO_ALL = 8;

export const REPLY_TENTATIVE = 1;
export const REPLY_DIGEST_ONLY = 2;
export const REPLY_READ_ONLY = 4;

export interface ReplyMsg {
  type: MsgType.Reply;
  view: number;
  timestamp: number;
  clientId: number;
  replica: number;
  flags: number;
  /** The full result, or its digest when REPLY_DIGEST_ONLY is set. */
  result: Uint8Array;
}

/**
 * One reply of a REPLY-BATCH: a REPLY's fields but the replica's, which the batch names once (a
 * REPLY's body is the replica, then exactly these).
 */
export interface BatchedReply {
  view: number;
  timestamp: number;
  clientId: number;
  flags: number;
  result: Uint8Array;
}

/**
 * The replies of one executed batch to the client ids of one client process, under one MAC for
 * the process's `group` id (the `replyTo` of its requests) instead of one REPLY and MAC each.
 */
export interface ReplyBatchMsg {
  type: MsgType.ReplyBatch;
  replica: number;
  group: number;
  replies: BatchedReply[];
}

/** One request of a batch: the client's whole frame (inline) or only its digest (large). */
export type BatchEntry = { inline: Uint8Array } | { digest: Uint8Array };

/**
 * PRE-PREPARE. Its multicast authenticator covers the batch digest, not the bytes of the body
 * (crypto.ts, `prePrepareAuthDigest`), so the same MACs stand for the whole batch and for its
 * stripped form: `batch` set to the batch digest, no nondet value and no entries. VIEW-CHANGE
 * certificates and NEW-VIEWs carry the stripped form, so their size does not grow with the
 * requests (PBFT's digest-only view change); a replica that lacks a re-proposed batch fetches its
 * body (BATCH-FETCH).
 */
export interface PrePrepareMsg {
  type: MsgType.PrePrepare;
  view: number;
  seq: number;
  nondet: Uint8Array;
  entries: BatchEntry[];
  batch?: Uint8Array;
}

/** Entry count that marks a stripped PRE-PREPARE: the batch digest follows instead of entries. */
const STRIPPED_BATCH = 0xffff;

/**
 * BATCH-FETCH: the sender lacks the bodies of these batches, re-proposed in `view` by a NEW-VIEW
 * that carried only their digests. A replica holding one answers with a PRE-PREPARE of `view`
 * sealed to the asker: the body checks against the digest, whoever sends it.
 */
export interface BatchFetchMsg {
  type: MsgType.BatchFetch;
  view: number;
  wanted: { seq: number; digest: Uint8Array }[];
}

/**
 * The NEW-VIEW of the sender's current view, quoted whole and sealed point to point by whoever
 * forwards it to a replica still behind. Its own MACs may be stale there (keys refreshed since,
 * or the replica restarted); f + 1 replicas vouching for the same NEW-VIEW stand in for them.
 */
export interface ForwardedNewViewMsg {
  type: MsgType.ForwardedNewView;
  newView: Uint8Array;
}

export interface PrepareMsg {
  type: MsgType.Prepare | MsgType.Commit;
  view: number;
  seq: number;
  digest: Uint8Array;
}

export interface CheckpointMsg {
  type: MsgType.Checkpoint;
  seq: number;
  digest: Uint8Array;
}

export interface StatusMsg {
  type: MsgType.Status;
  view: number;
  lastExecuted: number;
  stable: number;
}

/** A prepared certificate: the primary's pre-prepare frame and 2f prepare frames, as received. */
export interface PreparedCert {
  prePrepare: Uint8Array;
  prepares: Uint8Array[];
}

/**
 * VIEW-CHANGE to `view` (OSDI 1999 section 4.4): the sender's last stable checkpoint with its
 * proof (2f + 1 CHECKPOINT frames) and a prepared certificate for every sequence number above it.
 * Every embedded frame keeps its multicast authenticator, so each replica checks it for itself.
 */
export interface ViewChangeMsg {
  type: MsgType.ViewChange;
  view: number;
  stable: number;
  stableDigest: Uint8Array;
  proof: Uint8Array[];
  certs: PreparedCert[];
}

/** NEW-VIEW: the 2f + 1 VIEW-CHANGE frames it is built from and the pre-prepares it re-proposes. */
export interface NewViewMsg {
  type: MsgType.NewView;
  view: number;
  viewChanges: Uint8Array[];
  prePrepares: Uint8Array[];
}

/**
 * State transfer request (point to point): pieces of stable checkpoint `seq` (page-store fetch
 * requests, encoded by the page-store transfer codec) and, with `meta`, the checkpoint's root
 * digest and last-reply table.
 */
export interface FetchMsg {
  type: MsgType.Fetch;
  seq: number;
  meta: boolean;
  requests: Uint8Array[];
}

export const FETCH_HAS_META = 1;
/** The sender no longer (or never did) keep checkpoint `seq`. */
export const FETCH_MISSING = 2;

/** State transfer reply: `meta` is root digest ‖ reply table when FETCH_HAS_META is set. */
export interface FetchReplyMsg {
  type: MsgType.FetchReply;
  seq: number;
  flags: number;
  meta: Uint8Array;
  pieces: Uint8Array[];
}

export type Body =
  | RequestMsg
  | ReplyMsg
  | ReplyBatchMsg
  | PrePrepareMsg
  | PrepareMsg
  | CheckpointMsg
  | StatusMsg
  | ViewChangeMsg
  | NewViewMsg
  | FetchMsg
  | FetchReplyMsg
  | BatchFetchMsg
  | ForwardedNewViewMsg;

/** An authenticator's MACs; an array of them will do too. */
export interface MacList {
  readonly length: number;
  at(index: number): Uint8Array | undefined;
}

/**
 * The MACs of a received frame, as views made only when asked for: a replica checks the one
 * entry meant for it, and making all n views for every request cost measurable garbage.
 */
class FrameMacs implements MacList {
  constructor(
    private readonly bytes: Uint8Array,
    private readonly offset: number,
    readonly length: number,
  ) {}

  at(index: number): Uint8Array | undefined {
    if (!Number.isInteger(index) || index < 0 || index >= this.length) return undefined;
    const at = this.offset + index * MAC_BYTES;
    return this.bytes.subarray(at, at + MAC_BYTES);
  }
}

/** A decoded frame: who claims to have sent it, what, and where its authenticator lies. */
export interface Frame {
  sender: number;
  body: Body;
  /** Header and body: the bytes the MACs cover (a view on the input). */
  signed: Uint8Array;
  macs: MacList;
}

export class DecodeError extends Error {}

class Writer {
  buf: Buffer;
  pos = 0;
  constructor(size: number) {
    this.buf = Buffer.allocUnsafe(size);
  }
  u8(v: number): void {
    this.buf[this.pos++] = v;
  }
  u16(v: number): void {
    this.buf.writeUInt16BE(v, this.pos);
    this.pos += 2;
  }
  u32(v: number): void {
    this.buf.writeUInt32BE(v >>> 0, this.pos);
    this.pos += 4;
  }
  i32(v: number): void {
    this.buf.writeInt32BE(v, this.pos);
    this.pos += 4;
  }
  u64(v: number): void {
    if (!Number.isSafeInteger(v) || v < 0) throw new RangeError(`bad u64 ${v}`);
    this.buf.writeUInt32BE(Math.floor(v / 0x100000000), this.pos);
    this.buf.writeUInt32BE(v >>> 0, this.pos + 4);
    this.pos += 8;
  }
  bytes(b: Uint8Array): void {
    this.buf.set(b, this.pos);
    this.pos += b.length;
  }
  varBytes(b: Uint8Array): void {
    this.u32(b.length);
    this.bytes(b);
  }
}

class Reader {
  pos = 0;
  buf: Uint8Array = new Uint8Array(0);
  end = 0;

  /** Points the reader at `buf[start, end)`: one reader serves every (synchronous) decode. */
  reset(buf: Uint8Array, start: number, end: number): Reader {
    this.buf = buf;
    this.pos = start;
    this.end = end;
    return this;
  }
  need(k: number): void {
    if (this.pos + k > this.end) throw new DecodeError('truncated message');
  }
  u8(): number {
    this.need(1);
    return this.buf[this.pos++]!;
  }
  u16(): number {
    this.need(2);
    const v = (this.buf[this.pos]! << 8) | this.buf[this.pos + 1]!;
    this.pos += 2;
    return v;
  }
  u32(): number {
    this.need(4);
    const b = this.buf;
    const p = this.pos;
    this.pos += 4;
    return ((b[p]! << 24) | (b[p + 1]! << 16) | (b[p + 2]! << 8) | b[p + 3]!) >>> 0;
  }
  i32(): number {
    return this.u32() | 0;
  }
  u64(): number {
    const hi = this.u32();
    const lo = this.u32();
    if (hi > 0x1fffff) throw new DecodeError('u64 beyond safe integer range');
    return hi * 0x100000000 + lo;
  }
  bytes(k: number): Uint8Array {
    this.need(k);
    const v = this.buf.subarray(this.pos, this.pos + k);
    this.pos += k;
    return v;
  }
  varBytes(max: number): Uint8Array {
    const k = this.u32();
    if (k > max) throw new DecodeError(`field of ${k} bytes exceeds ${max}`);
    return this.bytes(k);
  }
}

function bodySize(b: Body): number {
  switch (b.type) {
    case MsgType.Request:
      return requestHeadSize(b) + (b.signature === undefined ? 0 : 1 + b.signature.length);
    case MsgType.Reply:
      return 4 + batchedReplySize(b);
    case MsgType.ReplyBatch: {
      let s = REPLY_BATCH_HEAD_BYTES;
      for (const r of b.replies) s += batchedReplySize(r);
      return s;
    }
    case MsgType.PrePrepare: {
      if (b.batch) return 4 + 8 + 4 + 2 + DIGEST_BYTES;
      let s = 4 + 8 + 4 + b.nondet.length + 2;
      for (const e of b.entries) s += 'inline' in e ? 1 + 4 + e.inline.length : 1 + DIGEST_BYTES;
      return s;
    }
    case MsgType.Prepare:
    case MsgType.Commit:
      return 4 + 8 + DIGEST_BYTES;
    case MsgType.Checkpoint:
      return 8 + DIGEST_BYTES;
    case MsgType.Status:
      return 4 + 8 + 8;
    case MsgType.ViewChange: {
      let s = 4 + 8 + DIGEST_BYTES + listSize(b.proof) + 2;
      for (const c of b.certs) s += 4 + c.prePrepare.length + listSize(c.prepares);
      return s;
    }
    case MsgType.NewView:
      return 4 + listSize(b.viewChanges) + listSize(b.prePrepares);
    case MsgType.Fetch:
      return 8 + 1 + listSize(b.requests);
    case MsgType.FetchReply:
      return 8 + 1 + 4 + b.meta.length + listSize(b.pieces);
    case MsgType.BatchFetch:
      return 4 + 2 + b.wanted.length * (8 + DIGEST_BYTES);
    case MsgType.ForwardedNewView:
      return 4 + b.newView.length;
  }
}

/** Bytes of a request body before its signature. */
function requestHeadSize(b: RequestMsg): number {
  return 4 + 8 + 1 + 4 + 4 + b.op.length + (b.replyTo === undefined ? 0 : 4);
}

function writeRequestHead(w: Writer, b: RequestMsg, signed: boolean): void {
  w.u32(b.clientId);
  w.u64(b.timestamp);
  w.u8(
    (b.readOnly ? REQUEST_READ_ONLY : 0) |
      (b.replyTo === undefined ? 0 : REQUEST_REPLY_TO) |
      (signed ? REQUEST_SIGNED : 0) |
      (b.toAll ? REQUEST_TO_ALL : 0),
  );
  w.i32(b.replier);
  w.varBytes(b.op);
  if (b.replyTo !== undefined) w.u32(b.replyTo);
}

/**
 * What a request's signature covers: its body up to the signature (client id, timestamp, flags
 * with the signed bit set, replier, op, replyTo). The sender and lengths in the header add
 * nothing the body does not bind.
 */
export function requestSigningBytes(b: RequestMsg): Buffer {
  const w = new Writer(requestHeadSize(b));
  writeRequestHead(w, b, true);
  return w.buf;
}

/** The same bytes read off a received request's signed part (header and body). */
export function receivedSigningBytes(signed: Uint8Array, b: RequestMsg): Uint8Array {
  const end = signed.length - (b.signature === undefined ? 0 : 1 + b.signature.length);
  return signed.subarray(HEADER_BYTES, end);
}

/** Bytes of a REPLY-BATCH body before its replies: replica, group, count. */
export const REPLY_BATCH_HEAD_BYTES = 4 + 4 + 2;

/** Bytes one reply takes in a REPLY-BATCH body. */
export function batchedReplySize(r: BatchedReply): number {
  return 4 + 8 + 4 + 1 + 4 + r.result.length;
}

/** Embedded frame lists: u16 count, then count x (u32 length, frame). */
function listSize(list: Uint8Array[]): number {
  let s = 2;
  for (const f of list) s += 4 + f.length;
  return s;
}

function writeList(w: Writer, list: Uint8Array[]): void {
  w.u16(list.length);
  for (const f of list) w.varBytes(f);
}

function readList(r: Reader, max: number, itemMax = MAX_FRAME_BYTES): Uint8Array[] {
  const count = r.u16();
  if (count > max) throw new DecodeError(`list of ${count} frames exceeds ${max}`);
  const out: Uint8Array[] = [];
  for (let i = 0; i < count; i++) out.push(r.varBytes(itemMax));
  return out;
}

function writeBody(w: Writer, b: Body): void {
  switch (b.type) {
    case MsgType.Request:
      writeRequestHead(w, b, b.signature !== undefined);
      if (b.signature !== undefined) {
        if (b.signature.length < 1 || b.signature.length > MAX_REQUEST_SIGNATURE_BYTES)
          throw new RangeError(`request signature of ${b.signature.length} bytes`);
        w.u8(b.signature.length);
        w.bytes(b.signature);
      }
      return;
    case MsgType.Reply:
      w.u32(b.replica);
      writeBatchedReply(w, b);
      return;
    case MsgType.ReplyBatch:
      w.u32(b.replica);
      w.u32(b.group);
      w.u16(b.replies.length);
      for (const r of b.replies) writeBatchedReply(w, r);
      return;
    case MsgType.PrePrepare:
      w.u32(b.view);
      w.u64(b.seq);
      if (b.batch) {
        if (b.nondet.length > 0 || b.entries.length > 0)
          throw new RangeError('a stripped pre-prepare has no nondet value and no entries');
        w.varBytes(b.nondet);
        w.u16(STRIPPED_BATCH);
        w.bytes(b.batch);
        return;
      }
      w.varBytes(b.nondet);
      w.u16(b.entries.length);
      for (const e of b.entries) {
        if ('inline' in e) {
          w.u8(0);
          w.varBytes(e.inline);
        } else {
          w.u8(1);
          w.bytes(e.digest);
        }
      }
      return;
    case MsgType.Prepare:
    case MsgType.Commit:
      w.u32(b.view);
      w.u64(b.seq);
      w.bytes(b.digest);
      return;
    case MsgType.Checkpoint:
      w.u64(b.seq);
      w.bytes(b.digest);
      return;
    case MsgType.Status:
      w.u32(b.view);
      w.u64(b.lastExecuted);
      w.u64(b.stable);
      return;
    case MsgType.ViewChange:
      w.u32(b.view);
      w.u64(b.stable);
      w.bytes(b.stableDigest);
      writeList(w, b.proof);
      w.u16(b.certs.length);
      for (const c of b.certs) {
        w.varBytes(c.prePrepare);
        writeList(w, c.prepares);
      }
      return;
    case MsgType.NewView:
      w.u32(b.view);
      writeList(w, b.viewChanges);
      writeList(w, b.prePrepares);
      return;
    case MsgType.Fetch:
      w.u64(b.seq);
      w.u8(b.meta ? 1 : 0);
      writeList(w, b.requests);
      return;
    case MsgType.FetchReply:
      w.u64(b.seq);
      w.u8(b.flags);
      w.varBytes(b.meta);
      writeList(w, b.pieces);
      return;
    case MsgType.ForwardedNewView:
      w.varBytes(b.newView);
      return;
    case MsgType.BatchFetch:
      w.u32(b.view);
      w.u16(b.wanted.length);
      for (const x of b.wanted) {
        w.u64(x.seq);
        w.bytes(x.digest);
      }
      return;
  }
}

/**
 * Encodes header and body, leaving room for `macCount` MACs; returns the frame and the length of
 * its signed part. The caller fills the MACs in with `setMac`.
 */
export function encodeUnsealed(
  sender: number,
  body: Body,
  macCount: number,
): { frame: Buffer; signedLength: number } {
  const size = bodySize(body);
  const signedLength = HEADER_BYTES + size;
  const w = new Writer(signedLength + 1 + macCount * MAC_BYTES);
  w.u8(MAGIC);
  w.u8(body.type);
  w.u32(sender);
  w.u32(size);
  writeBody(w, body);
  w.u8(macCount);
  w.buf.fill(0, w.pos);
  return { frame: w.buf, signedLength };
}

/** Where MAC number `index` goes in a frame whose signed part is `signedLength` bytes. */
export function macOffset(signedLength: number, index: number): number {
  return signedLength + 1 + index * MAC_BYTES;
}

export function setMac(frame: Buffer, signedLength: number, index: number, mac: Uint8Array): void {
  frame.set(mac.subarray(0, MAC_BYTES), macOffset(signedLength, index));
}

function readBody(type: number, r: Reader): Body {
  switch (type) {
    case MsgType.Request: {
      const clientId = r.u32();
      const timestamp = r.u64();
      const flags = r.u8();
      if (flags > (REQUEST_READ_ONLY | REQUEST_REPLY_TO | REQUEST_SIGNED | REQUEST_TO_ALL))
        throw new DecodeError('bad request flags');
      const replier = r.i32();
      if (replier < -1 || replier >= MAX_REPLICAS) throw new DecodeError('bad replier');
      const op = r.varBytes(MAX_OP_BYTES);
      const readOnly = (flags & REQUEST_READ_ONLY) !== 0;
      const m: RequestMsg = { type, clientId, timestamp, readOnly, replier, op };
      if (flags & REQUEST_TO_ALL) m.toAll = true;
      if (flags & REQUEST_REPLY_TO) m.replyTo = r.u32();
      if (flags & REQUEST_SIGNED) {
        const length = r.u8();
        if (length < 1 || length > MAX_REQUEST_SIGNATURE_BYTES)
          throw new DecodeError(`request signature of ${length} bytes`);
        m.signature = r.bytes(length);
      }
      return m;
    }
    case MsgType.Reply: {
      const replica = r.u32();
      return { type, replica, ...readBatchedReply(r) };
    }
    case MsgType.ReplyBatch: {
      const replica = r.u32();
      const group = r.u32();
      const count = r.u16();
      if (count > MAX_BATCH_REQUESTS) throw new DecodeError(`reply batch of ${count} replies`);
      if (r.end - HEADER_BYTES > MAX_REPLY_BATCH_BYTES)
        throw new DecodeError('reply batch exceeds MAX_REPLY_BATCH_BYTES');
      const replies: BatchedReply[] = [];
      for (let i = 0; i < count; i++) replies.push(readBatchedReply(r));
      return { type, replica, group, replies };
    }
    case MsgType.PrePrepare: {
      const view = r.u32();
      const seq = r.u64();
      const nondet = r.varBytes(MAX_NONDET_BYTES);
      const count = r.u16();
      if (count === STRIPPED_BATCH) {
        if (nondet.length > 0) throw new DecodeError('stripped pre-prepare with a nondet value');
        return { type, view, seq, nondet, entries: [], batch: r.bytes(DIGEST_BYTES) };
      }
      if (count > MAX_BATCH_REQUESTS) throw new DecodeError(`batch of ${count} requests`);
      const entries: BatchEntry[] = [];
      for (let i = 0; i < count; i++) {
        const kind = r.u8();
        if (kind === 0) entries.push({ inline: r.varBytes(MAX_FRAME_BYTES) });
        else if (kind === 1) entries.push({ digest: r.bytes(DIGEST_BYTES) });
        else throw new DecodeError('bad batch entry kind');
      }
      return { type, view, seq, nondet, entries };
    }
    case MsgType.Prepare:
    case MsgType.Commit:
      return { type, view: r.u32(), seq: r.u64(), digest: r.bytes(DIGEST_BYTES) };
    case MsgType.Checkpoint:
      return { type, seq: r.u64(), digest: r.bytes(DIGEST_BYTES) };
    case MsgType.Status:
      return { type, view: r.u32(), lastExecuted: r.u64(), stable: r.u64() };
    case MsgType.ViewChange: {
      const view = r.u32();
      const stable = r.u64();
      const stableDigest = r.bytes(DIGEST_BYTES);
      const proof = readList(r, MAX_REPLICAS);
      const count = r.u16();
      if (count > MAX_VIEW_CHANGE_CERTS) throw new DecodeError(`${count} prepared certificates`);
      const certs: PreparedCert[] = [];
      for (let i = 0; i < count; i++)
        certs.push({
          prePrepare: r.varBytes(MAX_FRAME_BYTES),
          prepares: readList(r, MAX_REPLICAS),
        });
      return { type, view, stable, stableDigest, proof, certs };
    }
    case MsgType.NewView: {
      const view = r.u32();
      const viewChanges = readList(r, MAX_REPLICAS, MAX_VIEW_CHANGE_FRAME_BYTES);
      const prePrepares = readList(r, MAX_VIEW_CHANGE_CERTS);
      return { type, view, viewChanges, prePrepares };
    }
    case MsgType.Fetch: {
      const seq = r.u64();
      const meta = r.u8();
      if (meta > 1) throw new DecodeError('bad fetch flag');
      return { type, seq, meta: meta === 1, requests: readList(r, MAX_FETCH_PIECES) };
    }
    case MsgType.FetchReply: {
      const seq = r.u64();
      const flags = r.u8();
      if (flags > 3) throw new DecodeError('bad fetch reply flags');
      const meta = r.varBytes(MAX_FRAME_BYTES);
      return { type, seq, flags, meta, pieces: readList(r, MAX_FETCH_PIECES) };
    }
    case MsgType.ForwardedNewView:
      return { type, newView: r.varBytes(MAX_VIEW_CHANGE_FRAME_BYTES) };
    case MsgType.BatchFetch: {
      const view = r.u32();
      const count = r.u16();
      if (count > MAX_VIEW_CHANGE_CERTS) throw new DecodeError(`batch fetch of ${count}`);
      const wanted: BatchFetchMsg['wanted'] = [];
      for (let i = 0; i < count; i++) wanted.push({ seq: r.u64(), digest: r.bytes(DIGEST_BYTES) });
      return { type, view, wanted };
    }
    default:
      throw new DecodeError(`unknown message type ${type}`);
  }
}

/** A reply's fields after the replica: the whole body of a REPLY but its first u32. */
function writeBatchedReply(w: Writer, r: BatchedReply): void {
  w.u32(r.view);
  w.u64(r.timestamp);
  w.u32(r.clientId);
  w.u8(r.flags);
  w.varBytes(r.result);
}

function readBatchedReply(r: Reader): BatchedReply {
  const view = r.u32();
  const timestamp = r.u64();
  const clientId = r.u32();
  const flags = r.u8();
  if (flags > 7) throw new DecodeError('bad reply flags');
  const result = r.varBytes(MAX_RESULT_BYTES);
  if (flags & REPLY_DIGEST_ONLY && result.length !== DIGEST_BYTES)
    throw new DecodeError('digest reply of wrong length');
  return { view, timestamp, clientId, flags, result };
}

/** Bytes of a frame with a `body`-byte body and a multicast authenticator for n replicas. */
function multicastFrameBytes(body: number, n: number): number {
  return HEADER_BYTES + body + 1 + n * MAC_BYTES;
}

/** Bytes of a stripped PRE-PREPARE frame among n replicas. */
function strippedPrePrepareBytes(n: number): number {
  return multicastFrameBytes(4 + 8 + 4 + 2 + DIGEST_BYTES, n);
}

/**
 * Largest VIEW-CHANGE a correct replica sends among n replicas with log window `logWindow`: a
 * stable proof of at most n CHECKPOINTs and a certificate per slot of the window, each a
 * stripped PRE-PREPARE and `prepares` PREPAREs. What the batches hold plays no part.
 */
export function maxViewChangeBytes(n: number, logWindow: number, prepares: number): number {
  const checkpoint = multicastFrameBytes(8 + DIGEST_BYTES, n);
  const prepare = multicastFrameBytes(4 + 8 + DIGEST_BYTES, n);
  const cert = 4 + strippedPrePrepareBytes(n) + 2 + prepares * (4 + prepare);
  const body = 4 + 8 + DIGEST_BYTES + 2 + n * (4 + checkpoint) + 2 + logWindow * cert;
  return multicastFrameBytes(body, n);
}

/** Largest NEW-VIEW: `viewChanges` VIEW-CHANGEs of at most `viewChangeBytes` and a window of stripped PRE-PREPAREs. */
export function maxNewViewBytes(
  n: number,
  logWindow: number,
  viewChanges: number,
  viewChangeBytes: number,
): number {
  const body =
    4 + 2 + viewChanges * (4 + viewChangeBytes) + 2 + logWindow * (4 + strippedPrePrepareBytes(n));
  return multicastFrameBytes(body, n);
}

/** Bytes of a FORWARDED-NEW-VIEW frame quoting a NEW-VIEW of `newView` bytes. */
export function forwardedNewViewBytes(newView: number): number {
  return HEADER_BYTES + 4 + newView + 1 + MAC_BYTES;
}

/**
 * Largest frame of a message type (the type is the frame's second byte): MAX_FRAME_BYTES, or
 * MAX_VIEW_CHANGE_FRAME_BYTES for VIEW-CHANGE, NEW-VIEW and a forwarded NEW-VIEW.
 */
export function maxFrameBytes(type: number | undefined): number {
  return type === MsgType.ViewChange ||
    type === MsgType.NewView ||
    type === MsgType.ForwardedNewView
    ? MAX_VIEW_CHANGE_FRAME_BYTES
    : MAX_FRAME_BYTES;
}

/** Decodes a frame; throws DecodeError on anything malformed (callers count and drop). */
export function decodeFrame(bytes: Uint8Array): Frame {
  if (bytes.length > maxFrameBytes(bytes[1])) throw new DecodeError('frame too large');
  if (bytes.length < HEADER_BYTES + 1) throw new DecodeError('frame too short');
  if (bytes[0] !== MAGIC) throw new DecodeError('bad magic');
  const type = bytes[1]!;
  const sender = u32At(bytes, 2);
  const size = u32At(bytes, 6);
  const signedLength = HEADER_BYTES + size;
  if (signedLength + 1 > bytes.length) throw new DecodeError('body length beyond frame');
  const r = reader.reset(bytes, HEADER_BYTES, signedLength);
  const body = readBody(type, r);
  if (r.pos !== signedLength) throw new DecodeError('trailing bytes in body');
  const count = bytes[signedLength]!;
  if (count < 1 || count > MAX_REPLICAS) throw new DecodeError('bad authenticator size');
  if (signedLength + 1 + count * MAC_BYTES !== bytes.length)
    throw new DecodeError('authenticator length mismatch');
  const macs = new FrameMacs(bytes, signedLength + 1, count);
  return { sender, body, signed: bytes.subarray(0, signedLength), macs };
}

/** `decodeFrame`, or undefined for anything malformed (for callers that count and drop). */
export function tryDecodeFrame(bytes: Uint8Array): Frame | undefined {
  try {
    return decodeFrame(bytes);
  } catch (e) {
    if (!(e instanceof DecodeError)) throw e;
    return undefined;
  }
}

const reader = new Reader();

function u32At(b: Uint8Array, p: number): number {
  return ((b[p]! << 24) | (b[p + 1]! << 16) | (b[p + 2]! << 8) | b[p + 3]!) >>> 0;
}

function u64At(b: Uint8Array, p: number): number | undefined {
  const hi = u32At(b, p);
  return hi > 0x1fffff ? undefined : hi * 0x100000000 + u32At(b, p + 4);
}

// Header fields of a frame read in place, before it is decoded or authenticated: for refusals
// that cost a few bytes' reading (the replica's and the client's cheap refusals). Nothing read
// so is trusted: a refusal on these fields must be one the frame would get anyway once decoded
// and authenticated with the same fields. Each peek is undefined when the frame is too short or
// not of its type (the decoder then has its say).

/** Whether `bytes` is a frame of `type` with at least `bodyBytes` of body. */
function peek(bytes: Uint8Array, type: MsgType, bodyBytes: number): boolean {
  return bytes.length >= HEADER_BYTES + bodyBytes && bytes[0] === MAGIC && bytes[1] === type;
}

/** Sender of any frame (unauthenticated), or undefined if too short. */
export function peekSender(bytes: Uint8Array): number | undefined {
  return bytes.length >= HEADER_BYTES ? u32At(bytes, 2) : undefined;
}

/**
 * Number of MACs in the authenticator (after the signed part), or undefined if the frame is too
 * short to hold it.
 */
export function peekMacCount(bytes: Uint8Array): number | undefined {
  if (bytes.length < HEADER_BYTES) return undefined;
  const at = HEADER_BYTES + u32At(bytes, 6);
  return at < bytes.length ? bytes[at] : undefined;
}

/** View and sequence number of a PRE-PREPARE, PREPARE or COMMIT (the first body fields). */
export function peekViewSeq(
  bytes: Uint8Array,
  type: MsgType.PrePrepare | MsgType.Prepare | MsgType.Commit,
): { view: number; seq: number } | undefined {
  if (!peek(bytes, type, 12)) return undefined;
  const seq = u64At(bytes, HEADER_BYTES + 4);
  return seq === undefined ? undefined : { view: u32At(bytes, HEADER_BYTES), seq };
}

/** Client id, timestamp, read-only flag and designated replier of a REQUEST. */
export function peekRequest(
  bytes: Uint8Array,
): { clientId: number; timestamp: number; readOnly: boolean; replier: number } | undefined {
  if (!peek(bytes, MsgType.Request, 17)) return undefined;
  const timestamp = u64At(bytes, HEADER_BYTES + 4);
  if (timestamp === undefined) return undefined;
  const readOnly = (bytes[HEADER_BYTES + 12]! & REQUEST_READ_ONLY) !== 0;
  const replier = u32At(bytes, HEADER_BYTES + 13) | 0;
  return { clientId: u32At(bytes, HEADER_BYTES), timestamp, readOnly, replier };
}

/** Timestamp and client id of a REPLY (after its replica and view). */
export function peekReply(bytes: Uint8Array): { timestamp: number; clientId: number } | undefined {
  if (!peek(bytes, MsgType.Reply, 20)) return undefined;
  const timestamp = u64At(bytes, HEADER_BYTES + 8);
  if (timestamp === undefined) return undefined;
  return { timestamp, clientId: u32At(bytes, HEADER_BYTES + 16) };
}

/** Sender and body of a frame's signed part (header and body), authenticator not included. */
export function decodeSigned(signed: Uint8Array): { sender: number; body: Body } {
  if (signed.length < HEADER_BYTES || signed[0] !== MAGIC) throw new DecodeError('bad header');
  if (HEADER_BYTES + u32At(signed, 6) !== signed.length) throw new DecodeError('bad body length');
  const r = reader.reset(signed, HEADER_BYTES, signed.length);
  const body = readBody(signed[1]!, r);
  if (r.pos !== signed.length) throw new DecodeError('trailing bytes in body');
  return { sender: u32At(signed, 2), body };
}

/**
 * The same sender and authenticator over another body: a PRE-PREPARE stripped to its batch
 * digest or filled in again from a body with that digest (its MACs cover the digest only).
 */
export function reframe(frame: Uint8Array, body: Body): Buffer {
  const signed = signedPart(frame);
  const count = frame[signed.length]!;
  const { frame: out, signedLength } = encodeUnsealed(u32At(frame, 2), body, count);
  out.set(frame.subarray(signed.length + 1), signedLength + 1);
  return out;
}

/** The signed part of a frame (header and body), without decoding it. */
export function signedPart(frame: Uint8Array): Uint8Array {
  if (frame.length < HEADER_BYTES) throw new DecodeError('frame too short');
  const size = u32At(frame, 6);
  if (HEADER_BYTES + size > frame.length) throw new DecodeError('body length beyond frame');
  return frame.subarray(0, HEADER_BYTES + size);
}
