/** Deterministic keys for the simulator, tests and benchmarks: never for a real cluster. */
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
