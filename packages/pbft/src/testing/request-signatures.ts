/**
 * Request signatures for the simulator and tests. ECDSA signatures are randomized, and the
 * simulator must replay a seed to the same bytes, so these are deterministic: an HMAC under a
 * key derived from the client id. Anyone who knows the id can make one, so it stands for a
 * signature only where nobody forges (a faulty client of the simulator spoils its own
 * signature, it never makes one for another client). The golden transcripts pin bytes and run
 * with request signatures off.
 */
import { createHmac } from 'node:crypto';
import type { RequestSigner, RequestVerifier } from '../request-signatures';

/** Bytes of a test signature. */
export const TEST_SIGNATURE_BYTES = 32;

export class TestRequestSignatures implements RequestSigner, RequestVerifier {
  /** Signatures checked, for tests that count verifications. */
  verified = 0;

  sign(clientId: number, bytes: Uint8Array): Uint8Array {
    return createHmac('sha256', `test request key ${clientId}`).update(bytes).digest();
  }

  verify(clientId: number, bytes: Uint8Array, signature: Uint8Array): boolean {
    this.verified++;
    const good = this.sign(clientId, bytes);
    return signature.length === good.length && Buffer.from(signature).equals(good);
  }
}

/** A signer whose signatures never verify: the faulty clients' (`partial-mac`, `bad-signature`). */
export class SpoiledRequestSigner implements RequestSigner {
  constructor(private readonly inner: RequestSigner) {}

  sign(clientId: number, bytes: Uint8Array): Uint8Array {
    const sig = Buffer.from(this.inner.sign(clientId, bytes));
    sig[0]! ^= 0x5a;
    return sig;
  }
}
