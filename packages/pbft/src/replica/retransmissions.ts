/**
 * The per-client bound on retransmissions (as Aardvark, Clement et al. NSDI 2009, bounds what a
 * client may cost the replicas): when each client's latest request was last handled here, so
 * that copies of it too soon after are dropped on their header. The interval starts at
 * RETRANSMISSION_INTERVAL_MS and doubles with each copy handled, up to
 * RETRANSMISSION_MAX_INTERVAL_MS, as a correct client's backoff does: a client that re-sends as
 * fast as it can gets a few copies of each request handled, not 200 a second (each costing a
 * full reply from every replica). Only authenticated requests are recorded: a forged copy can use
 * up nobody's allowance, it is only refused like the genuine copy would be.
 */
import {
  MAX_RETRANSMISSION_RECORDS,
  RETRANSMISSION_INTERVAL_MS,
  RETRANSMISSION_MAX_INTERVAL_MS,
} from '../constants';

interface Handled {
  timestamp: number;
  replier: number;
  at: number;
  /** How long after `at` the next copy is too soon. */
  gapMs: number;
}

export class RetransmissionBound {
  /** By client id, the least recently handled first. */
  private readonly last = new Map<number, Handled>();

  constructor(
    private readonly intervalMs = RETRANSMISSION_INTERVAL_MS,
    private readonly maxIntervalMs = RETRANSMISSION_MAX_INTERVAL_MS,
  ) {}

  /** Whether a copy of this request was handled less than the interval before `now`. */
  tooSoon(clientId: number, timestamp: number, replier: number, now: number): boolean {
    const h = this.last.get(clientId);
    return (
      h !== undefined && h.timestamp === timestamp && h.replier === replier && now - h.at < h.gapMs
    );
  }

  /** An authenticated request was handled at `now`. */
  handled(clientId: number, timestamp: number, replier: number, now: number): void {
    const h = this.last.get(clientId);
    const again = h !== undefined && h.timestamp === timestamp && h.replier === replier;
    const gapMs = again ? Math.min(2 * h.gapMs, this.maxIntervalMs) : this.intervalMs;
    this.last.delete(clientId);
    if (this.last.size >= MAX_RETRANSMISSION_RECORDS)
      this.last.delete(this.last.keys().next().value as number);
    this.last.set(clientId, { timestamp, replier, at: now, gapMs });
  }
}
