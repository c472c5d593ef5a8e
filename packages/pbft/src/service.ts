import type { TransferableState } from '@bfs/page-store';

/**
 * The replicated state machine. Everything is synchronous: the core calls it in sequence order.
 * Its whole state lives in `state`, so checkpoints and their digests come from the page store,
 * and state transfer fetches and serves it.
 */
export interface Service {
  readonly state: TransferableState;
  /**
   * Runs one operation. `nondet` is the agreed non-deterministic value of the batch (empty for
   * read-only operations, which must not modify the state). Deterministic: same state, op and
   * nondet give the same result and the same state on every correct replica.
   */
  execute(op: Uint8Array, clientId: number, nondet: Uint8Array, readOnly: boolean): Uint8Array;
  /** Primary: the value to propose for the next batch (BFS: the time). */
  proposeNondet(now: number): Uint8Array;
  /** Backup: whether to accept the primary's proposal (BFS: within the clock-skew bound). */
  checkNondet(nondet: Uint8Array, now: number): boolean;
  /**
   * The state was replaced under the service (rollback of tentative work, state transfer): drop
   * anything cached from the pages.
   */
  stateReplaced?(): void;
}
