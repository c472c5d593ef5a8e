import {
  type ConnectionKeys,
  EcdsaRequestSigner,
  EcdsaRequestVerifier,
  FIRST_CLIENT_ID,
  MacAuthenticator,
} from '../../src';
import { testConnectionKey, testSessionKey, testSigningKeys } from '../../src/testing';

export const KEY_SEED = 'tcp-cluster';

/**
 * Session keys of node `id` (test keys, not ECDH): a replica shares one with every replica and
 * each of `clients` client ids, a client id only with the replicas (clients never talk to each
 * other; 256 client ids holding keys with each other would be 65,000 keys in one process).
 */
export function authFor(id: number, n: number, clients: number): MacAuthenticator {
  const peers = [
    ...Array.from({ length: n }, (_, i) => i),
    ...(id < n ? Array.from({ length: clients }, (_, i) => FIRST_CLIENT_ID + i) : []),
  ].filter((p) => p !== id);
  return new MacAuthenticator(
    id,
    peers.map((p) => [p, testSessionKey(KEY_SEED, id, p)]),
  );
}

/**
 * Connection-handshake keys of the endpoint holding `ids` (test keys, not ECDH): every other id
 * range is a known node, sharing with it the key derived from KEY_SEED and both ranges.
 */
export function connectionKeysFor(ids: readonly number[]): ConnectionKeys {
  const self = { first: ids[0]!, count: ids.length };
  return (first, count) => testConnectionKey(KEY_SEED, self, { first, count });
}

/** The ECDSA signer of every client id of the process tests and the benchmark (one test key). */
export function requestSignerFor(): EcdsaRequestSigner {
  return new EcdsaRequestSigner(testSigningKeys(KEY_SEED).privateKey);
}

/** What a replica checks those signatures with, for `clients` client ids. */
export function requestVerifierFor(clients: number): EcdsaRequestVerifier {
  const key = testSigningKeys(KEY_SEED).publicKey;
  return new EcdsaRequestVerifier([{ firstClientId: FIRST_CLIENT_ID, count: clients, key }]);
}
