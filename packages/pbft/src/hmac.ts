/**
 * HMAC-SHA256 (RFC 2104, FIPS 180-4) with the key's inner and outer blocks hashed once, at key
 * set-up. Every message of the protocol carries MACs, most of them over 32-byte digests or frames
 * of about 100 bytes; for those the SHA-256 compression function written here in JavaScript
 * (two or three blocks from the saved midstates, no allocation) costs about half of two
 * node:crypto one-shot hashes, whose fixed cost per call dominates at that size. Longer inputs
 * go to node:crypto. Both give the same bytes: test/codec.test.ts checks them against
 * createHmac. Measured figures are in docs/pbft.md ("MACs").
 */
import { createHmac, hash as oneShotHash } from 'node:crypto';
import { MAC_BYTES } from './constants';

/**
 * Inputs up to this many bytes are hashed in JavaScript; longer ones by node:crypto's createHmac
 * (measured on this machine: JS 1.9 us vs createHmac 3.9 us at 100 bytes, 5.6 vs 3.2 at 1 KiB).
 */
export const JS_HMAC_MAX_BYTES = 384;
/**
 * Plain SHA-256 of inputs up to this many bytes (three blocks with padding) is computed here too:
 * node:crypto's one-shot hash costs about 1.5 us at any small size (the call), our compression
 * function about 0.35 us a block (measured: 0.4 us at 32 bytes, 1.1 us at 150).
 */
export const JS_HASH_MAX_BYTES = 183;

const BLOCK = 64;

// prettier-ignore
const K = new Int32Array([
  0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4, 0xab1c5ed5,
  0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe, 0x9bdc06a7, 0xc19bf174,
  0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc, 0x2de92c6f, 0x4a7484aa, 0x5cb0a9dc, 0x76f988da,
  0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7, 0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967,
  0x27b70a85, 0x2e1b2138, 0x4d2c6dfc, 0x53380d13, 0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85,
  0xa2bfe8a1, 0xa81a664b, 0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070,
  0x19a4c116, 0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3,
  0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7, 0xc67178f2,
]);
// prettier-ignore
const IV = new Int32Array([
  0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a, 0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19,
]);

// Scratch space: the core is single-threaded and synchronous, so one set serves every key.
const W = new Int32Array(64);
const state = new Int32Array(8);
const tail = new Uint8Array(2 * BLOCK);
const innerDigest = new Uint8Array(32);
const scratchTag = new Uint8Array(32);

/** One SHA-256 compression of the 64 bytes at `buf[off]` into `h`. */
function compress(h: Int32Array, buf: Uint8Array, off: number): void {
  for (let i = 0; i < 16; i++, off += 4)
    W[i] = (buf[off]! << 24) | (buf[off + 1]! << 16) | (buf[off + 2]! << 8) | buf[off + 3]!;
  compressW(h);
}

/**
 * The last block of a hash whose input is one 64-byte key block and 32 bytes (both HMAC passes
 * over a digest): the 8 words already in W[0..7], then the padding and the length (768 bits).
 */
function padDigestBlock(): void {
  W[8] = 0x80000000 | 0;
  for (let i = 9; i < 15; i++) W[i] = 0;
  W[15] = (BLOCK + 32) * 8;
}

/** One SHA-256 compression of the block already in W[0..15] into `h`. */
function compressW(h: Int32Array): void {
  for (let i = 16; i < 64; i++) {
    const w15 = W[i - 15]!;
    const w2 = W[i - 2]!;
    const s0 = ((w15 >>> 7) | (w15 << 25)) ^ ((w15 >>> 18) | (w15 << 14)) ^ (w15 >>> 3);
    const s1 = ((w2 >>> 17) | (w2 << 15)) ^ ((w2 >>> 19) | (w2 << 13)) ^ (w2 >>> 10);
    W[i] = (W[i - 16]! + s0 + W[i - 7]! + s1) | 0;
  }
  let a = h[0]!;
  let b = h[1]!;
  let c = h[2]!;
  let d = h[3]!;
  let e = h[4]!;
  let f = h[5]!;
  let g = h[6]!;
  let k = h[7]!;
  for (let i = 0; i < 64; i++) {
    const s1 = ((e >>> 6) | (e << 26)) ^ ((e >>> 11) | (e << 21)) ^ ((e >>> 25) | (e << 7));
    const t1 = (k + s1 + ((e & f) ^ (~e & g)) + K[i]! + W[i]!) | 0;
    const s0 = ((a >>> 2) | (a << 30)) ^ ((a >>> 13) | (a << 19)) ^ ((a >>> 22) | (a << 10));
    const t2 = (s0 + ((a & b) ^ (a & c) ^ (b & c))) | 0;
    k = g;
    g = f;
    f = e;
    e = (d + t1) | 0;
    d = c;
    c = b;
    b = a;
    a = (t1 + t2) | 0;
  }
  h[0] = (h[0]! + a) | 0;
  h[1] = (h[1]! + b) | 0;
  h[2] = (h[2]! + c) | 0;
  h[3] = (h[3]! + d) | 0;
  h[4] = (h[4]! + e) | 0;
  h[5] = (h[5]! + f) | 0;
  h[6] = (h[6]! + g) | 0;
  h[7] = (h[7]! + k) | 0;
}

/**
 * SHA-256 of `prefix` bytes already hashed into `mid` (0 or one block) followed by `data`; the
 * result in `state`.
 */
function finishFrom(mid: Int32Array, data: Uint8Array, prefix = BLOCK): void {
  state.set(mid);
  const n = data.length;
  let off = 0;
  for (; n - off >= BLOCK; off += BLOCK) compress(state, data, off);
  const rem = n - off;
  const end = rem + 9 > BLOCK ? 2 * BLOCK : BLOCK;
  tail.fill(0, 0, end);
  for (let i = 0; i < rem; i++) tail[i] = data[off + i]!;
  tail[rem] = 0x80;
  const bits = (prefix + n) * 8; // n <= JS_HMAC_MAX_BYTES: fits in 32 bits
  tail[end - 4] = bits >>> 24;
  tail[end - 3] = bits >>> 16;
  tail[end - 2] = bits >>> 8;
  tail[end - 1] = bits;
  compress(state, tail, 0);
  if (end > BLOCK) compress(state, tail, BLOCK);
}

/** The first `bytes` bytes of `state`, big-endian, at `out[offset]`. */
function stateBytes(out: Uint8Array, offset: number, bytes: number): void {
  for (let i = 0; i < bytes / 4; i++) {
    const v = state[i]!;
    out[offset + 4 * i] = v >>> 24;
    out[offset + 4 * i + 1] = v >>> 16;
    out[offset + 4 * i + 2] = v >>> 8;
    out[offset + 4 * i + 3] = v;
  }
}

/** SHA-256 of a short input (at most JS_HASH_MAX_BYTES; longer ones belong to node:crypto). */
export function sha256Small(data: Uint8Array): Buffer {
  if (data.length > JS_HASH_MAX_BYTES) throw new RangeError('input too long for sha256Small');
  finishFrom(IV, data, 0);
  const out = Buffer.allocUnsafe(32);
  stateBytes(out, 0, 32);
  return out;
}

/** A session key prepared for HMAC-SHA256: the midstates after its inner and outer blocks. */
export class HmacKey {
  private readonly innerMid = new Int32Array(IV);
  private readonly outerMid = new Int32Array(IV);
  /** The key itself, for node:crypto's HMAC on long inputs. */
  private readonly key: Buffer;

  constructor(key: Uint8Array) {
    this.key = Buffer.from(key);
    const k = key.length > BLOCK ? oneShotHash('sha256', key, 'buffer') : key;
    const ipad = new Uint8Array(BLOCK).fill(0x36);
    const opad = new Uint8Array(BLOCK).fill(0x5c);
    for (let i = 0; i < k.length; i++) {
      ipad[i]! ^= k[i]!;
      opad[i]! ^= k[i]!;
    }
    compress(this.innerMid, ipad, 0);
    compress(this.outerMid, opad, 0);
  }

  /** HMAC-SHA256(key, data) truncated to MAC_BYTES, written at `out[offset]`. */
  tagInto(data: Uint8Array, out: Uint8Array, offset: number): void {
    if (data.length === 32) return this.tagDigestInto(data, out, offset);
    if (data.length > JS_HMAC_MAX_BYTES) {
      out.set(createHmac('sha256', this.key).update(data).digest().subarray(0, MAC_BYTES), offset);
      return;
    }
    finishFrom(this.innerMid, data);
    stateBytes(innerDigest, 0, 32);
    finishFrom(this.outerMid, innerDigest);
    stateBytes(out, offset, MAC_BYTES);
  }

  /**
   * The case of every authenticator entry (a MAC of a 32-byte digest): both passes are one block
   * each, filled word by word with the padding constant; the inner hash's words go into the
   * outer block as they are, without bytes in between.
   */
  private tagDigestInto(digest: Uint8Array, out: Uint8Array, offset: number): void {
    for (let i = 0, o = 0; i < 8; i++, o += 4)
      W[i] = (digest[o]! << 24) | (digest[o + 1]! << 16) | (digest[o + 2]! << 8) | digest[o + 3]!;
    padDigestBlock();
    for (let i = 0; i < 8; i++) state[i] = this.innerMid[i]!;
    compressW(state);
    for (let i = 0; i < 8; i++) W[i] = state[i]!;
    padDigestBlock();
    for (let i = 0; i < 8; i++) state[i] = this.outerMid[i]!;
    compressW(state);
    stateBytes(out, offset, MAC_BYTES);
  }

  /** HMAC-SHA256(key, data), truncated to MAC_BYTES. */
  tag(data: Uint8Array): Buffer {
    const out = Buffer.allocUnsafe(MAC_BYTES);
    this.tagInto(data, out, 0);
    return out;
  }

  /** Whether `tag` is our MAC of `data` (compared in constant time). */
  matches(data: Uint8Array, tag: Uint8Array): boolean {
    if (tag.length !== MAC_BYTES) return false;
    this.tagInto(data, scratchTag, 0);
    let diff = 0;
    for (let i = 0; i < MAC_BYTES; i++) diff |= scratchTag[i]! ^ tag[i]!;
    return diff === 0;
  }
}
