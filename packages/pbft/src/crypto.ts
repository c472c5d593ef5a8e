/**
 * Digests, MAC authenticators and key set-up.
 *
 * Hot path (every message): HMAC-SHA256 truncated to MAC_BYTES, from prepared keys (hmac.ts). It
 * is synchronous and measured faster than node:crypto's createHmac and WebCrypto's promise-based
 * HMAC (see docs/pbft.md and `npm run bench -w @bfs/pbft`). Key pairs, ECDH and signatures run
 * through WebCrypto (@peculiar/webcrypto) at set-up, outside the core, which only receives ready
 * session keys.
 */
import * as nodeCrypto from 'node:crypto';
import { createHash } from 'node:crypto';
import type { webcrypto as nodeWebcrypto } from 'node:crypto';
import { Crypto } from '@peculiar/webcrypto';
import {
  Body,
  DecodeError,
  type MacList,
  MsgType,
  type PrePrepareMsg,
  decodeSigned,
  encodeUnsealed,
  macOffset,
  signedPart,
} from './codec';
import { MAC_BYTES, MAX_QUOTED_KEY_EPOCHS } from './constants';
import { HmacKey, JS_HASH_MAX_BYTES, sha256Small } from './hmac';

export { HmacKey, JS_HASH_MAX_BYTES, JS_HMAC_MAX_BYTES, sha256Small } from './hmac';

export const webcrypto = new Crypto();

/**
 * One-shot hashing (node >= 20.12) allocates no Hash object: about twice as fast as
 * createHash for small inputs and far lighter on the garbage collector.
 */
const oneShot = (
  nodeCrypto as unknown as { hash?: (alg: string, data: Uint8Array, enc: 'buffer') => Buffer }
).hash;

export function sha256(...parts: Uint8Array[]): Buffer {
  if (parts.length === 1 && parts[0]!.length <= JS_HASH_MAX_BYTES) return sha256Small(parts[0]!);
  if (oneShot)
    return oneShot('sha256', parts.length === 1 ? parts[0]! : Buffer.concat(parts), 'buffer');
  const h = createHash('sha256');
  for (const p of parts) h.update(p);
  return h.digest();
}

/** Batch digest: the nondet value and every request digest, in order. */
export function batchDigest(nondet: Uint8Array, requestDigests: Uint8Array[]): Buffer {
  const len = Buffer.alloc(4);
  len.writeUInt32BE(nondet.length);
  return sha256(len, nondet, ...requestDigests);
}

/** The digest of each request of a batch; throws DecodeError on a malformed inline request. */
export function requestDigests(pp: PrePrepareMsg): Buffer[] {
  return pp.entries.map((e) =>
    'digest' in e ? Buffer.from(e.digest) : sha256(signedPart(e.inline)),
  );
}

/** A pre-prepare's batch digest (given, when stripped); undefined if an inline request is malformed. */
export function prePrepareBatch(pp: PrePrepareMsg): Buffer | undefined {
  if (pp.batch) return Buffer.from(pp.batch);
  try {
    return batchDigest(pp.nondet, requestDigests(pp));
  } catch (e) {
    if (!(e instanceof DecodeError)) throw e;
    return undefined;
  }
}

/**
 * What a PRE-PREPARE's multicast authenticator covers: sender, view, sequence number and batch
 * digest. Not the body's bytes, so the stripped form keeps the MACs (see PrePrepareMsg).
 */
export function prePrepareAuthDigest(
  sender: number,
  view: number,
  seq: number,
  batch: Uint8Array,
): Buffer {
  const b = Buffer.allocUnsafe(1 + 4 + 4 + 8 + 32);
  b[0] = MsgType.PrePrepare;
  b.writeUInt32BE(sender, 1);
  b.writeUInt32BE(view, 5);
  b.writeUInt32BE(Math.floor(seq / 0x100000000), 9);
  b.writeUInt32BE(seq >>> 0, 13);
  b.set(batch, 17);
  return sha256Small(b);
}

/**
 * The digest a multicast authenticator of this signed part covers: the digest of the bytes, or
 * for a PRE-PREPARE `prePrepareAuthDigest` (undefined when its body is malformed). Hot paths
 * that know the digest pass it in instead.
 */
export function multicastDigest(signed: Uint8Array): Buffer | undefined {
  if (signed[1] !== MsgType.PrePrepare) return sha256(signed);
  let m: ReturnType<typeof decodeSigned>;
  try {
    m = decodeSigned(signed);
  } catch (e) {
    if (!(e instanceof DecodeError)) throw e;
    return undefined;
  }
  const pp = m.body as PrePrepareMsg;
  const batch = prePrepareBatch(pp);
  return batch && prePrepareAuthDigest(m.sender, pp.view, pp.seq, batch);
}

/** Files a retired key for quoted frames, newest first, keeping MAX_QUOTED_KEY_EPOCHS. */
function archive(keys: Map<number, HmacKey[]>, peer: number, key: HmacKey): void {
  const list = keys.get(peer) ?? [];
  list.unshift(key);
  if (list.length > MAX_QUOTED_KEY_EPOCHS) list.length = MAX_QUOTED_KEY_EPOCHS;
  keys.set(peer, list);
}

export function hmacTag(key: Uint8Array, data: Uint8Array): Buffer {
  return new HmacKey(key).tag(data);
}

function hmacKey(key: Uint8Array): HmacKey {
  if (key.length < 16) throw new RangeError('session keys must have at least 128 bits');
  return new HmacKey(key);
}

/**
 * Pairwise session keys of one node, and MAC generation/verification with them. Keys are
 * directional once refreshed (TOCS 2002 section 4.3.1): a node chooses the keys of the messages
 * sent *to* it (`setInKey`, the previous one still accepted until the next refresh) and peers
 * learn them from its NEW-KEY announcement (`setOutKey`). `setKey` sets one key both ways.
 */
export class MacAuthenticator {
  private readonly outKeys = new Map<number, HmacKey>();
  /** The key before the last `setOutKey`, to recognise frames we sealed with it. */
  private readonly prevOutKeys = new Map<number, HmacKey>();
  /** Accepted keys for frames from each peer: current first, then the previous one. */
  private readonly inKeys = new Map<number, HmacKey[]>();
  /**
   * Keys retired from `inKeys` and `prevOutKeys`, newest first, at most MAX_QUOTED_KEY_EPOCHS
   * per peer: only for frames quoted in certificates (`verifyQuoted`, `isOwnMulticast`), which
   * carry the MACs of when they were sent.
   */
  private readonly quotedIn = new Map<number, HmacKey[]>();
  private readonly quotedOut = new Map<number, HmacKey[]>();

  constructor(
    readonly self: number,
    keys?: Iterable<[number, Uint8Array]>,
  ) {
    if (keys) for (const [peer, key] of keys) this.setKey(peer, key);
  }

  /** Installs the session key shared with `peer`, for both directions. */
  setKey(peer: number, key: Uint8Array): void {
    const k = hmacKey(key);
    this.outKeys.set(peer, k);
    this.inKeys.set(peer, [k]);
  }

  /** The key for what we send to `peer` (announced by `peer`). */
  setOutKey(peer: number, key: Uint8Array): void {
    const old = this.outKeys.get(peer);
    const retired = this.prevOutKeys.get(peer);
    if (retired) archive(this.quotedOut, peer, retired);
    if (old) this.prevOutKeys.set(peer, old);
    this.outKeys.set(peer, hmacKey(key));
  }

  /** The key for what `peer` sends us (chosen by us); the previous one stays valid until the next. */
  setInKey(peer: number, key: Uint8Array): void {
    const [cur, retired] = this.inKeys.get(peer) ?? [];
    if (retired) archive(this.quotedIn, peer, retired);
    this.inKeys.set(peer, cur ? [hmacKey(key), cur] : [hmacKey(key)]);
  }

  /**
   * Keys of before a restart (re-derived from persisted key epochs), accepted for quoted frames
   * only: `inKey` for frames `peer` sent us, `outKey` for frames we sent `peer`. Older than any
   * key installed since, so they go last; MAX_QUOTED_KEY_EPOCHS still bounds each list.
   */
  archiveRestored(peer: number, inKey: Uint8Array | undefined, outKey?: Uint8Array): void {
    for (const [keys, key] of [
      [this.quotedIn, inKey],
      [this.quotedOut, outKey],
    ] as const) {
      if (!key) continue;
      const list = keys.get(peer) ?? [];
      if (list.length < MAX_QUOTED_KEY_EPOCHS) list.push(hmacKey(key));
      keys.set(peer, list);
    }
  }

  hasKey(peer: number): boolean {
    return this.inKeys.has(peer);
  }

  mac(peer: number, data: Uint8Array): Buffer | undefined {
    const k = this.outKeys.get(peer);
    return k === undefined ? undefined : k.tag(data);
  }

  verify(peer: number, data: Uint8Array, tag: Uint8Array): boolean {
    const keys = this.inKeys.get(peer);
    if (keys === undefined || tag.length !== MAC_BYTES) return false;
    for (const k of keys) if (k.matches(data, tag)) return true;
    return false;
  }

  /**
   * Whether a multicast authenticator is one we computed (a frame of ours quoted back to us in a
   * certificate): at least `minMatches` other replicas' entries (default: all) are their MACs
   * under our current, previous or an archived key. f + 1 of them include a correct replica's,
   * which nobody but us and that replica could make; fewer than all leaves room for peers whose
   * keys we no longer keep.
   */
  isOwnMulticast(
    signed: Uint8Array,
    macs: MacList,
    minMatches = macs.length - 1,
    digest = multicastDigest(signed),
  ): boolean {
    if (!digest) return false;
    let matches = 0;
    for (let i = 0; i < macs.length; i++) {
      if (i === this.self) continue;
      const mac = macs.at(i)!;
      if (
        this.outKeys.get(i)?.matches(digest, mac) ||
        this.prevOutKeys.get(i)?.matches(digest, mac) ||
        this.quotedOut.get(i)?.some((k) => k.matches(digest, mac))
      )
        matches++;
    }
    return matches >= minMatches;
  }

  /**
   * `verifyFrame` for a multicast frame quoted in a certificate: also under the keys we retired
   * in our last MAX_QUOTED_KEY_EPOCHS refreshes (a prepared certificate may wait above the
   * stable checkpoint for as long as the service is idle).
   */
  verifyQuoted(sender: number, signed: Uint8Array, macs: MacList): boolean {
    if (macs.length === 1) return false;
    const tag = macs.at(this.self);
    const digest = multicastDigest(signed);
    if (tag === undefined || digest === undefined) return false;
    if (this.verify(sender, digest, tag)) return true;
    return this.quotedIn.get(sender)?.some((k) => k.matches(digest, tag)) ?? false;
  }

  /**
   * A frame authenticated for every replica 0..n-1 (own entry left zero). As in PBFT, the
   * authenticator's MACs cover the digest of the signed part: one hash of the frame, then a short
   * MAC per receiver; receivers that need the digest anyway (requests) hash only once. A
   * PRE-PREPARE's MACs cover `prePrepareAuthDigest` (pass it if already computed).
   */
  sealMulticast(body: Body, n: number, known?: Uint8Array): Buffer {
    const { frame, signedLength } = encodeUnsealed(this.self, body, n);
    const digest = known ?? multicastDigest(frame.subarray(0, signedLength));
    if (!digest) throw new RangeError('cannot seal a malformed pre-prepare');
    for (let i = 0; i < n; i++) {
      if (i === this.self) continue;
      this.outKeys.get(i)?.tagInto(digest, frame, macOffset(signedLength, i));
    }
    return frame;
  }

  /** A frame authenticated for one receiver: the MAC covers the signed part itself. */
  sealTo(body: Body, peer: number): Buffer {
    const { frame, signedLength } = encodeUnsealed(this.self, body, 1);
    this.outKeys
      .get(peer)
      ?.tagInto(frame.subarray(0, signedLength), frame, macOffset(signedLength, 0));
    return frame;
  }

  /**
   * Checks the entry of an authenticator meant for this node (see codec.ts): a multicast
   * authenticator's MAC is over `multicastDigest` (pass it if already computed), a single MAC
   * over the signed part.
   */
  verifyFrame(sender: number, signed: Uint8Array, macs: MacList, digest?: Uint8Array): boolean {
    if (macs.length === 1) return this.verify(sender, signed, macs.at(0)!);
    const tag = macs.at(this.self);
    if (tag === undefined) return false;
    const d = digest ?? multicastDigest(signed);
    return d !== undefined && this.verify(sender, d, tag);
  }
}

// ---- Key set-up (async, outside the core) -------------------------------------------------

/** A node's long-term identity: an ECDH P-256 key pair (for session keys) and an ECDSA one. */
export interface NodeKeys {
  ecdh: nodeWebcrypto.CryptoKeyPair;
  signing: nodeWebcrypto.CryptoKeyPair;
}

export interface PublicIdentity {
  /** Raw uncompressed P-256 point of the ECDH key. */
  ecdh: Uint8Array;
  /** Raw uncompressed P-256 point of the ECDSA key. */
  signing: Uint8Array;
}

export async function generateNodeKeys(): Promise<NodeKeys> {
  const s = webcrypto.subtle;
  const ecdh = (await s.generateKey({ name: 'ECDH', namedCurve: 'P-256' }, true, [
    'deriveBits',
  ])) as nodeWebcrypto.CryptoKeyPair;
  const signing = (await s.generateKey({ name: 'ECDSA', namedCurve: 'P-256' }, true, [
    'sign',
    'verify',
  ])) as nodeWebcrypto.CryptoKeyPair;
  return { ecdh, signing };
}

export async function exportPublic(keys: NodeKeys): Promise<PublicIdentity> {
  const s = webcrypto.subtle;
  return {
    ecdh: new Uint8Array(await s.exportKey('raw', keys.ecdh.publicKey)),
    signing: new Uint8Array(await s.exportKey('raw', keys.signing.publicKey)),
  };
}

/**
 * Session key for MACs between node ids `a` and `b` (either order gives the same key): ECDH
 * shared secret, then HKDF-SHA256 with the ordered ids and a refresh epoch in the info, so that
 * one key pair serves many client ids and bumping the epoch refreshes every key (TOCS 2002
 * section 4.3 refreshes session keys periodically).
 */
export async function deriveSessionKey(
  own: NodeKeys,
  peer: PublicIdentity,
  a: number,
  b: number,
  epoch = 0,
): Promise<Uint8Array> {
  return sessionKeyFromSecret(await sharedSecret(own, peer), a, b, epoch);
}

/** `deriveSessionKey` from an already computed ECDH secret (one per key pair, many ids). */
export function sessionKeyFromSecret(
  secret: Uint8Array,
  a: number,
  b: number,
  epoch = 0,
): Uint8Array {
  const info = Buffer.alloc(16);
  info.writeUInt32BE(Math.min(a, b), 0);
  info.writeUInt32BE(Math.max(a, b), 4);
  info.writeUInt32BE(Math.floor(epoch / 0x100000000), 8);
  info.writeUInt32BE(epoch >>> 0, 12);
  return new Uint8Array(
    nodeCrypto.hkdfSync('sha256', secret, Buffer.from('bfs-pbft session key'), info, 32),
  );
}

/** The ECDH shared secret of a key pair and a peer's public key (`SharedSecrets` caches it). */
export async function sharedSecret(own: NodeKeys, peer: PublicIdentity): Promise<Uint8Array> {
  const s = webcrypto.subtle;
  const pub = await s.importKey('raw', peer.ecdh, { name: 'ECDH', namedCurve: 'P-256' }, false, []);
  return new Uint8Array(
    await s.deriveBits({ name: 'ECDH', public: pub }, own.ecdh.privateKey, 256),
  );
}

/**
 * ECDH secrets of one key pair with each peer key pair, computed once: a relay's client ids share
 * one key pair, and key refresh derives every epoch's keys from the same secrets.
 */
export class SharedSecrets {
  private readonly byPeer = new Map<string, Promise<Uint8Array>>();
  constructor(readonly own: NodeKeys) {}

  get(peer: PublicIdentity): Promise<Uint8Array> {
    const k = Buffer.from(peer.ecdh).toString('hex');
    let s = this.byPeer.get(k);
    if (!s) this.byPeer.set(k, (s = sharedSecret(this.own, peer)));
    return s;
  }
}

/**
 * The refreshed key for messages from node `from` to node `to` in `to`'s key epoch: HKDF of the
 * pair's ECDH secret. One-way: a key of one epoch tells nothing about the next.
 */
export function directionalKey(
  secret: Uint8Array,
  from: number,
  to: number,
  epoch: number,
): Buffer {
  const info = Buffer.alloc(16);
  info.writeUInt32BE(from, 0);
  info.writeUInt32BE(to, 4);
  info.writeUInt32BE(Math.floor(epoch / 0x100000000), 8);
  info.writeUInt32BE(epoch >>> 0, 12);
  return Buffer.from(
    nodeCrypto.hkdfSync('sha256', secret, Buffer.from('bfs-pbft directional key'), info, 32),
  );
}

export async function sign(keys: NodeKeys, data: Uint8Array): Promise<Uint8Array> {
  const sig = await webcrypto.subtle.sign(
    { name: 'ECDSA', hash: 'SHA-256' },
    keys.signing.privateKey,
    data,
  );
  return new Uint8Array(sig);
}

export async function verifySignature(
  peer: PublicIdentity,
  data: Uint8Array,
  signature: Uint8Array,
): Promise<boolean> {
  const s = webcrypto.subtle;
  const pub = await s.importKey(
    'raw',
    peer.signing,
    { name: 'ECDSA', namedCurve: 'P-256' },
    false,
    ['verify'],
  );
  return s.verify({ name: 'ECDSA', hash: 'SHA-256' }, pub, signature, data);
}
