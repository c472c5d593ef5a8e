import { FIRST_CLIENT_ID, MacAuthenticator, testSessionKey } from '../../src';

export const KEY_SEED = 'tcp-cluster';

/** Session keys of node `id` with n replicas and `clients` client ids (test keys, not ECDH). */
export function authFor(id: number, n: number, clients: number): MacAuthenticator {
  const peers = [
    ...Array.from({ length: n }, (_, i) => i),
    ...Array.from({ length: clients }, (_, i) => FIRST_CLIENT_ID + i),
  ].filter((p) => p !== id);
  return new MacAuthenticator(
    id,
    peers.map((p) => [p, testSessionKey(KEY_SEED, id, p)]),
  );
}
