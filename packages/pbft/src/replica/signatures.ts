/**
 * Client signatures on read-write requests, checked only where a MAC cannot decide (docs/pbft.md,
 * "Defenses"): the primary before it orders a request, a backup whose MAC entry of a request in
 * a pre-prepare fails, and a replica before a request counts towards a view change. Each check is
 * remembered by request digest, so a request costs each replica one verification at most.
 */
import { REQUEST_SIGNATURE_CACHE_ENTRIES } from '../constants';
import { receivedSigningBytes, signedPart } from '../codec';
import type { RequestVerifier } from '../request-signatures';
import type { Outbox } from './outbox';
import type { ResolvedRequest } from './slot';

export class SignatureChecks {
  /** Outcomes by request digest (hex), oldest first. */
  private readonly outcomes = new Map<string, boolean>();

  constructor(
    private readonly verifier: RequestVerifier | undefined,
    private readonly io: Outbox,
  ) {}

  /** Whether this replica checks request signatures (ReplicaOptions.requestSignatures). */
  get on(): boolean {
    return this.verifier !== undefined;
  }

  /** Whether `req` carries a valid signature by its client; false when signatures are off. */
  valid(req: ResolvedRequest): boolean {
    const v = this.verifier;
    const sig = req.msg.signature;
    if (v === undefined || sig === undefined) return false;
    const known = this.outcomes.get(req.hex);
    if (known !== undefined) {
      this.io.count('requestSignatureCached');
      return known;
    }
    const bytes = receivedSigningBytes(signedPart(req.frame), req.msg);
    const ok = v.verify(req.msg.clientId, bytes, sig);
    this.io.count(ok ? 'requestSignatureVerified' : 'requestSignatureBad');
    if (this.outcomes.size >= REQUEST_SIGNATURE_CACHE_ENTRIES)
      this.outcomes.delete(this.outcomes.keys().next().value as string);
    this.outcomes.set(req.hex, ok);
    return ok;
  }
}
