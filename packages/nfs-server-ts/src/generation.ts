/**
 * Inode generations that a client cannot predict and that never repeat soon: what makes a file
 * handle hard to forge and an old handle STALE. A generation is a step of a keyed permutation of
 * the 32-bit numbers, one permutation per inode number. The first generation of inode `ino` is a
 * keyed hash of it (one HMAC, as creating a file from a never-used inode is the common case);
 * the next one after a free is P(key, ino, previous). Because P is a permutation (not a hash),
 * the chain of one inode's generations does not come back to an earlier value for about 2^31
 * reuses on average (a hash chain would close a cycle after about 2^16). Without the key, a
 * generation seen gives nothing about the next one.
 *
 * Deterministic: the same key, inode number and previous generation give the same result in every
 * process, so replicas of a replicated file system agree byte for byte.
 */
import { createHmac, randomBytes } from 'node:crypto';

/** Bytes of a generation key (128 bits). */
export const GENERATION_KEY_BYTES = 16;
/**
 * Rounds of the balanced Feistel network over two 16-bit halves; each round's function is
 * HMAC-SHA256 under the key. Four rounds make a pseudo-random permutation (Luby-Rackoff).
 */
export const GENERATION_FEISTEL_ROUNDS = 4;

/** A fresh random key (for a file system formatted outside any replication). */
export function newGenerationKey(): Uint8Array {
  return new Uint8Array(randomBytes(GENERATION_KEY_BYTES));
}

/** Tag of the first-generation hash, distinct from every round number. */
const FIRST_TAG = 0xff;

function keyed(key: Uint8Array, ino: number, tag: number, half: number): Buffer {
  const msg = Buffer.alloc(7);
  msg.writeUInt32BE(ino >>> 0, 0);
  msg[4] = tag;
  msg.writeUInt16BE(half, 5);
  return createHmac('sha256', key).update(msg).digest();
}

function roundFunction(key: Uint8Array, ino: number, round: number, half: number): number {
  return keyed(key, ino, round, half).readUInt16BE(0);
}

/** The keyed permutation of inode `ino` applied to `x` (a u32). */
export function permuteGeneration(key: Uint8Array, ino: number, x: number): number {
  let left = (x >>> 16) & 0xffff;
  let right = x & 0xffff;
  for (let round = 0; round < GENERATION_FEISTEL_ROUNDS; round++) {
    const next = left ^ roundFunction(key, ino, round, right);
    left = right;
    right = next;
  }
  return ((left << 16) | right) >>> 0;
}

/**
 * The generation that follows `current` for inode `ino`: never 0 (0 is what file systems made
 * before generations were keyed gave every new inode) and never `current` itself.
 */
export function nextGeneration(key: Uint8Array, ino: number, current: number): number {
  const g = permuteGeneration(key, ino, current >>> 0);
  if (g !== 0 && g !== current >>> 0) return g;
  // Only when the permutation maps `current` to 0 or to itself (chance 2^-31): step past it.
  const h = permuteGeneration(key, ino, g);
  return h !== 0 && h !== current >>> 0 ? h : ((current >>> 0) + 1) >>> 0 || 1;
}

/** The generation of inode `ino`'s first use: never 0. */
export function firstGeneration(key: Uint8Array, ino: number): number {
  return keyed(key, ino, FIRST_TAG, 0).readUInt32BE(0) || 1;
}
