import { createHash } from 'node:crypto';

/** Hash behind every leaf and partition digest (see docs/page-store.md for the measurements). */
export const HASH_ALGORITHM = 'sha256';
/** Bytes in a digest. */
export const DIGEST_BYTES = 32;
/**
 * AdHash modulus: the largest prime below 2^256 (2^256 - 189). Children's digests, read as
 * big-endian 256-bit integers, are summed modulo this number.
 */
export const ADHASH_MODULUS = (1n << 256n) - 189n;
/** `lm` of a page or partition that no checkpoint has ever modified. */
export const UNTOUCHED = -1;

// Domain tags keep a page digest from ever equalling a partition digest.
const LEAF_TAG = 0x4c; // 'L'
const NODE_TAG = 0x4e; // 'N'
const HEADER_BYTES = 18; // tag, level, index (u64), lm + 1 (u64)

const header = new Uint8Array(HEADER_BYTES);
const headerView = new DataView(header.buffer);

function writeU64(at: number, value: number): void {
  headerView.setUint32(at, Math.floor(value / 2 ** 32));
  headerView.setUint32(at + 4, value >>> 0);
}

function fillHeader(tag: number, level: number, index: number, lm: number): Uint8Array {
  header[0] = tag;
  header[1] = level;
  writeU64(2, index);
  // lm + 1 so that UNTOUCHED encodes as 0 and every lm is an unsigned integer.
  writeU64(10, lm + 1);
  return header;
}

/** Leaf digest: H('L', 0, page index, last-modified checkpoint + 1, page bytes). */
export function leafDigest(index: number, lm: number, page: Uint8Array): Uint8Array {
  const h = createHash(HASH_ALGORITHM);
  h.update(fillHeader(LEAF_TAG, 0, index, lm));
  h.update(page);
  return new Uint8Array(h.digest());
}

/** Partition digest: H('N', level, index, last-modified checkpoint + 1, AdHash sum as 32 bytes BE). */
export function nodeDigest(level: number, index: number, lm: number, sum: bigint): Uint8Array {
  const h = createHash(HASH_ALGORITHM);
  h.update(fillHeader(NODE_TAG, level, index, lm));
  h.update(bigintToBytes(sum));
  return new Uint8Array(h.digest());
}

/** A digest as an AdHash term (a big-endian integer reduced modulo ADHASH_MODULUS). */
export function digestTerm(digest: Uint8Array): bigint {
  let v = 0n;
  const view = new DataView(digest.buffer, digest.byteOffset, digest.byteLength);
  for (let i = 0; i + 8 <= digest.byteLength; i += 8) v = (v << 64n) | view.getBigUint64(i);
  return v % ADHASH_MODULUS;
}

/** (a + b) mod ADHASH_MODULUS for terms already reduced (b may be negative, |b| < modulus). */
export function addMod(a: bigint, b: bigint): bigint {
  const s = (a + b) % ADHASH_MODULUS;
  return s < 0n ? s + ADHASH_MODULUS : s;
}

/** A sum below 2^256 as 32 big-endian bytes. */
export function bigintToBytes(v: bigint): Uint8Array {
  const out = new Uint8Array(DIGEST_BYTES);
  const view = new DataView(out.buffer);
  for (let i = DIGEST_BYTES - 8; i >= 0; i -= 8) {
    view.setBigUint64(i, v & 0xffffffffffffffffn);
    v >>= 64n;
  }
  return out;
}

/** Constant-time-irrelevant byte equality (digests are public). */
export function bytesEqual(a: Uint8Array, b: Uint8Array): boolean {
  if (a.byteLength !== b.byteLength) return false;
  for (let i = 0; i < a.byteLength; i++) if (a[i] !== b[i]) return false;
  return true;
}
