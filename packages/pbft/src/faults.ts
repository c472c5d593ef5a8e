/**
 * Fault attribution: what one node observed from each replica, as counters keyed by sender.
 * Pure and bounded (one entry per replica, n in all); the cores count, and what shows them
 * (bfs's /status, the relay) takes differences over time: the core knows no wall clock.
 */

/**
 * wrongReply: a reply whose result disagrees with the result the client accepted;
 * badMac: a frame claiming to be from the replica whose MACs do not check (wrong keys, or an
 * impersonator using its id); digestMismatch: a checkpoint digest that differs from the one 2f + 1
 * replicas vouched for, or a prepare or commit for a digest other than the one that committed;
 * rejectedProposal: a pre-prepare or NEW-VIEW from the primary that was refused on content (bad
 * requests, an unacceptable non-deterministic value, an invalid NEW-VIEW); equivocation: two
 * different messages from the same replica for the same (view, sequence number) or checkpoint.
 */
export const FAULT_KINDS = [
  'wrongReply',
  'badMac',
  'digestMismatch',
  'rejectedProposal',
  'equivocation',
] as const;
export type FaultKind = (typeof FAULT_KINDS)[number];
export type FaultCounts = Record<FaultKind, number>;

export function noFaults(): FaultCounts {
  return { wrongReply: 0, badMac: 0, digestMismatch: 0, rejectedProposal: 0, equivocation: 0 };
}

/** Counters of faults by sender, for replicas 0 .. n - 1 only (anything else is not counted). */
export class FaultLedger {
  private readonly bySender: FaultCounts[];

  constructor(readonly n: number) {
    this.bySender = Array.from({ length: n }, noFaults);
  }

  /** Counts `k` faults of `kind` from replica `sender`; ids outside 0 .. n - 1 are ignored. */
  note(sender: number, kind: FaultKind, k = 1): void {
    if (!Number.isInteger(sender) || sender < 0 || sender >= this.n) return;
    this.bySender[sender]![kind] += k;
  }

  /** A copy of the counters, indexed by replica id. */
  snapshot(): FaultCounts[] {
    return this.bySender.map((c) => ({ ...c }));
  }
}
