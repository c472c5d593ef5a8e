/** Deterministic keys for the simulator, tests and benchmarks: never for a real cluster. */
import { type KeyObject, createECDH, createPrivateKey, createPublicKey } from 'node:crypto';
import { sha256 } from '../crypto';
import { type IdRange, connectionKeyInfo } from '../handshake';

/**
 * Deterministic session keys from a shared secret seed, for the simulator and tests only
 * (real deployments use deriveSessionKey).
 */
export function testSessionKey(seed: string, a: number, b: number): Buffer {
  return sha256(Buffer.from(`${seed}:${Math.min(a, b)}:${Math.max(a, b)}`));
}

/** A deterministic connection key for tests and the simulator only (like `testSessionKey`). */
export function testConnectionKey(seed: string, a: IdRange, b: IdRange): Buffer {
  return sha256(Buffer.from(`connection:${seed}:`), connectionKeyInfo(a, b));
}

/**
 * A deterministic ECDSA P-256 key pair for tests and benchmarks only (real nodes generate
 * theirs): the private scalar is a hash of `seed`, the public point computed from it.
 */
export function testSigningKeys(seed: string): { privateKey: KeyObject; publicKey: KeyObject } {
  const d = sha256(Buffer.from(`signing:${seed}`));
  const ecdh = createECDH('prime256v1');
  ecdh.setPrivateKey(d);
  const point = ecdh.getPublicKey();
  const jwk = {
    kty: 'EC',
    crv: 'P-256',
    x: point.subarray(1, 33).toString('base64url'),
    y: point.subarray(33, 65).toString('base64url'),
  };
  return {
    privateKey: createPrivateKey({ key: { ...jwk, d: d.toString('base64url') }, format: 'jwk' }),
    publicKey: createPublicKey({ key: jwk, format: 'jwk' }),
  };
}
