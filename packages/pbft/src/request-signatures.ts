/**
 * Client signatures on read-write requests (docs/pbft.md, "Defenses"): what a REQUEST's MACs
 * cannot give, a proof every replica checks alike, so that a client whose MACs check at some
 * replicas and fail at others cannot make correct replicas disagree about its request (the MAC
 * attack of Aardvark, NSDI 2009, section 2).
 *
 * The core is synchronous and WebCrypto is not, so, as for the HMACs, signing and verifying
 * use `node:crypto` directly, over KeyObjects made once from the nodes' long-term ECDSA P-256
 * keys (the ones NEW-KEY frames are signed with).
 */
import * as crypto from 'node:crypto';
import { type NodeKeys, webcrypto } from './crypto';

/** Signs the requests of a client process's ids. */
export interface RequestSigner {
  sign(clientId: number, bytes: Uint8Array): Uint8Array;
}

/** Checks a request's signature by the client process that owns `clientId`. */
export interface RequestVerifier {
  verify(clientId: number, bytes: Uint8Array, signature: Uint8Array): boolean;
}

/**
 * Prefixed to what is signed: the same key signs NEW-KEY frames (key-refresh.ts), and a
 * signature made for one must never pass for the other.
 */
const REQUEST_SIGNATURE_CONTEXT = Buffer.from('bfs-pbft request signature v1\0', 'latin1');

function signedBytes(bytes: Uint8Array): Buffer {
  return Buffer.concat([REQUEST_SIGNATURE_CONTEXT, bytes]);
}

/** ECDSA P-256 over SHA-256, in the fixed 64-byte IEEE P1363 form (MAX_REQUEST_SIGNATURE_BYTES). */
export class EcdsaRequestSigner implements RequestSigner {
  private readonly key: crypto.KeyObject;

  /** `key`: a private KeyObject, or the private key's JWK. */
  constructor(key: crypto.KeyObject | crypto.JsonWebKey) {
    this.key =
      key instanceof crypto.KeyObject ? key : crypto.createPrivateKey({ key, format: 'jwk' });
    if (this.key.type !== 'private') throw new TypeError('a request signer needs a private key');
  }

  sign(_clientId: number, bytes: Uint8Array): Uint8Array {
    return crypto.sign('sha256', signedBytes(bytes), { key: this.key, dsaEncoding: 'ieee-p1363' });
  }
}

/** The signer of a node's long-term signing key (exported once: WebCrypto is asynchronous). */
export async function requestSignerOf(keys: NodeKeys): Promise<EcdsaRequestSigner> {
  const jwk = await webcrypto.subtle.exportKey('jwk', keys.signing.privateKey);
  return new EcdsaRequestSigner(jwk as crypto.JsonWebKey);
}

/** The client processes a replica knows: a range of ids and the public key that signs for them. */
export interface SigningRange {
  firstClientId: number;
  count: number;
  /** Raw uncompressed P-256 point (PublicIdentity.signing), or a KeyObject. */
  key: Uint8Array | crypto.KeyObject;
}

/** The public KeyObject of a raw uncompressed P-256 point. */
export function p256PublicKey(point: Uint8Array): crypto.KeyObject {
  if (point.length !== 65 || point[0] !== 4)
    throw new RangeError('not an uncompressed P-256 point');
  const b = Buffer.from(point);
  return crypto.createPublicKey({
    key: {
      kty: 'EC',
      crv: 'P-256',
      x: b.subarray(1, 33).toString('base64url'),
      y: b.subarray(33, 65).toString('base64url'),
    },
    format: 'jwk',
  });
}

export class EcdsaRequestVerifier implements RequestVerifier {
  private readonly ranges: { first: number; end: number; key: crypto.KeyObject }[];

  constructor(ranges: SigningRange[]) {
    this.ranges = ranges.map((r) => ({
      first: r.firstClientId,
      end: r.firstClientId + r.count,
      key: r.key instanceof crypto.KeyObject ? r.key : p256PublicKey(r.key),
    }));
  }

  verify(clientId: number, bytes: Uint8Array, signature: Uint8Array): boolean {
    // A handful of client processes: a scan is as fast as a map.
    const r = this.ranges.find((x) => clientId >= x.first && clientId < x.end);
    if (!r) return false;
    try {
      return crypto.verify(
        'sha256',
        signedBytes(bytes),
        { key: r.key, dsaEncoding: 'ieee-p1363' },
        signature,
      );
    } catch {
      // A signature of the wrong length for the curve: node throws rather than answer false.
      return false;
    }
  }
}
