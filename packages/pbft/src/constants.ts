/** Named settings of the replication library, with the original PBFT code's values. */

/** Requests executed between checkpoints (K). */
export const CHECKPOINT_INTERVAL = 128;
/** Log window L = 2K: sequence numbers accepted above the low water mark. */
export const LOG_WINDOW = 2 * CHECKPOINT_INTERVAL;
/** Client retransmission timeout: initial value and clamp, in milliseconds. */
export const CLIENT_RETRANSMIT_INITIAL_MS = 150;
export const CLIENT_RETRANSMIT_MIN_MS = 10;
export const CLIENT_RETRANSMIT_MAX_MS = 1000;

/** Largest f such that n >= 3f + 1. */
export function maxFaulty(n: number): number {
  if (!Number.isSafeInteger(n) || n < 4)
    throw new RangeError(`PBFT needs n >= 4 replicas, got ${n}`);
  return Math.floor((n - 1) / 3);
}

/**
 * Certificate size: 2f + 1 when n = 3f + 1. For larger n it is ceil((n + f + 1) / 2), the least
 * size at which any two quorums share at least one correct replica.
 */
export function quorum(n: number): number {
  return Math.ceil((n + maxFaulty(n) + 1) / 2);
}

/** Replies a client needs to accept a committed result: f + 1. */
export function replyQuorum(n: number): number {
  return maxFaulty(n) + 1;
}

/** Primary of view v: v mod n. */
export function primaryOf(view: number, n: number): number {
  return view % n;
}
