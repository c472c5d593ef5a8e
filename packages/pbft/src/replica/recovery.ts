/**
 * Crash recovery (TOCS 2002 section 4): what a replica restarted from its own disk refrains
 * from until it has caught up, and the decoding of what it persisted before the crash (its
 * prepared certificates and its commit log).
 */
import { quorum } from '../constants';
import { DecodeError, MsgType, PrePrepareMsg, ViewChangeMsg, decodeFrame } from '../codec';
import { batchDigest, requestDigests, sha256 } from '../crypto';
import type { PersistedCert } from './api';
import type { Outbox } from './outbox';
import { ResolvedRequest, resolved } from './slot';

/** A request frame as persisted; throws DecodeError when it is none. */
function persistedRequest(frame: Uint8Array): ResolvedRequest {
  const f = decodeFrame(frame);
  if (f.body.type !== MsgType.Request) throw new DecodeError('not a request');
  return resolved(f.body, frame, sha256(f.signed));
}

/**
 * The batch digest of a persisted prepared certificate, handing each of its large requests to
 * `keep` as it decodes. Throws DecodeError when a frame does not parse or is not of its slot.
 */
export function decodePersistedCert(
  c: PersistedCert,
  keep: (req: ResolvedRequest) => void,
): Buffer {
  const pp = decodeFrame(c.prePrepare).body;
  if (pp.type !== MsgType.PrePrepare || pp.seq !== c.seq || pp.view !== c.view)
    throw new DecodeError('not the pre-prepare of its slot');
  const digests = requestDigests(pp);
  for (const fr of c.large) keep(persistedRequest(fr));
  return batchDigest(pp.nondet, digests);
}

/**
 * A commit-log entry ('committed' action): its pre-prepare and requests in entry order;
 * undefined when the frame is another message. Throws DecodeError when a frame does not parse.
 */
export function decodeCommitted(e: {
  prePrepare: Uint8Array;
  large: Uint8Array[];
}): { pp: PrePrepareMsg; requests: ResolvedRequest[] } | undefined {
  const f = decodeFrame(e.prePrepare);
  if (f.body.type !== MsgType.PrePrepare) return undefined;
  const pp = f.body;
  const large = new Map<string, ResolvedRequest>();
  for (const fr of e.large) {
    const r = persistedRequest(fr);
    large.set(r.hex, r);
  }
  const requests: ResolvedRequest[] = [];
  for (const entry of pp.entries) {
    if ('digest' in entry) {
      const r = large.get(Buffer.from(entry.digest).toString('hex'));
      if (!r) throw new DecodeError('separately transmitted request missing');
      requests.push(r);
    } else requests.push(persistedRequest(entry.inline));
  }
  return { pp, requests };
}

/**
 * Restarted from disk, this replica may have prepared things before the crash that its log no
 * longer holds; until the stable checkpoint passes everything it could have prepared (the
 * recovery horizon) it holds its VIEW-CHANGE back, so that it does not vouch for an incomplete
 * log while the others can change views without it. Only when no view change completes
 * without it for two timeouts (several replicas restarted at once) does it send it: it then
 * counts as the faulty replica until it has recovered.
 */
export class Recovery {
  /** The VIEW-CHANGE held back while recovering, and since when. */
  withheld: { frame: Uint8Array; msg: ViewChangeMsg; since: number } | undefined;
  private horizon: number | undefined;
  /** The execution points the others reported while we wait for 2f + 1 of them. */
  private readonly reports = new Map<number, number>();

  constructor(
    private readonly n: number,
    private readonly L: number,
    private readonly io: Outbox,
    /** Views up to this one were (maybe) active before a restart: send nothing in them. */
    readonly passiveThroughView: number,
    public recovering: boolean,
  ) {}

  /** The recovery horizon, once 2f + 1 others reported (for tests and the invariant checker). */
  get recoveryHorizon(): number | undefined {
    return this.horizon;
  }

  /**
   * A peer's STATUS: 2f + 1 others include a correct replica that executed up to every
   * checkpoint we made stable before the crash; we prepared nothing beyond the highest report
   * plus L.
   */
  onReport(sender: number, lastExecuted: number): void {
    if (!this.recovering || this.horizon !== undefined) return;
    this.reports.set(sender, lastExecuted);
    if (this.reports.size >= quorum(this.n))
      this.horizon = Math.max(...this.reports.values()) + this.L;
  }

  /** Checkpoint `seq` became stable: recovered once it passes the horizon. */
  onStable(seq: number): void {
    if (this.recovering && this.horizon !== undefined && seq >= this.horizon) {
      this.recovering = false;
      this.io.count('recovered');
    }
  }
}
