/**
 * The per-client bound on retransmissions (as Aardvark, Clement et al. NSDI 2009, bounds what a
 * client may cost the replicas): when each client's latest request was last handled here, so
 * that copies of it within RETRANSMISSION_INTERVAL_MS are dropped on their header. Only
 * authenticated requests are recorded: a forged copy can use up nobody's allowance, it is only
 * refused like the genuine copy would be.
 */
import { MAX_RETRANSMISSION_RECORDS, RETRANSMISSION_INTERVAL_MS } from '../constants';

interface Handled {
  timestamp: number;
  replier: number;
  at: number;
}

export class RetransmissionBound {
  /** By client id, the least recently handled first. */
  private readonly last = new Map<number, Handled>();

  constructor(private readonly intervalMs = RETRANSMISSION_INTERVAL_MS) {}

  /** Whether a copy of this request was handled less than the interval before `now`. */
  tooSoon(clientId: number, timestamp: number, replier: number, now: number): boolean {
    const h = this.last.get(clientId);
    return (
      h !== undefined &&
      h.timestamp === timestamp &&
      h.replier === replier &&
      now - h.at < this.intervalMs
    );
  }

  /** An authenticated request was handled at `now`. */
  handled(clientId: number, timestamp: number, replier: number, now: number): void {
    this.last.delete(clientId);
    if (this.last.size >= MAX_RETRANSMISSION_RECORDS)
      this.last.delete(this.last.keys().next().value as number);
    this.last.set(clientId, { timestamp, replier, at: now });
  }
}
