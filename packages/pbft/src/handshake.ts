/**
 * The connection handshake of the TCP transport: a challenge-response, once per connection, that
 * proves to the accepting end that the dialer holds the key of the node ids it claims, and to the
 * dialer that it reached the node it dialed. Until it completes a connection carries nothing
 * else: no frame from it is routed and no frame is sent over it.
 *
 *   acceptor -> dialer  CHALLENGE  u8 HANDSHAKE_MAGIC, u8 1, 16-byte nonce Na
 *   dialer -> acceptor  HELLO      u8 HANDSHAKE_MAGIC, u8 2, u32 first id, u32 count,
 *                                  16-byte nonce Nd, 32-byte MAC (role 1)
 *   acceptor -> dialer  WELCOME    u8 HANDSHAKE_MAGIC, u8 3, 32-byte MAC (role 2)
 *
 * MAC(role) = HMAC-SHA256(connection key, "bfs-pbft hello v1" | u8 role | u32 dialer first |
 * u32 dialer count | u32 acceptor first | u32 acceptor count | Na | Nd).
 *
 * Freshness: Na is new for every accepted connection, so a HELLO captured from one connection
 * proves nothing on another; Nd does the same for the WELCOME. The role byte keeps one side's
 * MAC from being reflected as the other's. Both ends compute the transcript from what they know
 * (the acceptor its own ids, the dialer the id it dialed), so a dialer that reached another node
 * than it meant finds the WELCOME wrong.
 *
 * The connection key is symmetric per pair of nodes: in a deployment HKDF of the pair's ECDH
 * secret (`connectionKeyFromSecret`), the secret the session keys come from, under its own label
 * and not refreshed with them (NEW-KEY announcements travel over these connections).
 */
import { createHmac, randomBytes, timingSafeEqual } from 'node:crypto';
import * as nodeCrypto from 'node:crypto';

/** First byte of every handshake frame (PBFT frames start with 0xb1, NEW-KEY with 0xb2). */
export const HANDSHAKE_MAGIC = 0xb3;
export const HANDSHAKE_NONCE_BYTES = 16;
export const HANDSHAKE_MAC_BYTES = 32;
export const CHALLENGE_BYTES = 2 + HANDSHAKE_NONCE_BYTES;
export const HELLO_BYTES = 2 + 8 + HANDSHAKE_NONCE_BYTES + HANDSHAKE_MAC_BYTES;
export const WELCOME_BYTES = 2 + HANDSHAKE_MAC_BYTES;

enum Kind {
  Challenge = 1,
  Hello = 2,
  Welcome = 3,
}

/** Whose proof a MAC is: the dialer's (in HELLO) or the acceptor's (in WELCOME). */
export enum HandshakeRole {
  Dialer = 1,
  Acceptor = 2,
}

const LABEL = Buffer.from('bfs-pbft hello v1');

/** A contiguous range of node ids [first, first + count): one node (a replica, or a client process). */
export interface IdRange {
  first: number;
  count: number;
}

/**
 * The key that authenticates connections between this endpoint and the node holding ids
 * [first, first + count), or undefined when that range is not exactly one known node's: a hello
 * claiming it is refused.
 */
export type ConnectionKeys = (first: number, count: number) => Uint8Array | undefined;

/** ConnectionKeys that know exactly the given ranges (a cluster's nodes). */
export function connectionKeysOf(
  entries: Iterable<{ first: number; count: number; key: Uint8Array }>,
): ConnectionKeys {
  const m = new Map<string, Uint8Array>();
  for (const e of entries) m.set(`${e.first}:${e.count}`, e.key);
  return (first, count) => m.get(`${first}:${count}`);
}

/** The HKDF info of a connection key: both id ranges, lower first, so either end derives it. */
export function connectionKeyInfo(a: IdRange, b: IdRange): Buffer {
  const [lo, hi] = a.first <= b.first ? [a, b] : [b, a];
  const info = Buffer.alloc(16);
  info.writeUInt32BE(lo.first, 0);
  info.writeUInt32BE(lo.count, 4);
  info.writeUInt32BE(hi.first, 8);
  info.writeUInt32BE(hi.count, 12);
  return info;
}

/**
 * The connection key of two nodes (either order gives the same key) from their ECDH secret: HKDF
 * with its own label, so it is independent of every session key.
 */
export function connectionKeyFromSecret(secret: Uint8Array, a: IdRange, b: IdRange): Uint8Array {
  return new Uint8Array(
    nodeCrypto.hkdfSync(
      'sha256',
      secret,
      Buffer.from('bfs-pbft connection key'),
      connectionKeyInfo(a, b),
      32,
    ),
  );
}

export function newNonce(): Buffer {
  return randomBytes(HANDSHAKE_NONCE_BYTES);
}

export function handshakeMac(
  key: Uint8Array,
  role: HandshakeRole,
  dialer: IdRange,
  acceptor: IdRange,
  na: Uint8Array,
  nd: Uint8Array,
): Buffer {
  const b = Buffer.alloc(LABEL.length + 17 + 2 * HANDSHAKE_NONCE_BYTES);
  LABEL.copy(b);
  let at = LABEL.length;
  b[at++] = role;
  for (const v of [dialer.first, dialer.count, acceptor.first, acceptor.count]) {
    b.writeUInt32BE(v, at);
    at += 4;
  }
  b.set(na, at);
  b.set(nd, at + HANDSHAKE_NONCE_BYTES);
  return createHmac('sha256', key).update(b).digest();
}

/** Constant-time comparison of a received MAC with the expected one. */
export function macEquals(got: Uint8Array, want: Buffer): boolean {
  return got.length === want.length && timingSafeEqual(got, want);
}

export function encodeChallenge(na: Uint8Array): Buffer {
  const b = Buffer.alloc(CHALLENGE_BYTES);
  b[0] = HANDSHAKE_MAGIC;
  b[1] = Kind.Challenge;
  b.set(na, 2);
  return b;
}

export function decodeChallenge(f: Uint8Array): Buffer | undefined {
  if (f.length !== CHALLENGE_BYTES || f[0] !== HANDSHAKE_MAGIC || f[1] !== Kind.Challenge)
    return undefined;
  return Buffer.from(f.subarray(2));
}

export function encodeHello(dialer: IdRange, nd: Uint8Array, mac: Uint8Array): Buffer {
  const b = Buffer.alloc(HELLO_BYTES);
  b[0] = HANDSHAKE_MAGIC;
  b[1] = Kind.Hello;
  b.writeUInt32BE(dialer.first, 2);
  b.writeUInt32BE(dialer.count, 6);
  b.set(nd, 10);
  b.set(mac, 10 + HANDSHAKE_NONCE_BYTES);
  return b;
}

export function decodeHello(
  f: Uint8Array,
): { dialer: IdRange; nd: Buffer; mac: Buffer } | undefined {
  if (f.length !== HELLO_BYTES || f[0] !== HANDSHAKE_MAGIC || f[1] !== Kind.Hello) return undefined;
  const b = Buffer.from(f);
  return {
    dialer: { first: b.readUInt32BE(2), count: b.readUInt32BE(6) },
    nd: b.subarray(10, 10 + HANDSHAKE_NONCE_BYTES),
    mac: b.subarray(10 + HANDSHAKE_NONCE_BYTES),
  };
}

export function encodeWelcome(mac: Uint8Array): Buffer {
  const b = Buffer.alloc(WELCOME_BYTES);
  b[0] = HANDSHAKE_MAGIC;
  b[1] = Kind.Welcome;
  b.set(mac, 2);
  return b;
}

export function decodeWelcome(f: Uint8Array): Buffer | undefined {
  if (f.length !== WELCOME_BYTES || f[0] !== HANDSHAKE_MAGIC || f[1] !== Kind.Welcome)
    return undefined;
  return Buffer.from(f.subarray(2));
}
